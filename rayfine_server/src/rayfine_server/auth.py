"""Bearer-token check in front of every route.

Plain ASGI rather than a FastAPI dependency so that nothing, including
unknown routes, answers without the token.
"""

from __future__ import annotations

import secrets

from starlette.types import ASGIApp, Receive, Scope, Send

from .errors import UNAUTHORIZED, CallError


class BearerTokenMiddleware:
    """Answer 401 unless the request carries ``Authorization: Bearer <token>``.

    :param app: the application to protect.
    :param token: the expected token.
    """

    def __init__(self, app: ASGIApp, token: str) -> None:
        self.app = app
        self._token = token.encode("utf-8")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Pass authorised requests on; refuse the rest without reading their body."""
        if scope["type"] not in ("http", "websocket") or self._authorized(scope):
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        # Deliberately vague: whether the header was missing or wrong helps only an attacker.
        refusal = CallError(UNAUTHORIZED, "Missing or wrong bearer token")
        await refusal.to_response()(scope, receive, send)

    def _authorized(self, scope: Scope) -> bool:
        """Whether the Authorization header holds the expected bearer token."""
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credentials = value.partition(b" ")
                return scheme.lower() == b"bearer" and secrets.compare_digest(
                    credentials.strip(), self._token
                )
        return False

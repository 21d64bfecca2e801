"""A tiny environment for measuring Rayfine's own overhead: the methods do no work."""


class Actor:
    async def echo(self, x):
        """Return ``x`` (async: runs on the server's event loop)."""
        return x

    def echo_sync(self, x):
        """Return ``x`` (sync: runs in one of the server's worker threads)."""
        return x

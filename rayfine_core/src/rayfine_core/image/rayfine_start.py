"""Start the injected Rayfine server.

Lives in /opt/rayfine/site, so running this file puts that directory first
on sys.path: the server's pinned dependencies are found there without
touching PYTHONPATH for the user's own subprocesses.
"""

import os

if os.environ.get("RAYFINE_EGRESS_SOCKET"):  # egress=[...]: the way out, before env.py runs
    import egress_forward

    egress_forward.start_from_env()

from rayfine_server.__main__ import main  # noqa: E402

main()

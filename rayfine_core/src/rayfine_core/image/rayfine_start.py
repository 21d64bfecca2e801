"""Start the injected Rayfine server (the container's command).

Lives in /opt/rayfine/site next to the ``rayfine_server`` package, so running
this file puts that directory first on sys.path without touching PYTHONPATH
for the user's own subprocesses.  Standard library only, like the server.
"""

import os

if os.environ.get("RAYFINE_EGRESS_SOCKET"):  # egress=[...]: the way out, before env.py runs
    import egress_forward

    egress_forward.start_from_env()

from rayfine_server.__main__ import main

main()

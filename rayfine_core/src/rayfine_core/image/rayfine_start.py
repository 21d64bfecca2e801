"""Start the injected Rayfine server.

Lives in /opt/rayfine/site, so running this file puts that directory first
on sys.path: the server's pinned dependencies are found there without
touching PYTHONPATH for the user's own subprocesses.
"""

from rayfine_server.__main__ import main

main()

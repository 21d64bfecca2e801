"""Files copied into function-based images next to the injected server.

They run inside the container with only the standard library, on whatever
Python the image has, so they stay Python 3.9-compatible and dependency-free.
"""

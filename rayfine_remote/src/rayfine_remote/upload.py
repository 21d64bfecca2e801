"""A build request as one tar stream: ``.rayfine-build.json`` first, then the context under ``context/``.

The gateway unpacks it with :mod:`rayfine_remote.gateway.unpack`, which
refuses anything that would land outside its scratch directory.
"""

from __future__ import annotations

import io
import json
import tarfile
import tempfile
from typing import IO, Any

from rayfine_core.runtime.types import BuildRequest

META = ".rayfine-build.json"
CONTEXT = "context"


def pack(request: BuildRequest) -> IO[bytes]:
    """The tar of ``request`` in a temporary file, rewound (the caller closes it)."""
    meta = json.dumps(
        {
            "dockerfile": request.dockerfile,
            "tag": request.tag,
            "buildargs": request.buildargs,
            "labels": request.labels,
            "nocache": request.nocache,
        }
    ).encode()
    spool: IO[bytes] = tempfile.TemporaryFile(prefix="rayfine-upload-")  # noqa: SIM115 - returned
    with tarfile.open(fileobj=spool, mode="w", format=tarfile.PAX_FORMAT) as tar:
        info = tarfile.TarInfo(META)
        info.size = len(meta)
        tar.addfile(info, io.BytesIO(meta))
        tar.add(str(request.context_dir), arcname=CONTEXT, filter=_plain)
    spool.seek(0)
    return spool


def _plain(info: tarfile.TarInfo) -> Any:
    """Ownership means nothing on the gateway's host; keep modes but no set-id bits."""
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.mode &= 0o777
    return info

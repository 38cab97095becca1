"""Output-path rules shared by every writer: check early, write beside, rename at the end.

Renders can take minutes, so an unwritable destination is reported before any work starts, and
a failed or interrupted write never leaves a half-written file under the user's chosen name
(or clobbers an existing one) unless the caller explicitly keeps the partial result.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

from ..errors import StreamdreamError


def check_output_path(path: str | os.PathLike, *, overwrite: bool = True) -> Path:
    """Return `path` as a Path after checking that it can be written; raise StreamdreamError if not."""
    out = Path(path)
    if out.exists() and out.is_dir():
        raise StreamdreamError(f"output path {out} is a directory; give a file name")
    if out.exists() and not overwrite:
        raise StreamdreamError(f"output file {out} exists; pass --overwrite to replace it")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise StreamdreamError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StreamdreamError(f"cannot write {out}: folder {parent} is not writable")
    return out


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it onto `path` only if the block succeeds.

    The temporary name keeps the real suffix so that libraries choosing a format from the
    extension (Pillow, FFmpeg) see the right one. On any exception the temporary file is removed
    and the exception propagates. Callers that want to keep a partial result on interruption
    (video renders) catch the interruption inside the block, finish the file, and re-raise after.
    """
    out = check_output_path(path, overwrite=overwrite)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.stem}.", suffix=f".partial{out.suffix}", dir=out.parent or ".")
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; the result should get the usual permissions
    try:
        yield tmp
        os.replace(tmp, out)
    finally:
        if tmp.exists():
            tmp.unlink()


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask

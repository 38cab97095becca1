"""The data-safety rules every reader and writer obeys: check early, lock, write beside, publish at the end.

Renders take minutes and their inputs are often irreplaceable photos, so:

* inputs are checked once, with the precise reason when they are unusable (missing, a folder, a
  symlink loop, a FIFO, unreadable, empty), and are never opened for writing;
* an output is refused when it exists (unless the caller allows overwriting), and always when it
  is one of the inputs or another output of the same command, compared as files (inode), so a
  symlink, a hard link or a `./` spelling cannot slip past;
* one process at a time writes an output: a lock file beside it, held with `flock`, names the
  writer's pid, and the kernel drops the lock when that process dies, however it dies;
* the bytes go to a hidden partial file beside the output and reach the output's name in one
  `os.replace` (or a no-clobber hard link) only when complete. A partial left behind by a killed
  run has a fixed name, so the next run on the same output finds it and says it removed it;
* a result that must be kept although unfinished (an interrupted video) never replaces an
  existing file: it goes to a fresh name (`clip.partial.mp4`) that the caller reports.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import logging
import os
import stat
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ..errors import StreamdreamError

log = logging.getLogger(__name__)

# A file is a video by its name (the still commands then never import the video libraries, about
# 0.2 s of their start-up): `streamdream.io.video` reads and writes them.
VIDEO_EXTENSIONS = (".mp4", ".mov", ".mkv", ".webm", ".avi", ".gif", ".m4v")

# errno values that mean "the disk (or a quota or file-size limit) is full": the user frees space.
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


def is_video_path(path: str | os.PathLike) -> bool:
    """True when `path` has a video extension; front ends use it to tell videos from photos."""
    return Path(path).suffix.lower() in VIDEO_EXTENSIONS


def is_disk_full(error: BaseException) -> bool:
    """True for an OSError (or PyAV error, which carries an errno) that says the output has no room."""
    return getattr(error, "errno", None) in DISK_FULL_ERRNOS


def disk_full_error(path: Path, *, kept: Path | None = None) -> StreamdreamError:
    """The one-line error for a write that ran out of space, with exit status 1 (the machine, not the input)."""
    what = f"the part done is in {kept}" if kept else "nothing was written"
    return StreamdreamError(f"no space left on the device while writing {path}; {what}", exit_code=1)


# --- inputs -------------------------------------------------------------------------------------

_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}


def check_input_file(path: str | os.PathLike, what: str = "file") -> Path:
    """Return `path` if it names a readable, non-empty regular file; else raise with the exact reason.

    `what` names the expected content in messages ("image", "video"). Checked without opening the
    file, so a FIFO is reported instead of blocking on it.
    """
    src = Path(path)
    try:
        info = os.stat(src)
    except OSError as exc:
        raise StreamdreamError(_stat_failure(src, exc, what)) from None
    if stat.S_ISDIR(info.st_mode):
        raise StreamdreamError(f"{src} is a folder, not a {what} file")
    if not stat.S_ISREG(info.st_mode):
        kind = _KINDS.get(stat.S_IFMT(info.st_mode), "not a regular file")
        raise StreamdreamError(f"{src} is {kind}, not a {what} file")
    if not os.access(src, os.R_OK):
        raise StreamdreamError(f"cannot read {src}: permission denied")
    if info.st_size == 0:
        raise StreamdreamError(f"{src} is empty (0 bytes)")
    return src


def _stat_failure(path: Path, exc: OSError, what: str) -> str:
    if exc.errno == errno.ENOENT:
        if path.is_symlink():
            return f"{path} is a symbolic link to {os.readlink(path)}, which does not exist"
        return f"no such file: {path}"
    if exc.errno == errno.ELOOP:
        return f"cannot read {path}: its symbolic links form a loop"
    if exc.errno == errno.ENAMETOOLONG:
        return f"cannot read {path}: the file name is too long"
    if exc.errno == errno.ENOTDIR:
        return f"no such file: {path} (a part of the path is not a folder)"
    if exc.errno == errno.EACCES:
        return f"cannot read {path}: permission denied (on a folder of the path)"
    return f"cannot read {path}: {exc.strerror}"


# --- outputs ------------------------------------------------------------------------------------


def check_output_path(path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> Path:
    """Return `path` as a Path after checking that it may and can be written; raise StreamdreamError if not.

    An output that is one of `inputs` is refused even with `overwrite`: replacing the source is
    never what a user means, and the render would read the file it is destroying.
    """
    out = Path(path)
    for source in inputs:
        if _same_file(out, Path(source)):
            raise StreamdreamError(f"output {out} is the input {source}; choose another output name")
    _check_name_length(out)
    try:
        info = os.stat(out)
    except FileNotFoundError:
        info = None
    except OSError as exc:
        raise StreamdreamError(f"cannot write {out}: {_stat_failure(out, exc, 'output').split(': ', 1)[-1]}") from None
    if info is not None:
        if stat.S_ISDIR(info.st_mode):
            raise StreamdreamError(f"output path {out} is a folder; give a file name")
        if not stat.S_ISREG(info.st_mode):
            raise StreamdreamError(f"output path {out} is {_KINDS.get(stat.S_IFMT(info.st_mode), 'not a regular file')}; give a file name")
        if not overwrite:
            raise StreamdreamError(f"output file {out} exists; pass --overwrite to replace it")
    parent = _folder(out)
    if not parent.is_dir():
        raise StreamdreamError(f"cannot write {out}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise StreamdreamError(f"cannot write {out}: folder {parent} is not writable")
    return out


def check_distinct_outputs(outputs: Iterable[str | os.PathLike]) -> None:
    """Refuse two outputs of one command that are the same file (e.g. `-o x.png --preview ./x.png`)."""
    seen: list[Path] = []
    for path in map(Path, outputs):
        for earlier in seen:
            if _same_file(path, earlier):
                raise StreamdreamError(f"two outputs name the same file: {earlier} and {path}")
        seen.append(path)


def _same_file(a: Path, b: Path) -> bool:
    """Same file on disk (inode, through links), or the same path once resolved when either is missing."""
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.realpath(a) == os.path.realpath(b)


def _folder(path: Path) -> Path:
    return path.parent if str(path.parent) else Path(".")


def _name_max(folder: Path) -> int:
    try:
        return os.pathconf(folder if folder.is_dir() else ".", "PC_NAME_MAX")
    except (OSError, ValueError):
        return 255


def _check_name_length(out: Path) -> None:
    limit = _name_max(_folder(out))
    if len(out.name.encode()) > limit:
        raise StreamdreamError(f"cannot write {out.name[:40]}...: the file name is {len(out.name.encode())} bytes, the file system allows {limit}")


def hidden_sibling(out: Path, tag: str, suffix: str = "") -> Path:
    """`.NAME.TAG[SUFFIX]` beside `out`: a fixed name per output, so a later run can find it.

    Names that would pass the file system's limit keep a prefix of the name and a digest of all of it.
    """
    name = f".{out.name}.{tag}{suffix}"
    if len(name.encode()) > _name_max(_folder(out)):
        digest = hashlib.sha256(out.name.encode()).hexdigest()[:12]
        name = f".{out.name[:40]}-{digest}.{tag}{suffix}"
    return _folder(out) / name


# --- one writer per output ----------------------------------------------------------------------

_HELD: dict[str, int] = {}  # lock path -> nesting depth, for claims this process already holds
_HELD_GUARD = threading.Lock()


@contextlib.contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `out`'s lock file for the block; another process holding it gets a one-line error naming its pid.

    Re-entrant within a process, so a front end can claim its outputs before loading a model and
    the writer can claim the same output again when it starts writing.
    """
    lock = hidden_sibling(out, "lock")
    key = os.path.realpath(lock)
    with _HELD_GUARD:
        if key in _HELD:
            _HELD[key] += 1
            nested = True
        else:
            nested = False
    if nested:
        try:
            yield
        finally:
            with _HELD_GUARD:
                _HELD[key] -= 1
        return
    fd = _acquire(lock, out)
    with _HELD_GUARD:
        _HELD[key] = 1
    try:
        yield
    finally:
        with _HELD_GUARD:
            del _HELD[key]
        with contextlib.suppress(FileNotFoundError):
            lock.unlink()  # while still holding it, so nobody can lock a name that is about to vanish
        os.close(fd)


def _acquire(lock: Path, out: Path) -> int:
    """Open and flock the lock file, retrying when a finishing writer unlinked it in between."""
    while True:
        try:
            fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        except OSError as exc:
            raise StreamdreamError(f"cannot write {out}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise StreamdreamError(f"{out} is being written by another streamdream process (pid {owner})") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the previous holder removed this name after we opened it: lock the new one


# --- atomic writes ------------------------------------------------------------------------------


@dataclass
class PendingOutput:
    """An output being written: `tmp` receives the bytes; `final` gets them only when complete."""

    final: Path
    tmp: Path
    overwrite: bool
    kept: Path | None = None  # where an unfinished result was kept, if it was

    def keep_partial(self) -> Path:
        """Keep the unfinished `tmp` under `final` if that name is free, else under a fresh `.partial` name."""
        try:
            _link_no_clobber(self.tmp, self.final)
            self.kept = self.final
        except FileExistsError:
            self.kept = _move_to_fresh_name(self.tmp, self.final, "partial")
        return self.kept

    def publish(self) -> None:
        """Move the finished `tmp` onto `final`: replace only when overwriting was allowed."""
        if self.overwrite:
            os.replace(self.tmp, self.final)
            return
        try:
            _link_no_clobber(self.tmp, self.final)
        except FileExistsError:
            self.kept = _move_to_fresh_name(self.tmp, self.final, "new")
            raise StreamdreamError(f"{self.final} was created by something else during the render; the result is in {self.kept}") from None


def _link_no_clobber(src: Path, dst: Path) -> None:
    """Rename `src` to `dst` only if `dst` does not exist (atomically where hard links work)."""
    try:
        os.link(src, dst)
    except FileExistsError:
        raise
    except OSError:  # a file system without hard links: check, then rename (a small window)
        if os.path.lexists(dst):
            raise FileExistsError(dst) from None
        os.rename(src, dst)
        return
    os.unlink(src)


def _move_to_fresh_name(src: Path, like: Path, tag: str) -> Path:
    for n in range(1, 1000):
        candidate = like.with_name(f"{like.stem}.{tag}{'' if n == 1 else f'-{n}'}{like.suffix}")
        try:
            _link_no_clobber(src, candidate)
            return candidate
        except FileExistsError:
            continue
    raise StreamdreamError(f"cannot find a free name for {like}'s {tag} result")


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False, inputs: Iterable[str | os.PathLike] = ()) -> Iterator[PendingOutput]:
    """Yield a PendingOutput whose `tmp` is a fixed hidden file beside `path`; publish it if the block succeeds.

    The temporary name keeps the real suffix so that libraries choosing a format from the
    extension (Pillow, FFmpeg) see the right one. On an exception the temporary file is removed
    (unless the block kept it with `keep_partial`) and the exception propagates; a disk that
    filled up becomes a one-line StreamdreamError.
    """
    out = check_output_path(path, overwrite=overwrite, inputs=inputs)
    with output_lock(out):
        tmp = hidden_sibling(out, "partial", out.suffix)
        if os.path.lexists(tmp):
            tmp.unlink()
            log.warning("removed %s, an unfinished file left by a streamdream run that was killed", tmp)
        pending = PendingOutput(out, tmp, overwrite)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # the umask applies, as for any new file
        os.close(fd)
        try:
            yield pending
            pending.publish()
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(out, kept=pending.kept) from None
            raise
        finally:
            if os.path.lexists(tmp):
                tmp.unlink()


@contextlib.contextmanager
def claim_outputs(outputs: Iterable[str | os.PathLike], inputs: Iterable[str | os.PathLike] = (), *, overwrite: bool = False) -> Iterator[list[Path]]:
    """Check and lock every output of a command before any work, for the whole command.

    Front ends call this first, so a refused output, an input given as the output, or a render
    already running to the same file costs one line and no model load.
    """
    paths = [Path(p) for p in outputs]
    inputs = [Path(p) for p in inputs]
    check_distinct_outputs(paths)
    for out in paths:
        check_output_path(out, overwrite=overwrite, inputs=inputs)
    with contextlib.ExitStack() as locks:
        for out in paths:
            locks.enter_context(output_lock(out))
        yield paths

"""Outputs that are never half-written: a file or a folder is either the previous complete one or the new
complete one, whenever the writing process is killed (SIGKILL included).

Files go through a temporary file in the same folder, flushed to disk, then ``os.replace`` (atomic on
POSIX). Folders are built in a hidden staging folder beside the target and swapped in with one atomic
exchange (Linux ``renameat2(RENAME_EXCHANGE)``), so the target is at every moment the previous or the new
folder. Where the exchange is not available (another OS, a file system without it) two renames are used;
a kill between them leaves the previous folder under ``.<name>.old-*``, which :func:`recover_dir` (called
by every swap and by readers that want it) puts back.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

_AT_FDCWD = -100
_RENAME_EXCHANGE = 2


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    _fsync_dir(path.parent)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    """:func:`write_bytes_atomic` for UTF-8 text."""
    write_bytes_atomic(path, text.encode("utf-8"))


def staging_dir(target: str | os.PathLike) -> Path:
    """A new, empty hidden folder beside ``target`` to build its next version in (named with this
    process's id, so that what a killed writer left is recognised and removed by :func:`recover_dir`)."""
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.staging-{os.getpid()}-"))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True
    return True


def _stale_staging(target: Path) -> list[Path]:
    stale = []
    for path in target.parent.glob(f".{target.name}.staging-*"):
        pid = path.name[len(f".{target.name}.staging-"):].split("-", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not _pid_alive(int(pid)):
            stale.append(path)
    return stale


def _old_dirs(target: Path) -> list[Path]:
    return sorted(target.parent.glob(f".{target.name}.old-*"))


def recover_dir(target: str | os.PathLike) -> None:
    """After a kill between the two renames of :func:`swap_dir`: put the previous folder back if the
    target is missing; remove what killed writers left (old versions, staging folders)."""
    target = Path(target)
    olds = _old_dirs(target)
    if not target.exists() and olds:
        olds[-1].rename(target)
        olds = olds[:-1]
    for old in olds + _stale_staging(target):
        shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two existing paths; False where the system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    renameat2.restype = ctypes.c_int
    return renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0


def swap_dir(staging: str | os.PathLike, target: str | os.PathLike) -> None:
    """Put the finished ``staging`` folder in place of ``target`` (which may not exist); ``staging`` is gone
    afterwards."""
    staging, target = Path(staging), Path(target)
    recover_dir(target)
    _fsync_dir(staging)
    if not target.exists():
        os.replace(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous version
    else:
        old = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.old-"))
        old.rmdir()
        os.replace(target, old)
        os.replace(staging, target)
        shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(target.parent)


def link_tree(src: Path, dst: Path, skip: frozenset[str] = frozenset()) -> None:
    """Fill ``dst`` with hard links to the entries of ``src`` (copies where linking fails), except ``skip``:
    what a folder holds besides the files being replaced survives a :func:`swap_dir` without being copied."""
    for entry in src.iterdir():
        if entry.name in skip or entry.name.startswith(".") and entry.name.endswith(".tmp"):
            continue
        if entry.is_dir() and not entry.is_symlink():
            shutil.copytree(entry, dst / entry.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(str(entry), str(dst / entry.name))


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst, follow_symlinks=False)
    except OSError:
        shutil.copy2(src, dst, follow_symlinks=False)


class OutputDirError(ValueError):
    """An output folder that a command will not replace (it holds something else)."""


def check_replaceable(target: str | os.PathLike, marker: str, what: str) -> None:
    """Raise OutputDirError unless ``target`` is absent, empty, or an earlier output holding ``marker`` (after
    putting back a previous version that a killed writer left set aside)."""
    target = Path(target)
    recover_dir(target)
    if target.exists():
        if not target.is_dir():
            raise OutputDirError(f"{target} exists and is not a folder")
        if any(target.iterdir()) and not (target / marker).exists():
            raise OutputDirError(f"{target} is not empty and is not an earlier {what} (no {marker}); refusing to "
                                 "replace it: choose a new or empty folder")


@contextlib.contextmanager
def replacing_dir(target: str | os.PathLike, marker: str, what: str) -> Iterator[Path]:
    """A staging folder for the next complete version of ``target``, swapped in when the block ends without
    an exception (and removed when it raises). ``target`` must be absent, empty, or hold ``marker`` (a file
    that an earlier output of the same command has), so that no unrelated folder is ever replaced."""
    target = Path(target)
    check_replaceable(target, marker, what)
    staging = staging_dir(target)
    try:
        yield staging
        swap_dir(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

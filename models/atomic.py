"""File helpers: atomic writes (a hidden temp file beside the target, renamed into place), hashes.

A kill at any moment leaves either the old file or the new one, never a torn file under the
real name. Temp files are named ``.NAME.PID.tmp``: they never match a glob for the real
files (``*.pt``, ``*.png``), and :func:`remove_leftovers` clears those a killed writer left.
Every stage writes its outputs through :func:`atomic_path`; a write that runs out of space
(disk full, quota, a file-size limit) is a :class:`DiskFullError` naming the file, and whatever
was saved under that name before stays as it was. :func:`check_output_folder` is the one check
every CLI makes of its ``--out`` before any work.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".tmp"
# What a write raises when there is no room: a full disk, a full quota, a file-size limit (ulimit -f).
NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class DiskFullError(OSError):
    """No room to write a file. The message names it; what was saved before under that name is kept."""


class OutputFolderError(ValueError):
    """An output folder that cannot be one (a file, or a place this process cannot write)."""


def disk_full_error(path: Path, error: OSError) -> DiskFullError:
    """The message for a write to ``path`` that ran out of room."""
    return DiskFullError(f"no room to write {path}: the disk is full (or a quota or file-size limit was reached: "
                         f"{error.strerror or error}); free some space and run again. Nothing was written under "
                         "that name: what was saved there before is kept")


def temp_path(path: Path) -> Path:
    """The hidden temp name for ``path``: ``.NAME.PID.tmp`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.{os.getpid()}{TEMP_SUFFIX}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temp path in the same folder; rename it to ``path`` if the block succeeds.

    The temp name does not end in the target's suffix, so writers that pick a format from the
    suffix must be told the format (``save(tmp, format="PNG")``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp_path(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as error:
        if error.errno in NO_SPACE_ERRNOS and not isinstance(error, DiskFullError):
            raise disk_full_error(path, error) from error
        raise
    finally:
        tmp.unlink(missing_ok=True)  # a torn temp file would only hold on to the space that ran out


def _nearest_existing(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_output_folder(path: Path) -> Path:
    """Refuse, before any work, an output folder that is an existing file (or lies under one),
    or one this process cannot create files in (read-only, no permission). Creates nothing
    that stays: writability is tried with a hidden folder, removed at once, in the folder or
    in its nearest existing parent. Returns the path."""
    path = Path(path)
    existing = _nearest_existing(path.absolute())
    if not existing.is_dir():
        what = "is a file" if existing == path.absolute() else f"lies under {existing}, which is a file"
        raise OutputFolderError(f"{path} {what}, not a folder; name a folder (it is created if missing)")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".tinybeauty-probe-", dir=existing))
    except OSError as error:
        raise OutputFolderError(f"cannot write in {existing} ({error.strerror or error}); name a folder you "
                                "can write to") from error
    return path


def _writer_alive(path: Path) -> bool:
    """Whether the process that names a temp file (``.NAME.PID.tmp``) still runs; a name without a
    PID counts as alive, so only what is surely stale is deleted."""
    pid = path.name[: -len(TEMP_SUFFIX)].rpartition(".")[2]
    if not pid.isdigit():
        return True
    if int(pid) == os.getpid():
        return False  # this process starts its writes after the clean-up: none of its own is open
    return process_running(int(pid))


def process_running(pid: int) -> bool:
    """Whether a process with that id runs on this machine (someone else's too). Where there is no
    such check (Windows, whose os.kill would stop the process) the answer is yes, so that nothing of
    a run in progress is ever deleted."""
    if os.name != "posix":
        return True
    try:
        os.kill(pid, 0)  # signal 0: asks whether the process exists, sends nothing
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


_LOCKED: dict[Path, int] = {}  # folder -> the open descriptor its lock lives on


def lock_folder(folder: Path) -> None:
    """Hold an existing ``folder`` for this process until :func:`unlock_folder` or the process's
    end, so that two runs never write into one folder: another process asking for it gets an
    OutputFolderError naming it. (No lock where the system has no flock, e.g. Windows.)"""
    try:
        import fcntl
    except ImportError:
        return
    folder = Path(folder).absolute()
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise OutputFolderError(f"{folder} is being written by another run at this moment; wait for it to "
                                "finish, or pick another --out") from None
    _LOCKED[folder] = descriptor


def unlock_folder(folder: Path) -> None:
    """Let another run have ``folder`` (nothing if this process does not hold it)."""
    descriptor = _LOCKED.pop(Path(folder).absolute(), None)
    if descriptor is not None:
        os.close(descriptor)  # closing the descriptor releases its lock


def remove_leftovers(folder: Path) -> list[Path]:
    """Delete the temp files (``.*.PID.tmp``) that writers killed earlier left in ``folder``: those
    whose process is gone. A run writing into the same folder at this moment keeps its own. Returns
    what was deleted."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    leftovers = [p for p in folder.glob(f".*{TEMP_SUFFIX}") if p.is_file() and not _writer_alive(p)]
    for path in leftovers:
        path.unlink(missing_ok=True)
    return leftovers


def save_figure(figure, path: Path, dpi: int = 100) -> Path:
    """Save a matplotlib figure atomically and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    with atomic_path(path) as tmp:
        figure.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".") or "png")
    plt.close(figure)
    return path


def write_text(path: Path, text: str) -> Path:
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return Path(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _exchange(first: Path, second: Path) -> bool:
    """Swap two paths in one atomic step (Linux renameat2 RENAME_EXCHANGE). False if unsupported
    here; an OSError if the swap failed (FileNotFoundError: one of the two is not there)."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    renameat2 = getattr(libc, "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(first), at_fdcwd, os.fsencode(second), rename_exchange) == 0:
        return True
    error = ctypes.get_errno()
    if error in (errno.ENOSYS, errno.EINVAL):  # an old kernel, or a file system without the exchange
        return False
    raise OSError(error, os.strerror(error), str(second))


def replace_directory(new: Path, target: Path) -> Path:
    """Put the folder ``new`` at ``target`` as a whole and delete what was there.

    On Linux the two folders are exchanged in one atomic step, so a reader sees the old set or
    the new one, never a mix. Elsewhere the old folder is renamed away first: for that instant
    ``target`` is missing (a reader gets "not found"), still never a mix. Another process
    replacing ``target`` at the same moment is no error: each puts its folder there whole, and
    the last one stays."""
    import shutil

    new, target = Path(new), Path(target)
    replaced = []  # what was at target: the previous set(s), deleted once the new one is in place
    while True:
        if not target.exists():
            try:
                os.replace(new, target)
                break
            except OSError as error:  # another writer's folder arrived first: swap with it instead
                if error.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    raise
                continue
        try:
            if _exchange(new, target):
                replaced.append(new)  # the exchange left the previous set where the new one was staged
                break
            old = target.with_name(f".{target.name}.old.{os.getpid()}.{len(replaced)}")
            os.replace(target, old)
            replaced.append(old)
        except FileNotFoundError:
            if not new.exists():
                raise
            continue  # another writer moved target away at that instant
    for old in replaced:
        shutil.rmtree(old)
    return target


def tree_files(path: Path) -> list[Path]:
    """The files of an artifact: itself, or every file under a folder artifact (an .mlpackage), sorted."""
    path = Path(path)
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def tree_bytes(path: Path) -> int:
    """Bytes on disk of a file, or of every file in a folder."""
    return sum(p.stat().st_size for p in tree_files(path))


def sha256_tree(path: Path) -> str:
    """sha256 of a file; for a folder, sha256 over its sorted 'relative/path sha256' lines, so any
    added, removed, renamed or changed file changes it."""
    path = Path(path)
    if path.is_file():
        return sha256_file(path)
    lines = "".join(f"{p.relative_to(path).as_posix()} {sha256_file(p)}\n" for p in tree_files(path))
    return hashlib.sha256(lines.encode()).hexdigest()

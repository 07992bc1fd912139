"""Output paths checked before any work, and outputs that appear all at once or not at all.

Every command names its inputs and its outputs (``{"--out": path, "--report": path, ...}``; one more output is
one more entry). :func:`check_outputs` refuses, before any work and with one line:

* an output that is an input (the same file after symbolic links are resolved, hard links included), which
  would overwrite the user's data;
* two outputs on the same file;
* an output that is a folder, or whose folder cannot be created or written (checked on the nearest folder that
  exists, so a path under a regular file or in a read-only folder fails now, not after the work).

:func:`check_folder` does the same for a command whose output is a whole folder.

:class:`Staged` writes each output under a temporary name beside its target (``.NAME.tmp-HOST-PID``) and renames
them all into place only when the run has succeeded; on failure it removes the temporary files and the folders it
made, so a failed run leaves nothing at any output path. A run killed outright (SIGKILL, power loss) cannot remove
its temporary files: the next run that writes the same target removes them (:func:`remove_stale`: those of this
host whose process is gone). Two runs that commit at once take turns (a lock on each output folder for the
renames), so their sets of outputs are never mixed: the last to commit has all of its outputs in place. An error
writing an output (a full disk, a file-size limit) is one line naming it (:func:`writing`).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import shutil
import socket
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

__all__ = [
    "OutputError",
    "check_outputs",
    "check_folder",
    "check_writable",
    "Staged",
    "temporary_name",
    "remove_stale",
    "writing",
    "lock_folder",
    "os_reason",
]

PathLike = str | os.PathLike
#: This machine's name, in temporary names: a run on another machine sharing the folder is never taken for dead.
_HOST = socket.gethostname().replace(os.sep, "_")


class OutputError(ValueError):
    """An output path that cannot be used; nothing was written. The message is one line."""


def _identity(path: Path) -> tuple:
    """What makes two paths one file: device and inode when it exists (hard links too), else the real path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def _nearest_folder(folder: Path) -> Path:
    """``folder`` or its nearest ancestor that exists (what creating it needs to write into)."""
    folder = Path(os.path.abspath(folder))
    while not folder.exists() and folder != folder.parent:
        if folder.is_symlink():  # a dangling link: its target is what would be created
            break
        folder = folder.parent
    return folder


def check_writable(target: PathLike, flag: str) -> None:
    """Fails unless the folder of ``target`` (an output file or folder) exists or can be created, and can be
    written: a path under a regular file, a read-only folder or file system (``os.access`` reports EROFS even to
    root) is refused now."""
    _writable(Path(target).parent, target, flag)


def _writable(folder: Path, target: PathLike, flag: str) -> None:
    existing = _nearest_folder(folder)
    if not existing.is_dir():
        raise OutputError(f"{target}: {flag} cannot be written: {existing} is not a folder (nothing was written)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: {flag} cannot be written: {existing} is not writable (nothing was written)")


def _inputs(inputs: Iterable[PathLike | None]) -> dict[tuple, str]:
    found = {}
    for spec in inputs:
        if spec is not None and os.path.exists(spec):
            found[_identity(Path(spec))] = str(spec)
    return found


def check_outputs(outputs: Mapping[str, PathLike | None], inputs: Iterable[PathLike | None] = ()) -> None:
    """Refuses, before any work, an output (``{flag: path}``; None: not written) that is an input, two outputs on
    one file, an output that is a folder and an output whose folder cannot be written. Inputs that are not local
    files (hub ids) cannot clash and are skipped."""
    read = _inputs(inputs)
    seen: dict[tuple, str] = {}
    for flag, given in outputs.items():
        if given is None:
            continue
        path = Path(given)
        if path.is_dir():
            raise OutputError(f"{path}: {flag} is a folder; give a file name")
        identity = _identity(path)
        if identity in read:
            raise OutputError(
                f"{path}: {flag} is the input {read[identity]}; writing it would overwrite your data: give another "
                "path (nothing was written)"
            )
        if identity in seen:
            raise OutputError(f"{path}: {seen[identity]} and {flag} are the same file; give each output its own path")
        seen[identity] = flag
        check_writable(path, flag)


def check_folder(
    flag: str,
    folder: PathLike,
    inputs: Iterable[PathLike | None] = (),
    *,
    new: bool = True,
    outputs: Mapping[str, PathLike | None] | None = None,
) -> None:
    """An output folder: with ``new``, it must not exist; its parent must be writable; no input may be it or lie
    inside it (for a folder that is to be cleared and rewritten), and no other output (``{flag: path}``) either:
    the folder is the run's alone (renamed into place whole, or cleared by a later ``--overwrite``)."""
    folder = Path(folder)
    if new and (folder.exists() or folder.is_symlink()):
        raise OutputError(f"{folder}: {flag} already exists; give a new folder (nothing was written)")
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: {flag} is a file, not a folder")
    real = os.path.realpath(folder)

    def within(spec: PathLike) -> bool:
        inside = os.path.realpath(spec)
        return inside == real or inside.startswith(real.rstrip(os.sep) + os.sep)

    for spec in inputs:
        if spec is not None and os.path.exists(spec) and within(spec):
            raise OutputError(f"{folder}: {flag} holds the input {spec}; give another folder (nothing was written)")
    for other, spec in (outputs or {}).items():
        if spec is not None and within(spec):
            raise OutputError(
                f"{spec}: {other} lies in {flag} {folder}, which holds the run's own files only; give a path outside "
                "it (nothing was written)"
            )
    _writable(folder if folder.is_dir() else folder.parent, folder, flag)


def temporary_name(target: PathLike) -> Path:
    """The temporary name of an output while it is written: hidden, beside the target, per host and process."""
    target = Path(target)
    return target.with_name(f".{target.name}.tmp-{_HOST}-{os.getpid()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale(target: PathLike) -> list[Path]:
    """Removes the temporary files (or folders) of ``target`` left by runs of this host that were killed: those
    whose process is gone. Another host's, or a live run's, stay. Returns what was removed."""
    target = Path(target)
    prefix = f".{target.name}.tmp-{_HOST}-"
    removed = []
    for tmp in target.parent.glob(f".{target.name}.tmp-*"):
        pid = tmp.name[len(prefix) :] if tmp.name.startswith(prefix) else ""
        if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
            continue
        if tmp.is_dir() and not tmp.is_symlink():
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            tmp.unlink(missing_ok=True)
        removed.append(tmp)
    return removed


def os_reason(error: OSError) -> str:
    """An OS error's reason without the file names it may hold (the caller names the output)."""
    return os.strerror(error.errno) if error.errno else str(error)


@contextlib.contextmanager
def writing(target: PathLike, flag: str | None = None) -> Iterator[None]:
    """Turns an error writing ``target`` (a full disk, a file-size limit, a vanished folder) into one line naming
    the output: ``TARGET: FLAG cannot be written: REASON (nothing was written)``."""
    try:
        yield
    except OSError as e:
        what = f"{flag} cannot be written" if flag else "cannot be written"
        raise OutputError(f"{target}: {what}: {os_reason(e)} (nothing was written)") from None


def lock_folder(folder: PathLike, *, wait: bool = True) -> int:
    """An exclusive lock on a folder (``flock``; the kernel releases it when the process dies, so a killed run never
    leaves one): a descriptor to close to release it. ``wait=False``: BlockingIOError when another process holds it.
    Where the file system has no such locks (some network file systems refuse them on a folder), the descriptor
    holds none: runs there are not serialised."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError as e:
        if e.errno not in (errno.EBADF, errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            os.close(fd)
            raise
    return fd


@contextlib.contextmanager
def _locked(folders: Iterable[Path]) -> Iterator[None]:
    """A lock on each folder (in one order, so two runs cannot wait on each other) for the block: two runs renaming
    outputs into one folder take turns."""
    held = []
    try:
        for folder in sorted({os.path.realpath(f) for f in folders}):
            held.append(lock_folder(folder))
        yield
    finally:
        for fd in held:
            os.close(fd)  # closing the last descriptor releases the lock


class Staged:
    """Outputs written under temporary names and renamed into place together.

    ``path(target)`` makes the target's missing folders and returns the temporary path to write (a file, or a
    folder the caller makes); ``commit()`` renames every one into place; ``discard()`` removes them and the
    folders made. As a context manager it commits when the block succeeds and discards when it raises.
    """

    def __init__(self) -> None:
        self._staged: dict[Path, Path] = {}
        self._made: list[Path] = []

    def path(self, target: PathLike) -> Path:
        target = Path(target)
        missing = []
        folder = target.parent
        while not folder.exists() and folder != folder.parent:
            missing.append(folder)
            folder = folder.parent
        for made in reversed(missing):
            made.mkdir()
            self._made.append(made)
        remove_stale(target)
        tmp = temporary_name(target)
        self._staged[target] = tmp
        return tmp

    def write_text(self, target: PathLike, text: str) -> None:
        """A small text output (a report, a results file)."""
        tmp = self.path(target)
        with writing(target):
            tmp.write_text(text, encoding="utf-8")

    def commit(self) -> None:
        """Renames every output into place, in the order staged, holding the lock of their folders: a run that
        commits at the same time renames all of its outputs before or after these, never between them."""
        with _locked(t.parent for t in self._staged):
            for target, tmp in list(self._staged.items()):
                with writing(target):
                    try:
                        os.replace(tmp, target)
                    except OSError as e:
                        if e.errno in (errno.ENOTEMPTY, errno.EEXIST):  # a folder: one only a new one may take
                            raise OutputError(f"{target}: cannot be written: another run wrote it meanwhile (nothing "
                                              "was written)") from None  # fmt: skip
                        raise
                del self._staged[target]
        self._made.clear()

    def discard(self) -> None:
        for tmp in self._staged.values():
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
        self._staged.clear()
        for folder in reversed(self._made):
            with contextlib.suppress(OSError):  # something else was put there meanwhile: it stays
                folder.rmdir()
        self._made.clear()

    def __enter__(self) -> Staged:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            try:
                self.commit()
            except BaseException:
                self.discard()
                raise
        else:
            self.discard()

"""Files the explorer writes: whole or not at all, private where a server keeps them, and bounded.

* :func:`atomic_write_bytes` / :func:`atomic_write_text` / :func:`atomic_path`: the data goes to a
  temporary file in the target's folder, is flushed to disk, then renamed over the target. A reader
  sees the old file or the new one, never half of one; a failed write leaves the old file as it was
  and no temporary file behind. Every file the explorer writes goes through them.
* :func:`private_dir`: a folder only this user can enter (0700); a symlink, or a folder someone else
  owns (in a shared ``/tmp``), is refused rather than followed.
* :func:`save_upload`: an uploaded file kept under a name made from its content (a stable cache key),
  reused only when its content really matches, the folder trimmed to ``upload_dir_bytes``.
* :func:`temporary_dir`: a private scratch folder removed when its owner is done with it (or
  garbage-collected), and :func:`remove_stale` for those a dead process left behind.
* :func:`zip_members`: a zip's member list read safely (the entry count is checked before the
  directory is read, names are checked), for the checkpoint loader and the Lab's data uploads.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import stat
import struct
import tempfile
import time
import weakref
import zipfile
from pathlib import Path
from typing import BinaryIO, Iterator

from explorer.errors import ExplorerError
from explorer.resources import check, limit

UPLOADS = "explorer-uploads"
NAME_MAX = 120  # characters kept of an uploaded file's own name
_TEMP_SUFFIX = ".part"


class FilesError(ExplorerError, ValueError):
    """A file or folder the explorer cannot write or trust; the message says why."""


def _umask_mode() -> int:
    """The mode ``open()`` gives a new file: 0666 less the process's umask (read from /proc, else set
    and restored)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return 0o666 & ~mask


@contextlib.contextmanager
def atomic_path(path: str | Path, mode: int | None = 0o600) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; on leaving the block it is flushed to disk and
    renamed over ``path``, or removed if the block raised.

    ``mode``: the new file's permissions; ``None`` gives what ``open()`` would (the umask's), for
    files a person asked for (an export, ``--out``).
    """
    path = Path(path)
    folder = path.parent
    folder.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=folder, prefix=f".{path.name[:60]}.", suffix=_TEMP_SUFFIX)
    temporary = Path(name)
    try:
        os.fchmod(fd, _umask_mode() if mode is None else mode)
        os.close(fd)
        fd = -1
        yield temporary
        with open(temporary, "rb+") as f:  # what the writer closed may still sit in the page cache
            os.fsync(f.fileno())
        os.replace(temporary, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        temporary.unlink(missing_ok=True)
        raise
    _sync_folder(folder)


def _sync_folder(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | Path, data: bytes, mode: int | None = 0o600) -> Path:
    """Write ``data`` to ``path`` whole or not at all (see :func:`atomic_path`)."""
    path = Path(path)
    with atomic_path(path, mode) as temporary, open(temporary, "wb") as f:
        f.write(data)
    return path


def atomic_write_text(path: str | Path, text: str, mode: int | None = 0o600, encoding: str = "utf-8") -> Path:
    """Write ``text`` to ``path`` whole or not at all (see :func:`atomic_path`)."""
    return atomic_write_bytes(path, text.encode(encoding), mode)


def private_dir(path: str | Path) -> Path:
    """``path`` as a folder only this user can use (created 0700; its mode narrowed if it was wider).

    A symlink, a file, or a folder owned by someone else is refused with :class:`FilesError`: in a
    shared temporary folder another user may have put it there first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        path.mkdir(mode=0o700)
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode):
        raise FilesError(f"'{path}' is a symlink: refusing to keep files there (remove it)")
    if not stat.S_ISDIR(info.st_mode):
        raise FilesError(f"'{path}' is not a folder: refusing to keep files there (remove it)")
    if hasattr(os, "getuid") and info.st_uid != os.getuid():
        raise FilesError(f"'{path}' belongs to another user: refusing to keep files there")
    if stat.S_IMODE(info.st_mode) & 0o077:
        os.chmod(path, 0o700)
    return path


def safe_name(name: str, fallback: str = "upload") -> str:
    """A file name from what a browser sent: its last part, only letters, digits, ``._-`` (others
    become ``_``), no leading dot, at most :data:`NAME_MAX` characters (the suffix kept)."""
    base = re.split(r"[/\\]", str(name))[-1]
    base = re.sub(r"[^A-Za-z0-9._-]", "_", base).lstrip(".") or fallback
    if len(base) > NAME_MAX:
        stem, dot, suffix = base.rpartition(".")
        suffix = suffix[:16] if dot and stem else ""
        base = base[:NAME_MAX - len(suffix) - 1] + "." + suffix if suffix else base[:NAME_MAX]
    return base


def _digest_of(path: Path) -> str | None:
    """sha256 of a regular file (not through a symlink), None when it cannot be read."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    digest = hashlib.sha256()
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            return None
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def uploads_dir() -> Path:
    """Where uploaded files are kept: ``$TMPDIR/explorer-uploads``."""
    return Path(tempfile.gettempdir()) / UPLOADS


def save_upload(data: bytes, name: str, folder: str | Path | None = None) -> Path:
    """Keep an uploaded file as ``<sha256 prefix>-<its name, sanitized>`` in a private folder (mode 0600).

    The same content gets the same path (a stable cache key). A file already there is reused only when
    its content hashes the same (a half-written or altered one is rewritten). The folder is then
    trimmed to ``upload_dir_bytes``, oldest first, never removing this file. An upload larger than the
    whole limit is refused (:class:`explorer.resources.BudgetError`).
    """
    check("upload_dir_bytes", f"keeping the upload '{safe_name(name)}'", len(data))
    folder = private_dir(folder if folder is not None else uploads_dir())
    digest = hashlib.sha256(data).hexdigest()
    path = folder / f"{digest[:16]}-{safe_name(name)}"
    if _digest_of(path) == digest:
        os.utime(path)  # used again: the newest, the last to be trimmed
    else:
        atomic_write_bytes(path, data, 0o600)
    trim(folder, int(limit("upload_dir_bytes")), keep=path)
    return path


def trim(folder: str | Path, max_bytes: int, *, keep: Path | None = None) -> list[Path]:
    """Remove the oldest regular files of ``folder`` until the rest total at most ``max_bytes``;
    ``keep`` is never removed, nor a temporary file another writer is still filling. Returns the removed."""
    folder = Path(folder)
    files = []
    now = time.time()
    with os.scandir(folder) as entries:
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(info.st_mode):
                continue
            if entry.name.endswith(_TEMP_SUFFIX) and now - info.st_mtime < 3600:
                continue
            files.append((info.st_mtime, info.st_size, Path(entry.path)))
    total = sum(size for _, size, _ in files)
    removed = []
    for _, size, path in sorted(files, key=lambda f: f[0]):
        if total <= max_bytes:
            break
        if keep is not None and path == Path(keep):
            continue
        try:
            path.unlink()
        except OSError:
            continue
        total -= size
        removed.append(path)
    return removed


class TemporaryDir:
    """A private temporary folder (``path``), removed by :meth:`cleanup`, on leaving a ``with`` block,
    or when the object is garbage-collected or the interpreter exits, whichever comes first."""

    def __init__(self, prefix: str) -> None:
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        self._finalizer = weakref.finalize(self, shutil.rmtree, str(self.path), ignore_errors=True)

    def cleanup(self) -> None:
        """Remove the folder now (again: nothing happens)."""
        self._finalizer()

    @property
    def removed(self) -> bool:
        return not self._finalizer.alive

    def touch(self) -> None:
        """Mark the folder as in use (:func:`remove_stale` goes by its modification time)."""
        with contextlib.suppress(OSError):
            os.utime(self.path)

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        self.cleanup()


def temporary_dir(prefix: str) -> TemporaryDir:
    """A private temporary folder named ``<prefix>...`` in ``$TMPDIR``, removed when its owner is done
    (see :class:`TemporaryDir`); ``with temporary_dir("x-") as path:`` removes it after the block."""
    return TemporaryDir(prefix)


def remove_stale(prefix: str, older_than_s: float = 86400.0) -> list[Path]:
    """Remove this user's folders ``$TMPDIR/<prefix>*`` not modified for ``older_than_s`` seconds (left by
    a process that died before it could clean up). Returns the removed."""
    removed = []
    cutoff = time.time() - older_than_s
    uid = os.getuid() if hasattr(os, "getuid") else None
    for path in Path(tempfile.gettempdir()).glob(f"{_glob_escape(prefix)}*"):
        try:
            info = os.lstat(path)
        except OSError:
            continue
        if stat.S_ISDIR(info.st_mode) and info.st_mtime < cutoff and (uid is None or info.st_uid == uid):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _glob_escape(text: str) -> str:
    return re.sub(r"([*?\[])", r"[\1]", text)


# -- zips ------------------------------------------------------------------------------------------

_EOCD = struct.Struct("<4s4H2LH")  # end of central directory
_EOCD64_LOCATOR = struct.Struct("<4sLQL")
_EOCD64 = struct.Struct("<4sQ2H2L4Q")


def zip_entry_count(f: BinaryIO) -> int | None:
    """How many members a zip declares, from its end records alone (None when they cannot be found)."""
    f.seek(0, os.SEEK_END)
    size = f.tell()
    tail_size = min(size, _EOCD.size + 65535)
    f.seek(size - tail_size)
    tail = f.read(tail_size)
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or at + _EOCD.size > len(tail):
        return None
    count = _EOCD.unpack_from(tail, at)[4]
    locator_at = at - _EOCD64_LOCATOR.size
    if locator_at >= 0 and tail[locator_at:locator_at + 4] == b"PK\x06\x07":
        offset = _EOCD64_LOCATOR.unpack_from(tail, locator_at)[2]
        f.seek(offset)
        record = f.read(_EOCD64.size)
        if len(record) == _EOCD64.size and record[:4] == b"PK\x06\x06":
            count = _EOCD64.unpack(record)[5]
    return count


def odd_member_name(name: str) -> bool:
    """A member name that could write outside the folder it is extracted to, or is not a plain path:
    absolute, a drive, a ``..`` part, a backslash, a control character."""
    parts = name.split("/")
    return (not name or name.startswith("/") or "\\" in name or re.match(r"^[A-Za-z]:", name) is not None
            or ".." in parts or any(ord(c) < 32 for c in name))


def is_symlink_member(info: zipfile.ZipInfo) -> bool:
    """A member stored as a symlink (Unix mode in the external attributes)."""
    return stat.S_ISLNK(info.external_attr >> 16)


def zip_members(f: BinaryIO, *, what: str, max_members: int) -> list[zipfile.ZipInfo]:
    """The members of the zip in ``f`` (an open binary file), read without inflating anything.

    The declared entry count is checked against ``max_members`` before the directory is read (a small
    zip may declare millions of entries); then every name is checked (:func:`odd_member_name`). Raises
    :class:`FilesError` naming ``what``.
    """
    count = zip_entry_count(f)
    if count is not None and count > max_members:
        raise FilesError(f"{what} declares {count:,} files (at most {max_members:,} are read)")
    f.seek(0)
    try:
        with zipfile.ZipFile(f) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError) as exc:
        raise FilesError(f"{what} is not a readable zip: {exc}") from None
    if len(members) > max_members:
        raise FilesError(f"{what} holds {len(members):,} files (at most {max_members:,} are read)")
    for info in members:
        if odd_member_name(info.filename):
            raise FilesError(f"{what} holds a file named {info.filename[:80]!r}: absolute paths, '..' and "
                             "backslashes are refused")
    return members

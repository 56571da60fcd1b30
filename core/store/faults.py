"""Storage faults in words people can act on.

:func:`storage_error` turns what the operating system, SQLite or PostgreSQL raise when the
state cannot be written or read into one :class:`~splice.errors.StorageError` line that names
``$SPLICE_HOME`` (or the database URL) and says what to do:

==========================  ==================================  ===========================
fault                        error                               exit code
==========================  ==================================  ===========================
disk full, quota             StorageError                        1 (free space, run again)
database locked too long     StorageError                        1 (run again)
I/O error, server down       StorageError                        1
read-only, no permission     StorageUnusable                     2 (fix the directory)
corrupt database file        StorageUnusable                     2 (restore a backup)
==========================  ==================================  ===========================

Anything else is not a storage fault: ``None``, and the caller re-raises the original.
SQLite never leaves a half-written transaction behind (its journal rolls it back), and the
run log keeps what the database could not take, so after the fault is removed the next run
finishes the work with nothing lost and nothing sent twice.
"""

from __future__ import annotations

import errno
import os
import sqlite3
from pathlib import Path

import sqlalchemy as sa

from ..errors import StorageError, StorageUnusable
from ..secrets import HOME_ENV, home
from .settings import TIMEOUT_ENV, busy_timeout

__all__ = ["TIMEOUT_ENV", "busy_timeout", "describe_location", "storage_error"]

_FULL = (errno.ENOSPC, errno.EDQUOT)
_READ_ONLY = (errno.EROFS,)
_DENIED = (errno.EACCES, errno.EPERM)


def describe_location(url: sa.URL | str | None = None, path: Path | None = None) -> str:
    """``$SPLICE_HOME (/home/me/.splice)``, a file path, or the database URL (no password)."""
    if url is not None:
        parsed = sa.make_url(url) if isinstance(url, str) else url
        if parsed.get_backend_name() != "sqlite":
            return f"the database {parsed.render_as_string(hide_password=True)}"
        database = parsed.database or ""
        if database in ("", ":memory:"):
            return "the in-memory database"
        path = Path(database).expanduser()
    root = home().resolve()
    path = (path or root).resolve()
    try:
        inside = path.relative_to(root)
    except ValueError:
        return str(path)
    named = "$" + HOME_ENV if os.environ.get(HOME_ENV) else "the splice home"
    return f"{named} ({root})" if not inside.parts else f"{named}/{inside} ({path})"


def _os_fault(exc: OSError, where: str) -> StorageError | None:
    code = exc.errno
    if code in _FULL:
        return StorageError(f"no space left to write the state in {where}",
                            hint="free some space, then run again: what was finished is "
                                 "kept, and the next run goes on from there")
    if code in _READ_ONLY:
        return StorageUnusable(f"{where} is on a read-only file system: splice cannot "
                               "write its state there",
                               hint="make it writable, or point SPLICE_HOME (or "
                                    "SPLICE_DATABASE_URL) somewhere writable")
    if code in _DENIED:
        return StorageUnusable(f"no permission to write the state in {where}",
                               hint="give this user write access to it, or point SPLICE_HOME "
                                    "somewhere writable")
    if code == errno.EIO:
        return StorageError(f"disk I/O error writing the state in {where}",
                            hint="check the disk; then run again")
    return None


def _message(exc: BaseException) -> str:
    orig = getattr(exc, "orig", None) or exc
    text = str(orig).strip().splitlines()
    return text[0] if text else type(orig).__name__


def _read_only(folder: Path | None) -> bool:
    """Whether ``folder`` (or the splice home) is on a read-only file system."""
    try:
        return bool(os.statvfs(folder or home()).f_flag & os.ST_RDONLY)
    except OSError:
        return False


def _full(folder: Path | None) -> bool:
    """Whether the file system of ``folder`` (or the splice home) has (almost) no space left:
    SQLite reports a full disk met while growing its shared-memory file as an I/O error."""
    try:
        stat = os.statvfs(folder or home())
    except OSError:
        return False
    return stat.f_bavail * stat.f_frsize < 64 * 1024


def storage_error(exc: BaseException, where: str | None = None,
                  folder: Path | None = None) -> StorageError | None:
    """The :class:`StorageError` for ``exc`` at ``where`` (see the table above), or None.
    ``folder``: the directory of the database file (to tell a read-only file system)."""
    if isinstance(exc, StorageError):
        return exc
    where = where or describe_location()
    if isinstance(exc, OSError):
        return _os_fault(exc, where)
    orig = getattr(exc, "orig", None) if isinstance(exc, sa.exc.DBAPIError) else exc
    if isinstance(orig, OSError):
        return _os_fault(orig, where)
    message = _message(exc)
    lower = message.lower()
    if isinstance(orig, sqlite3.IntegrityError) or isinstance(exc, sa.exc.IntegrityError):
        return None
    if isinstance(orig, sqlite3.Error):
        if "disk is full" in lower or "database or disk is full" in lower:
            return _os_fault(OSError(errno.ENOSPC, message), where)
        if "locked" in lower or "busy" in lower:
            return StorageError(
                f"the state database in {where} stayed locked by another process for more "
                f"than {busy_timeout():.0f} s",
                hint="another splice (or a tool holding the file open) is writing; run again "
                     f"later, or wait longer with {TIMEOUT_ENV}=SECONDS")
        if "readonly" in lower or "read-only" in lower or (
                "unable to open" in lower and _read_only(folder)):
            return _os_fault(OSError(errno.EROFS, message), where)
        if "unable to open" in lower:
            return StorageUnusable(f"cannot open the state database in {where} ({message})",
                                   hint="check that the directory exists and is writable")
        if "not a database" in lower or "malformed" in lower or "corrupt" in lower:
            return StorageUnusable(
                f"the state database in {where} is corrupt ({message})",
                hint="move the file away (e.g. `mv splice.db splice.db.corrupt`) and restore "
                     "a backup; without one splice starts a new, empty database")
        if "disk i/o error" in lower:
            return _os_fault(OSError(errno.ENOSPC if _full(folder) else errno.EIO, message),
                             where)
        return StorageError(f"the state database in {where} failed: {message}")
    if isinstance(exc, sa.exc.OperationalError):  # PostgreSQL: server down, refused, ...
        return StorageError(f"cannot use {where}: {message}",
                            hint="check that the database server is running and "
                                 "SPLICE_DATABASE_URL is right")
    return None

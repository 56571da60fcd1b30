"""An append-only file written through a shared memory map (the run log's segments).

A run appends one line to its log per event, before it sends the next request
(:mod:`splice.store.journal`). A line is copied into a shared mapping of the file: it is in
the page cache when the copy ends, so a process that dies (``kill -9``) leaves it to the next
run exactly like a ``write`` would; neither survives a power cut without ``fsync``, and
neither did the log before. Inside a run's request loop what costs is memory new to the
process: a ``write(2)`` per line or a copy into a growing mapping each cost ~10 µs an event
(the same on tmpfs as on ext4), rewriting pages already mapped nothing measurable
(bench/NOTES.md). So a segment whose group is committed is emptied and reused
(:meth:`AppendLog.reuse`) rather than replaced by a new file.

Space is reserved with ``posix_fallocate`` before it is mapped, so a full disk is an
``OSError`` (``ENOSPC``) at that point and never a ``SIGBUS`` when a line is copied. The
file is cut to what was written when it is closed. Where the file system cannot reserve
space (or there is no ``posix_fallocate``) lines are written with ``write(2)`` as before.
A run killed before closing leaves a zero-filled tail, which readers drop (:func:`lines`).
"""

from __future__ import annotations

import errno
import mmap
import os
from pathlib import Path

__all__ = ["AppendLog", "lines"]

CHUNK = 128 * 1024  # bytes reserved at a time (a page of 100 events logs ~60 KB)
_NO_RESERVE = frozenset({errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})
_ZEROS = bytes(CHUNK)


class AppendLog:
    """One log file open for appending (``O_APPEND`` semantics for a single writer)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.offset = os.lseek(self.fd, 0, os.SEEK_END)  # where the next line goes
        self._map: mmap.mmap | None = None
        self._base = 0  # file offset of the mapping's first byte
        self._mapped = hasattr(os, "posix_fallocate")

    def append(self, data: bytes) -> None:
        """Append ``data``; an ``OSError`` (a full disk) leaves nothing half-written."""
        if not self._mapped:
            os.write(self.fd, data)
            self.offset += len(data)
            return
        end = self.offset + len(data)
        if self._map is None or end > self._base + len(self._map):
            if not self._remap(len(data)):
                self.append(data)  # the file system reserves nothing: write(2)
                return
        assert self._map is not None
        self._map[self.offset - self._base:end - self._base] = data
        self.offset = end

    def _remap(self, need: int) -> bool:
        """Map reserved space for at least ``need`` more bytes from the current offset;
        False when the file system cannot reserve space (then lines are written)."""
        self._unmap()
        os.ftruncate(self.fd, self.offset)  # no reserved tail between old and new lines
        base = self.offset - self.offset % mmap.ALLOCATIONGRANULARITY
        least = self.offset - base + need
        for length in (max(CHUNK, least), least):  # the full chunk, else just this line
            try:
                os.posix_fallocate(self.fd, base, length)
            except OSError as exc:
                if exc.errno in _NO_RESERVE:
                    self._mapped = False
                    os.lseek(self.fd, self.offset, os.SEEK_SET)  # write(2) goes on from here
                    return False
                if exc.errno != errno.ENOSPC or length == least:
                    os.ftruncate(self.fd, self.offset)
                    raise
                continue
            self._map = mmap.mmap(self.fd, length, offset=base)
            self._base = base
            return True
        raise AssertionError("unreachable")  # pragma: no cover

    def reuse(self, path: Path) -> None:
        """Start over, empty, as the log at ``path``: renamed there, then what was written is
        zeroed through the mapping (a reader finds no line in it). The reserved space and the
        pages already in memory are kept: a page the kernel has to find and map afresh for
        each new file cost ~10 µs an event inside a request loop (bench/NOTES.md)."""
        os.rename(self.path, path)
        self.path = path
        if self._map is None or self._base != 0:  # no mapping from the start: start afresh
            self._unmap()
            os.ftruncate(self.fd, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)  # (where write(2) goes on without a mapping)
        else:
            zeros = memoryview(_ZEROS)
            for start in range(0, self.offset, CHUNK):
                end = min(self.offset, start + CHUNK)
                self._map[start:end] = zeros[:end - start]
        self.offset = 0

    def _unmap(self) -> None:
        if self._map is not None:
            self._map.close()
            self._map = None

    def close(self) -> None:
        """Unmap, cut the file to what was written and close it."""
        try:
            self._unmap()
            os.ftruncate(self.fd, self.offset)
        finally:
            os.close(self.fd)


def lines(path: Path) -> list[bytes]:
    """The lines of a log, without the zero bytes of a reserved tail a killed run left
    (JSON text never holds a raw zero byte)."""
    return path.read_bytes().replace(b"\0", b"").split(b"\n")

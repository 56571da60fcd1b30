"""The run log's append-only files (``splice.store.append_log``): lines copied into a
reserved, shared mapping; what a killed process leaves is readable; no reservation falls back
to ``write(2)``; a full disk is an error before anything is copied."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

from splice.store import append_log
from splice.store.append_log import CHUNK, AppendLog, lines

LINES = [b'{"key": "e%d", "texts": "%s"}\n' % (i, b"x" * (i % 900)) for i in range(700)]


def _written(log: AppendLog) -> None:
    for line in LINES:
        log.append(line)


def test_lines_past_several_reservations_come_back_in_order(tmp_path: Path) -> None:
    log = AppendLog(tmp_path / "a.log")
    _written(log)
    assert sum(map(len, LINES)) > 2 * CHUNK
    log.close()
    assert (tmp_path / "a.log").read_bytes() == b"".join(LINES)  # cut to what was written


def test_a_process_that_dies_leaves_its_lines_readable(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    pid = os.fork()
    if pid == 0:  # the child appends and dies without closing anything
        log = AppendLog(path)
        _written(log)
        os._exit(0)
    assert os.waitpid(pid, 0)[1] == 0
    assert path.stat().st_size > sum(map(len, LINES))  # the reserved tail is still there
    assert lines(path) == [line.rstrip(b"\n") for line in LINES] + [b""]
    again = AppendLog(path)  # a reopened log goes on after the reserved tail
    again.append(b"more\n")
    again.close()
    assert lines(path)[-2:] == [b"more", b""]


def test_without_reservations_lines_are_written(tmp_path: Path, monkeypatch) -> None:
    def unsupported(fd: int, offset: int, length: int) -> None:
        raise OSError(errno.EOPNOTSUPP, "not supported")

    monkeypatch.setattr(append_log.os, "posix_fallocate", unsupported)
    log = AppendLog(tmp_path / "a.log")
    _written(log)
    assert log._map is None
    log.close()
    assert (tmp_path / "a.log").read_bytes() == b"".join(LINES)


def test_a_full_disk_reserves_just_the_line_or_raises(tmp_path: Path, monkeypatch) -> None:
    real = os.posix_fallocate
    room = {"bytes": 5000}

    def small_disk(fd: int, offset: int, length: int) -> None:
        if length > room["bytes"]:
            raise OSError(errno.ENOSPC, "No space left on device")
        real(fd, offset, length)

    monkeypatch.setattr(append_log.os, "posix_fallocate", small_disk)
    log = AppendLog(tmp_path / "a.log")
    log.append(b"first\n")  # no room for a chunk: just this line is reserved
    room["bytes"] = 0
    with pytest.raises(OSError) as raised:
        log.append(b"second\n")
    assert raised.value.errno == errno.ENOSPC
    log.close()
    assert (tmp_path / "a.log").read_bytes() == b"first\n"


@pytest.mark.parametrize("many", [False, True], ids=["one reservation", "several"])
def test_a_reused_log_is_empty_under_its_new_name_in_the_same_file(tmp_path: Path,
                                                                    many: bool) -> None:
    old, new = tmp_path / "a.log", tmp_path / "b.log"
    log = AppendLog(old)
    for line in LINES if many else LINES[:50]:
        log.append(line)
    inode = old.stat().st_ino
    log.reuse(new)
    assert not old.exists() and new.stat().st_ino == inode  # renamed, not a new file
    assert lines(new) == [b""]  # what was written is gone
    log.append(LINES[3])
    assert lines(new) == [LINES[3].rstrip(b"\n"), b""]
    log.close()
    assert new.read_bytes() == LINES[3]


def test_a_reused_log_without_reservations_starts_at_the_beginning(tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.delattr(os, "posix_fallocate")
    log = AppendLog(tmp_path / "a.log")
    _written(log)
    log.reuse(tmp_path / "b.log")
    log.append(b"again\n")
    log.close()
    assert (tmp_path / "b.log").read_bytes() == b"again\n"

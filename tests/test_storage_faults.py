"""Storage faults as a user meets them, with real ``splice run`` processes: a disk that fills
up mid-run (a small tmpfs as ``SPLICE_HOME``), a read-only home, a corrupt database file, a
database locked past the timeout. Each gives one clear line (no traceback) and its documented
exit code; afterwards ``PRAGMA integrity_check`` is ok, and once the fault is removed the next
run finishes with every write at the server exactly once (the fake CRM here ignores
idempotency keys, so a re-sent write would show).

The tmpfs tests need to mount (root with CAP_SYS_ADMIN); without it they skip and say so.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from .conftest import FIXTURES
from .test_delivery import RECIPE, Crm, _crm


@contextlib.contextmanager
def tmpfs(path: Path, size: str = "4m") -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({done.stderr.strip() or 'not root'}): the "
                    "disk-full and read-only tests need `mount -t tmpfs` (run as root)")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(folder: Path) -> Path:
    """Fill the file system of ``folder`` up to the last byte."""
    filler = folder / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"x" * size)
    finally:
        os.close(fd)
    return filler


def _integrity(home: Path) -> str:
    with contextlib.closing(sqlite3.connect(home / "splice.db")) as db:
        return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def _one_line_error(done: subprocess.CompletedProcess, code: int, *words: str) -> str:
    assert done.returncode == code, done.stdout + done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, done.stderr
    for word in words:
        assert word in errors[0], errors[0]
    return errors[0]


def _all_once(crm: Crm, n: int) -> None:
    assert crm.notes() == Counter({str(i): 1 for i in range(1, n + 1)})
    assert crm.tag_writes() == Counter({f"c{i:04d}": 1 for i in range(1, n + 1)})


@pytest.fixture
def home_on_tmpfs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    with tmpfs(tmp_path / "home") as home:
        monkeypatch.setenv("SPLICE_HOME", str(home))
        yield home


@pytest.fixture
def crm_on_tmpfs(home_on_tmpfs: Path) -> Iterator[Crm]:
    yield from _crm(home_on_tmpfs, None, 30)


def test_disk_full_mid_run_stops_cleanly_and_the_next_run_finishes(crm_on_tmpfs: Crm) -> None:
    crm, home = crm_on_tmpfs, crm_on_tmpfs.home
    ttl = {"SPLICE_LEASE_TTL": "2"}
    assert crm.splice("run", RECIPE, **ttl).returncode == 0
    crm.touch(20)
    filled: list[Path] = []

    def fill_from_the_fifth_write() -> None:
        # Full from the fifth write on, like a disk another program keeps filling: space the
        # run frees meanwhile (a closed log segment gives back what it reserved and did not
        # use) is taken again, so the run meets the full disk when it next needs space.
        if crm.posts() >= 5:
            filled.append(_fill(home))

    crm.app.state.on_write = fill_from_the_fifth_write
    full = crm.splice("run", RECIPE, **ttl)
    line = _one_line_error(full, 1, "no space left", "$SPLICE_HOME")
    assert str(home) in line
    assert "free some space" in full.stderr
    assert filled and crm.posts() < 40  # it stopped: not every event was sent
    crm.app.state.on_write = None
    filled[0].unlink()
    assert _integrity(home) == "ok"
    again = crm.splice("run", RECIPE, "--wait", **ttl)  # the stopped run's lease expires
    assert again.returncode == 0, again.stdout + again.stderr
    _all_once(crm, 20)
    assert not list((home / "splice.db.runlog").glob("*.log"))  # all of it in the database


def test_a_disk_too_full_to_start_sends_nothing(crm_on_tmpfs: Crm) -> None:
    crm, home = crm_on_tmpfs, crm_on_tmpfs.home
    assert crm.splice("run", RECIPE).returncode == 0
    crm.touch(5)
    (home / "splice.db.runlog" / "ballast").unlink()
    filler = _fill(home)
    full = crm.splice("run", RECIPE)
    _one_line_error(full, 1, "no space left")
    assert crm.posts() == 0
    filler.unlink()
    assert _integrity(home) == "ok"
    assert crm.splice("run", RECIPE, "--wait", SPLICE_LEASE_TTL="2").returncode == 0
    _all_once(crm, 5)


def test_a_read_only_home_is_one_line_and_exit_2(crm_on_tmpfs: Crm) -> None:
    crm, home = crm_on_tmpfs, crm_on_tmpfs.home
    assert crm.splice("run", RECIPE).returncode == 0
    crm.touch(5)
    subprocess.run(["mount", "-o", "remount,ro", str(home)], check=True)
    try:
        refused = crm.splice("run", RECIPE)
        _one_line_error(refused, 2, "read-only file system", "$SPLICE_HOME")
        assert "SPLICE_HOME" in refused.stderr.split("hint:", 1)[1]
        assert crm.posts() == 0
    finally:
        subprocess.run(["mount", "-o", "remount,rw", str(home)], check=True)
    assert _integrity(home) == "ok"
    assert crm.splice("run", RECIPE).returncode == 0
    _all_once(crm, 5)


@pytest.fixture
def crm_sqlite(splice_home: Path) -> Iterator[Crm]:
    yield from _crm(splice_home, None, 30)


def test_a_corrupt_database_is_named_and_a_restored_backup_carries_on(crm_sqlite: Crm) -> None:
    crm, home = crm_sqlite, crm_sqlite.home
    assert crm.splice("run", RECIPE).returncode == 0
    db = home / "splice.db"
    assert not (home / "splice.db-wal").exists() or \
        (home / "splice.db-wal").stat().st_size == 0  # closed cleanly: one file
    backup = db.read_bytes()
    crm.touch(5)
    with open(db, "r+b") as raw:
        raw.write(b"this is not a database" * 5)
    broken = crm.splice("run", RECIPE)
    _one_line_error(broken, 2, "corrupt", "$SPLICE_HOME/splice.db", "not a database")
    assert "restore a backup" in broken.stderr
    assert crm.posts() == 0
    db.write_bytes(backup)
    assert _integrity(home) == "ok"
    assert crm.splice("run", RECIPE).returncode == 0
    _all_once(crm, 5)


def test_a_database_locked_past_the_timeout_is_one_line(crm_sqlite: Crm) -> None:
    crm, home = crm_sqlite, crm_sqlite.home
    assert crm.splice("run", RECIPE).returncode == 0
    crm.touch(5)
    holder = sqlite3.connect(home / "splice.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # another program writing, for longer than 1 s
    try:
        locked = crm.splice("run", RECIPE, SPLICE_DB_TIMEOUT="1")
        _one_line_error(locked, 1, "locked by another process for more than 1 s")
        assert "SPLICE_DB_TIMEOUT" in locked.stderr
        assert crm.posts() == 0
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert crm.splice("run", RECIPE).returncode == 0
    _all_once(crm, 5)


def test_store_errors_outside_a_run_are_one_line_too(crm_sqlite: Crm) -> None:
    """Every command goes through the same translation: `runs list` on a corrupt file."""
    db = crm_sqlite.home / "splice.db"
    with open(db, "r+b") as raw:
        raw.write(b"\x00garbage" * 20)
    listed = crm_sqlite.splice("runs", "list")
    _one_line_error(listed, 2, "corrupt")
    assert str(FIXTURES) not in listed.stderr

"""The run journal: group commits, the per-run log, and recovery of a dead run's log."""

from __future__ import annotations

import multiprocessing
import os
import threading
from pathlib import Path

import pytest

from splice.run.steps import idempotency_key
from splice.store.database import Store
from splice.store.journal import Journal


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Store:
    monkeypatch.setenv("SPLICE_HOME", str(tmp_path))
    with Store.open(f"sqlite:///{tmp_path / 'state.db'}") as s:
        yield s


def _record(journal: Journal, key: str, *, status: str = "succeeded") -> None:
    event = journal.new_event(key, {"id": key})
    idem = idempotency_key("r", "t", key, 0, -1)
    journal.reserve(event, idem, 0)
    journal.step(event, 0, done_key=idem, step_id="s", status="succeeded",
                 idempotency_key=idem, request={"method": "POST"}, output={"ok": key},
                 attempts=1)
    journal.finish(event, status)


def test_a_group_is_written_in_one_commit_with_its_checkpoint(store):
    journal = Journal(store, "r", "t", store.start_run("r"), commit_every=3)
    for key in ("a", "b"):
        _record(journal, key)
        journal.commit_if_due()
    assert journal.commits == 0 and store.pending_events("r") == []
    assert store.filter_unseen("r", "t", ["a", "b"]) == {"a", "b"}  # nothing written yet
    _record(journal, "c")
    journal.checkpoint({"next": 3})
    journal.commit_if_due()  # written on this thread (SQLite)
    assert journal.commits == 1 and journal.in_flight() <= {"a", "b", "c"}
    journal.commit(wait=True)
    assert journal.in_flight() == frozenset()
    assert store.filter_unseen("r", "t", ["a", "b", "c"]) == set()
    assert store.get_checkpoint("r", "t") == {"next": 3}
    events = store._events_with("succeeded", "r", None)
    assert [e.key for e in events] == ["a", "b", "c"] and all(e.attempts == 1 for e in events)
    step = store.get_step_result(events[0].id, 0)
    assert step is not None and step.output == {"ok": "a"}
    assert store.idempotency_key_status(idempotency_key("r", "t", "a", 0, -1)) == "done"


def _die_after_logging(url: str, home: str) -> None:
    os.environ["SPLICE_HOME"] = home
    store = Store.open(url)
    journal = Journal(store, "r", "t", store.start_run("r"))
    for key in ("a", "b"):
        _record(journal, key)
    event = journal.new_event("c", {"id": "c"})  # started, never finished: not logged
    journal.reserve(event, idempotency_key("r", "t", "c", 0, -1), 0)
    with open(journal._segment_path(journal._segment), "ab") as log:
        log.write(b'{"key": "torn", "sta')  # the crash cut the last line short
    os._exit(3)


def _die_in_a_child(target, store: Store, home: Path) -> None:
    """Run ``target(url, home)`` in a fresh process, which must end with ``os._exit(3)``."""
    child = multiprocessing.get_context("spawn").Process(
        target=target, args=(str(store.engine.url), str(home)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 3


def test_a_dead_runs_log_is_recovered_by_the_next_run(store, tmp_path):
    _die_in_a_child(_die_after_logging, store, tmp_path)
    assert store.filter_unseen("r", "t", ["a", "b"]) == {"a", "b"}  # never committed
    assert len(list(store.run_log_dir().glob("*.log"))) == 1
    assert len(list(store.run_log_dir().glob("*.lock"))) == 1
    journal = Journal(store, "r", "t", store.start_run("r"))
    assert journal.recover() == 2  # a and b; c was in flight, the torn line is ignored
    assert store.filter_unseen("r", "t", ["a", "b", "c"]) == {"c"}
    events = store._events_with("succeeded", "r", None)
    assert [e.key for e in events] == ["a", "b"]
    assert store.get_step_result(events[1].id, 0).output == {"ok": "b"}
    assert list(store.run_log_dir().glob("*.l*")) == []
    assert journal.recover() == 0


def test_a_live_runs_log_is_left_alone(store):
    live = Journal(store, "r", "t", store.start_run("r"))
    _record(live, "a")  # logged, not committed: its run still holds the log's lock
    other = Journal(store, "r", "t", store.start_run("r"))
    assert other.recover() == 0
    assert store.filter_unseen("r", "t", ["a"]) == {"a"}
    live.commit()
    live.close()
    assert store.filter_unseen("r", "t", ["a"]) == set()
    assert [p.name for p in store.run_log_dir().iterdir()] == ["ballast"]  # no log, no lock


def test_keys_of_a_group_being_committed_are_in_flight(store, monkeypatch):
    """The runner subtracts ``in_flight()`` from what the ledger calls unseen: a key whose
    group is still being written is not processed twice."""
    gate = threading.Event()
    real = store.write_group

    def slow_write(*args, **kwargs):
        assert gate.wait(10)
        return real(*args, **kwargs)

    monkeypatch.setattr(store, "write_group", slow_write)
    journal = Journal(store, "r", "t", store.start_run("r"), background=True)
    _record(journal, "a")
    journal.commit()  # returns at once; the committer thread waits for the gate
    assert journal.in_flight() == {"a"}
    assert store.filter_unseen("r", "t", ["a"]) == {"a"}  # not in the ledger yet
    gate.set()
    journal.commit(wait=True)
    assert journal.in_flight() == frozenset()
    assert store.filter_unseen("r", "t", ["a"]) == set()
    journal.close()


def test_two_groups_in_flight_and_nothing_after_a_failed_one(store, monkeypatch):
    """The commit ending a page does not wait for the group before it; a group that fails
    stops the ones queued behind it (their events stay in the run log for the next run)."""
    gate, calls = threading.Event(), []
    real = store.write_group

    def gated_write(recipe, trigger, group, *args, **kwargs):
        calls.append([e.key for e in group])
        assert gate.wait(10)
        if [e.key for e in group] == ["b"]:
            raise RuntimeError("disk full")
        return real(recipe, trigger, group, *args, **kwargs)

    monkeypatch.setattr(store, "write_group", gated_write)
    journal = Journal(store, "r", "t", store.start_run("r"), background=True)
    _record(journal, "a")
    journal.commit()
    _record(journal, "b")
    journal.commit()  # returns at once: two groups in flight
    assert journal.in_flight() == {"a", "b"}
    _record(journal, "c")
    gate.set()
    with pytest.raises(RuntimeError, match="disk full"):
        journal.commit(wait=True)  # a third group waits for the first: b's error surfaces
    with pytest.raises(RuntimeError, match="disk full"):
        journal.commit(wait=True)
    assert calls == [["a"], ["b"]]  # c's group never reached the ledger
    assert store.filter_unseen("r", "t", ["a", "b", "c"]) == {"b", "c"}
    journal.close()
    recovered = Journal(store, "r", "t", store.start_run("r"))
    monkeypatch.setattr(store, "write_group", real)
    assert recovered.recover() == 2  # b and c, from the run log
    assert store.filter_unseen("r", "t", ["a", "b", "c"]) == set()


def test_an_in_memory_store_commits_on_the_calling_thread(tmp_path, monkeypatch):
    monkeypatch.setenv("SPLICE_HOME", str(tmp_path))
    with Store.open("sqlite://") as memory:
        assert memory.single_connection
        journal = Journal(memory, "r", "t", memory.start_run("r"))
        _record(journal, "a")
        journal.commit()  # written before it returns: no committer thread shares the connection
        assert journal._committer is None
        assert memory.filter_unseen("r", "t", ["a"]) == set()
        journal.close()


def test_sqlite_groups_are_written_on_the_recording_thread(store):
    """No committer thread on SQLite: it would hold the GIL the sending thread needs."""
    journal = Journal(store, "r", "t", store.start_run("r"))
    assert not journal.background
    _record(journal, "a")
    journal.commit()
    assert journal._committer is None and journal.in_flight() == frozenset()
    assert store.filter_unseen("r", "t", ["a"]) == set()
    journal.close()


def _segments(store: Store) -> list[str]:
    return sorted(p.name for p in store.run_log_dir().glob("*.log"))


def test_a_page_is_one_transaction_and_its_log_goes_only_after_it_commits(store):
    """``Journal.page``: the claim and the previous page's group commit together; the group's
    log segment is deleted after that commit, and kept when the page fails."""
    journal = Journal(store, "r", "t", store.start_run("r"))
    _record(journal, "a")
    with pytest.raises(RuntimeError):
        with journal.page():
            store.claim_new_events("r", "t", journal.run_id, [("x", {"id": "x"})])
            journal.commit()
            assert len(_segments(store)) == 1  # written, not committed: the log stays
            raise RuntimeError("the page failed")
    assert store.filter_unseen("r", "t", ["a", "x"]) == {"a", "x"}  # both rolled back
    assert len(_segments(store)) == 1
    journal.close()
    again = Journal(store, "r", "t", store.start_run("r"))
    assert again.recover() == 1  # "a", from the kept log
    _record(again, "b")
    with again.page():
        store.claim_new_events("r", "t", again.run_id, [("y", {"id": "y"})])
        again.commit()
    assert store.filter_unseen("r", "t", ["b", "y"]) == set() and _segments(store) == []
    again.close()


def _key_rows(store: Store) -> dict[str, str]:
    from splice.store.tables import idempotency_keys

    with store._read() as conn:
        return dict(conn.execute(idempotency_keys.select().with_only_columns(
            idempotency_keys.c.key, idempotency_keys.c.status)).all())


def test_a_key_done_within_its_group_lives_in_its_step_result(store):
    """A claimed event finished in one group writes no idempotency-key row (its succeeded
    step result holds the key); a key reserved when its group committed keeps its row, and
    that row becomes done when the step succeeds later."""
    journal = Journal(store, "r", "t", store.start_run("r"))
    claimed = store.claim_new_events("r", "t", journal.run_id, [("a", {}), ("b", {})])
    first = journal.claimed_event(claimed["a"], "a", {})
    key_a = idempotency_key("r", "t", "a", 0, -1)
    journal.reserve(first, key_a, 0)
    journal.step(first, 0, done_key=key_a, status="succeeded", idempotency_key=key_a,
                 output={"ok": 1})
    journal.finish(first, "succeeded")
    second = journal.claimed_event(claimed["b"], "b", {})
    key_b = idempotency_key("r", "t", "b", 0, -1)
    journal.reserve(second, key_b, 0)  # in flight when the group commits
    journal.commit(wait=True)
    assert _key_rows(store) == {key_b: "reserved"}
    assert store.event_idempotency_keys(claimed["a"]) == {key_a: (0, -1, "done")}
    assert store.idempotency_key_status(key_a) == "done"
    journal.step(second, 0, done_key=key_b, status="succeeded", idempotency_key=key_b,
                 output={"ok": 2})
    journal.finish(second, "succeeded")
    journal.commit(wait=True)
    assert _key_rows(store) == {key_b: "done"}
    assert store.event_idempotency_keys(claimed["b"]) == {key_b: (0, -1, "done")}
    journal.close()


def _die_after_a_committed_page(url: str, home: str) -> None:
    os.environ["SPLICE_HOME"] = home
    store = Store.open(url)
    journal = Journal(store, "r", "t", store.start_run("r"))
    _record(journal, "a")
    _record(journal, "a2")
    with journal.page():
        journal.commit()  # a and a2 are in the ledger; their segment is emptied for reuse
    first = journal._spare.path.stat().st_ino
    _record(journal, "b")
    assert (store.run_log_dir() / _segments(store)[0]).stat().st_ino == first  # reused
    assert not journal._spare_path().exists()
    os._exit(3)


def test_a_committed_segment_is_reused_and_its_lines_never_recovered(store, tmp_path):
    _die_in_a_child(_die_after_a_committed_page, store, tmp_path)
    assert store.filter_unseen("r", "t", ["a", "a2", "b"]) == {"b"}
    journal = Journal(store, "r", "t", store.start_run("r"))
    assert journal.recover() == 1  # b; the lines of a and a2 went with their segment
    events = store._events_with("succeeded", "r", None)
    assert [(e.key, e.attempts) for e in events] == [("a", 1), ("a2", 1), ("b", 1)]
    assert [p.name for p in store.run_log_dir().iterdir()] == ["ballast"]


@pytest.mark.parametrize("background", [False, True], ids=["inline", "committer thread"])
def test_a_run_reuses_one_segment_and_leaves_no_spare(store, background):
    journal = Journal(store, "r", "t", store.start_run("r"), background=background)
    inodes = set()
    for key in ("a", "b", "c"):
        _record(journal, key)
        inodes.add((store.run_log_dir() / _segments(store)[0]).stat().st_ino)
        with journal.page():
            journal.commit(wait=True)
    assert journal._spare is not None and journal._spare_path().exists()
    assert len(inodes) == 1  # every group's lines went into the same file
    journal.close()
    assert list(store.run_log_dir().iterdir()) == []  # no segment, spare or lock

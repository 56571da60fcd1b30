"""The run journal: group commits, the per-run log, and recovery of a dead run's log."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from splice.engine import idempotency_key
from splice.journal import Journal
from splice.state import Store


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
    journal.commit_if_due()
    assert journal.commits == 1
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
    with open(journal._log_path, "ab") as log:  # type: ignore[arg-type]
        log.write(b'{"key": "torn", "sta')  # the crash cut the last line short
    os._exit(3)


def test_a_dead_runs_log_is_recovered_by_the_next_run(store, tmp_path):
    child = multiprocessing.get_context("spawn").Process(
        target=_die_after_logging, args=(str(store.engine.url), str(tmp_path)))
    child.start()
    child.join(timeout=60)
    assert child.exitcode == 3
    assert store.filter_unseen("r", "t", ["a", "b"]) == {"a", "b"}  # never committed
    assert len(list(store.run_log_dir().glob("*.log"))) == 1
    journal = Journal(store, "r", "t", store.start_run("r"))
    assert journal.recover() == 2  # a and b; c was in flight, the torn line is ignored
    assert store.filter_unseen("r", "t", ["a", "b", "c"]) == {"c"}
    events = store._events_with("succeeded", "r", None)
    assert [e.key for e in events] == ["a", "b"]
    assert store.get_step_result(events[1].id, 0).output == {"ok": "b"}
    assert list(store.run_log_dir().glob("*.log")) == []
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
    assert list(store.run_log_dir().glob("*.log")) == []

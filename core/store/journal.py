"""What a run records, made durable per event and written to the ledger in groups.

A run records every event, step result and idempotency key it handles. Writing them to the
ledger tables in transactions of their own costs more than the API call they record (each
commit rewrites a dozen b-tree pages of four tables), so the runner records into a ``Journal``:

- **per event, durably**: when an event finishes (and before a later step of it is sent) one
  JSON line is appended to the run's log (``Store.run_log_dir()``), copied into a shared
  memory map of the file (:mod:`splice.store.append_log`: no system call per line): safe
  against a crash of the process like SQLite's own WAL with ``synchronous=NORMAL``;
- **per group, in the ledger**: ``Store.write_group`` writes the group's events, seen keys, step
  results, idempotency keys and the trigger's page checkpoint in ONE transaction. A group ends
  with every trigger page (so the checkpoint never runs ahead of its events), after
  ``commit_every`` events or ``max_delay`` seconds, and when the run ends or stops. Each
  group's log lines are a segment file of their own. Once the group is in the ledger the
  segment is renamed out of the log's name pattern, emptied and reused for a later group's
  lines (its pages stay in memory: fresh ones cost ~10 µs an event), or deleted.

On SQLite the group is written on the recording thread: the runner commits a page's group in
the same transaction as the next page's claim (:meth:`Journal.page`), one commit a page. (A
committer thread measured no faster there: its Python work holds the GIL the sending thread
needs, and the claim had to wait for its commit.) On PostgreSQL, whose commits wait on the
network, a committer thread writes the groups while the runner goes on with the next requests:
at most ``IN_FLIGHT`` (two) groups are being committed at once, in order, so the commit that ends
a page never waits for the one before it; after a failed group nothing later is written (both
stay in the run log); the runner asks ``in_flight`` before treating a key as unseen, and the
statements are built on the recording thread (``Store.prepare_group``).

A full disk cannot strand a sent request: a segment reserves its space before lines are
copied into it, and the log directory keeps a *ballast* file (256 KiB of reserved space, made
when a run starts: a disk too full for it stops the run before anything is sent). When an
append finds no space to reserve, the ballast is deleted, the line written into the space it
freed, and :class:`~splice.errors.StorageError` stops the run; the next run (with space again)
recovers the line like any other.

A live run holds an ``flock`` on its lock file. After a crash the next run of the recipe first
moves the dead run's logged events into the ledger (``recover``), so what the crash repeats is
what it always was: at most the request in flight, re-sent with the same idempotency key. An
entry logged again after its group was committed (a crash between the commit and renaming the
segment out of the log's pattern) is written as an update of the same rows.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX: no liveness check, logs of others wait
    fcntl = None  # type: ignore[assignment]

from ..secrets import REDACTOR
from .append_log import AppendLog, lines
from .database import Store
from .faults import describe_location
from .group_sql import PreparedGroup
from .ledger import MISSING_CHECKPOINT, PendingEvent, redact_step
from .tables import NO_ITEM, json_dumps

__all__ = ["COMMIT_EVERY", "MAX_DELAY", "Journal"]

_TEXTS = frozenset({"request", "output", "request_json", "output_json"})
COMMIT_EVERY = 100  # events per group commit (a page of 100 records is one group)
MAX_DELAY = 1.0     # seconds an event may wait for its group commit
IN_FLIGHT = 2       # groups being committed at once (a commit ending a page waits for none)
BALLAST = 256 * 1024  # bytes kept free in the log directory for the last lines of a run


class Journal:
    """The uncommitted part of one run's ledger. Thread-safe: ``concurrency:`` steps record
    from worker threads."""

    def __init__(self, store: Store, recipe: str, trigger: str, run_id: str, *,
                 commit_every: int = COMMIT_EVERY, max_delay: float = MAX_DELAY,
                 clock: Callable[[], float] = time.monotonic,
                 background: bool | None = None) -> None:
        if commit_every < 1:
            raise ValueError("commit_every must be at least 1")
        self.store = store
        self.recipe = recipe
        self.trigger = trigger
        self.run_id = run_id
        self.commit_every = commit_every
        self.max_delay = max_delay
        self.clock = clock
        self.commits = 0
        # SQLite: groups are written on the recording thread (see the module docstring)
        self.background = (store.engine.dialect.name != "sqlite" if background is None
                           else background) and not store.single_connection
        self._deferred: list[AppendLog] | None = None  # segments done once a batch commits
        self._lock = threading.RLock()
        self._dirty: dict[int, PendingEvent] = {}
        self._finished = 0
        self._oldest: float | None = None
        self._checkpoint: Any = MISSING_CHECKPOINT
        self._lock_fd: int | None = None   # flock held while this run lives
        self._segment_log: AppendLog | None = None  # the current segment
        self._spare: AppendLog | None = None  # a committed segment, emptied for the next one
        self._spare_lock = threading.Lock()  # (a committer thread hands segments back too)
        self._kept: list[AppendLog] = []  # segments whose group failed: for the next run
        self._segment = 0
        self._committer: ThreadPoolExecutor | None = None
        self._pending: list[tuple[Future[None], frozenset[str]]] = []  # oldest first
        self._in_flight: frozenset[str] = frozenset()
        self._failed: BaseException | None = None

    # -- recording --------------------------------------------------------------------------
    def new_event(self, key: str, payload: Any) -> PendingEvent:
        """A new event (pending); the group commit inserts its row."""
        event = PendingEvent(key, payload, self.run_id)
        with self._lock:
            self._touch(event)
        return event

    def stored_event(self, event_id: int, key: str, payload: Any,
                     prior_attempts: int = 0) -> PendingEvent:
        """An event the ledger already holds (resumed or retried) that this run claimed."""
        return PendingEvent(key, payload, self.run_id, id=event_id, changed=False,
                            prior_attempts=prior_attempts)

    def claimed_event(self, event_id: int, key: str, payload: Any) -> PendingEvent:
        """A new event this run just claimed (``Store.claim_new_events``): it has a row but
        no step results yet."""
        return PendingEvent(key, payload, self.run_id, id=event_id, changed=False, fresh=True,
                            keyed=False)

    def reserve(self, event: PendingEvent, key: str, step_index: int,
                item_index: int = NO_ITEM, *, durable: bool = False) -> None:
        """``key`` is about to be sent. The event's earlier results are logged first, so a
        crash during this request never repeats a step that already succeeded. ``durable``
        logs the reservation itself too (a write the API cannot deduplicate: after a crash
        the next run must know it may have been applied)."""
        with self._lock:
            event.keys.setdefault(key, (step_index, item_index, "reserved"))
            if durable:
                event.unlogged.add(key)
            self._touch(event)
            if event.unlogged:
                self._log(event)

    def step(self, event: PendingEvent, step_index: int, item_index: int = NO_ITEM, *,
             done_key: str | None = None, **values: Any) -> None:
        """A step result; ``done_key``: the idempotency key whose side effect it completed."""
        values["run_id"] = self.run_id
        values = redact_step(values)
        with self._lock:
            event.steps[(step_index, item_index)] = values
            event.unlogged.add((step_index, item_index))
            if done_key is not None:
                event.keys[done_key] = (step_index, item_index, "done")
                event.unlogged.add(done_key)
            self._touch(event)

    def finish(self, event: PendingEvent, status: str, error: str | None = None, *,
               error_class: str | None = None, next_attempt_at: datetime | None = None) -> None:
        """The event's outcome (``succeeded``, ``failed`` with when it is retried, or ``dead``;
        one attempt), logged durably."""
        with self._lock:
            event.status, event.error = status, error
            event.error_class, event.next_attempt_at = error_class, next_attempt_at
            event.attempts += 1
            event.changed = True
            self._touch(event)
            self._log(event)
            self._finished += 1

    def checkpoint(self, value: Any) -> None:
        """The trigger checkpoint to write with the events recorded so far."""
        with self._lock:
            self._checkpoint = value

    # -- writing ----------------------------------------------------------------------------
    def due(self) -> bool:
        """Whether the group is big or old enough to commit."""
        return self._finished >= self.commit_every or (
            self._oldest is not None and self.clock() - self._oldest >= self.max_delay)

    def commit_if_due(self) -> None:
        with self._lock:
            if self.due():
                self.commit()

    def commit(self, *, wait: bool = False) -> None:
        """Hand the group (with its checkpoint) to the committer; ``wait``: until it and every
        earlier group are in the ledger. An error of a background commit is raised here."""
        with self._lock:
            self._wait(keep=IN_FLIGHT - 1)
            if self._dirty or self._checkpoint is not MISSING_CHECKPOINT:
                group = list(self._dirty.values())
                segment = self._close_segment()
                self.commits += 1
                if not self.background:
                    self._write(group, self._checkpoint, segment)
                else:
                    if self._committer is None:
                        self._committer = ThreadPoolExecutor(
                            1, thread_name_prefix="splice-commit")
                    keys = frozenset(e.key for e in group if e.id is None)
                    prepared = self.store.prepare_group(group)  # Python work: here
                    self._pending.append((self._committer.submit(
                        self._write, group, self._checkpoint, segment, prepared), keys))
                    self._in_flight = self._in_flight | keys
            self._dirty.clear()
            self._checkpoint = MISSING_CHECKPOINT
            self._finished = 0
            self._oldest = None
            if wait:
                self._wait()

    @contextmanager
    def page(self) -> Iterator[None]:
        """One write transaction for a page: what the block does (the runner's seen-key
        filter and claim) and the groups committed in it. The segments of those groups are
        emptied for reuse once it commits (kept for the next run if it does not). Only where
        groups are written on this thread."""
        if self.background:
            yield
            return
        with self._lock:
            self._deferred = []
            try:
                with self.store.batch():
                    yield
                done, self._deferred = self._deferred, []
                for segment in done:
                    self._recycle(segment)
            finally:
                self._kept += self._deferred  # not in the ledger: the next run recovers them
                self._deferred = None

    def in_flight(self) -> frozenset[str]:
        """Keys of new events not in the ledger yet (their group is being committed or not
        handed over yet), so not unseen either."""
        with self._lock:
            waiting = [e.key for e in self._dirty.values() if e.id is None]
            return self._in_flight.union(waiting) if waiting else self._in_flight

    def _write(self, group: list[PendingEvent], checkpoint: Any, segment: AppendLog | None,
               prepared: PreparedGroup | None = None) -> None:
        try:
            if self._failed is not None:  # an earlier group failed: keep the order, write
                raise self._failed        # nothing (both stay in the run log for the next run)
            self.store.write_group(self.recipe, self.trigger, group, checkpoint, prepared)
        except BaseException as exc:
            self._failed = exc
            if segment is not None:
                self._kept.append(segment)  # closed with the journal; the next run recovers it
            raise
        if segment is not None and self._deferred is not None:
            self._deferred.append(segment)  # in the ledger once the page's batch commits
        elif segment is not None:  # all of it is in the ledger now
            self._recycle(segment)

    def _wait(self, keep: int = 0) -> None:
        """Wait until at most ``keep`` groups are still being committed; the first error of
        a finished one is raised."""
        error: BaseException | None = None
        while self._pending and (len(self._pending) > keep or self._pending[0][0].done()):
            future, _keys = self._pending.pop(0)
            try:
                future.result()
            except BaseException as exc:  # noqa: BLE001 - re-raised below, after the rest
                error = error or exc
            self._in_flight = frozenset().union(*(k for _f, k in self._pending))
        if error is not None:
            raise error

    def _ballast(self) -> Path:
        return self._log_dir / "ballast"

    def reserve_space(self) -> None:
        """Make sure the ballast exists (a StorageError when the disk cannot hold it)."""
        path = self._ballast()
        try:
            if path.exists() and path.stat().st_size >= BALLAST:
                return
            fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                os.write(fd, b"\0" * BALLAST)
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            path.unlink(missing_ok=True)
            raise self._fault(exc) from None

    def _fault(self, exc: OSError) -> Exception:
        return self.store.fault(exc, describe_location(path=self._log_dir)) or exc

    def _append(self, data: bytes) -> None:
        """Append to the current segment; a full disk uses the ballast, then stops the run."""
        assert self._segment_log is not None
        try:
            self._segment_log.append(data)
            return
        except OSError as exc:
            fault = self._fault(exc)
            if getattr(exc, "errno", None) not in (errno.ENOSPC, errno.EDQUOT):
                raise fault from None
        self._ballast().unlink(missing_ok=True)  # its space is for exactly this line
        try:
            self._segment_log.append(data)
        except OSError as exc:
            raise self._fault(exc) from None
        raise fault from None  # logged: stop before anything else is sent

    def recover(self) -> int:
        """Move what dead runs of this trigger logged but never committed into the ledger;
        returns how many events that was. Reserves the log's ballast first."""
        self.reserve_space()
        found: dict[str, PendingEvent] = {}
        dead: list[tuple[list[Path], Path, int | None]] = []
        directory = self._log_dir
        runs = {p.name.split(".")[1] for p in directory.glob(f"{self._prefix}.*")}
        for run_id in sorted(runs - {self.run_id}):
            lock = directory / f"{self._prefix}.{run_id}.lock"
            fd = _lock_if_dead(lock)
            if fd is None and lock.exists():
                continue  # its run is alive
            segments = sorted(directory.glob(f"{self._prefix}.{run_id}.*.log"),
                              key=lambda p: int(p.name.split(".")[2]))
            spare = directory / f"{self._prefix}.{run_id}.spare"  # emptied: nothing to read
            dead.append(([*segments, spare], lock, fd))
            for segment in segments:
                for entry in _entries(segment):
                    _merge(found, entry, run_id)
        try:
            if found:
                self.store.write_group(self.recipe, self.trigger, list(found.values()))
            for segments, lock, _fd in dead:
                for segment in segments:
                    segment.unlink(missing_ok=True)
                lock.unlink(missing_ok=True)
        finally:
            for _segments, _lock, fd in dead:
                if fd is not None:
                    os.close(fd)
        return len(found)

    def close(self) -> None:
        """Wait for the committer, stop it and release the run's lock. The log files go only
        when everything is in the ledger; otherwise the next run recovers them."""
        with self._lock:
            try:
                self._wait()
                clean = not self._dirty
            finally:
                if self._committer is not None:
                    self._committer.shutdown()
                    self._committer = None
                with self._spare_lock:
                    spare, self._spare = self._spare, None
                segment = self._close_segment()
                for log in (segment, spare):
                    if log is not None:
                        _delete(log, keep=log is segment and not clean)
                for log in self._kept:
                    _delete(log, keep=True)
                self._kept = []
                if self._lock_fd is not None:
                    if clean:
                        self._lock_path().unlink(missing_ok=True)
                    os.close(self._lock_fd)
                    self._lock_fd = None

    def close_quietly(self) -> None:
        """:meth:`close` after a storage fault: errors are ignored, the log files stay."""
        with self._lock:
            self._pending = []  # their errors were reported; their log segments stay
            self._in_flight = frozenset()
            try:
                self.close()
            except Exception:  # noqa: BLE001 - the fault was reported already
                pass

    def _lock_path(self) -> Path:
        return self._log_dir / f"{self._prefix}.{self.run_id}.lock"

    def _segment_path(self, number: int) -> Path:
        return self._log_dir / f"{self._prefix}.{self.run_id}.{number}.log"

    def _close_segment(self) -> AppendLog | None:
        """End the current log segment (its group is about to be committed)."""
        log, self._segment_log = self._segment_log, None
        return log

    def _recycle(self, segment: AppendLog) -> None:
        """A segment whose group is in the ledger becomes the spare the next segment reuses:
        renamed out of the log's name pattern first (so no recovery reads it again), then
        emptied (``AppendLog.reuse``), its pages and reserved space kept."""
        with self._spare_lock:
            if self._spare is None:
                try:
                    segment.reuse(self._spare_path())
                except OSError:
                    pass
                else:
                    self._spare = segment
                    return
        _delete(segment)  # (one spare is enough)

    def _spare_path(self) -> Path:
        return self._log_dir / f"{self._prefix}.{self.run_id}.spare"

    def _new_segment(self) -> AppendLog:
        self._segment += 1
        path = self._segment_path(self._segment)
        with self._spare_lock:
            spare, self._spare = self._spare, None
        if spare is None:
            return AppendLog(path)
        try:
            spare.reuse(path)
        except OSError:
            _delete(spare)
            return AppendLog(path)
        return spare

    @cached_property
    def _log_dir(self) -> Path:
        return self.store.run_log_dir()

    @cached_property
    def _prefix(self) -> str:
        """File-name prefix of this trigger's run logs."""
        return hashlib.sha256(f"{self.recipe}\x00{self.trigger}".encode()).hexdigest()[:16]

    def _log(self, event: PendingEvent) -> None:
        # One JSON line: the small fields encoded together, the payload, requests and outputs
        # spliced in as the texts already serialized for the ledger.
        done = [u for u in event.unlogged if isinstance(u, tuple)]
        small = {"key": event.key, "id": event.id, "status": event.status,
                 "error": REDACTOR.redact(event.error) if event.error else None,
                 "attempts": event.attempts, "class": event.error_class,
                 "next": event.next_attempt_at,
                 "keys": [[k, *event.keys[k]] for k in event.unlogged if isinstance(k, str)],
                 "meta": [[s, i, {k: v for k, v in event.steps[(s, i)].items()
                                  if k not in _TEXTS}] for s, i in done]}
        parts = [json_dumps(small)[:-1]]
        if event.id is None:
            if event.payload_json is None:
                event.payload_json = json_dumps(event.payload)
            parts.append(',"payload":' + event.payload_json)
        texts = [f"[{values.get('request_json') or 'null'},{values.get('output_json') or 'null'}]"
                 for values in (event.steps[u] for u in done)]  # redacted when recorded
        parts.append(',"texts":[' + ",".join(texts) + "]}\n")
        line = "".join(parts)
        if self._segment_log is None:
            try:
                if self._lock_fd is None:  # first: the lock file that says this run is alive
                    self._lock_fd = os.open(self._lock_path(), os.O_RDWR | os.O_CREAT, 0o600)
                    if fcntl is not None:
                        fcntl.flock(self._lock_fd, fcntl.LOCK_EX)
                self._segment_log = self._new_segment()
            except OSError as exc:
                raise self._fault(exc) from None
        self._append(line.encode())
        event.unlogged.clear()

    def _touch(self, event: PendingEvent) -> None:
        self._dirty[id(event)] = event
        if self._oldest is None:
            self._oldest = self.clock()


def _delete(log: AppendLog, *, keep: bool = False) -> None:
    """Close a segment and delete its file (``keep``: only close it, for the next run)."""
    try:
        log.close()
    except OSError:
        pass  # (cutting the reserved tail failed: the file goes, or a reader drops the tail)
    if not keep:
        log.path.unlink(missing_ok=True)


def _lock_if_dead(path: Path) -> int | None:
    """An open descriptor holding the lock of ``path`` when no live run holds it."""
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return None
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return None
    return fd


def _entries(path: Path) -> list[dict[str, Any]]:
    """The complete entries of a log (a line cut short by the crash is ignored)."""
    out = []
    for line in lines(path):
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict) and "key" in entry:
            out.append(entry)
    return out


def _merge(found: dict[str, PendingEvent], entry: dict[str, Any], run_id: str) -> None:
    """Fold one log entry into the event it describes (later entries win)."""
    event = found.get(entry["key"])
    if event is None:
        event = found[entry["key"]] = PendingEvent(entry["key"], entry.get("payload"), run_id,
                                                   id=entry.get("id"))
    if event.payload is None:
        event.payload = entry.get("payload")
    event.status, event.error = entry["status"], entry.get("error")
    event.attempts = entry.get("attempts", 0)
    event.error_class = entry.get("class")
    when = entry.get("next")
    event.next_attempt_at = datetime.fromisoformat(when) if isinstance(when, str) else None
    for (step_index, item_index, meta), (request, output) in zip(
            entry.get("meta", []), entry.get("texts", []), strict=True):
        event.steps[(step_index, item_index)] = {**meta, "request": request, "output": output}
    for key, step_index, item_index, status in entry.get("keys", []):
        event.keys[key] = (step_index, item_index, status)

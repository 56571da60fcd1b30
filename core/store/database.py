"""The state store: connections, trigger cursors and seen keys, plus the run ledger.

``Store.open()`` uses ``SPLICE_DATABASE_URL`` or ``sqlite:///<home>/splice.db``. SQLite runs
in WAL mode (``synchronous=NORMAL``: an application crash loses nothing, a power cut may lose
the last commits; token writes commit with ``synchronous=FULL``, fsync'd before they
return, because a provider that rotated a refresh token already forgot the old one), with a
30 s busy timeout (``SPLICE_DB_TIMEOUT``), foreign keys on, and every write transaction
opened with ``BEGIN IMMEDIATE`` so concurrent processes queue instead of failing. The same
code runs on PostgreSQL (install a driver such as ``psycopg``).

A disk that is full, a read-only home, a lock held past the timeout or a corrupt file raise
one :class:`~splice.errors.StorageError` line (:mod:`splice.store.faults`), never a driver
traceback.

Secrets live only in ``connections.secret``, Fernet-encrypted by ``SecretBox``; ``config``
holds non-secret fields (scopes, token fields, expiry, status) and refuses secret-looking keys.

Schema versions: a fresh database gets the current schema and is stamped with the newest
migration; an older one gets each pending entry of ``MIGRATIONS`` applied in order, in one
transaction (on open for SQLite; PostgreSQL refuses to open until ``splice db upgrade``: see
:mod:`splice.store.migrations`). To change the schema, edit the tables and append a migration
that brings a database from the previous version to the new one.
"""

from __future__ import annotations

import hashlib
import os
import re
import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.pool import StaticPool

from ..errors import ConfigError, StorageError
from ..secrets import SecretBox, home
from .engine import create_engine, set_synchronous
from .faults import describe_location, storage_error
from .ledger import DeadLetter, EventRecord, LedgerMixin, RunRecord, StepResult
from .migrations import migrate
from .queue import QueueMixin
from .records import ConnectionRecord, register_secrets
from .seen import SeenKeysMixin
from .settings import busy_timeout, database_url
from .tables import (
    connections,
    dialect_insert,
    now,
    prebuilt,
    schema_version,
    seen,
    seen_scope,
    trigger_state,
)
from .tables import (
    events as events_table,
)

__all__ = [
    "ConnectionRecord",
    "DeadLetter",
    "EventRecord",
    "RunRecord",
    "StepResult",
    "check_connection_name",
    "Store",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,99}$")


def check_connection_name(name: str) -> None:
    """A :class:`ConfigError` unless ``name`` may name a connection."""
    if not _NAME.match(name):
        raise ConfigError(f"invalid connection name {name[:120]!r}",
                          hint="use letters, digits, '-', '_', '.' or '@' (max 100)")
_SECRET_CONFIG_KEYS = frozenset({
    "access_token", "refresh_token", "id_token", "token", "client_secret", "api_key",
    "apikey", "password", "secret", "private_key",
})

# --------------------------------------------------------------------------- records


def _check_config(config: Mapping[str, Any] | None) -> None:
    for key in config or {}:
        if str(key).lower() in _SECRET_CONFIG_KEYS:
            raise ConfigError(f"connection config key {key!r} looks like a secret; "
                              "secrets go in the encrypted secret, not in config")


def _merge(base: Mapping[str, Any] | None, updates: Mapping[str, Any] | None) -> dict[str, Any]:
    """``base`` updated with ``updates``; a None value removes the key."""
    merged = dict(base or {})
    for key, value in (updates or {}).items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


def _folder(url: sa.URL) -> Path | None:
    """The directory of a SQLite database file."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:"):
        return None
    return Path(database).expanduser().parent


class Store(SeenKeysMixin, QueueMixin, LedgerMixin):
    """splice's state: connections, trigger state and the run ledger, in short transactions."""

    def __init__(self, engine: Engine, *, box: SecretBox | None = None) -> None:
        self.engine = engine
        self._box = box
        self._box_lock = threading.Lock()
        self._local = threading.local()
        self._pid = os.getpid()
        self._gate = self._new_gate()

    @classmethod
    def open(cls, url: str | None = None, *, box: SecretBox | None = None) -> Store:
        """Open (creating and migrating if needed) the store at ``url``."""
        engine = create_engine(database_url(url))
        try:
            migrate(engine)
        except (sa.exc.DBAPIError, OSError) as exc:
            engine.dispose()
            fault = storage_error(exc, describe_location(engine.url), _folder(engine.url))
            if fault is None:
                raise
            raise fault from None
        except BaseException:
            engine.dispose()
            raise
        return cls(engine, box=box)

    @property
    def location(self) -> str:
        """Where the state is, as errors name it: ``$SPLICE_HOME/splice.db (...)`` or the
        database URL without its password."""
        return describe_location(self.engine.url)

    def fault(self, exc: BaseException, where: str | None = None) -> StorageError | None:
        """The :class:`StorageError` for a storage failure of this store, or None."""
        return storage_error(exc, where or self.location, _folder(self.engine.url))

    def close(self) -> None:
        """Release pooled database connections."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.engine.url.render_as_string(hide_password=True)!r})"

    @property
    def schema_version(self) -> int:
        """The schema version recorded in the database."""
        with self._read() as conn:
            return int(conn.execute(sa.select(sa.func.max(schema_version.c.version))).scalar()
                       or 0)

    # ----------------------------------------------------------------- plumbing

    def secret_box(self) -> SecretBox:
        """The SecretBox, loaded on first use (so the key file appears only when needed)."""
        with self._box_lock:
            if self._box is None:
                self._box = SecretBox.from_env()
            return self._box

    def _ambient(self) -> Connection | None:
        if os.getpid() != self._pid:  # forked: never reuse the parent's pooled connections
            self.engine.dispose(close=False)
            self._pid = os.getpid()
            self._gate = self._new_gate()  # (a parent's thread may have held it)
        return getattr(self._local, "conn", None)

    def _new_gate(self) -> threading.RLock | None:
        url = self.engine.url
        if url.get_backend_name() != "sqlite" or self.single_connection:
            return None
        return threading.RLock()

    @contextmanager
    def write_gate(self) -> Iterator[None]:
        """Where this process's threads take a SQLite file's write lock in turn.

        A thread whose ``BEGIN IMMEDIATE`` finds another thread's write transaction open
        would poll in SQLite's busy handler, sleeping 1, 2, 5 ... ms between tries (a run's
        page claim waiting for the group commit on the committer thread lost ~1 ms each
        time); here it wakes as soon as the other one ends. Other processes still queue in
        SQLite (``busy_timeout``); PostgreSQL and in-memory databases need no gate."""
        gate = self._gate
        if gate is None:
            yield
            return
        got = gate.acquire(timeout=busy_timeout())  # else: SQLite's own wait decides
        try:
            yield
        finally:
            if got:
                gate.release()

    @contextmanager
    def _tx(self, write: bool, durable: bool = False) -> Iterator[Connection]:
        ambient = self._ambient()
        if ambient is not None:  # inside locked_refresh on this thread: join its transaction
            yield ambient
            return
        try:
            with self.engine.connect() as conn:
                if write:
                    conn.execution_options(splice_write=True)
                if durable:
                    set_synchronous(conn, "FULL")
                try:
                    with self.write_gate() if write else nullcontext(), conn.begin():
                        if durable and conn.dialect.name == "postgresql":
                            conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
                        yield conn
                finally:
                    if durable:
                        set_synchronous(conn, "NORMAL")
        except sa.exc.DBAPIError as exc:
            fault = self.fault(exc)
            if fault is None:
                raise
            raise fault from None

    @contextmanager
    def batch(self) -> Iterator[None]:
        """Run several store calls on this thread in ONE write transaction (fewer commits).

        Calls inside join it; it commits when the block ends and rolls back on an error.
        Nested batches join the outer one.
        """
        if self._ambient() is not None:
            yield
            return
        try:
            with self.engine.connect() as conn:
                conn.execution_options(splice_write=True)
                with self.write_gate(), conn.begin():
                    self._local.conn = conn
                    try:
                        yield
                    finally:
                        self._local.conn = None
        except sa.exc.DBAPIError as exc:
            fault = self.fault(exc)
            if fault is None:
                raise
            raise fault from None

    def _read(self) -> Any:
        return self._tx(write=False)

    @property
    def single_connection(self) -> bool:
        """Whether every transaction shares one DBAPI connection (in-memory SQLite): nothing
        may then write from a second thread while another transaction is open."""
        return isinstance(self.engine.pool, StaticPool)

    def run_log_dir(self) -> Path:
        """Where runs keep their run logs (``splice.journal``): beside a SQLite database
        file, else under the splice home, one directory per database."""
        url = self.engine.url
        database = url.database or ""
        if url.get_backend_name() == "sqlite" and database not in ("", ":memory:") and \
                url.query.get("mode") != "memory":
            path = Path(database).expanduser().with_name(Path(database).name + ".runlog")
        else:
            digest = hashlib.sha256(url.render_as_string(hide_password=True).encode())
            path = home() / "runlog" / digest.hexdigest()[:16]
        try:
            path.mkdir(parents=True, exist_ok=True, mode=0o700)
        except OSError as exc:
            raise self.fault(exc, describe_location(path=path)) or exc from None
        return path

    def _write(self) -> Any:
        return self._tx(write=True)

    # ----------------------------------------------------------------- connections

    def _record(self, row: Any) -> ConnectionRecord:
        m = row._mapping
        return ConnectionRecord(
            name=m["name"], connector=m["connector"], auth_type=m["auth_type"],
            base_url=m["base_url"], config=dict(m["config"] or {}), version=m["version"],
            created_at=m["created_at"], updated_at=m["updated_at"],
            _ciphertext=m["secret"], _box=self.secret_box)

    def put_connection(self, name: str, *, connector: str, auth_type: str,
                       base_url: str | None = None, config: Mapping[str, Any] | None = None,
                       secret: Mapping[str, Any] | None = None) -> ConnectionRecord:
        """Create or replace a connection (a replacement bumps ``version``)."""
        check_connection_name(name)
        _check_config(config)
        ciphertext = self.secret_box().encrypt(secret) if secret else None
        register_secrets(dict(secret or {}))
        stamp = now()
        values = {"connector": connector, "auth_type": auth_type, "base_url": base_url,
                  "config": dict(config or {}), "secret": ciphertext, "updated_at": stamp}
        with self._tx(write=True, durable=secret is not None) as conn:
            conn.execute(dialect_insert(conn, connections).values(
                name=name, version=1, created_at=stamp, **values,
            ).on_conflict_do_update(index_elements=["name"], set_={
                **values, "version": connections.c.version + 1}))
            row = conn.execute(sa.select(connections).where(connections.c.name == name)).one()
        return self._record(row)

    def get_connection(self, name: str) -> ConnectionRecord | None:
        """One connection, or None."""
        with self._read() as conn:
            row = conn.execute(sa.select(connections).where(connections.c.name == name)).first()
        return None if row is None else self._record(row)

    def require_connection(self, name: str) -> ConnectionRecord:
        """One connection, or a ConfigError telling the user how to create it."""
        record = self.get_connection(name)
        if record is None:
            raise ConfigError(f"no connection named {name!r}",
                              hint=f"create it with: splice connect <connector> --name {name}")
        return record

    def list_connections(self) -> list[ConnectionRecord]:
        """All connections, by name."""
        with self._read() as conn:
            rows = conn.execute(sa.select(connections).order_by(connections.c.name)).all()
        return [self._record(row) for row in rows]

    def delete_connection(self, name: str) -> bool:
        """Delete a connection; False if there was none."""
        with self._write() as conn:
            done = conn.execute(connections.delete().where(connections.c.name == name))
        return done.rowcount == 1

    def update_tokens(self, name: str, secret: Mapping[str, Any] | None = None,
                      config_updates: Mapping[str, Any] | None = None,
                      expected_version: int | None = None) -> bool:
        """Merge new tokens into the secret and config, bumping ``version``.

        With ``expected_version`` this is a compare-and-swap: False (nothing written) when the
        stored version differs, i.e. a sibling already rotated the tokens. Keys set to None are
        removed.
        """
        _check_config(config_updates)
        register_secrets(dict(secret or {}))
        box = self.secret_box()
        for _ in range(5):
            with self._tx(write=True, durable=secret is not None) as conn:
                row = conn.execute(sa.select(connections.c.config, connections.c.secret,
                                             connections.c.version)
                                   .where(connections.c.name == name)).first()
                if row is None:
                    raise ConfigError(f"no connection named {name!r}")
                if expected_version is not None and row.version != expected_version:
                    return False
                if secret is None:  # a config-only write keeps the ciphertext untouched
                    ciphertext = row.secret
                else:
                    current = box.decrypt(row.secret) if row.secret else {}
                    merged_secret = _merge(current, secret)
                    ciphertext = box.encrypt(merged_secret) if merged_secret else None
                done = conn.execute(connections.update().where(
                    connections.c.name == name, connections.c.version == row.version,
                ).values(secret=ciphertext,
                         config=_merge(row.config, config_updates), version=row.version + 1,
                         updated_at=now()))
                if done.rowcount == 1:
                    return True
                if expected_version is not None:
                    return False
        return False

    @contextmanager
    def locked_refresh(self, name: str) -> Iterator[ConnectionRecord]:
        """Hold the cross-process refresh lock of one connection; yield it freshly re-read.

        SQLite takes the database write lock (``BEGIN IMMEDIATE``), PostgreSQL locks the row
        (``SELECT ... FOR UPDATE``). Store calls made inside the block on this thread join the
        locked transaction, which is committed when the block exits, even on an exception: a
        rotated refresh token must never be lost. Compare the yielded ``version`` with the one
        you had to see whether a sibling already refreshed. The commit is durable (SQLite
        ``synchronous=FULL``, PostgreSQL ``synchronous_commit=on``). Keep the block short: on
        SQLite other writers wait (up to 30 s) until it ends, and that includes another ``Store``
        in this process, so write through this one inside the block.
        """
        if self._ambient() is not None:
            raise RuntimeError("locked_refresh cannot be nested")
        try:
            with self.engine.connect() as conn:
                conn.execution_options(splice_write=True)
                set_synchronous(conn, "FULL")  # the rotated token is fsync'd before it is used
                try:
                    yield from self._locked(conn, name)
                finally:
                    set_synchronous(conn, "NORMAL")
        except sa.exc.DBAPIError as exc:
            fault = self.fault(exc)
            if fault is None:
                raise
            raise fault from None

    def _locked(self, conn: Connection, name: str) -> Iterator[ConnectionRecord]:
        tx = conn.begin()
        if conn.dialect.name == "postgresql":
            conn.exec_driver_sql(f"SET LOCAL lock_timeout = '{int(busy_timeout())}s'")
            conn.exec_driver_sql("SET LOCAL synchronous_commit = on")
        row = conn.execute(sa.select(connections).where(connections.c.name == name)
                           .with_for_update()).first()
        if row is None:
            tx.rollback()
            raise ConfigError(f"no connection named {name!r}")
        self._local.conn = conn
        try:
            yield self._record(row)
        finally:
            self._local.conn = None
            try:
                tx.commit()
            except Exception:
                if tx.is_active:
                    tx.rollback()
                raise

    # ----------------------------------------------------------------- triggers

    def _trigger_row(self, recipe: str, trigger: str) -> Any:
        with self._read() as conn:
            return conn.execute(sa.select(trigger_state).where(
                trigger_state.c.recipe == recipe, trigger_state.c.trigger == trigger)).first()

    def _upsert_trigger(self, conn: Connection, recipe: str, trigger: str,
                        **values: Any) -> None:
        values["updated_at"] = now()
        names = tuple(sorted(values))

        def build(c: Connection) -> Any:
            stmt = dialect_insert(c, trigger_state)
            return stmt.on_conflict_do_update(index_elements=["recipe", "trigger"],
                                              set_={n: stmt.excluded[n] for n in names})

        # prebuilt per set of columns (checkpoint writes happen once a page)
        conn.execute(prebuilt(conn, f"upsert_trigger:{','.join(names)}", build),
                     {"recipe": recipe, "trigger": trigger, "initialized": False, **values})

    def trigger_initialized(self, recipe: str, trigger: str) -> bool:
        """Whether the trigger finished its first (baseline) poll."""
        row = self._trigger_row(recipe, trigger)
        return bool(row and row.initialized)

    def mark_initialized(self, recipe: str, trigger: str, initialized: bool = True) -> None:
        """Record that the baseline poll is done (or undo it)."""
        with self._write() as conn:
            self._upsert_trigger(conn, recipe, trigger, initialized=initialized)

    def get_cursor(self, recipe: str, trigger: str) -> str | None:
        """The trigger's saved cursor (e.g. the newest ``updated_at`` seen)."""
        row = self._trigger_row(recipe, trigger)
        return None if row is None else row.cursor

    def set_cursor(self, recipe: str, trigger: str, cursor: str | None) -> None:
        """Save the trigger's cursor."""
        with self._write() as conn:
            self._upsert_trigger(conn, recipe, trigger, cursor=cursor)

    def get_checkpoint(self, recipe: str, trigger: str) -> dict[str, Any] | None:
        """Where the trigger's unfinished listing resumes (a page checkpoint), if anywhere."""
        row = self._trigger_row(recipe, trigger)
        return None if row is None else row.checkpoint

    def set_checkpoint(self, recipe: str, trigger: str, checkpoint: dict[str, Any] | None
                       ) -> None:
        """Save (or with None clear) the trigger's page checkpoint."""
        with self._write() as conn:
            self._upsert_trigger(conn, recipe, trigger, checkpoint=checkpoint)

    def advance_trigger(self, recipe: str, trigger: str, *, seen: Iterable[str] = (),
                        cursor: str | None = None, initialized: bool = True) -> None:
        """In one transaction: add seen keys, save the cursor (if given), set ``initialized``."""
        values: dict[str, Any] = {"initialized": initialized}
        if cursor is not None:
            values["cursor"] = cursor
        with self._write() as conn:
            self._add_seen(conn, recipe, trigger, seen)
            self._upsert_trigger(conn, recipe, trigger, **values)

    def reset_trigger(self, recipe: str, trigger: str, *, events: bool = False) -> int:
        """Forget the trigger's cursor, seen keys and initialisation (next poll is a
        baseline); with ``events`` also its events (their step results, keys and dead
        letters go with them). Returns how many seen keys were forgotten."""
        with self._write() as conn:
            gone = conn.execute(seen.delete().where(seen.c.scope == seen_scope(recipe, trigger)))
            conn.execute(trigger_state.delete().where(trigger_state.c.recipe == recipe,
                                                      trigger_state.c.trigger == trigger))
            if events:
                conn.execute(events_table.delete().where(events_table.c.recipe == recipe,
                                                         events_table.c.trigger == trigger))
        return max(gone.rowcount, 0)

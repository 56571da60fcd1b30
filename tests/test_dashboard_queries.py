"""The dashboard's reads (``splice.store.queries``), its charts' data (``splice.run.series``)
and the error advice (``splice.run.retry.explain``): keyset pages of runs that neither skip
nor repeat a run, filters, dead letters newest first, and charts that show what the seed
recipes really sent to the Invoice2go sandbox."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from splice.run.retry import ADVICE, explain
from splice.run.series import recipe_charts
from splice.store.database import Store
from splice.store.ledger import PendingEvent
from splice.store.queries import (
    dead_letter_page,
    events_since,
    runs_page,
    runs_since,
    sent_steps,
)
from splice.store.tables import runs, step_results

from .pg import schema_url
from .test_budget import _plan
from .test_recipes import STATS, TAGS, World, _social_metrics, _with_days, world  # noqa: F401


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest) -> Iterator[Store]:
    """The state database on SQLite and on PostgreSQL (a schema of its own)."""
    if request.param == "sqlite":
        opened = Store.open()
        yield opened
        opened.close()
        return
    with schema_url() as url:
        opened = Store.open(url)
        try:
            yield opened
        finally:
            opened.close()


def _runs(store: Store, count: int, *, same_time: bool = False) -> list[str]:
    ids = []
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for i in range(count):
        run_id = store.start_run("alpha" if i % 2 else "beta", mode="serve")
        store.finish_run(run_id, status="failed" if i % 3 == 0 else "succeeded")
        stamp = base if same_time else base + timedelta(seconds=i)
        with store._write() as conn:
            conn.execute(runs.update().where(runs.c.id == run_id).values(
                started_at=stamp, finished_at=stamp + timedelta(seconds=1)))
        ids.append(run_id)
    return ids


def _all_pages(store: Store, **kw: object) -> list[str]:
    seen: list[str] = []
    after = None
    for _ in range(100):
        page = runs_page(store, limit=3, after=after, **kw)  # type: ignore[arg-type]
        seen += [r.id for r in page.runs]
        after = page.after
        if after is None:
            return seen
    raise AssertionError("paging did not end")


def test_run_pages_cover_every_run_once_newest_first(store: Store) -> None:
    ids = _runs(store, 10)
    assert _all_pages(store) == list(reversed(ids))
    assert _all_pages(store, recipe="alpha") == [i for n, i in reversed(list(enumerate(ids)))
                                                 if n % 2]
    assert _all_pages(store, status="failed") == [i for n, i in
                                                  reversed(list(enumerate(ids))) if n % 3 == 0]
    assert runs_page(store, limit=50).after is None
    assert runs_page(store, after="not a keyset").runs[0].id == ids[-1]  # ignored, first page


def test_run_pages_break_ties_on_the_run_id(store: Store) -> None:
    ids = _runs(store, 7, same_time=True)
    assert _all_pages(store) == sorted(ids, reverse=True)


def test_runs_since_includes_runs_still_going_within_the_horizon(store: Store) -> None:
    old = _runs(store, 2)  # started in 2026-01
    going = store.start_run("gamma", mode="serve")
    stale = store.start_run("gamma", mode="serve")  # "running" since long ago: not followed
    with store._write() as conn:
        conn.execute(runs.update().where(runs.c.id == going).values(
            started_at=datetime(2026, 1, 1, 0, 30, tzinfo=UTC)))
        conn.execute(runs.update().where(runs.c.id == stale).values(
            started_at=datetime(2020, 1, 1, tzinfo=UTC)))
    since = datetime(2026, 1, 1, 1, 0, tzinfo=UTC)
    assert {r.id for r in runs_since(store, since)} == {going}
    assert {r.id for r in runs_since(store, datetime(2026, 1, 1, tzinfo=UTC))} == \
        set(old) | {going}
    group = [PendingEvent(key="k", payload={}, run_id=going)]
    store.write_group("gamma", "t", group)
    assert [e.id for e in events_since(store, datetime.now(UTC) - timedelta(minutes=1),
                                       [going])] == [group[0].id]
    assert events_since(store, datetime.now(UTC) + timedelta(minutes=1), [going]) == []
    assert events_since(store, since, []) == []


def test_dead_letters_page_newest_first(store: Store) -> None:
    run_id = store.start_run("r")
    group = [PendingEvent(key=f"k{i}", payload={"i": i}, run_id=run_id) for i in range(5)]
    store.write_group("r", "t", group)
    for p in group:
        assert p.id is not None
        store.dead_letter(p.id, reason=f"boom {p.key}\n  fix: do the thing",
                          error_class="client")
    ids = [p.id for p in group]
    first = dead_letter_page(store, limit=3)
    assert [d.event_id for d in first] == list(reversed(ids))[:3]
    rest = dead_letter_page(store, limit=3, before=first[-1].event_id)
    assert [d.event_id for d in rest] == list(reversed(ids))[3:]
    assert first[0].key == "k4" and first[0].error_class == "client"


def test_sent_steps_read_bodies_and_one_record_per_event(store: Store) -> None:
    run_id = store.start_run("r")
    group = [PendingEvent(key=f"k{i}", payload={"tag": f"t{i}"}, run_id=run_id)
             for i in range(3)]
    store.write_group("r", "t", group)
    rows = [{"event_id": p.id, "run_id": run_id, "step_index": 1, "item_index": item,
             "status": "succeeded" if item < 2 else "failed",
             "request": {"method": "PATCH", "json": {"tags": [f"x{item}"]}},
             "output": {"ok": True}, "attempts": 1} for p in group for item in range(3)]
    with store._write() as conn:
        conn.execute(step_results.insert(), rows)
    sent = sent_steps(store, "r", 1, with_record=True)
    assert [(s.event_id, s.item_index) for s in sent] == [
        (p.id, i) for p in reversed(group) for i in range(2)]  # newest first, failed left out
    assert sent[0].body == {"tags": ["x0"]} and sent[0].record == {"tag": "t2"}
    assert sent_steps(store, "r", 1, limit=1)[0].record is None
    assert sent_steps(store, "other", 1) == []


def test_explain_takes_the_fix_the_engine_wrote_else_the_class_advice() -> None:
    assert explain("client", "HTTP 422: bad\n  fix: fix the recipe, then splice runs retry "
                             "--dead 4") == ("HTTP 422: bad",
                                             "fix the recipe, then splice runs retry --dead 4")
    assert explain("server", "HTTP 503") == ("HTTP 503", ADVICE["server"])
    assert explain(None, None) == ("", None)


# ---------------------------------------------------------------------------- charts


def test_statistics_chart_shows_the_metrics_pushed_to_invoice2go(world: World,  # noqa: F811
                                                                  tmp_path: Path) -> None:
    week = _with_days(STATS, 7, tmp_path)
    world.run(week, backfill=True)
    plan = _plan(world, week)
    charts = recipe_charts(world.store, plan.recipe.id, plan)  # type: ignore[attr-defined]
    pushed = _social_metrics(world.invoice2go())
    expected: dict[str, list[tuple[str, float]]] = {}
    for m in sorted(pushed, key=lambda m: m["period_start"]):
        expected.setdefault(m["label"], []).append((m["period_start"], float(m["value"])))
    assert {c.title: c.series[0].points for c in charts} == expected
    assert len(charts) == 5 and all(c.kind == "line" and len(c.series[0].points) == 7
                                    for c in charts)


def test_tag_chart_counts_the_invoices_each_tag_tagged(world: World) -> None:  # noqa: F811
    world.run(TAGS)
    world.sandboxes.control("ghl_users", "POST", "tags", {"tag": "Kord Industries"})
    world.sandboxes.control("ghl_users", "POST", "tags", {"tag": "nobody by this name"})
    world.run(TAGS)
    state = world.invoice2go()
    tagged = [i for i in state["invoices"] if "social-kord-industries" in i["tags"]]
    plan = _plan(world, TAGS)
    (chart,) = recipe_charts(world.store, plan.recipe.id, plan)  # type: ignore[attr-defined]
    assert chart.kind == "bars"
    assert chart.series[0].points == [("Kord Industries", float(len(tagged)))]
    with world.store._read() as conn:  # the query reads one step of one recipe only
        assert conn.execute(sa.text("select count(*) from step_results")).scalar() > len(tagged)


def test_a_huge_value_is_cut_on_the_page() -> None:
    from splice.web.runs import MAX_SHOWN, pretty

    text = pretty({"big": "x" * (MAX_SHOWN * 2)})
    assert len(text) < MAX_SHOWN + 200 and "more characters" in text
    assert pretty({"a": 1}) == '{\n  "a": 1\n}' and pretty(None) == ""

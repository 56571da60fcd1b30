"""HighLevel triggers on posts, social accounts, CSV imports and categories, and statistics for
a date range (Version v3), against the HighLevel sandbox over loopback.

These need the sandbox that serves every operation (issue 19 part A): posts, CSV imports,
categories and v3 requests.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("splice_connectors.ghl_users.sandbox_posts",
                    reason="needs the HighLevel sandbox that serves posts, CSV imports and v3 "
                           "(issue 19 part A, branch issue19-sandbox)")

from splice.connections.client import connection_client  # noqa: E402
from splice.http.request import prepare_call  # noqa: E402
from splice.plugins import get_registry  # noqa: E402
from splice.run.demo import CONNECTIONS, Sandboxes, ensure_connection  # noqa: E402
from splice.store.database import Store  # noqa: E402

from .conftest import ROOT, invoke  # noqa: E402

LOCATION = "ve9EPM428h8vShlRW1KT"


class Ghl:
    def __init__(self, sandboxes: Sandboxes, store: Store) -> None:
        self.sandboxes, self.store = sandboxes, store
        self.registry = get_registry()
        self.connector = self.registry.connector("ghl_users")

    def world(self) -> dict[str, Any]:
        return self.sandboxes.state("ghl_users")["world"]  # type: ignore[no-any-return]

    def call(self, op_id: str, **payload: Any) -> Any:
        from splice.run.call import call_operation

        return call_operation(self.registry, self.store, f"ghl_users.{op_id}",
                              connection="my-highlevel", payload=payload)

    def accounts(self) -> list[dict[str, Any]]:
        return [a for a in self.world()["accounts"] if a["_locationId"] == LOCATION]

    def user_id(self) -> str:
        return next(u["id"] for u in self.world()["users"]
                    if LOCATION in u["roles"]["locationIds"])


@pytest.fixture
def ghl() -> Iterator[Ghl]:
    registry = get_registry()
    with Sandboxes(registry, None, ("ghl_users",)) as sandboxes:
        store = Store.open()
        connector = sandboxes.connectors["ghl_users"]
        ensure_connection(store, connector, CONNECTIONS["ghl_users"], sandboxes,
                          list(connector.scopes))
        yield Ghl(sandboxes, store)
        store.close()


RECIPE = """\
name: ghl {trigger} check
trigger:
  use: ghl_users.{trigger}
  connection: my-highlevel
steps:
  - use: ghl_users.list_tags
    connection: my-highlevel
"""


def _post(ghl: Ghl, **body: Any) -> Any:
    account = ghl.accounts()[0]
    return ghl.call("create_post", type="post", accountIds=[account["id"]],
                    userId=ghl.user_id(), summary="Hello from splice", **body)


def _csv_import(ghl: Ghl) -> Any:
    uploaded = ghl.call("upload_csv", file={
        "content": "content,scheduleDate\nSummer sale,2026-06-01T15:00:00Z\n",
        "filename": "posts.csv", "content_type": "text/csv"})["results"]
    return ghl.call("set_csv_accounts", filePath=uploaded["filePath"],
                    fileName=uploaded["fileName"], rowsCount=uploaded["rowsCount"],
                    accountIds=[ghl.accounts()[0]["id"]], userId=ghl.user_id())


def _update_post(ghl: Ghl) -> Any:
    """A post of this week, then edited (the trigger polls 30 days back, 60 ahead)."""
    _post(ghl, status="draft")
    post = next(p for p in reversed(ghl.world()["posts"]) if p["status"] == "draft")
    return ghl.call("update_post", id=post["_id"], type="post",
                    accountIds=post["accountIds"], userId=ghl.user_id(),
                    summary="Edited by splice")


CHANGES = {
    "post_published": lambda ghl: _post(ghl, status="published"),
    "post_failed": lambda ghl: _post(ghl, status="failed"),
    "post_scheduled": lambda ghl: _post(ghl, scheduleDate=(
        datetime.now(UTC) + timedelta(days=3)).isoformat().replace("+00:00", "Z")),
    "post_updated": _update_post,
    "csv_import_created": _csv_import,
}
# triggers whose change the API gives no way to make: a backfill reads what exists
SEEDED = {"account_connected": lambda ghl: len(ghl.accounts()),
          "account_expired": lambda ghl: sum(a["isExpired"] for a in ghl.accounts()),
          "category_created": lambda ghl: len(ghl.world()["categories"]),
          "category_updated": lambda ghl: sum(c["updatedAt"] != c["createdAt"]
                                              for c in ghl.world()["categories"])}


def _run(recipe: Path, *args: str) -> dict[str, Any]:
    done = invoke("run", str(recipe), "--json", *args)
    report = json.loads(done.stdout)
    assert not report["errors"], report
    return report  # type: ignore[no-any-return]


@pytest.mark.parametrize("trigger", sorted(CHANGES))
def test_trigger_fires_once_per_change(ghl: Ghl, trigger: str, tmp_path: Path) -> None:
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(RECIPE.format(trigger=trigger))
    assert _run(recipe)["events_new"] == 0
    CHANGES[trigger](ghl)
    fired = _run(recipe)
    assert fired["events_new"] == fired["events_succeeded"] == 1, fired
    assert _run(recipe)["events_new"] == 0


@pytest.mark.parametrize("trigger", sorted(SEEDED))
def test_trigger_backfill_reads_what_exists(ghl: Ghl, trigger: str, tmp_path: Path) -> None:
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(RECIPE.format(trigger=trigger))
    report = _run(recipe, "--backfill")
    assert report["events_new"] == SEEDED[trigger](ghl), report


def test_every_new_trigger_is_tested() -> None:
    triggers = set(get_registry().connector("ghl_users").triggers)
    assert set(CHANGES) | set(SEEDED) == triggers - {"tag_created", "tag_updated",
                                                     "user_created", "statistics_refreshed"}


def test_statistics_for_a_date_range_send_version_v3(ghl: Ghl) -> None:
    profiles = [a["profileId"] for a in ghl.accounts()]
    day = (datetime.now(UTC) - timedelta(days=3)).date().isoformat()
    result = ghl.call("get_statistics_for_range", profileIds=profiles, currentRange={
        "startDate": f"{day}T00:00:00.000Z", "endDate": f"{day}T23:59:59.999Z"})
    (stats,) = result["records"]  # `results`, one record
    assert len(stats["dayRange"]) == 1
    (week,) = ghl.call("get_statistics", profileIds=profiles)["records"]
    # the same day has the same figures in both versions: 3 days ago is index 4 of 7
    assert stats["postPerformance"]["likes"][0] == week["postPerformance"]["likes"][4]
    connector = ghl.connector
    op = connector.operations["get_statistics_for_range"]
    record = ghl.store.require_connection("my-highlevel")
    with connection_client(connector, record, ghl.store, ghl.registry) as client:
        call = prepare_call(op, connector, {"locationId": LOCATION, "profileIds": profiles},
                            base_url=client.base_url, rendered_headers={"Version": "v3"})
        assert call.headers["Version"] == "v3"
    assert (ROOT / "connectors/ghl_users/manifest.yaml").exists()

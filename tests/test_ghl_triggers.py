"""The HighLevel triggers on posts, CSV imports, categories and connected accounts, each run
with ``splice run`` against the HighLevel sandbox over loopback.

Every trigger is checked the way tests/test_ghl_connector.py checks the first four: the first
run remembers what exists and fires nothing; then one change; a dry run shows the one event
and the request its step would send, for the changed record; the next run fires exactly once
and its step (which reads the triggering record back by id) succeeds; a third run fires
nothing. The changes are made

* through HighLevel's API, by splice, with the operations the manifest declares, wherever the
  API has a call for it: a post published, failed or scheduled (``create_post``), a post
  edited (``update_post``), a CSV import (``upload_csv`` as multipart, then
  ``set_csv_accounts``), a social account connected (the Facebook login flow:
  ``start_facebook_oauth``, ``list_facebook_pages``, ``attach_facebook_page``);
* with the sandbox's test controls where the API has none: a category created or edited
  (HighLevel's app does that; the API only reads categories) and a connected account's access
  expiring (HighLevel marks it when the network's token lapses). These check the trigger's
  polling, filter, key and version over the sandbox's data, not an API write.

The sandbox runs on the real clock here: the post triggers' windows are rendered from the
real time (``now``), so the posts must be dated by the same clock.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from splice_connectors.ghl_users.sandbox_data import LOCATION_ID

from .conftest import invoke
from .test_ghl_connector import (
    CONNECTION,
    CSV_TEXT,
    Ghl,
    Sandbox,
    account_ids,
    connected,
    oauth_event,
    serve_sandbox,
)

FIRST_FOUR = {"tag_created", "tag_updated", "user_created", "statistics_refreshed"}


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    """HighLevel's sandbox on the real clock (the default)."""
    yield from serve_sandbox()


@pytest.fixture
def ghl(sandbox: Sandbox) -> Iterator[Ghl]:
    yield from connected(sandbox)


def _moment(days: float) -> str:
    return (datetime.now(UTC) + timedelta(days=days)).isoformat().replace("+00:00", "Z")


# -- the changes: each returns the id the trigger must fire for ------------------------------

def _create_post(api: Ghl, **body: Any) -> str:
    created = api.send("create_post", type="post", accountIds=account_ids(api)[:2],
                       userId=api.fields["userId"], summary="Open house on Saturday", **body)
    return str(created["results"]["post"]["_id"])


def _publish(api: Ghl) -> str:
    return _create_post(api)  # no status, no schedule: published now


def _fail(api: Ghl) -> str:
    return _create_post(api, status="failed")


def _schedule(api: Ghl) -> str:
    return _create_post(api, scheduleDate=_moment(3))


def _edit_post(api: Ghl) -> str:
    post_id = _create_post(api, status="draft")  # a new post of this week, then edited
    api.sandbox.control("advance-clock", seconds=60)
    api.send("update_post", id=post_id, type="post", summary="Open house moved to Sunday")
    return post_id


def _import_csv(api: Ghl) -> str:
    uploaded = api.send("upload_csv", file={"content": CSV_TEXT, "filename": "posts.csv"})
    api.send("set_csv_accounts", accountIds=account_ids(api)[:1], userId=api.fields["userId"],
             **uploaded["results"])
    return str(api.sandbox.world()["csv_imports"][-1]["_id"])


def _connect_account(api: Ghl) -> str:
    """A new Facebook login, then one of the pages it offers attached to the location."""
    page = api.call("start_facebook_oauth", userId=api.fields["userId"])
    login = str(oauth_event(page.response.text)["accountId"])
    offered = api.send("list_facebook_pages", accountId=login)["results"]["pages"]
    attached = api.send("attach_facebook_page", accountId=login, originId=offered[-1]["id"])
    return f"{login}_{LOCATION_ID}_{attached['results']['originId']}"


def _add_category(api: Ghl) -> str:
    return str(api.sandbox.control("categories", name="Open house")["_id"])


def _edit_category(api: Ghl) -> str:
    category = api.sandbox.world()["categories"][2]
    api.sandbox.control("advance-clock", seconds=60)
    response = api.sandbox.http.patch(f"/__test__/categories/{category['_id']}",
                                      json={"name": "Tips and how-to"})
    response.raise_for_status()
    return str(category["_id"])


def _expire_account(api: Ghl) -> str:
    account_id = account_ids(api)[1]
    response = api.sandbox.http.patch(f"/__test__/accounts/{account_id}",
                                      json={"isExpired": True})
    response.raise_for_status()
    return account_id


def _nothing(api: Ghl) -> None:
    """No other change: the API can only add an account (it has no id yet to clash with)."""


GET_POST = ("get_post", '{id: "{{ trigger._id }}"}')
PROFILE_STATS = ("get_statistics", '{profileIds: ["{{ trigger.profileId }}"]}')
# trigger: (the change it fires for, a change it must not fire for, step, step `with`)
TRIGGERS: dict[str, tuple[Callable[[Ghl], str], Callable[[Ghl], Any], str, str]] = {
    "post_published": (_publish, lambda api: (_schedule(api), _fail(api)), *GET_POST),
    "post_failed": (_fail, _publish, *GET_POST),
    "post_scheduled": (_schedule, _publish, *GET_POST),
    "post_updated": (_edit_post, _publish, *GET_POST),  # new, never edited
    "csv_import_created": (_import_csv, _publish, "get_csv_import",
                           '{id: "{{ trigger._id }}"}'),
    "account_connected": (_connect_account, _nothing, *PROFILE_STATS),
    "category_created": (_add_category, _edit_category, "get_category",
                         '{id: "{{ trigger._id }}"}'),
    "category_updated": (_edit_category, _add_category, "get_category",
                         '{id: "{{ trigger._id }}"}'),
    "account_expired": (_expire_account, _connect_account, *PROFILE_STATS),
}


def _edit_post_again(api: Ghl, post_id: str) -> None:
    api.send("update_post", id=post_id, type="post", summary="Open house: free coffee")


def _fail_again(api: Ghl, post_id: str) -> None:
    api.send("update_post", id=post_id, type="post", status="failed")  # a retry failed too


def _edit_category_again(api: Ghl, category_id: str) -> None:
    api.sandbox.http.patch(f"/__test__/categories/{category_id}",
                           json={"primaryColor": "#7C3AED"}).raise_for_status()


# triggers keyed on a version too: the same record changed again fires again
AGAIN: dict[str, Callable[[Ghl, str], None]] = {
    "post_updated": _edit_post_again, "post_failed": _fail_again,
    "category_updated": _edit_category_again,
}

RECIPE = """\
name: ghl {trigger} check
trigger:
  use: ghl_users.{trigger}
  connection: {connection}
steps:
  - id: check
    use: ghl_users.{step}
    connection: {connection}
    with: {step_with}
"""


def test_every_new_trigger_is_exercised(ghl: Ghl) -> None:
    polling = {tid for tid, t in ghl.connector.triggers.items() if t.type == "polling"}
    assert set(TRIGGERS) | FIRST_FOUR == polling  # webhook triggers: tests/test_serve_*.py
    assert len(polling) == 13


@pytest.mark.parametrize("trigger", list(TRIGGERS))
def test_trigger_fires_once_for_one_change(ghl: Ghl, trigger: str, tmp_path: Path) -> None:
    change, other, step, step_with = TRIGGERS[trigger]
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(RECIPE.format(trigger=trigger, connection=CONNECTION, step=step,
                                    step_with=step_with), encoding="utf-8")

    def run(*options: str) -> dict[str, Any]:
        result = invoke("run", str(recipe), "--json", *options)
        assert result.exit_code == 0, result.output
        report: dict[str, Any] = json.loads(result.stdout)
        assert not report["errors"] and report["events_failed"] == 0, report
        return report

    first = run()
    assert first["events_new"] == 0
    polls = first["requests_made"]
    other(ghl)
    changed = change(ghl)
    dry = run("--dry-run")
    assert dry["events_new"] == 1, dry
    [call] = dry["requests"]
    assert call["event"].startswith(changed), (call, changed)
    if step == "get_statistics":  # the connected account's profile
        profile = next(a["profileId"] for a in ghl.sandbox.world()["accounts"]
                       if a["id"] == changed)
        assert call["json"]["profileIds"] == [profile], call
    else:  # the record read back by its id
        assert f"/{changed}" in call["url"], call
    second = run()
    assert second["events_new"] == second["events_succeeded"] == 1, second
    assert second["requests_made"] == polls + 1  # the poll, then the step once
    third = run()
    assert third["events_new"] == 0 and third["requests_made"] == polls


@pytest.mark.parametrize("trigger", list(AGAIN))
def test_trigger_fires_again_when_the_record_changes_again(
        ghl: Ghl, trigger: str, tmp_path: Path) -> None:
    change, _, step, step_with = TRIGGERS[trigger]
    recipe = tmp_path / f"{trigger}.yaml"
    recipe.write_text(RECIPE.format(trigger=trigger, connection=CONNECTION, step=step,
                                    step_with=step_with), encoding="utf-8")

    def new_events() -> int:
        report = json.loads(invoke("run", str(recipe), "--json").stdout)
        assert not report["errors"] and report["events_failed"] == 0, report
        return int(report["events_new"])

    assert new_events() == 0
    changed = change(ghl)
    assert new_events() == 1
    ghl.sandbox.control("advance-clock", seconds=60)  # a later updatedAt
    AGAIN[trigger](ghl, changed)
    assert new_events() == 1 and new_events() == 0


def test_an_account_expires_again_after_it_is_reconnected(ghl: Ghl, tmp_path: Path) -> None:
    """account_expired is keyed on the account and its ``expire``: reconnecting (attaching the
    same page again, an API call) renews it without firing, and a second expiry fires."""
    recipe = tmp_path / "expired.yaml"
    recipe.write_text(RECIPE.format(trigger="account_expired", connection=CONNECTION,
                                    step="list_social_accounts", step_with="{}"))

    def new_events() -> int:
        report = json.loads(invoke("run", str(recipe), "--json").stdout)
        assert not report["errors"] and report["events_failed"] == 0, report
        return int(report["events_new"])

    def expire(account_id: str) -> None:
        ghl.sandbox.http.patch(f"/__test__/accounts/{account_id}",
                               json={"isExpired": True}).raise_for_status()

    account_id = _connect_account(ghl)
    login, origin = account_id.split("_")[0], account_id.rsplit("_", 1)[1]
    assert new_events() == 0
    expire(account_id)
    assert new_events() == 1 and new_events() == 0
    ghl.sandbox.control("advance-clock", seconds=60)
    ghl.send("attach_facebook_page", accountId=login, originId=origin)  # reconnected
    renewed = next(a for a in ghl.sandbox.world()["accounts"] if a["id"] == account_id)
    assert renewed["isExpired"] is False
    assert new_events() == 0
    expire(account_id)
    assert new_events() == 1


def test_sandbox_controls_refuse_what_they_cannot_do(ghl: Ghl) -> None:
    http = ghl.sandbox.http
    assert http.post("/__test__/categories", json={"name": 7}).status_code == 422
    assert http.post("/__test__/categories", json={"name": "  "}).status_code == 422
    assert http.patch("/__test__/categories/nope", json={"name": "x"}).status_code == 404
    category = ghl.sandbox.world()["categories"][0]["_id"]
    assert http.patch(f"/__test__/categories/{category}",
                      json={"colour": "red"}).status_code == 422
    assert http.patch("/__test__/accounts/nope", json={"isExpired": True}).status_code == 404
    assert http.patch(f"/__test__/accounts/{account_ids(ghl)[0]}",
                      json={"isExpired": "yes"}).status_code == 422

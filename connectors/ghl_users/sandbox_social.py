"""Social Planner tags, categories, connected accounts and statistics in the HighLevel sandbox.

Contract: handlers receive a schema-checked :class:`~.sandbox_http.Call` (the route already
checked the path's ``locationId`` against the token) and return the spec's envelope
``{success, statusCode, message, results}``:

* tags: ``GET .../tags`` (oldest first, ``searchText``, ``skip``/``limit`` default 0/10) and
  ``POST .../tags/details`` (201; unknown ids are left out, deleted tags shown);
* categories: ``GET .../categories`` (``searchText``, ``skip``/``limit``) and
  ``GET .../categories/{id}`` (unknown: 400);
* accounts: ``GET .../accounts`` (accounts and groups) and ``DELETE .../accounts/{id}``
  (unknown: 400; the account leaves its groups and every list);
* statistics: ``POST /social-media-posting/statistics?locationId=`` (201 with the
  date-versioned spec, 200 with v3, as each spec declares); no body means every account.

``skip``/``limit`` that are not whole numbers mean their defaults (the specs type them as free
strings).
"""

from __future__ import annotations

from typing import Any

from . import sandbox_stats as stats
from .sandbox_data import World, iso
from .sandbox_http import ApiProblem, Call, page_limit, whole_number

Json = dict[str, Any]


def _ok(status: int, message: str, results: Any) -> Json:
    return {"success": True, "statusCode": status, "message": message, "results": results}


def _page(call: Call, default_limit: int = 10) -> tuple[int, int]:
    return (whole_number(call.query.get("skip"), 0),
            page_limit(call.query.get("limit"), default_limit))


async def list_tags(call: Call) -> Json:
    world: World = call.host.world
    skip, limit = _page(call)
    tags, count = world.list_tags(call.path["locationId"], call.query.get("searchText"),
                                  skip, limit)
    return _ok(200, "Fetched Tags by Location ID", {"tags": tags, "count": count})


async def tag_details(call: Call) -> Json:
    world: World = call.host.world
    tags = world.tags_by_ids(call.path["locationId"], call.body["tagIds"])
    return _ok(201, "Fetched Tags by Tag IDs", {"tags": tags, "count": len(tags)})


async def list_categories(call: Call) -> Json:
    world: World = call.host.world
    skip, limit = _page(call)
    rows, count = world.list_categories(call.path["locationId"],
                                        call.query.get("searchText"), skip, limit)
    return _ok(200, "Fetched Categories by Location ID", {"count": count, "categories": rows})


async def get_category(call: Call) -> Json:
    world: World = call.host.world
    location, wanted = call.path["locationId"], call.path["id"]
    found = next((c for c in world.categories
                  if c["_id"] == wanted and c["locationId"] == location), None)
    if found is None:
        raise ApiProblem(400, f"Category {wanted} not found")
    return _ok(200, "Fetched Category", {"category": dict(found)})


async def list_accounts(call: Call) -> Json:
    world: World = call.host.world
    accounts, groups = world.location_accounts(call.path["locationId"])
    return _ok(200, "Fetched Accounts", {"accounts": accounts, "groups": groups})


async def delete_account(call: Call) -> Json:
    world: World = call.host.world
    location, wanted = call.path["locationId"], call.path["id"]
    if call.query.get("companyId"):
        call.caller.require_company(call.query["companyId"])
    account = next((a for a in world.accounts if a["id"] == wanted
                    and a["_locationId"] == location and not a.get("_deleted")), None)
    if account is None:
        raise ApiProblem(400, f"Account {wanted} not found")
    account["_deleted"] = iso(call.host.now_dt())
    for group in world.groups:
        if wanted in group["accountIds"]:
            group["accountIds"] = [i for i in group["accountIds"] if i != wanted]
    call.host.save()
    return _ok(200, "Account deleted", {"locationId": location, "id": wanted})


async def statistics(call: Call) -> Json:
    world: World = call.host.world
    location = call.query["locationId"]
    call.caller.require_location(location)
    ask = stats.statistics_request(call.body, call.host.now_dt().date())
    wanted = None if ask.profile_ids is None else set(ask.profile_ids)
    accounts = [a for a in world.accounts
                if a["_locationId"] == location and not a.get("_deleted")
                and (wanted is None or a["profileId"] in wanted)
                and (ask.platforms is None or a["platform"] in ask.platforms)]
    return stats.statistics(world.seed, accounts, ask.current, ask.previous,
                            call.host.next_trace_id())

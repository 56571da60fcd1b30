"""The seven Users operations of the HighLevel sandbox (``apps/users.json``, ``users-v3.json``).

Contract: every handler receives a :class:`~.sandbox_http.Call` whose query and body already
passed the spec's schema for the request's version, and returns the response body (the
status comes from the route). What a handler still refuses is what the schemas cannot say:

* a user the token cannot see, or that does not exist: 400 ``User not found``;
* an e-mail address another live user has: 400; changing a user's e-mail: 400 (the spec:
  "Email update is no longer supported");
* another company or a location outside the token's: 401 (no 403, see sandbox_http);
* an Agency token updating a user without ``companyId`` ("Required for Agency Level access");
* with ``Version: v3`` only, a password that breaks the v3 spec's policy (422).

Free-text fields stay free: ``type``, ``role``, ``sort`` and ``sortDirection`` take any text
(an unknown sort key sorts by name, anything but ``desc`` is ascending), and ``skip``/``limit``
that are not whole numbers mean their defaults.
"""

from __future__ import annotations

from typing import Any

from .sandbox_data import PASSWORD_RULE, PERMISSIONS, USER_FIELDS, World, strong_password, user_view
from .sandbox_http import COMPANY, ApiProblem, Call, page_limit, unprocessable, whole_number

Json = dict[str, Any]


def _visible_user(call: Call, user_id: str) -> Json:
    user = call.host.world.find_user(user_id)
    caller = call.caller
    if user is None or user["_companyId"] != caller.company_id or (
            caller.location_id and caller.location_id not in user["roles"]["locationIds"]):
        raise ApiProblem(400, "User not found")
    return user  # type: ignore[no-any-return]


def _check_password(call: Call, body: Json) -> None:
    password = body.get("password")
    if call.v3 and isinstance(password, str) and not strong_password(password):
        raise unprocessable(PASSWORD_RULE)


def _clean(body: Json) -> Json:
    """The body as the model stores it: known permissions only, cleared phone numbers gone."""
    out = dict(body)
    if "permissions" in out:
        out["permissions"] = {k: v for k, v in out["permissions"].items() if k in PERMISSIONS}
    if "twilioPhone" in out:
        out["twilioPhone"] = {k: v for k, v in out["twilioPhone"].items() if v}
    return out


async def list_users(call: Call) -> Json:
    """``GET /users/`` (deprecated, Sub-Account tokens): the location's users."""
    location = call.query["locationId"]
    call.caller.require_location(location)
    world: World = call.host.world
    users = world.search_users(company_id=call.caller.company_id, query=None,
                               location_id=location, utype=None, role=None, ids=None,
                               sort=None, descending=False)
    return {"users": [user_view(u, with_deleted=True) for u in users]}


async def search_users(call: Call) -> Json:
    q, caller = call.query, call.caller
    company = q["companyId"]
    caller.require_company(company)
    location = q.get("locationId") or caller.location_id
    if location:
        caller.require_location(location)
    ids = [i.strip() for i in q["ids"].split(",") if i.strip()] if "ids" in q else None
    world: World = call.host.world
    users = world.search_users(
        company_id=company, query=q.get("query"), location_id=location,
        utype=q.get("type") or None, role=q.get("role") or None, ids=ids,
        sort=q.get("sort") or None, descending=q.get("sortDirection", "").lower() == "desc")
    skip, limit = whole_number(q.get("skip"), 0), page_limit(q.get("limit"), 25)
    return {"users": [user_view(u, with_deleted=True) for u in users[skip: skip + limit]],
            "count": len(users)}


async def filter_by_email(call: Call) -> Json:
    body = call.body
    call.caller.require_company(body["companyId"])
    world: World = call.host.world
    emails = {e.strip().casefold() for e in body["emails"].split(",") if e.strip()}
    wanted_deleted = body.get("deleted", False)
    users = [u for u in world.users if u["_companyId"] == body["companyId"]
             and u["email"].casefold() in emails and u["deleted"] == wanted_deleted]
    projection = body.get("projection") or "id,email"
    fields = (list(USER_FIELDS) if projection.strip() == "all"
              else [f.strip() for f in projection.split(",") if f.strip() in USER_FIELDS])
    skip = whole_number(body.get("skip"), 0)
    limit = page_limit(body.get("limit"), 25)
    views = [user_view(u, with_deleted=True) for u in users[skip: skip + limit]]
    return {"users": [{f: v[f] for f in fields} for v in views], "count": len(users)}


async def get_user(call: Call) -> Json:
    return user_view(_visible_user(call, call.path["userId"]), with_deleted=False)


async def create_user(call: Call) -> Json:
    body, caller = call.body, call.caller
    _check_password(call, body)
    caller.require_company(body["companyId"])
    for location in body["locationIds"]:
        caller.require_location(location)
    world: World = call.host.world
    if world.email_taken(body["email"]):
        raise ApiProblem(400, "A user with this email already exists")
    user = world.create_user(_clean(body), call.host.now_dt())
    call.host.save()
    call.host.webhooks.user_created(user)  # UserCreate to the app's webhook URL, signed
    return user_view(user, with_deleted=False)


async def update_user(call: Call) -> Json:
    user = _visible_user(call, call.path["userId"])
    body, caller = call.body, call.caller
    _check_password(call, body)
    if caller.user_type == COMPANY and not body.get("companyId"):
        raise unprocessable("companyId should not be empty")
    if "companyId" in body:
        caller.require_company(body["companyId"])
    if "email" in body and body["email"].casefold() != user["email"].casefold():
        raise ApiProblem(400, "Email update is no longer supported due to security reasons")
    for location in body.get("locationIds", []):
        caller.require_location(location)
    World.update_user(user, _clean(body))
    call.host.save()
    return user_view(user, with_deleted=False)


async def delete_user(call: Call) -> Json:
    user = _visible_user(call, call.path["userId"])
    user["deleted"] = True
    call.host.save()
    flag = "succeeded" if call.v3 else "succeded"  # sic: the date-versioned spelling
    return {flag: True,
            "message": f"Queued deleting user with e-mail {user['email']} and name "
                       f"{user['name']}. Will take effect in a few minutes."}

"""Connecting social networks in the HighLevel sandbox: start, list what a login offers, attach.

Contract, per platform (``google``, ``facebook``, ``instagram``, ``linkedin``, ``twitter``,
``tiktok``, ``tiktok-business``):

* ``GET /social-media-posting/oauth/{platform}/start?locationId=&userId=`` plays the whole
  network login at once and answers 200 ``text/html``: the page HighLevel's popup ends on,
  which posts ``{actionType: "close", page: "social_media_posting", platform, placement,
  accountId, reconnectAccounts}`` to ``window.opener`` (the spec's description). The same
  object is in ``<script type="application/json" id="social-media-posting-event">`` so a
  program can read it. ``accountId`` names the login (an "OAuth account"): one per location,
  platform and user, reused on every start; ``reconnect=true`` lists the location's accounts
  that came from it in ``reconnectAccounts``.
* ``GET .../oauth/{locationId}/{platform}/accounts/{accountId}`` (Google:
  ``.../google/locations/{accountId}``) lists what that login can publish to: Facebook pages,
  Instagram and LinkedIn accounts, the Google Business location, Twitter and TikTok profiles,
  each with ``isConnected``. The offers are a pure function of seed and login id.
* ``POST`` on the same path attaches one offer (``originId``, Instagram also ``pageId``;
  none given: the first) as a connected account, which then appears in
  ``GET .../accounts`` and can be posted to; 201 with the spec's ``SocialMedia*Account``.

Unknown logins and offers are 400. The seeded accounts come from seeded logins
(:func:`seed_grants`), so their ``oauthId`` works as ``accountId`` right away.
"""

from __future__ import annotations

import hashlib
import html
import json
from datetime import timedelta
from typing import Any

from starlette.responses import HTMLResponse, Response

from .sandbox_data import LOCATIONS, World, iso
from .sandbox_http import ApiProblem, Call

Json = dict[str, Any]
PLATFORMS = ("google", "facebook", "instagram", "linkedin", "twitter", "tiktok",
             "tiktok-business")
_LIST_KEY = {"facebook": "pages", "instagram": "accounts", "linkedin": "pages",
             "twitter": "profile", "tiktok": "profile", "tiktok-business": "profile"}
_ACCOUNT_TYPE = {"google": "location", "facebook": "page", "instagram": "business",
                 "linkedin": "page", "twitter": "profile", "tiktok": "profile",
                 "tiktok-business": "business"}


def _number(*parts: object, length: int = 15) -> str:
    raw = hashlib.sha256("|".join(map(str, parts)).encode()).hexdigest()
    return str(int(raw, 16))[:length]


def _handle(name: str) -> str:
    return "".join(c for c in name.lower() if c.isalnum())[:15]


def offers(world: World, grant: Json) -> list[Json]:
    """What login ``grant`` can publish to (before ``isConnected`` is worked out)."""
    base = LOCATIONS.get(grant["locationId"], "Sub-account")
    platform, seed, gid = grant["platform"], world.seed, grant["id"]
    avatar = f"https://avatars.example-cdn.test/{platform}/{gid}.png"
    if platform == "google":
        return [{"id": f"locations/{_number(seed, gid, 'loc')}", "name": f"{base} - Austin",
                 "avatar": avatar}]
    names = {"facebook": [base, f"{base} Careers", f"{base} Deals"],
             "instagram": [f"@{_handle(base)}", f"@{_handle(base)}.deals"],
             "linkedin": [f"{base} LLC", f"{base} Team"],
             "twitter": [f"{base}"], "tiktok": [f"@{_handle(base)}.diy"],
             "tiktok-business": [f"{base} Business"]}[platform]
    rows = []
    for i, name in enumerate(names):
        row: Json = {"id": _number(seed, gid, i), "name": name, "avatar": avatar}
        if platform == "instagram":
            row["pageId"] = _number(seed, gid, "page", i)
        if platform == "linkedin":
            row["urn"] = f"urn:li:organization:{_number(seed, gid, i, length=8)}"
        if platform in ("twitter", "tiktok", "tiktok-business"):
            row.update({"username": _handle(name), "verified": i == 0})
        if platform == "twitter":
            row["protected"] = False
        if platform.startswith("tiktok"):
            row["type"] = "business" if platform == "tiktok-business" else "profile"
        if platform == "facebook":
            row["isOwned"] = True
        rows.append(row)
    return rows


def _connected(world: World, grant: Json) -> set[str]:
    return {a.get("_originId", "") for a in world.accounts
            if a["oauthId"] == grant["id"] and not a.get("_deleted")}


def seed_grants(world: World) -> None:
    """A login behind every seeded account, and the account marked as its first offer."""
    for account in world.accounts:
        grant = {"id": account["oauthId"], "platform": account["platform"],
                 "locationId": account["_locationId"], "userId": world.users[2]["id"],
                 "createdAt": account["expire"]}
        world.oauth_grants.append(grant)
        account["_originId"] = offers(world, grant)[0]["id"]


def _grant(world: World, location: str, platform: str, grant_id: str) -> Json:
    for grant in world.oauth_grants:
        if grant["id"] == grant_id and grant["platform"] == platform \
                and grant["locationId"] == location:
            return grant
    raise ApiProblem(400, f"No {platform} OAuth account {grant_id} for this location")


# -- handlers ----------------------------------------------------------------------------------

def start(platform: str) -> Any:
    async def start_oauth(call: Call) -> Response:
        world: World = call.host.world
        location, user = call.query["locationId"], call.query["userId"]
        call.caller.require_location(location)
        grant = next((g for g in world.oauth_grants if g["platform"] == platform
                      and g["locationId"] == location and g["userId"] == user), None)
        if grant is None:
            grant = {"id": world.new_hex_id(), "platform": platform, "locationId": location,
                     "userId": user, "createdAt": iso(call.host.now_dt())}
            world.oauth_grants.append(grant)
            call.host.save()
        reconnect = call.query.get("reconnect", "").lower() == "true"
        event = {"actionType": "close", "page": "social_media_posting", "platform": platform,
                 "placement": call.query.get("page") or "placement", "accountId": grant["id"],
                 "reconnectAccounts": [a["id"] for a in world.accounts
                                       if reconnect and a["oauthId"] == grant["id"]
                                       and not a.get("_deleted")]}
        data = json.dumps(event).replace("<", "\\u003c")
        page = (f"<!doctype html><html><head><meta charset='utf-8'><title>"
                f"{html.escape(platform.title())} connected</title></head><body>"
                f"<p>{html.escape(platform.title())} account connected. You can close this "
                f"window.</p><script type='application/json' id='social-media-posting-event'>"
                f"{data}</script><script>if (window.opener) {{ window.opener.postMessage("
                f"{data}, '*'); window.close(); }}</script></body></html>")
        return HTMLResponse(page)
    start_oauth.__name__ = f"start_{platform.replace('-', '_')}_oauth"
    return start_oauth


def listing(platform: str) -> Any:
    async def list_oauth_accounts(call: Call) -> Json:
        world: World = call.host.world
        grant = _grant(world, call.path["locationId"], platform, call.path["accountId"])
        connected = _connected(world, grant)
        rows = [{**row, "isConnected": row["id"] in connected} for row in offers(world, grant)]
        search = call.query.get("search", "").casefold() if call.v3 else ""
        rows = [r for r in rows if search in r["name"].casefold()]
        if platform == "google":
            row = rows[0] if rows else offers(world, grant)[0]
            results: Json = {"locations": {
                "location": {"name": row["id"], "storeCode": f"NHS-{row['id'][-4:]}",
                             "maxLocation": False, "isVerified": True,
                             "isConnected": row["id"] in connected,
                             "storefrontAddress": {"regionCode": "US", "locality": "Austin",
                                                   "addressLines": ["1200 Congress Ave"]}},
                "account": {"name": f"accounts/{_number(world.seed, grant['id'], 'acct')}",
                            "accountName": row["name"], "type": "PERSONAL",
                            "verificationState": "VERIFIED", "vettedState": "NOT_VETTED"}}}
        elif platform == "linkedin":
            results = {"pages": rows[:-1], "profile": rows[-1:]}
        else:
            results = {_LIST_KEY[platform]: rows}
        return {"success": True, "statusCode": 200,
                "message": f"Fetched {platform} accounts", "results": results}
    list_oauth_accounts.__name__ = f"list_{platform.replace('-', '_')}_accounts"
    return list_oauth_accounts


def attach(platform: str) -> Any:
    async def attach_oauth_account(call: Call) -> Json:
        world: World = call.host.world
        location, body = call.path["locationId"], call.body or {}
        grant = _grant(world, location, platform, call.path["accountId"])
        if body.get("companyId"):
            call.caller.require_company(body["companyId"])
        choices = offers(world, grant)
        wanted = body.get("originId")
        if platform == "google" and not wanted:
            wanted = (body.get("location") or {}).get("name")
        if platform == "instagram" and not wanted:
            wanted = next((o["id"] for o in choices if o["pageId"] == body["pageId"]), None)
        chosen = choices[0] if not wanted else next(
            (o for o in choices if o["id"] == wanted), None)
        if chosen is None:
            raise ApiProblem(400, f"{wanted} is not offered by {platform} account {grant['id']}")
        now = iso(call.host.now_dt())
        kind = body.get("type") if isinstance(body.get("type"), str) else None
        account_id = f"{grant['id']}_{location}_{chosen['id']}"
        account = next((a for a in world.accounts if a["id"] == account_id), None)
        if account is None:
            account = {"id": account_id, "oauthId": grant["id"],
                       "profileId": world.new_hex_id(), "_locationId": location,
                       "_originId": chosen["id"], "_createdAt": now}
            world.accounts.append(account)
            groups = [g for g in world.groups if g["_locationId"] == location]
            if groups:
                groups[0]["accountIds"].append(account_id)
        account.pop("_deleted", None)
        account.update({"name": body.get("name") or chosen["name"], "platform": platform,
                        "type": kind or _ACCOUNT_TYPE[platform], "isExpired": False,
                        "expire": iso(call.host.now_dt() + timedelta(days=365)),
                        "meta": {"canDelete": True, "pageId": chosen.get("pageId", ""),
                                 "username": chosen.get("username", "")}})
        call.host.save()
        return {"success": True, "statusCode": 201, "message": "Account attached",
                "results": {"_id": account["profileId"], "oAuthId": grant["id"],
                            "locationId": location, "originId": chosen["id"],
                            "platform": platform, "type": account["type"],
                            "name": account["name"],
                            "avatar": body.get("avatar") or chosen["avatar"],
                            "meta": account["meta"], "active": True, "deleted": False,
                            "createdAt": account.get("_createdAt", now), "updatedAt": now}}
    attach_oauth_account.__name__ = f"attach_{platform.replace('-', '_')}_account"
    return attach_oauth_account

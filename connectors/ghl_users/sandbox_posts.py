"""Social Planner posts in the HighLevel sandbox: the model, the seed and six operations.

Contract:

* A post is stored as a dict with the fields of the spec's ``GetPostFormattedSchema`` (plus
  ``categoryId``, ``followUpComment`` and ``scheduleDate``, which the create body carries);
  :func:`post_view` is what the API returns (``user`` added when ``includeUsers`` is
  ``"true"``, with every field ``PostUserSchema`` requires).
* Create (201), list (``POST .../posts/list``, 201, newest first, ``skip``/``limit``,
  filters ``type``, ``accounts``, ``postType`` and the ``fromDate``..``toDate`` window on
  ``displayDate``), get (200), edit (``PUT``, 200, fields given replace stored ones), delete
  (200, the post's status becomes ``deleted``) and bulk delete (201 with ``deletedCount``;
  404, which the spec declares there, when none of the ids is a live post).
* Refused with 400 (the status the spec declares): an unknown or deleted post, account ids
  that are not the location's connected accounts, an unknown ``categoryId``, dates that are
  not ISO 8601. Everything else the spec types as free text (``type``, ``status`` in the
  date-versioned spec) is stored as given; the v3 schemas' enums are checked before a
  handler runs.
* A post without ``status`` is ``scheduled`` when its ``scheduleDate`` is in the future and
  ``published`` otherwise (with ``publishedAt`` and the network's ``postId``).
"""

from __future__ import annotations

import copy
import random
from datetime import datetime, timedelta
from typing import Any

from .sandbox_data import BASE_TIME, LOCATION_ID, World, iso
from .sandbox_http import ApiProblem, Call, page_limit, parse_moment, whole_number

Json = dict[str, Any]

POST_FIELDS = ("_id", "source", "locationId", "platform", "displayDate", "createdAt",
               "updatedAt", "accountId", "error", "postId", "publishedAt", "accountIds",
               "summary", "media", "status", "createdBy", "type", "tags", "ogTagsDetails",
               "postApprovalDetails", "tiktokPostDetails", "gmbPostDetails", "categoryId",
               "followUpComment", "scheduleDate")
# body fields of CreatePostDTO / PostCreateRequest that are stored as sent
_COPIED = ("summary", "media", "followUpComment", "ogTagsDetails", "postApprovalDetails",
           "tags", "categoryId", "tiktokPostDetails", "gmbPostDetails", "type")
_FILTER_STATUSES = {"scheduled", "draft", "failed", "in_review", "published", "in_progress",
                    "deleted"}

_SEED_POSTS = [
    # days from BASE_TIME, status, type, summary, platforms (first letters of _SEED_ACCOUNTS)
    (-40, "published", "post", "Spring tune-up special: 15% off AC service this month.", "fil"),
    (-33, "published", "post", "Meet Jordan, our newest plumbing technician!", "fi"),
    (-26, "published", "reel", "60 seconds: how to reset a tripped breaker safely.", "it"),
    (-19, "published", "post", "Thank you Austin for voting us Best Home Services 2026!", "fgl"),
    (-12, "failed", "post", "Free estimates all week - book online.", "l"),
    (-9, "published", "story", "Behind the scenes at the warehouse.", "i"),
    (-5, "published", "post", "Tip Tuesday: clean your gutters before the storms.", "fg"),
    (-2, "in_review", "post", "Memorial Day hours and emergency line.", "fi"),
    (1, "scheduled", "post", "Summer maintenance plans are here.", "fil"),
    (4, "scheduled", "reel", "Before and after: full kitchen remodel.", "it"),
    (8, "scheduled", "post", "Customer spotlight: the Garcia family patio.", "fg"),
    (0, "draft", "post", "DRAFT: fall promo ideas", ""),
]


def post_view(world: World, post: Json, *, with_user: bool = False) -> Json:
    view = {k: copy.deepcopy(post[k]) for k in POST_FIELDS if k in post}
    if with_user:
        view["user"] = _user_card(world, post.get("createdBy", ""))
    return view


def _user_card(world: World, user_id: str) -> Json:
    user = next((u for u in world.users if u["id"] == user_id), None)
    if user is None:
        return {"id": user_id, "title": "", "firstName": "", "lastName": "",
                "profilePhoto": "", "phone": "", "email": ""}
    return {"id": user["id"], "title": "", "firstName": user["firstName"],
            "lastName": user["lastName"], "profilePhoto": "", "phone": user["phone"],
            "email": user["email"]}


def _network_post_id(world: World, post_id: str) -> str:
    digits = "".join(str(int(c, 16) % 10) for c in post_id)
    return (digits * 2)[:17]


def make_post(world: World, *, location_id: str, accounts: list[Json], body: Json,
              author: str, now: datetime, source: str = "composer") -> Json:
    """A new post (not yet stored) from a checked create body."""
    post_id = world.new_hex_id()
    schedule = _moment(body.get("scheduleDate"), "scheduleDate")
    status = body.get("status")
    if status is None:
        status = "scheduled" if schedule is not None and schedule > now else "published"
    display = schedule or now
    post: Json = {"_id": post_id, "source": source, "locationId": location_id,
                  "displayDate": iso(display), "createdAt": iso(now), "updatedAt": iso(now),
                  "error": "", "accountIds": [a["id"] for a in accounts], "status": status,
                  "createdBy": author, "tags": [], "media": [], "summary": "",
                  "type": "post"}
    if accounts:
        post["platform"], post["accountId"] = accounts[0]["platform"], accounts[0]["id"]
    if "scheduleDate" in body:
        post["scheduleDate"] = body["scheduleDate"]
    for key in _COPIED:
        if key in body:
            post[key] = copy.deepcopy(body[key])
    if status == "published":
        post["publishedAt"] = iso(now)
        post["postId"] = _network_post_id(world, post_id)
    if status == "failed":
        post["error"] = "The access token of the social account has expired"
    return post


def seed_posts(world: World) -> None:
    """The location's posts: published ones in the past weeks, scheduled ones ahead."""
    rng = random.Random(world.seed * 31 + 7)
    accounts = [a for a in world.accounts if a["_locationId"] == LOCATION_ID]
    by_letter = {a["platform"][0]: a for a in accounts}
    authors = [u["id"] for u in world.users if LOCATION_ID in u["roles"]["locationIds"]]
    categories = [c["_id"] for c in world.categories]
    tags = [t["_id"] for t in world.tags[:40]]
    for days, status, kind, summary, letters in _SEED_POSTS:
        moment = BASE_TIME + timedelta(days=days, hours=rng.randint(-3, 6))
        created = BASE_TIME + timedelta(days=min(days, 0) - rng.randint(1, 5))
        body: Json = {"summary": summary, "type": kind, "status": status,
                      "tags": rng.sample(tags, 2), "categoryId": rng.choice(categories)}
        if status != "draft":
            body["scheduleDate"] = iso(moment)
        if kind in ("reel", "story"):
            body["media"] = [{"url": f"https://storage.example-cdn.test/northside/{days}.mp4",
                              "type": "video/mp4", "caption": summary[:30]}]
        post = make_post(world, location_id=LOCATION_ID,
                         accounts=[by_letter[c] for c in letters], body=body,
                         author=rng.choice(authors), now=created)
        post["displayDate"] = iso(moment)
        if status == "published":
            post["publishedAt"] = iso(moment)
        world.posts.append(post)


# -- helpers -----------------------------------------------------------------------------------

def _moment(value: Any, name: str) -> datetime | None:
    if value is None:
        return None
    moment = parse_moment(value)
    if moment is None:
        raise ApiProblem(400, f"{name} must be a valid ISO 8601 date string")
    return moment


def _accounts(world: World, location_id: str, ids: list[str]) -> list[Json]:
    live = {a["id"]: a for a in world.accounts
            if a["_locationId"] == location_id and not a.get("_deleted")}
    unknown = [i for i in ids if i not in live]
    if unknown:
        raise ApiProblem(400, f"Invalid account ids: {', '.join(unknown[:5])}")
    return [live[i] for i in dict.fromkeys(ids)]


def _check_category(world: World, location_id: str, category_id: Any) -> None:
    if category_id and not any(c["_id"] == category_id and c["locationId"] == location_id
                               and not c["deleted"] for c in world.categories):
        raise ApiProblem(400, f"Category {category_id} not found")


def _find(world: World, location_id: str, post_id: str, *, live: bool = False) -> Json:
    for post in world.posts:
        if post["_id"] == post_id and post["locationId"] == location_id:
            if live and post["status"] == "deleted":
                break
            return post
    raise ApiProblem(400, "Post not found")


def _ok(status: int, message: str, results: Any = None) -> Json:
    body: Json = {"success": True, "statusCode": status, "message": message}
    if results is not None:
        body["results"] = results
    return body


# -- handlers ----------------------------------------------------------------------------------

async def list_posts(call: Call) -> Json:
    world: World = call.host.world
    body, location = call.body, call.path["locationId"]
    start = _moment(body["fromDate"], "fromDate")
    end = _moment(body["toDate"], "toDate")
    kind = str(body.get("type") or "all").strip().lower()
    accounts = {a.strip() for a in str(body.get("accounts") or "").split(",") if a.strip()}
    post_type = body.get("postType")
    found = []
    for post in world.posts:
        if post["locationId"] != location:
            continue
        if kind == "deleted" or post["status"] == "deleted":
            if not (kind == "deleted" and post["status"] == "deleted"):
                continue
        elif kind in _FILTER_STATUSES and post["status"] != kind:
            continue
        elif kind == "recent" and post["status"] != "published":
            continue
        if accounts and not accounts & set(post["accountIds"]):
            continue
        if isinstance(post_type, str) and post_type and post["type"] != post_type:
            continue
        shown = parse_moment(post["displayDate"])
        if shown is not None and (start and shown < start or end and shown > end):
            continue
        found.append(post)
    found.sort(key=lambda p: (p["displayDate"], p["_id"]), reverse=True)
    skip, limit = whole_number(body["skip"], 0), page_limit(body["limit"], 10)
    with_user = str(body["includeUsers"]).strip().lower() == "true"
    posts = [post_view(world, p, with_user=with_user) for p in found[skip: skip + limit]]
    return _ok(201, "Posts fetched", {"posts": posts, "count": len(found)})


async def create_post(call: Call) -> Json:
    world: World = call.host.world
    body, location = call.body, call.path["locationId"]
    accounts = _accounts(world, location, body["accountIds"])
    _check_category(world, location, body.get("categoryId"))
    post = make_post(world, location_id=location, accounts=accounts, body=body,
                     author=body.get("userId") or body.get("createdBy") or call.caller.user_id,
                     now=call.host.now_dt())
    world.posts.append(post)
    call.host.save()
    return _ok(201, "Created Post", {"post": post_view(world, post)})


async def get_post(call: Call) -> Json:
    world: World = call.host.world
    post = _find(world, call.path["locationId"], call.path["id"])
    return _ok(200, "Fetched Post", {"post": post_view(world, post)})


async def update_post(call: Call) -> Json:
    world: World = call.host.world
    body, location = call.body, call.path["locationId"]
    post = _find(world, location, call.path["id"], live=True)
    now = call.host.now_dt()
    changes: Json = {}
    if "accountIds" in body:
        accounts = _accounts(world, location, body["accountIds"])
        changes["accountIds"] = [a["id"] for a in accounts]
        if accounts:
            changes["platform"], changes["accountId"] = accounts[0]["platform"], accounts[0]["id"]
    _check_category(world, location, body.get("categoryId"))
    schedule = _moment(body.get("scheduleDate"), "scheduleDate")
    if schedule is not None:
        changes["scheduleDate"] = body["scheduleDate"]
        changes["displayDate"] = iso(schedule)
    for key in _COPIED:
        if key in body:
            changes[key] = copy.deepcopy(body[key])
    if body.get("status") is not None:
        changes["status"] = body["status"]
    elif schedule is not None and post["status"] in ("scheduled", "draft", "failed"):
        changes["status"] = "scheduled" if schedule > now else post["status"]
    post.update(changes)
    post["updatedAt"] = iso(now)
    call.host.save()
    return _ok(200, "Post updated")


async def delete_post(call: Call) -> Json:
    world: World = call.host.world
    post = _find(world, call.path["locationId"], call.path["id"], live=True)
    post["status"] = "deleted"
    post["updatedAt"] = iso(call.host.now_dt())
    call.host.save()
    return _ok(200, "Post deleted", {"postId": post["_id"]})


async def bulk_delete_posts(call: Call) -> Json:
    world: World = call.host.world
    location = call.path["locationId"]
    wanted = set((call.body or {}).get("postIds") or [])
    found = [p for p in world.posts if p["_id"] in wanted and p["locationId"] == location
             and p["status"] != "deleted"]
    if wanted and not found:
        raise ApiProblem(404, "Posts not found")
    now = iso(call.host.now_dt())
    for post in found:
        post["status"], post["updatedAt"] = "deleted", now
    call.host.save()
    return _ok(201, "Posts Deleted Successfully",
               {"message": "Posts deleted successfully", "deletedCount": len(found)})

"""The HighLevel sandbox's model: seed data, queries, rate limits and statistics.

Everything here is plain data and plain functions (no HTTP). Records are dicts shaped like the
official Users and Social Planner schemas, plus a few private keys that start with ``_``
(``_companyId``, ``_dateAdded``, ``_scopes``) that never leave the sandbox. Ids come from a
counter hashed with the seed, so the same seed always yields the same world, and the world
survives a restart through :meth:`World.to_json` / :meth:`World.from_json`.
"""

from __future__ import annotations

import collections
import copy
import hashlib
import math
import random
import uuid
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

BASE_TIME = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)
COMPANY_ID = "5DP4iH6HLkQsiKESj6rh"
LOCATION_ID = "ve9EPM428h8vShlRW1KT"
SECOND_LOCATION_ID = "Q8oWmC2hT5zLx4NcR7vK"
LOCATIONS = {LOCATION_ID: "Northside Home Services", SECOND_LOCATION_ID: "Lakeshore Dental"}
COMPANY_NAME = "BrightPath Marketing"

PLATFORMS = ("facebook", "instagram", "linkedin", "google", "pinterest", "youtube", "tiktok")
USER_TYPES = ("account", "agency")
USER_ROLES = ("admin", "user")
LANGUAGES = ("en_US", "es", "fr_CA", "fr_FR", "nl", "de", "pt_PT", "pt_BR", "it", "sv", "da",
             "fi", "no")
PERMISSIONS = (
    "campaignsEnabled", "campaignsReadOnly", "contactsEnabled", "workflowsEnabled",
    "workflowsReadOnly", "triggersEnabled", "funnelsEnabled", "websitesEnabled",
    "opportunitiesEnabled", "dashboardStatsEnabled", "bulkRequestsEnabled", "appointmentsEnabled",
    "reviewsEnabled", "onlineListingsEnabled", "phoneCallEnabled", "conversationsEnabled",
    "assignedDataOnly", "adwordsReportingEnabled", "membershipEnabled",
    "facebookAdsReportingEnabled", "attributionsReportingEnabled", "settingsEnabled",
    "tagsEnabled", "leadValueEnabled", "marketingEnabled", "agentReportingEnabled", "botService",
    "socialPlanner", "bloggingEnabled", "invoiceEnabled", "affiliateManagerEnabled",
    "contentAiEnabled", "refundsEnabled", "recordPaymentEnabled", "cancelSubscriptionEnabled",
    "paymentsEnabled", "communitiesEnabled", "exportPaymentsEnabled",
)
_ADMIN_OFF = {"campaignsReadOnly", "workflowsReadOnly", "assignedDataOnly"}
_USER_ON = {"contactsEnabled", "conversationsEnabled", "appointmentsEnabled",
            "opportunitiesEnabled", "dashboardStatsEnabled", "phoneCallEnabled", "socialPlanner",
            "tagsEnabled", "reviewsEnabled", "invoiceEnabled"}
USER_FIELDS = ("id", "name", "firstName", "lastName", "email", "phone", "extension",
               "permissions", "roles", "deleted", "lcPhone", "platformLanguage")

_ALNUM = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Tags a HighLevel social planner account plausibly holds. The first four equal client names
# in the Invoice2go sandbox, so recipes can join the two worlds.
_CLIENT_TAGS = ["Daily Planet", "Wayne Enterprises", "Stark Industries", "Acme Corp",
                "wayne-enterprises", "vip-client", "Globex", "Initech", "Umbrella Corp", "Hooli",
                "Pied Piper", "Cyberdyne Systems", "Wonka Industries", "Oscorp", "LexCorp",
                "Dunder Mifflin", "Vandelay Industries", "Bluth Company", "Sterling Cooper",
                "Soylent Corp", "Tyrell Corp", "Massive Dynamic", "Gringotts", "Monarch Solutions"]
_SERVICES = ["plumbing", "lawn-care", "hvac", "roofing", "electrical", "landscaping",
             "pest-control", "pool-service", "house-cleaning", "carpet-cleaning",
             "window-washing", "painting", "remodeling", "handyman", "gutter-cleaning",
             "snow-removal", "tree-service", "pressure-washing", "flooring", "garage-doors",
             "dental", "teeth-whitening", "med-spa", "chiropractic"]
_CAMPAIGN_TAGS = ["promo", "giveaway", "holiday-sale", "black-friday", "summer-special",
                  "spring-cleaning", "new-listing", "testimonial", "before-after",
                  "behind-the-scenes", "tip-tuesday", "throwback-thursday", "motivation-monday",
                  "customer-spotlight", "team-spotlight", "event", "webinar", "launch",
                  "announcement", "blog", "video", "reel", "story", "carousel", "evergreen",
                  "seasonal", "q1-campaign", "q2-campaign", "q3-campaign", "q4-campaign",
                  "referral", "review-request", "faq", "how-to", "emergency-service",
                  "financing", "warranty", "free-estimate", "new-client", "repeat-client",
                  "lead-magnet", "community", "charity", "hiring", "awards"]
_CITIES = ["austin", "dallas", "denver", "phoenix", "seattle", "portland", "miami", "atlanta",
           "chicago", "boston", "nashville", "san-diego", "tampa", "charlotte", "raleigh",
           "columbus"]
SEED_TAG_COUNT = 250

_SEED_USERS = [
    # first, last, type, role, locations, language
    ("Maria", "Alvarez", "agency", "admin", [LOCATION_ID, SECOND_LOCATION_ID], "en_US"),
    ("Kenji", "Tanaka", "agency", "user", [LOCATION_ID, SECOND_LOCATION_ID], "en_US"),
    ("Priya", "Patel", "account", "admin", [LOCATION_ID], "en_US"),
    ("Jordan", "Reyes", "account", "user", [LOCATION_ID], "es"),
    ("Samantha", "O'Connor", "account", "user", [LOCATION_ID], "en_US"),
    ("Aisha", "Bello", "account", "user", [LOCATION_ID], "fr_FR"),
    ("Lucas", "Moreau", "account", "admin", [LOCATION_ID, SECOND_LOCATION_ID], "fr_CA"),
    ("Emma", "Schultz", "account", "user", [SECOND_LOCATION_ID], "de"),
]
INSTALLER_INDEX = 2  # Priya Patel installs the app on the sub-account
AGENCY_INSTALLER_INDEX = 0

_SEED_CATEGORIES = [("Promotions", "#E11D48", "#FFE4E6"), ("Tips & How-to", "#2563EB", "#DBEAFE"),
                    ("Announcements", "#7C3AED", "#EDE9FE"), ("Testimonials", "#059669",
                                                               "#D1FAE5"),
                    ("Events", "#D97706", "#FEF3C7"), ("Holidays", "#DC2626", "#FEE2E2")]
_SEED_ACCOUNTS = [
    ("facebook", "page", "Northside Home Services"),
    ("instagram", "business", "@northsidehome"),
    ("linkedin", "page", "Northside Home Services LLC"),
    ("google", "location", "Northside Home Services - Austin"),
    ("tiktok", "business", "@northside.diy"),
]


def iso(moment: datetime) -> str:
    """``2026-05-01T10:00:00.000Z``: the timestamp format HighLevel uses."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + \
        f"{moment.microsecond // 1000:03d}Z"


def from_unix(ts: float) -> datetime:
    return datetime.fromtimestamp(ts, tz=UTC)


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()


class ApiProblem(Exception):
    """A request the API refuses: ``status`` and a message (a list for 422)."""

    def __init__(self, status: int, message: str | list[str]) -> None:
        super().__init__(str(message))
        self.status = status
        self.message = message


def unprocessable(*messages: str) -> ApiProblem:
    return ApiProblem(422, list(messages))


@dataclass
class World:
    """Users, social tags, categories and accounts of one HighLevel agency."""

    seed: int
    counter: int = 0
    users: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)

    # -- ids, persistence --------------------------------------------------------------------

    def new_id(self) -> str:
        """A 20-character alphanumeric id, like HighLevel's, derived from seed and counter."""
        self.counter += 1
        raw = _digest("id", self.seed, self.counter)
        return "".join(_ALNUM[b % len(_ALNUM)] for b in raw[:20])

    def new_hex_id(self) -> str:
        """A 24-hex id (MongoDB ObjectId style), used for social profile ids."""
        self.counter += 1
        return _digest("hex", self.seed, self.counter).hex()[:24]

    def to_json(self) -> dict[str, Any]:
        return copy.deepcopy({"seed": self.seed, "counter": self.counter, "users": self.users,
                              "tags": self.tags, "categories": self.categories,
                              "accounts": self.accounts, "groups": self.groups})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> World:
        data = copy.deepcopy(data)
        return cls(seed=data["seed"], counter=data["counter"], users=data["users"],
                   tags=data["tags"], categories=data["categories"],
                   accounts=data["accounts"], groups=data["groups"])

    # -- seed ------------------------------------------------------------------------------

    @classmethod
    def seeded(cls, seed: int) -> World:
        """The deterministic starting world for ``seed`` (timestamps before BASE_TIME)."""
        world = cls(seed=seed)
        rng = random.Random(seed)
        for i, (first, last, utype, role, locs, lang) in enumerate(_SEED_USERS):
            added = BASE_TIME - timedelta(days=400 - 37 * i, hours=rng.randint(0, 23))
            user = world._make_user(
                company_id=COMPANY_ID, first=first, last=last,
                email=f"{first}.{last}".lower().replace("'", "") + "@brightpath-marketing.com",
                phone=f"+1512555{101 + i:04d}", utype=utype, role=role, location_ids=locs,
                permissions=None, scopes=[], language=lang, twilio={}, added=added)
            user["extension"] = str(200 + i)
            world.users.append(user)
        authors = [u["id"] for u in world.users if LOCATION_ID in u["roles"]["locationIds"]]
        for name in world._seed_tag_names(rng):
            created = BASE_TIME - timedelta(days=180) + timedelta(
                seconds=rng.randint(0, 180 * 86400))
            world.tags.append(world._make_tag(name, LOCATION_ID, rng.choice(authors), created))
        world.tags.sort(key=lambda t: t["createdAt"])
        for tag in world.tags:  # a third were edited after creation, none after BASE_TIME
            if rng.random() < 0.33:
                created = datetime.fromisoformat(tag["createdAt"].replace("Z", "+00:00"))
                span = int((BASE_TIME - created).total_seconds())
                tag["updatedAt"] = iso(created + timedelta(seconds=rng.randint(0, span)))
        for name, primary, secondary in _SEED_CATEGORIES:
            created = BASE_TIME - timedelta(days=rng.randint(200, 300))
            world.categories.append({
                "name": name, "primaryColor": primary, "secondaryColor": secondary,
                "locationId": LOCATION_ID, "_id": world.new_id(), "createdBy": authors[0],
                "deleted": False, "createdAt": iso(created), "updatedAt": iso(created)})
        for platform, kind, name in _SEED_ACCOUNTS:
            oauth_id, profile_id = world.new_id(), world.new_hex_id()
            world.accounts.append({
                "id": f"{oauth_id}_{LOCATION_ID}_{profile_id}", "oauthId": oauth_id,
                "profileId": profile_id, "name": name, "platform": platform, "type": kind,
                "expire": iso(BASE_TIME + timedelta(days=rng.randint(30, 300))),
                "isExpired": False, "meta": {"canDelete": True, "hasGoogleUpdated": platform ==
                                             "google"},
                "_locationId": LOCATION_ID})
        world.groups.append({"id": world.new_hex_id(), "name": "Primary",
                             "accountIds": [a["id"] for a in world.accounts],
                             "_locationId": LOCATION_ID})
        return world

    @staticmethod
    def _seed_tag_names(rng: random.Random) -> list[str]:
        names = list(dict.fromkeys(_CLIENT_TAGS + _SERVICES + _CAMPAIGN_TAGS))
        combos = [f"{s}-{c}" for s in _SERVICES for c in _CITIES]
        rng.shuffle(combos)
        names += combos[: SEED_TAG_COUNT - len(names)]
        return names

    def _make_tag(self, name: str, location_id: str, author: str,
                  created: datetime) -> dict[str, Any]:
        return {"_id": self.new_id(), "tag": name, "locationId": location_id,
                "createdBy": author, "deleted": False, "createdAt": iso(created),
                "updatedAt": iso(created)}

    # -- social tags -----------------------------------------------------------------------

    def list_tags(self, location_id: str, search: str | None, skip: int,
                  limit: int) -> tuple[list[dict[str, Any]], int]:
        """A page of live tags (oldest first) and the total number of matches."""
        needle = (search or "").casefold()
        found = [t for t in self.tags if t["locationId"] == location_id and not t["deleted"]
                 and needle in t["tag"].casefold()]
        return copy.deepcopy(found[skip: skip + limit]), len(found)

    def tags_by_ids(self, location_id: str, ids: list[str]) -> list[dict[str, Any]]:
        wanted = set(ids)
        return copy.deepcopy([t for t in self.tags
                              if t["locationId"] == location_id and t["_id"] in wanted])

    def create_tag(self, location_id: str, name: str, now: datetime,
                   author: str | None = None) -> dict[str, Any]:
        if not name.strip():
            raise unprocessable("tag should not be empty")
        author = author or self.users[INSTALLER_INDEX]["id"]
        tag = self._make_tag(name.strip(), location_id, author, now)
        self.tags.append(tag)
        return copy.deepcopy(tag)

    def update_tag(self, tag_id: str, now: datetime, name: str | None = None,
                   deleted: bool | None = None) -> dict[str, Any]:
        tag = next((t for t in self.tags if t["_id"] == tag_id), None)
        if tag is None:
            raise ApiProblem(404, f"Tag {tag_id} not found")
        if name is not None:
            if not name.strip():
                raise unprocessable("tag should not be empty")
            tag["tag"] = name.strip()
        if deleted is not None:
            tag["deleted"] = deleted
        tag["updatedAt"] = iso(now)
        return copy.deepcopy(tag)

    def list_categories(self, location_id: str, search: str | None, skip: int,
                        limit: int) -> tuple[list[dict[str, Any]], int]:
        needle = (search or "").casefold()
        found = [c for c in self.categories if c["locationId"] == location_id
                 and not c["deleted"] and needle in c["name"].casefold()]
        return copy.deepcopy(found[skip: skip + limit]), len(found)

    def location_accounts(self, location_id: str) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
        def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: copy.deepcopy(v) for k, v in r.items() if not k.startswith("_")}
                    for r in rows if r["_locationId"] == location_id]
        return public(self.accounts), public(self.groups)

    # -- users -----------------------------------------------------------------------------

    def _make_user(self, *, company_id: str, first: str, last: str, email: str, phone: str,
                   utype: str, role: str, location_ids: list[str],
                   permissions: dict[str, bool] | None, scopes: list[str], language: str,
                   twilio: dict[str, str], added: datetime) -> dict[str, Any]:
        base = {p: (p not in _ADMIN_OFF) if role == "admin" else (p in _USER_ON)
                for p in PERMISSIONS}
        base.update(permissions or {})
        return {
            "id": self.new_id(), "name": f"{first} {last}".strip(), "firstName": first,
            "lastName": last, "email": email, "phone": phone, "extension": "",
            "permissions": base,
            "roles": {"type": utype, "role": role, "locationIds": list(location_ids),
                      "restrictSubAccount": False},
            "deleted": False, "lcPhone": dict(twilio), "platformLanguage": language,
            "_companyId": company_id, "_dateAdded": iso(added), "_scopes": list(scopes),
        }

    def find_user(self, user_id: str) -> dict[str, Any] | None:
        return next((u for u in self.users if u["id"] == user_id and not u["deleted"]), None)

    def email_taken(self, email: str, except_id: str | None = None) -> bool:
        return any(u["email"].casefold() == email.casefold() and u["id"] != except_id
                   and not u["deleted"] for u in self.users)

    def create_user(self, body: dict[str, Any], now: datetime) -> dict[str, Any]:
        user = self._make_user(
            company_id=body["companyId"], first=body["firstName"], last=body["lastName"],
            email=body["email"], phone=body.get("phone", ""), utype=body["type"],
            role=body["role"], location_ids=body["locationIds"],
            permissions=body.get("permissions"), scopes=body.get("scopes", []),
            language=body.get("platformLanguage", "en_US"), twilio=body.get("twilioPhone", {}),
            added=now)
        self.users.append(user)
        return user

    @staticmethod
    def update_user(user: dict[str, Any], body: dict[str, Any]) -> None:
        for key in ("firstName", "lastName", "phone", "platformLanguage"):
            if key in body:
                user[key] = body[key]
        user["name"] = f"{user['firstName']} {user['lastName']}".strip()
        for key, role_key in (("type", "type"), ("role", "role"), ("locationIds", "locationIds")):
            if key in body:
                user["roles"][role_key] = list(body[key]) if key == "locationIds" else body[key]
        if "permissions" in body:
            user["permissions"].update(body["permissions"])
        if "scopes" in body:
            user["_scopes"] = list(body["scopes"])
        if "twilioPhone" in body:
            user["lcPhone"] = dict(body["twilioPhone"])

    def filter_by_email(self, body: dict[str, Any]) -> dict[str, Any]:
        """``POST /users/search/filter-by-email`` on a checked body: ``{users, count}``."""
        emails = {e.strip().casefold() for e in body["emails"].split(",") if e.strip()}
        want_deleted = body.get("deleted", False)
        users = [u for u in self.users if u["_companyId"] == body["companyId"]
                 and u["email"].casefold() in emails and u["deleted"] == want_deleted]
        projection = body.get("projection") or "id,email"
        fields = (list(USER_FIELDS) if projection == "all"
                  else [f.strip() for f in projection.split(",") if f.strip() in USER_FIELDS])
        skip, limit = int(body.get("skip", "0")), int(body.get("limit", "25"))
        views = [user_view(u, with_deleted=True) for u in users[skip: skip + limit]]
        return {"users": [{f: v[f] for f in fields} for v in views], "count": len(users)}

    def search_users(self, *, company_id: str, query: str | None, location_id: str | None,
                     utype: str | None, role: str | None, ids: list[str] | None,
                     sort: str | None, descending: bool) -> list[dict[str, Any]]:
        needle = (query or "").casefold()
        found = []
        for u in self.users:
            if u["deleted"] or u["_companyId"] != company_id:
                continue
            if location_id and location_id not in u["roles"]["locationIds"]:
                continue
            if utype and u["roles"]["type"] != utype or role and u["roles"]["role"] != role:
                continue
            if ids is not None and u["id"] not in ids:
                continue
            if needle and not any(needle in str(u[k]).casefold()
                                  for k in ("name", "email", "phone")):
                continue
            found.append(u)
        key = {"dateAdded": lambda u: u["_dateAdded"], "email": lambda u: u["email"].casefold(),
               "firstName": lambda u: u["firstName"].casefold(),
               "lastName": lambda u: u["lastName"].casefold()}.get(
            sort or "", lambda u: u["name"].casefold())
        return sorted(found, key=lambda u: (key(u), u["id"]), reverse=descending)


def user_view(user: dict[str, Any], *, with_deleted: bool) -> dict[str, Any]:
    """The public shape of a user (UserSchema / UserSuccessfulResponseDto).

    ``scopes`` is left out on purpose: the spec types it as one enum string while the real
    value is a list, and a list would not validate against the official schema.
    """
    view = {k: copy.deepcopy(user[k]) for k in USER_FIELDS}
    if not with_deleted:
        del view["deleted"]
    return view


# -- rate limits ---------------------------------------------------------------------------

@dataclass
class RateDecision:
    allowed: bool
    remaining: int
    daily_remaining: int
    retry_after: int = 0


class RateLimiter:
    """A sliding window burst limit plus a per-UTC-day limit, per (app, location) key."""

    def __init__(self, limit: int, window: float, daily: int) -> None:
        self.limit, self.window, self.daily = limit, window, daily
        self._hits: dict[tuple[str, str], collections.deque[float]] = {}
        self._days: dict[tuple[str, str], tuple[date, int]] = {}

    def hit(self, key: tuple[str, str], now: float) -> RateDecision:
        hits = self._hits.setdefault(key, collections.deque())
        while hits and hits[0] <= now - self.window:
            hits.popleft()
        today = from_unix(now).date()
        day, used = self._days.get(key, (today, 0))
        if day != today:
            used = 0
        if len(hits) >= self.limit or used >= self.daily:
            if used >= self.daily:
                midnight = datetime.combine(today + timedelta(days=1), datetime.min.time(),
                                            tzinfo=UTC)
                wait = midnight.timestamp() - now
            else:
                wait = hits[0] + self.window - now
            return RateDecision(False, max(0, self.limit - len(hits)),
                                max(0, self.daily - used), max(1, math.ceil(wait)))
        hits.append(now)
        self._days[key] = (today, used + 1)
        return RateDecision(True, self.limit - len(hits), self.daily - used - 1)

    def headers(self, decision: RateDecision | None) -> dict[str, str]:
        remaining = self.limit if decision is None else decision.remaining
        daily = self.daily if decision is None else decision.daily_remaining
        return {"X-RateLimit-Max": str(self.limit), "X-RateLimit-Remaining": str(remaining),
                "X-RateLimit-Interval-Milliseconds": str(int(self.window * 1000)),
                "X-RateLimit-Limit-Daily": str(self.daily),
                "X-RateLimit-Daily-Remaining": str(daily)}

    def reset(self) -> None:
        self._hits.clear()
        self._days.clear()


# -- statistics -----------------------------------------------------------------------------

_METRIC_RANGES = {"posts": 4, "impressions": 1800, "likes": 120, "comments": 30, "shares": 15}
_AGE_BUCKETS = ("13-17", "18-24", "25-34", "35-44", "45-54", "55-64", "65+")
_AGE_WEIGHTS = (2, 14, 27, 24, 16, 10, 7)


def _metric(seed: int, profile_id: str, day: date, name: str) -> int:
    value = int.from_bytes(_digest("stat", seed, profile_id, day.isoformat(), name)[:4], "big")
    if name == "impressions":
        return 50 + value % _METRIC_RANGES[name]
    if name == "reach":
        return int(_metric(seed, profile_id, day, "impressions") * (0.6 + (value % 20) / 100))
    if name == "followers":
        base = 500 + int.from_bytes(_digest("base", seed, profile_id)[:2], "big") % 20000
        rate = 1 + _digest("rate", seed, profile_id)[0] % 12
        return base + rate * (day - date(2024, 1, 1)).days + value % 5
    return value % _METRIC_RANGES[name]


def _change(current: float, previous: float) -> float:
    if previous == 0:
        return 0.0 if current == 0 else 100.0
    return round((current - previous) / previous * 100, 2)


def _days(start: date, end: date) -> list[date]:
    return [start + timedelta(days=i) for i in range((end - start).days + 1)]


def statistics(seed: int, accounts: list[dict[str, Any]], current: tuple[date, date],
               previous: tuple[date, date], trace_id: str) -> dict[str, Any]:
    """The analytics body for ``accounts`` (already filtered by profile id and platform).

    Every number is a pure function of seed, profile id, day and metric, so the same request
    always gets the same answer and a longer range contains the shorter one's days.
    """
    cur_days, prev_days = _days(*current), _days(*previous)
    platforms = sorted({a["platform"] for a in accounts})

    def series(metric: str, platform: str | None, days: list[date]) -> list[int]:
        rows = [a for a in accounts if platform is None or a["platform"] == platform]
        return [sum(_metric(seed, a["profileId"], d, metric) for a in rows) for d in days]

    def total(metric: str, platform: str | None, days: list[date]) -> int:
        if metric == "followers":
            return series(metric, platform, days[-1:])[0] if days else 0
        return sum(series(metric, platform, days))

    def breakdown(metric: str) -> dict[str, Any]:
        cur, prev = total(metric, None, cur_days), total(metric, None, prev_days)
        return {"total": cur, "totalChange": _change(cur, prev), "platforms": {
            p: {"value": total(metric, p, cur_days),
                "change": _change(total(metric, p, cur_days), total(metric, p, prev_days))}
            for p in platforms}}

    def engagement(platform: str) -> dict[str, Any]:
        parts = {m: total(m, platform, cur_days) for m in ("likes", "comments", "shares")}
        before = sum(total(m, platform, prev_days) for m in ("likes", "comments", "shares"))
        return {**parts, "change": _change(sum(parts.values()), before)}

    followers = total("followers", None, cur_days)
    split = _digest("gender", seed, *sorted(a["profileId"] for a in accounts))
    female_pct = 40 + split[0] % 20
    unknown_pct = 2 + split[1] % 6
    shares = {"male": 100 - female_pct - unknown_pct, "female": female_pct,
              "unknown": unknown_pct}
    weight_sum = sum(_AGE_WEIGHTS)
    ages = {b: followers * w // weight_sum for b, w in zip(_AGE_BUCKETS, _AGE_WEIGHTS,
                                                           strict=True)}
    ages["25-34"] += followers - sum(ages.values())
    return {
        "results": {
            "dayRange": [_DAY_NAMES[d.weekday()] for d in cur_days],
            "totals": {m: total(m, None, cur_days)
                       for m in ("posts", "likes", "followers", "impressions", "comments")},
            "postPerformance": {
                "posts": {p: series("posts", p, cur_days) for p in platforms},
                "impressions": series("impressions", None, cur_days),
                "likes": series("likes", None, cur_days),
                "comments": series("comments", None, cur_days),
            },
            "breakdowns": {"posts": breakdown("posts"), "impressions": breakdown("impressions"),
                           "reach": breakdown("reach"),
                           "engagement": {p: engagement(p) for p in platforms}},
            "platformTotals": {
                m: {p: {"total": total(m, p, cur_days), "series": series(m, p, cur_days)}
                    for p in platforms}
                for m in ("impressions", "followers", "likes")},
            "demographics": {
                "gender": {"totals": {k: {"total": followers * v // 100, "percentage": v}
                                      for k, v in shares.items()}},
                "age": {"totals": ages},
            },
        },
        "message": "Analytics Built Successfully",
        "traceId": trace_id,
    }


@dataclass(frozen=True)
class StatisticsRequest:
    """A checked statistics body: which profiles, platforms and day windows."""

    profile_ids: list[str]
    platforms: list[str] | None
    current: tuple[date, date]
    previous: tuple[date, date]


def _parse_day(value: Any, name: str) -> date:
    if not isinstance(value, str):
        raise ApiProblem(400, f"{name} must be a valid ISO 8601 date string")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ApiProblem(400, f"{name} must be a valid ISO 8601 date string") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC)
    return moment.date()


def _parse_range(value: Any, name: str) -> tuple[date, date]:
    if not isinstance(value, dict):
        raise ApiProblem(400, f"{name} must be an object with startDate and endDate")
    start = _parse_day(value.get("startDate"), f"{name}.startDate")
    end = _parse_day(value.get("endDate"), f"{name}.endDate")
    if start > end:
        raise ApiProblem(400, f"{name}.startDate must not be after {name}.endDate")
    if (end - start).days >= 366:
        raise ApiProblem(400, f"{name} cannot span more than 366 days")
    return start, end


def statistics_request(body: dict[str, Any], today: date) -> StatisticsRequest:
    """Check a statistics body; without ranges, the last 7 days before ``today`` and the 7
    days before those (the v2 behaviour). ``currentRange``/``prevRange`` come from v3."""
    profiles, platforms = body.get("profileIds"), body.get("platforms")
    if not isinstance(profiles, list) or not profiles:
        raise unprocessable("profileIds must contain at least 1 elements",
                            "profileIds must be an array")
    if not all(isinstance(p, str) for p in profiles):
        raise unprocessable("each value in profileIds must be a string")
    if len(profiles) > 100:
        raise ApiProblem(400, "Statistics can be requested for at most 100 accounts")
    if platforms is not None and (not isinstance(platforms, list)
                                  or any(p not in PLATFORMS for p in platforms)):
        raise unprocessable("each value in platforms must be one of the following values: "
                            + ", ".join(PLATFORMS))
    if "prevRange" in body and "currentRange" not in body:
        raise ApiProblem(400, "prevRange can only be given together with currentRange")
    if "currentRange" in body:
        current = _parse_range(body["currentRange"], "currentRange")
    else:
        current = (today - timedelta(days=7), today - timedelta(days=1))
    if "prevRange" in body:
        previous = _parse_range(body["prevRange"], "prevRange")
    else:
        span = current[1] - current[0] + timedelta(days=1)
        previous = (current[0] - span, current[1] - span)
    return StatisticsRequest(list(profiles), platforms, current, previous)


def trace_id(seed: int, n: int) -> str:
    """A deterministic UUID4-looking trace id for the ``n``-th traced response."""
    return str(uuid.UUID(bytes=_digest("trace", seed, n)[:16], version=4))


# -- request validation (class-validator style messages, as HighLevel's NestJS API sends) ----

def _one_of(name: str, values: tuple[str, ...]) -> str:
    return f"{name} must be one of the following values: {', '.join(values)}"


def _strong_password(value: str) -> bool:
    return (len(value) >= 12 and any(c.isupper() for c in value)
            and any(c.islower() for c in value) and any(c.isdigit() for c in value)
            and any(not c.isalnum() for c in value))


def validate_user_body(body: dict[str, Any], *, create: bool) -> list[str]:
    """Problems with a create-user (``create``) or update-user body, empty when valid."""
    problems: list[str] = []
    required = ("companyId", "firstName", "lastName", "email", "password", "type", "role")
    for name in ("companyId", "firstName", "lastName", "email", "password", "phone", "type",
                 "role", "profilePhoto", "platformLanguage"):
        if name not in body:
            if create and name in required:
                problems.append(f"{name} should not be empty")
            continue
        value = body[name]
        if not isinstance(value, str):
            problems.append(f"{name} must be a string")
        elif create and name in required and not value.strip():
            problems.append(f"{name} should not be empty")
    email = body.get("email")
    if isinstance(email, str) and email and (
            email.count("@") != 1 or "." not in email.split("@")[1] or " " in email):
        problems.append("email must be an email")
    password = body.get("password")
    if isinstance(password, str) and password and not _strong_password(password):
        problems.append("password must be at least 12 characters long and contain an uppercase "
                        "letter, a lowercase letter, a number and a special character")
    for name, allowed in (("type", USER_TYPES), ("role", USER_ROLES),
                          ("platformLanguage", LANGUAGES)):
        if isinstance(body.get(name), str) and body[name] not in allowed:
            problems.append(_one_of(name, allowed))
    for name in ("locationIds", "scopes", "scopesAssignedToOnly"):
        if name not in body:
            if create and name == "locationIds":
                problems.append("locationIds must be an array")
            continue
        value = body[name]
        if not isinstance(value, list):
            problems.append(f"{name} must be an array")
        elif not all(isinstance(v, str) for v in value):
            problems.append(f"each value in {name} must be a string")
    if "permissions" in body:
        perms = body["permissions"]
        if not isinstance(perms, dict):
            problems.append("permissions must be an object")
        else:
            problems += [f"permissions.{k} must be a boolean value" for k, v in perms.items()
                         if k in PERMISSIONS and not isinstance(v, bool)]
            problems += [f"permissions.{k} is not a known permission" for k in perms
                         if k not in PERMISSIONS]
    if "twilioPhone" in body:
        phones = body["twilioPhone"]
        if not isinstance(phones, dict) or not all(isinstance(v, str) for v in phones.values()):
            problems.append("twilioPhone must be an object of locationId to phone number")
    return problems

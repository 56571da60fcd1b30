"""The HighLevel sandbox's model: the world (users, tags, categories, accounts), seed data.

Contract: everything here is plain data and plain functions (no HTTP). Records are dicts
shaped like the official Users and Social Planner schemas, plus a few private keys that
start with ``_`` (``_companyId``, ``_dateAdded``, ``_scopes``, ``_locationId``...) that never
leave the sandbox. Ids come from a counter hashed with the seed, so the same seed always
yields the same world, and the world survives a restart through :meth:`World.to_json` /
:meth:`World.from_json`. Posts, CSV imports and social network logins live in the same
:class:`World`; their rules are in ``sandbox_posts``, ``sandbox_csv`` and
``sandbox_social_oauth``.
"""

from __future__ import annotations

import copy
import hashlib
import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from .sandbox_http import ApiProblem, unprocessable

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


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()


_PERSISTED = ("seed", "counter", "users", "tags", "categories", "accounts", "groups", "posts",
              "csv_files", "csv_imports", "oauth_grants")


@dataclass
class World:
    """Users and the Social Planner (tags, categories, accounts, posts, CSV imports, social
    network logins) of one HighLevel agency."""

    seed: int
    counter: int = 0
    users: list[dict[str, Any]] = field(default_factory=list)
    tags: list[dict[str, Any]] = field(default_factory=list)
    categories: list[dict[str, Any]] = field(default_factory=list)
    accounts: list[dict[str, Any]] = field(default_factory=list)
    groups: list[dict[str, Any]] = field(default_factory=list)
    posts: list[dict[str, Any]] = field(default_factory=list)
    csv_files: list[dict[str, Any]] = field(default_factory=list)  # uploaded, not imported
    csv_imports: list[dict[str, Any]] = field(default_factory=list)
    oauth_grants: list[dict[str, Any]] = field(default_factory=list)  # social network logins

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
        return copy.deepcopy({name: getattr(self, name) for name in _PERSISTED})

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> World:
        """The world saved by :meth:`to_json` (collections a state file lacks start empty)."""
        data = copy.deepcopy(data)
        return cls(**{name: data.get(name, []) for name in _PERSISTED
                      if name in data or name not in ("seed", "counter")})

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

    def create_category(self, location_id: str, name: str, colors: tuple[str, str],
                        now: datetime) -> dict[str, Any]:
        """A post category as HighLevel's app makes one (the API only reads categories)."""
        if not name.strip():
            raise unprocessable("name should not be empty")
        category = {"name": name.strip(), "primaryColor": colors[0], "secondaryColor": colors[1],
                    "locationId": location_id, "_id": self.new_id(),
                    "createdBy": self.users[INSTALLER_INDEX]["id"], "deleted": False,
                    "createdAt": iso(now), "updatedAt": iso(now)}
        self.categories.append(category)
        return copy.deepcopy(category)

    def update_category(self, category_id: str, changes: dict[str, Any],
                        now: datetime) -> dict[str, Any]:
        """Edit a category (name, colours, ``deleted``) and bump its ``updatedAt``."""
        category = next((c for c in self.categories if c["_id"] == category_id), None)
        if category is None:
            raise ApiProblem(404, f"Category {category_id} not found")
        category.update(changes)
        category["updatedAt"] = iso(now)
        return copy.deepcopy(category)

    def location_accounts(self, location_id: str) -> tuple[list[dict[str, Any]],
                                                           list[dict[str, Any]]]:
        def public(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return [{k: copy.deepcopy(v) for k, v in r.items() if not k.startswith("_")}
                    for r in rows if r["_locationId"] == location_id and not r.get("_deleted")]
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


# -- the v3 password policy ------------------------------------------------------------------

PASSWORD_RULE = ("password must be at least 12 characters long and contain an uppercase "
                 "letter, a lowercase letter, a number and a special character")


def strong_password(value: str) -> bool:
    """The policy the v3 spec states for passwords (the date-versioned spec states none)."""
    return (len(value) >= 12 and any(c.isupper() for c in value)
            and any(c.islower() for c in value) and any(c.isdigit() for c in value)
            and any(not c.isalnum() for c in value))

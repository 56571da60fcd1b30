"""The Invoice2go sandbox's seed data and list filters.

``seed_store`` fills a store with the same accounts, clients, invoices and metrics on every
start (fixed timestamps, ids from the store's seeded generator). ``parse_filters`` turns a list
request's query string into the JSON-able filters a cursor carries, and ``matches`` applies
them (CONTRACT.md §5.2, §5.3, §5.6 list filters).
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from .sandbox_data import (
    ACCOUNT_ID,
    PAYMENT_METHODS,
    STATUSES,
    ApiError,
    Store,
    blank_invoice,
    compute_totals,
    dec,
    iso,
    normalize_tag,
    num,
    order_client,
    parse_date,
    parse_ts,
    round2,
    settle_status,
    ts_key,
)

__all__ = ["EPOCH", "matches", "no_filters", "parse_filters", "seed_store"]

EPOCH = datetime(2026, 5, 1, 10, 0, 0, tzinfo=UTC)  # seed data is dated up to this instant


# -- list filters --------------------------------------------------------------------------


def _period_bound(value: str, *, end: bool) -> float:
    """A period value as Unix seconds; a date as its first (or, for ends, last) instant."""
    day = parse_date(value)
    if day is None:
        return parse_ts(value) or 0.0
    start = datetime(day.year, day.month, day.day, tzinfo=UTC).timestamp()
    return start + 86399.999 if end else start


def matches(table: str, record: dict[str, Any], filters: dict[str, Any]) -> bool:
    """Whether ``record`` passes the (already validated) list ``filters`` of ``table``."""
    since = filters.get("updated_since")
    if since is not None and ts_key(record["updated_at"]) < round(since * 1000):
        return False
    tag = filters.get("tag")
    if tag is not None and tag not in record["tags"]:
        return False
    for key in ("client_id", "source", "key"):
        if filters.get(key) is not None and record.get(key) != filters[key]:
            return False
    if table == "clients" and filters.get("email") is not None:
        return (record["email"] or "").casefold() == filters["email"].casefold()
    if table == "invoices":
        statuses = filters.get("document_status")
        if statuses and record["document_status"] not in statuses:
            return False
        if filters.get("document_date_from") and record["document_date"] < \
                filters["document_date_from"]:
            return False
        if filters.get("document_date_to") and record["document_date"] > \
                filters["document_date_to"]:
            return False
    if table == "metrics":
        if filters.get("period_from") and _period_bound(record["period_end"], end=True) < \
                _period_bound(filters["period_from"], end=False):
            return False
        if filters.get("period_to") and _period_bound(record["period_start"], end=False) > \
                _period_bound(filters["period_to"], end=True):
            return False
    return True


def no_filters(query: Any) -> dict[str, Any]:
    return {}


def parse_filters(query: Any, *, text: tuple[str, ...] = (), statuses: bool = False,
             dates: tuple[str, ...] = (), periods: tuple[str, ...] = ()) -> dict[str, Any]:
    """Validate list query parameters into the JSON-able filters a cursor carries."""
    problems: list[dict[str, str]] = []
    out: dict[str, Any] = {}
    since = query.get("updated_since")
    if since is not None:
        out["updated_since"] = parse_ts(since)
        if out["updated_since"] is None:
            problems.append({"field": "updated_since", "issue": "must be an RFC 3339 timestamp"})
    if query.get("tag") is not None:
        out["tag"] = normalize_tag(query["tag"])
    for name in text:
        if query.get(name) is not None:
            out[name] = query[name]
    if statuses and query.get("document_status"):
        wanted = [s.strip() for s in query["document_status"].split(",") if s.strip()]
        if any(s not in STATUSES for s in wanted):
            problems.append({"field": "document_status",
                             "issue": "must be a comma-separated list of " + ", ".join(STATUSES)})
        out["document_status"] = wanted
    for name in dates:
        if query.get(name) is not None:
            if parse_date(query[name]) is None:
                problems.append({"field": name, "issue": "must be a date (YYYY-MM-DD)"})
            out[name] = query[name]
    for name in periods:
        if query.get(name) is not None:
            if parse_date(query[name]) is None and parse_ts(query[name]) is None:
                problems.append({"field": name, "issue": "must be a date or RFC 3339 timestamp"})
            out[name] = query[name]
    if problems:
        raise ApiError(400, "bad_request", "A query parameter is not valid.", problems)
    return out


# -- seed ----------------------------------------------------------------------------------

_CLIENTS = [  # name, email, contact, tags, payment terms
    ("Daily Planet", "lois@dailyplanet.example", "Lois Lane", ["media", "vip"], 14),
    ("Wayne Enterprises", "lucius@wayne-enterprises.example", "Lucius Fox",
     ["enterprise", "vip"], 30),
    ("Kord Industries", "ted@kord.example", "Ted Kord", ["enterprise"], 30),
    ("Big Belly Burger", "orders@bigbellyburger.example", "Sam Carter", ["restaurant"], 7),
    ("Jitters Coffee", "hello@jitters.example", "Iris West", ["restaurant", "instagram"], 7),
    ("Gotham Gazette", "editor@gothamgazette.example", "Vicki Vale", ["media"], 14),
    ("Iceberg Lounge", "oswald@iceberglounge.example", "Oswald Cobblepot", ["hospitality"],
     None),
    ("S.T.A.R. Labs", "cisco@starlabs.example", "Cisco Ramon", ["research"], 30),
    ("Selina Kyle", "selina.kyle@example.com", None, ["residential"], None),
    ("Alfred Pennyworth", "alfred@waynemanor.example", None, ["residential", "vip"], 14),
    ("Wholesale", "buying@wholesale-club.example", "Dana Price", ["wholesale"], 45),
    ("Summer Sale", "promo@summersale.example", "Rita Gomez", ["promo", "facebook"], None),
]
_SERVICES = [  # code, description, unit type, unit price
    ("A10", "Monthly Lawn Service 2 Hours Weekly", "labor_hours", 85),
    ("G20", "Gutter cleaning", "labor", 120),
    ("E05", "Light fixture installation", "labor_hours", 65),
    ("M12", "Drywall patch kit", "parts", 24.5),
    ("PL3", "Faucet replacement", "labor", 140),
    ("PT1", "Interior painting, per room", "days", 310),
    ("HW7", "Door hinge set", "parts", 12.99),
    ("SN2", "Snow removal visit", "none", 75),
]
_INVOICE_TAGS = [[], [], ["lawn-care"], ["repeat"], ["summer-sale"], ["lawn-care", "repeat"],
                 ["vip"]]


def seed_store(store: Store) -> None:
    """Fill ``store`` with the same accounts, clients, invoices and metrics on every start."""
    rng, epoch = store.rng, EPOCH.timestamp()
    accounts = [(ACCOUNT_ID, "Gotham Handyman Co", "owner@gothamhandyman.example", "USD", "US",
                 "America/Los_Angeles", "2021-01-28T07:57:37Z"),
                ("31415926", "Metropolis Plumbing", "office@metroplumbing.example", "USD", "US",
                 "America/New_York", "2022-03-14T15:09:26Z")]
    for acc_id, name, email, currency, country, tz, created in accounts:
        store.accounts[acc_id] = {"id": acc_id, "name": name, "email": email,
                                  "currency_code": currency, "country_code": country,
                                  "timezone": tz, "created_at": created,
                                  "updated_at": iso(epoch)}
    tax_id = store.taxes.setdefault(f"{ACCOUNT_ID}|TAX|8", store.new_id())
    clients = []
    for n, (name, email, contact, tags, terms) in enumerate(_CLIENTS):
        created = iso(epoch - (400 - n * 17) * 86400)
        client = order_client({
            "id": store.new_id(), "account_id": ACCOUNT_ID, "name": name, "email": email,
            "contact_name": contact, "phone": f"555-01{n:02d}", "mobile": None,
            "website": None, "tax_number": None,
            "billing_address": f"{100 + n * 7} {('Park Row', 'Crime Alley', 'Kane St')[n % 3]}"
                               ", Gotham", "shipping_address": None, "notes": None,
            "payment_terms_days": terms, "tags": list(tags), "created_at": created,
            "updated_at": iso(epoch - (120 - n * 9) * 86400)})
        store.clients[client["id"]] = client
        clients.append(client)
    for n in range(60):
        _seed_invoice(store, rng, clients[rng.randrange(len(clients))], n, tax_id, epoch)
    other = order_client({
        "id": store.new_id(), "account_id": "31415926", "name": "LexCorp",
        "email": "facilities@lexcorp.example", "contact_name": "Mercy Graves", "phone": None,
        "mobile": None, "website": None, "tax_number": None, "billing_address": None,
        "shipping_address": None, "notes": None, "payment_terms_days": None,
        "tags": ["enterprise"], "created_at": iso(epoch - 90 * 86400),
        "updated_at": iso(epoch - 90 * 86400)})
    store.clients[other["id"]] = other
    _seed_metrics(store, epoch)


def _seed_invoice(store: Store, rng: random.Random, client: dict[str, Any], n: int,
                  tax_id: str, epoch: float) -> None:
    age = (60 - n) * 1.5  # days before the epoch; invoice 1 is the oldest
    created = epoch - age * 86400 + rng.randrange(0, 6 * 3600)
    doc_date = datetime.fromtimestamp(created, UTC).date()
    inv = blank_invoice(store.new_id(), ACCOUNT_ID, "USD")
    items = []
    for _ in range(rng.randint(1, 4)):
        code, desc, unit, price = _SERVICES[rng.randrange(len(_SERVICES))]
        discount = rng.choice(["no_discount"] * 6 + ["percentage", "amount"])
        items.append({"id": store.new_id(), "code": code, "description": desc,
                      "qty": rng.choice([1, 1, 2, 3, 4, 1.5]), "unit_type": unit,
                      "unit_price": price, "discount_type": discount,
                      "discount_percentage": 10 if discount == "percentage" else 0,
                      "discount_amount": 15 if discount == "amount" else 0,
                      "withholding_tax_applies": False,
                      "applied_taxes": [] if unit == "parts" and rng.random() < 0.3 else
                      [{"tax_id": tax_id, "name": "TAX", "rate": 8}], "amount": 0})
    terms = client["payment_terms_days"]
    inv.update(document_number=str(n + 1), document_date=doc_date.isoformat(),
               due_date=(doc_date + timedelta(days=terms)).isoformat() if terms else None,
               client_id=client["id"], name=client["name"], email_recipient=client["email"],
               document_recipient_address=client["billing_address"],
               comment="Thanks for your business" if n % 3 == 0 else None, items=items,
               tags=list(_INVOICE_TAGS[rng.randrange(len(_INVOICE_TAGS))]),
               created_at=iso(created))
    if n % 10 == 7:
        inv.update(discount_type="percentage", discount_value=5)
    compute_totals(inv)
    roll = rng.random()
    if age > 45:
        status = "void" if roll < 0.08 else "partially_paid" if roll < 0.2 else "fully_paid"
    elif age > 15:
        status = "sent" if roll < 0.4 else "partially_paid" if roll < 0.6 else "fully_paid"
    else:
        status = "unsent" if roll < 0.5 else "sent"
    inv["document_status"] = "sent" if status != "unsent" else "unsent"
    updated = created + rng.randrange(600, 3 * 86400)
    if status in ("partially_paid", "fully_paid"):
        total = dec(inv["total_amount"])
        amount = total if status == "fully_paid" else round2(total * Decimal("0.4"))
        paid_at = min(updated, epoch)
        inv["payments"].append({
            "id": store.new_id(), "transaction_id": f"txn_{n + 1:04d}", "amount": num(amount),
            "tip_amount": 0, "fee_amount": 0, "datetime": iso(paid_at),
            "method": rng.choice(PAYMENT_METHODS[:4]), "type": "payment",
            "status": "succeeded"})
        compute_totals(inv)
        settle_status(inv)
    elif status == "void":
        inv["document_status"] = "void"
    inv["updated_at"] = iso(min(updated, epoch))
    store.invoices[inv["id"]] = inv


def _seed_metrics(store: Store, epoch: float) -> None:
    rows = [("ghl.social_planner", "posts.published", "Posts published", 42, "facebook"),
            ("ghl.social_planner", "posts.published", "Posts published", 37, "instagram"),
            ("ghl.social_planner", "posts.failed", "Posts failed", 2, "facebook"),
            ("reviews.widget", "rating.average", "Average rating", 4.7, None)]
    for n, (source, key, label, value, platform) in enumerate(rows):
        dims = {"platform": platform, "location_id": "loc_123"} if platform else {}
        stamp = iso(epoch - 3600 + n * 60)  # pushed just after the period closed
        metric: dict[str, Any] = {
                  "id": store.new_id(), "account_id": ACCOUNT_ID, "source": source, "key": key,
                  "label": label, "value": value, "unit": "count" if platform else "ratio",
                  "currency_code": None, "period_start": "2026-04-01",
                  "period_end": "2026-04-30", "dimensions": dims, "client_id": None,
                  "tags": ["social"] if platform else [],
                  "external_id": f"loc_123:2026-04:{key}:{platform}" if platform else None,
                  "created_at": stamp, "updated_at": stamp}
        store.metrics[metric["id"]] = metric

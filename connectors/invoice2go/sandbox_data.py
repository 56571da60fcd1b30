"""The Invoice2go sandbox's data: validation, invoice arithmetic and the store.

Everything here follows ``shared/reference/invoice2go/CONTRACT.md`` (an assumed API: Invoice2go
publishes none). HTTP concerns (auth, pagination, rate limits) live in ``sandbox.py``; the seed
data and list filters in ``sandbox_seed.py``. Records are kept as JSON-ready dicts in their
response shape, so persisting the store is a dump.
"""

from __future__ import annotations

import base64
import math
import random
import re
import secrets
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, cast
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

ACCOUNT_ID = "24379237"
IDEMPOTENCY_TTL = 24 * 3600
CENT = Decimal("0.01")

STATUSES = ("unsent", "sent", "partially_paid", "fully_paid", "void")
DISCOUNT_TYPES = ("no_discount", "percentage", "amount")
UNIT_TYPES = ("parts", "labor", "labor_hours", "hours", "days", "none")
METRIC_UNITS = ("count", "currency", "percent", "ratio", "seconds")
PAYMENT_METHODS = ("card", "bank_transfer", "paypal", "cash", "check", "other")
EVENT_TYPES = frozenset({
    "client.created", "client.updated", "client.deleted", "invoice.created", "invoice.updated",
    "invoice.sent", "invoice.partially_paid", "invoice.paid", "invoice.voided",
    "invoice.deleted", "payment.created", "webhook.test"})
MONEY_LOCKED = ("items", "discount_type", "discount_value", "withholding_tax_rate",
                "currency_code", "client_id")

_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")
_SOURCE = re.compile(r"^[a-z0-9._-]{1,64}$")
_KEY = re.compile(r"^[a-z0-9._-]{1,100}$")
_DIM_KEY = re.compile(r"^[a-z0-9_]{1,40}$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """An error answer in the contract's §4 shape (rendered by ``sandbox.py``)."""

    def __init__(self, status: int, code: str, message: str,
                 details: list[dict[str, str]] | None = None,
                 headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.details = details or []
        self.headers = headers or {}


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found.")


# -- time ----------------------------------------------------------------------------------


def iso(ts: float) -> str:
    """RFC 3339 UTC with ``Z``; milliseconds only when present."""
    sec, ms = divmod(round(ts * 1000), 1000)
    text = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{text}.{ms:03d}Z" if ms else f"{text}Z"


def parse_ts(text: Any) -> float | None:
    """Unix seconds of an RFC 3339 timestamp (any offset), or ``None`` if it is not one."""
    if not isinstance(text, str) or len(text) < 20 or text[10] not in "Tt":
        return None
    try:
        dt = datetime.fromisoformat(text.upper())
    except ValueError:
        return None
    return dt.timestamp() if dt.tzinfo is not None else None


@lru_cache(maxsize=65536)
def ts_key(text: str) -> int:
    """Milliseconds of a stored timestamp, for ordering."""
    return round((parse_ts(text) or 0.0) * 1000)


def parse_date(text: Any) -> date | None:
    if not isinstance(text, str) or not _DATE.match(text):
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        return None


def local_today(ts: float, tz: str) -> str:
    try:
        zone: Any = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        zone = UTC
    return datetime.fromtimestamp(ts, zone).date().isoformat()


# -- numbers -------------------------------------------------------------------------------


def dec(value: Any) -> Decimal:
    return Decimal(str(value))


def round2(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def num(value: Decimal) -> int | float:
    """A JSON number: an int when whole, else a float (money has at most 2 places)."""
    return int(value) if value == value.to_integral_value() else float(value)


# -- validation ----------------------------------------------------------------------------


class Problems:
    """Collects field problems; :meth:`raise_if_any` turns them into a 422."""

    def __init__(self) -> None:
        self.details: list[dict[str, str]] = []

    def add(self, field: str, issue: str) -> None:
        self.details.append({"field": field, "issue": issue})

    def raise_if_any(self, message: str) -> None:
        if self.details:
            raise ApiError(422, "validation_failed", message, self.details)

    def text(self, value: Any, path: str, *, max_len: int, min_len: int = 0,
             nullable: bool = True) -> str | None:
        if value is None:
            if not nullable:
                self.add(path, "is required")
            return None
        if not isinstance(value, str):
            self.add(path, "must be a string")
        elif len(value.strip()) < min_len:
            self.add(path, "must not be empty")
        elif len(value) > max_len:
            self.add(path, f"must be at most {max_len} characters")
        else:
            return value
        return None

    def email(self, value: Any, path: str) -> str | None:
        text = self.text(value, path, max_len=254)
        if text is not None and not _EMAIL.match(text):
            self.add(path, "must be a valid e-mail address")
        return text

    def number(self, value: Any, path: str, *, ge: float | None = None,
               gt: float | None = None, le: float | None = None, places: int | None = None,
               int_digits: int | None = None) -> Decimal | None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.add(path, "is required" if value is None else "must be a number")
            return None
        if isinstance(value, float) and not math.isfinite(value):
            self.add(path, "must be a finite number")
            return None
        d = dec(value)
        if gt is not None and not d > dec(gt):
            self.add(path, f"must be greater than {gt}")
        elif ge is not None and d < dec(ge):
            self.add(path, f"must be at least {ge}")
        elif le is not None and d > dec(le):
            self.add(path, f"must be at most {le}")
        elif places is not None and -int(d.normalize().as_tuple().exponent) > places:
            self.add(path, f"must have at most {places} decimal places")
        elif int_digits is not None and abs(d) >= 10 ** int_digits:
            self.add(path, f"must have at most {int_digits} digits before the decimal point")
        else:
            return d
        return None

    def integer(self, value: Any, path: str, lo: int, hi: int) -> int | None:
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            self.add(path, f"must be an integer from {lo} to {hi}")
            return None
        return value

    def boolean(self, value: Any, path: str) -> bool:
        if not isinstance(value, bool):
            self.add(path, "must be true or false")
            return False
        return value

    def enum(self, value: Any, path: str, allowed: Iterable[str]) -> str | None:
        allowed = tuple(allowed)
        if value not in allowed:
            self.add(path, "must be one of " + ", ".join(allowed))
            return None
        return str(value)

    def day(self, value: Any, path: str, *, nullable: bool = False) -> str | None:
        if value is None and nullable:
            return None
        if parse_date(value) is None:
            self.add(path, "must be a date (YYYY-MM-DD)")
            return None
        return str(value)

    def tags(self, value: Any, path: str) -> list[str]:
        """§1 tag rules: trim, lower-case, 1–50 chars, no commas, de-duplicated, at most 20."""
        if not isinstance(value, list):
            self.add(path, "must be an array of strings")
            return []
        out: list[str] = []
        for i, tag in enumerate(value):
            if not isinstance(tag, str):
                self.add(f"{path}[{i}]", "must be a string")
                continue
            tag = tag.strip().lower()
            if not 1 <= len(tag) <= 50:
                self.add(f"{path}[{i}]", "must be 1 to 50 characters after trimming")
            elif "," in tag:
                self.add(f"{path}[{i}]", "must not contain a comma")
            elif tag not in out:
                out.append(tag)
        if len(out) > 20:
            self.add(path, "must have at most 20 tags")
        return out


def normalize_tag(tag: str) -> str:
    return tag.strip().lower()


def require_object(body: Any, what: str = "body") -> dict[str, Any]:
    if not isinstance(body, dict):
        raise ApiError(400, "bad_request", f"The {what} must be a JSON object.")
    return body


CLIENT_TEXT = {"contact_name": 200, "phone": 200, "mobile": 200, "website": 200,
               "tax_number": 200, "billing_address": 1000, "shipping_address": 1000,
               "notes": 5000}


def clean_client(body: dict[str, Any], *, create: bool) -> dict[str, Any]:
    """The writable client fields present in ``body``, validated."""
    p, out = Problems(), cast(dict[str, Any], {})
    if create or "name" in body:
        out["name"] = p.text(body.get("name"), "name", min_len=1, max_len=200, nullable=False)
    if "email" in body:
        out["email"] = p.email(body["email"], "email")
    for key, limit in CLIENT_TEXT.items():
        if key in body:
            out[key] = p.text(body[key], key, max_len=limit)
    if "payment_terms_days" in body:
        out["payment_terms_days"] = p.integer(body["payment_terms_days"],
                                              "payment_terms_days", 0, 365)
    if "tags" in body:
        out["tags"] = p.tags(body["tags"], "tags")
    p.raise_if_any("Client is not valid.")
    return out


def clean_items(value: Any, p: Problems) -> list[dict[str, Any]]:
    if not isinstance(value, list) or not 1 <= len(value) <= 200:
        p.add("items", "must be an array of 1 to 200 line items")
        return []
    items = []
    for i, raw in enumerate(value):
        at = f"items[{i}]"
        if not isinstance(raw, dict):
            p.add(at, "must be an object")
            continue
        kind = p.enum(raw.get("discount_type", "no_discount"), f"{at}.discount_type",
                      DISCOUNT_TYPES)
        pct = p.number(raw.get("discount_percentage", 0), f"{at}.discount_percentage",
                       ge=0, le=100, places=4)
        amount = p.number(raw.get("discount_amount", 0), f"{at}.discount_amount", ge=0,
                          places=2, int_digits=13)
        taxes = raw.get("applied_taxes", [])
        if not isinstance(taxes, list) or len(taxes) > 3:
            p.add(f"{at}.applied_taxes", "must be an array of at most 3 taxes")
            taxes = []
        clean_taxes = []
        for j, tax in enumerate(taxes):
            tat = f"{at}.applied_taxes[{j}]"
            if not isinstance(tax, dict):
                p.add(tat, "must be an object")
                continue
            clean_taxes.append({
                "tax_id": p.text(tax.get("tax_id"), f"{tat}.tax_id", min_len=1, max_len=64),
                "name": p.text(tax.get("name"), f"{tat}.name", min_len=1, max_len=50,
                               nullable=False),
                "rate": num(p.number(tax.get("rate"), f"{tat}.rate", ge=0, le=100, places=4)
                            or Decimal(0))})
        items.append({
            "id": None,
            "code": p.text(raw.get("code"), f"{at}.code", max_len=50),
            "description": p.text(raw.get("description"), f"{at}.description", min_len=1,
                                  max_len=1000, nullable=False),
            "qty": num(p.number(raw.get("qty"), f"{at}.qty", gt=0, places=4, int_digits=13)
                       or Decimal(0)),
            "unit_type": p.enum(raw.get("unit_type", "none"), f"{at}.unit_type", UNIT_TYPES),
            "unit_price": num(p.number(raw.get("unit_price"), f"{at}.unit_price", ge=0,
                                       places=2, int_digits=13) or Decimal(0)),
            "discount_type": kind,
            "discount_percentage": num(pct or Decimal(0)),
            "discount_amount": num(amount or Decimal(0)),
            "withholding_tax_applies": p.boolean(raw.get("withholding_tax_applies", False),
                                                 f"{at}.withholding_tax_applies"),
            "applied_taxes": clean_taxes,
            "amount": 0,
        })
    return items


INVOICE_TEXT = {"document_recipient_address": 1000, "ship_address": 1000, "comment": 5000}


def clean_invoice(body: dict[str, Any], *, create: bool) -> dict[str, Any]:
    """The writable invoice fields present in ``body``, validated (cross-field checks later)."""
    p, out = Problems(), cast(dict[str, Any], {})
    if "client_id" in body:
        out["client_id"] = p.text(body["client_id"], "client_id", min_len=1, max_len=64)
    if "name" in body:
        out["name"] = p.text(body["name"], "name", min_len=1, max_len=200, nullable=False)
    if "email_recipient" in body:
        out["email_recipient"] = p.email(body["email_recipient"], "email_recipient")
    for key, limit in INVOICE_TEXT.items():
        if key in body:
            out[key] = p.text(body[key], key, max_len=limit)
    if "document_number" in body:
        out["document_number"] = p.text(body["document_number"], "document_number",
                                        min_len=1, max_len=30, nullable=False)
    if "document_date" in body:
        out["document_date"] = p.day(body["document_date"], "document_date")
    if "due_date" in body:
        out["due_date"] = p.day(body["due_date"], "due_date", nullable=True)
    if "document_status" in body:
        allowed = ("unsent", "sent") if create else ("unsent", "sent", "void")
        status = body["document_status"]
        if status in STATUSES and status not in allowed:
            p.add("document_status", f"cannot be set to {status} by a client")
        else:
            out["document_status"] = p.enum(status, "document_status", allowed)
    if "currency_code" in body:
        code = body["currency_code"]
        if not isinstance(code, str) or not _CURRENCY.match(code):
            p.add("currency_code", "must be an ISO 4217 code such as USD")
        out["currency_code"] = code
    if "part_payment" in body:
        out["part_payment"] = p.boolean(body["part_payment"], "part_payment")
    if create or "items" in body:
        out["items"] = clean_items(body.get("items"), p)
    if "discount_type" in body:
        out["discount_type"] = p.enum(body["discount_type"], "discount_type", DISCOUNT_TYPES)
    if "discount_value" in body:
        value = p.number(body["discount_value"], "discount_value", ge=0, places=4,
                         int_digits=13)
        out["discount_value"] = num(value) if value is not None else 0
    if "withholding_tax_rate" in body:
        rate = p.number(body["withholding_tax_rate"], "withholding_tax_rate", ge=0, le=100,
                        places=4)
        out["withholding_tax_rate"] = num(rate) if rate is not None else 0
    if "tags" in body:
        out["tags"] = p.tags(body["tags"], "tags")
    p.raise_if_any("Invoice is not valid.")
    return out


def check_invoice(inv: dict[str, Any]) -> None:
    """Cross-field rules on a merged invoice."""
    p = Problems()
    if inv["due_date"] is not None and inv["due_date"] < inv["document_date"]:
        p.add("due_date", "must not be before document_date")
    kind, value = inv["discount_type"], dec(inv["discount_value"])
    if kind == "percentage" and value > 100:
        p.add("discount_value", "must be at most 100 for a percentage discount")
    elif kind == "amount" and value != round2(value):
        p.add("discount_value", "must have at most 2 decimal places")
    elif kind == "no_discount" and value != 0:
        p.add("discount_value", "must be 0 when discount_type is no_discount")
    p.raise_if_any("Invoice is not valid.")


# -- invoice arithmetic (§5.3.3) -----------------------------------------------------------


def compute_totals(inv: dict[str, Any]) -> None:
    """Fill every computed amount of ``inv`` in place; half-up to 2 places at each step."""
    subtotal = Decimal(0)
    withheld_base = Decimal(0)
    taxes: dict[str, dict[str, Any]] = {}
    for item in inv["items"]:
        gross = round2(dec(item["qty"]) * dec(item["unit_price"]))
        if item["discount_type"] == "percentage":
            discount = round2(gross * dec(item["discount_percentage"]) / 100)
        elif item["discount_type"] == "amount":
            discount = min(dec(item["discount_amount"]), gross)
        else:
            discount = Decimal(0)
        amount = gross - discount
        item["discount_amount"], item["amount"] = num(discount), num(amount)
        subtotal += amount
        if item["withholding_tax_applies"]:
            withheld_base += amount
        for tax in item["applied_taxes"]:
            entry = taxes.setdefault(tax["tax_id"], {"tax_id": tax["tax_id"], "name": tax["name"],
                                                      "rate": tax["rate"], "sub": Decimal(0)})
            entry["sub"] += amount
    tax_totals = []
    for entry in taxes.values():
        total = round2(entry["sub"] * dec(entry["rate"]) / 100)
        tax_totals.append({"tax_id": entry["tax_id"], "name": entry["name"],
                           "rate": entry["rate"], "sub_total": num(entry["sub"]),
                           "total": num(total)})
    total_tax = sum((dec(t["total"]) for t in tax_totals), Decimal(0))
    value = dec(inv["discount_value"])
    if inv["discount_type"] == "percentage":
        discount = round2(subtotal * value / 100)
    elif inv["discount_type"] == "amount":
        discount = min(value, subtotal)
    else:
        discount = Decimal(0)
    withholding = round2(withheld_base * dec(inv["withholding_tax_rate"]) / 100)
    total = subtotal + total_tax - discount - withholding
    paid = sum((dec(pay["amount"]) for pay in inv["payments"] if pay["status"] == "succeeded"),
               Decimal(0))
    inv.update(tax_totals=tax_totals, subtotal_amount=num(subtotal),
               total_tax_amount=num(total_tax), discount_amount=num(discount),
               withholding_tax_amount=num(withholding), total_amount=num(total),
               amount_paid_amount=num(paid), balance_due_amount=num(max(Decimal(0),
                                                                        total - paid)))


def settle_status(inv: dict[str, Any]) -> None:
    """Move the status after payments or amounts change (§5.3.4)."""
    status = inv["document_status"]
    if status == "void" or not inv["payments"]:
        return
    if status == "unsent":
        status = "sent"
    if dec(inv["amount_paid_amount"]) > 0:
        status = "fully_paid" if dec(inv["balance_due_amount"]) == 0 else "partially_paid"
    inv["document_status"] = status


# -- the store -----------------------------------------------------------------------------


TABLES = ("accounts", "clients", "invoices", "metrics", "webhooks")


class Store:
    """All accounts' data, in memory; ``now`` is the sandbox clock."""

    def __init__(self, now: Callable[[], float], seed: int = 42) -> None:
        self.now = now
        self.rng = random.Random(seed)
        self.accounts: dict[str, dict[str, Any]] = {}
        self.clients: dict[str, dict[str, Any]] = {}
        self.invoices: dict[str, dict[str, Any]] = {}
        self.metrics: dict[str, dict[str, Any]] = {}
        self.webhooks: dict[str, dict[str, Any]] = {}
        self.taxes: dict[str, str] = {}  # "account|name|rate" -> tax_id
        self.idempotency: dict[str, dict[str, Any]] = {}
        self.outbox: list[dict[str, Any]] = []  # events this sandbox would deliver (§5.7.3)

    def new_id(self) -> str:
        return str(uuid.UUID(int=self.rng.getrandbits(128), version=4))

    def stamp(self) -> str:
        return iso(self.now())

    # -- persistence -----------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        state = self.rng.getstate()
        return {**{t: getattr(self, t) for t in TABLES}, "taxes": self.taxes,
                "idempotency": self.idempotency, "outbox": self.outbox,
                "rng": [state[0], list(state[1]), state[2]]}

    def load_json(self, data: dict[str, Any]) -> None:
        for table in (*TABLES, "taxes", "idempotency"):
            setattr(self, table, dict(data[table]))
        self.outbox = list(data.get("outbox", []))
        version, internal, gauss = data["rng"]
        self.rng.setstate((version, tuple(internal), gauss))

    # -- accounts --------------------------------------------------------------------------

    def account(self, account_id: str) -> dict[str, Any]:
        if account_id not in self.accounts:
            raise not_found("Account")
        return self.accounts[account_id]

    def _owned(self, table: dict[str, dict[str, Any]], account_id: str, object_id: str,
               what: str) -> dict[str, Any]:
        record = table.get(object_id)
        if record is None or record["account_id"] != account_id:
            raise not_found(what)
        return record

    def of_account(self, table: str, account_id: str) -> list[dict[str, Any]]:
        return [r for r in getattr(self, table).values() if r["account_id"] == account_id]

    # -- clients ---------------------------------------------------------------------------

    def get_client(self, account_id: str, client_id: str) -> dict[str, Any]:
        return self._owned(self.clients, account_id, client_id, "Client")

    def create_client(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = clean_client(body, create=True)
        now = self.stamp()
        client = order_client({
            "id": self.new_id(), "account_id": account_id, "email": None,
            **{k: None for k in CLIENT_TEXT}, "payment_terms_days": None, "tags": [],
            "created_at": now, "updated_at": now, **fields})
        self.clients[client["id"]] = client
        return client

    def update_client(self, account_id: str, client_id: str,
                      body: dict[str, Any]) -> dict[str, Any]:
        client = self.get_client(account_id, client_id)
        fields = clean_client(body, create=False)
        if any(client[k] != v for k, v in fields.items()):
            client.update(fields, updated_at=self.stamp())
        return client

    def delete_client(self, account_id: str, client_id: str) -> None:
        self.get_client(account_id, client_id)
        if any(i["client_id"] == client_id for i in self.invoices.values()):
            raise ApiError(409, "conflict", "The client is used by an invoice and cannot be "
                                            "deleted.")
        del self.clients[client_id]

    # -- invoices --------------------------------------------------------------------------

    def get_invoice(self, account_id: str, invoice_id: str) -> dict[str, Any]:
        return self._owned(self.invoices, account_id, invoice_id, "Invoice")

    def create_invoice(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = clean_invoice(body, create=True)
        account = self.account(account_id)
        client = self._client_ref(account_id, fields.get("client_id"))
        if client is None and "name" not in fields:
            raise ApiError(422, "validation_failed", "Invoice is not valid.",
                           [{"field": "name", "issue": "is required when client_id is null"}])
        snap = client or {}
        doc_date = fields.get("document_date") or local_today(self.now(), account["timezone"])
        due = None
        if snap.get("payment_terms_days") is not None:
            due = (date.fromisoformat(doc_date)
                   + timedelta(days=snap["payment_terms_days"])).isoformat()
        now = self.stamp()
        inv = blank_invoice(self.new_id(), account_id, account["currency_code"])
        inv.update(name=snap.get("name"), email_recipient=snap.get("email"),
                   document_recipient_address=snap.get("billing_address"),
                   ship_address=snap.get("shipping_address"), document_date=doc_date,
                   due_date=due, created_at=now, updated_at=now)
        inv.update(fields)
        if "document_number" not in fields:
            inv["document_number"] = self._next_number(account_id)
        self._finish_invoice(inv)
        self.invoices[inv["id"]] = inv
        return inv

    def update_invoice(self, account_id: str, invoice_id: str,
                       body: dict[str, Any]) -> dict[str, Any]:
        inv = self.get_invoice(account_id, invoice_id)
        fields = clean_invoice(body, create=False)
        status = inv["document_status"]
        if status in ("fully_paid", "void") and any(
                k in fields and (k == "items" or fields[k] != inv[k]) for k in MONEY_LOCKED):
            raise ApiError(409, "invalid_state",
                           f"Items, amounts, discounts, currency and client cannot change on a "
                           f"{status} invoice.")
        if fields.get("currency_code", inv["currency_code"]) != inv["currency_code"] \
                and inv["payments"]:
            raise ApiError(409, "invalid_state",
                           "currency_code cannot change once payments exist.")
        wanted = fields.pop("document_status", status)
        if wanted != status and (status == "void" or wanted == "unsent"
                                 or (wanted == "sent" and status != "unsent")):
            raise ApiError(409, "invalid_state",
                           f"document_status cannot change from {status} to {wanted}.")
        if fields.get("discount_type") == "no_discount" and "discount_value" not in fields:
            fields["discount_value"] = 0
        if "client_id" in fields:
            self._client_ref(account_id, fields["client_id"])
        merged = {**inv, **fields, "document_status": wanted}
        merged["items"] = [dict(i) for i in merged["items"]]
        self._finish_invoice(merged, renumber_items="items" in fields)
        if merged != inv:
            merged["updated_at"] = self.stamp()
            self.invoices[invoice_id] = merged
        return self.invoices[invoice_id]

    def delete_invoice(self, account_id: str, invoice_id: str) -> None:
        inv = self.get_invoice(account_id, invoice_id)
        if inv["document_status"] != "unsent" or inv["payments"]:
            raise ApiError(409, "invalid_state",
                           "Only unsent invoices without payments can be deleted.")
        del self.invoices[invoice_id]

    def add_payment(self, account_id: str, invoice_id: str,
                    body: dict[str, Any]) -> dict[str, Any]:
        inv = self.get_invoice(account_id, invoice_id)
        p = Problems()
        amount = p.number(body.get("amount"), "amount", gt=0, places=2, int_digits=13)
        tip = p.number(body.get("tip_amount", 0), "tip_amount", ge=0, places=2, int_digits=13)
        fee = p.number(body.get("fee_amount", 0), "fee_amount", ge=0, places=2, int_digits=13)
        when = body.get("datetime")
        if when is not None and parse_ts(when) is None:
            p.add("datetime", "must be an RFC 3339 timestamp")
        method = p.enum(body.get("method", "other"), "method", PAYMENT_METHODS)
        p.enum(body.get("type", "payment"), "type", ("payment",))
        pay_status = p.enum(body.get("status", "succeeded"), "status", ("succeeded", "pending"))
        txn = p.text(body.get("transaction_id"), "transaction_id", min_len=1, max_len=100)
        p.raise_if_any("Payment is not valid.")
        if inv["document_status"] == "void":
            raise ApiError(409, "invalid_state", "A void invoice cannot take payments.")
        used = {pay["transaction_id"] for i in self.of_account("invoices", account_id)
                for pay in i["payments"]}
        if txn is not None and txn in used:
            raise ApiError(409, "conflict", "transaction_id is already used in this account.")
        n = len(used) + 1
        while txn is None or txn in used:
            txn, n = f"txn_{n:04d}", n + 1
        inv["payments"].append({
            "id": self.new_id(), "transaction_id": txn, "amount": num(amount or Decimal(0)),
            "tip_amount": num(tip or Decimal(0)), "fee_amount": num(fee or Decimal(0)),
            "datetime": iso(parse_ts(when) or 0) if when else self.stamp(),
            "method": method, "type": "payment", "status": pay_status})
        compute_totals(inv)
        settle_status(inv)
        inv["updated_at"] = self.stamp()
        return inv

    def _client_ref(self, account_id: str, client_id: str | None) -> dict[str, Any] | None:
        if client_id is None:
            return None
        client = self.clients.get(client_id)
        if client is None or client["account_id"] != account_id:
            raise ApiError(422, "validation_failed", "Invoice is not valid.",
                           [{"field": "client_id", "issue": "no such client in this account"}])
        return client

    def _next_number(self, account_id: str) -> str:
        numbers = [int(i["document_number"]) for i in self.of_account("invoices", account_id)
                   if i["document_number"].isdigit()]
        return str(max(numbers, default=0) + 1)

    def _finish_invoice(self, inv: dict[str, Any], *, renumber_items: bool = True) -> None:
        check_invoice(inv)
        if any(other["document_number"] == inv["document_number"] and other["id"] != inv["id"]
               for other in self.of_account("invoices", inv["account_id"])):
            raise ApiError(409, "duplicate_document_number",
                           f"document_number {inv['document_number']} is already used.")
        self._assign_taxes(inv)
        if renumber_items:
            for item in inv["items"]:
                item["id"] = self.new_id()
        compute_totals(inv)
        settle_status(inv)

    def _assign_taxes(self, inv: dict[str, Any]) -> None:
        """Give every applied tax a stable id per (account, name, rate); check id/rate clash."""
        rates: dict[str, Any] = {}
        p = Problems()
        for i, item in enumerate(inv["items"]):
            for j, tax in enumerate(item["applied_taxes"]):
                slot = f"{inv['account_id']}|{tax['name']}|{tax['rate']}"
                if tax["tax_id"] is None:
                    tax["tax_id"] = self.taxes.setdefault(slot, self.new_id())
                else:
                    self.taxes.setdefault(slot, tax["tax_id"])
                if rates.setdefault(tax["tax_id"], tax["rate"]) != tax["rate"]:
                    p.add(f"items[{i}].applied_taxes[{j}].rate",
                          "differs from another line using the same tax_id")
        p.raise_if_any("Invoice is not valid.")

    # -- tags ------------------------------------------------------------------------------

    def tags_in_use(self, account_id: str) -> list[dict[str, Any]]:
        counts: dict[str, dict[str, Any]] = {}
        for table, field in (("clients", "client_count"), ("invoices", "invoice_count")):
            for record in self.of_account(table, account_id):
                for tag in record["tags"]:
                    entry = counts.setdefault(tag, {"name": tag, "client_count": 0,
                                                    "invoice_count": 0})
                    entry[field] += 1
        return [counts[name] for name in sorted(counts)]

    # -- insights metrics ------------------------------------------------------------------

    def push_metrics(self, account_id: str,
                     body: dict[str, Any]) -> tuple[list[dict[str, Any]], dict[str, int]]:
        entries: Any = body.get("metrics")
        p = Problems()
        if not isinstance(entries, list) or not 1 <= len(entries) <= 500:
            p.add("metrics", "must be an array of 1 to 500 metrics")
            p.raise_if_any("Metrics are not valid.")
        cleaned = [self._clean_metric(account_id, e, f"metrics[{i}]", p)
                   for i, e in enumerate(entries)]
        seen: dict[tuple[Any, ...], int] = {}
        for i, metric in enumerate(cleaned):
            if metric is None:
                continue
            first = seen.setdefault(_identity(metric), i)
            if first != i:
                p.add(f"metrics[{i}]", f"has the same identity as metrics[{first}]")
        p.raise_if_any("Metrics are not valid.")
        index = {_identity(m): m for m in self.of_account("metrics", account_id)}
        meta = {"created": 0, "updated": 0, "unchanged": 0}
        out = []
        now = self.stamp()
        for metric in cleaned:
            assert metric is not None
            existing = index.get(_identity(metric))
            if existing is None:
                record = {"id": self.new_id(), **metric, "created_at": now, "updated_at": now}
                self.metrics[record["id"]] = record
                meta["created"] += 1
            elif all(existing[k] == v for k, v in metric.items()):
                record = existing
                meta["unchanged"] += 1
            else:
                existing.update(metric, updated_at=now)
                record = existing
                meta["updated"] += 1
            out.append(record)
        return out, meta

    def _clean_metric(self, account_id: str, raw: Any, at: str,
                      p: Problems) -> dict[str, Any] | None:
        if not isinstance(raw, dict):
            p.add(at, "must be an object")
            return None
        before = len(p.details)
        metric: dict[str, Any] = {"account_id": account_id}
        for key, pattern in (("source", _SOURCE), ("key", _KEY)):
            value = raw.get(key)
            if not isinstance(value, str) or not pattern.match(value):
                p.add(f"{at}.{key}", f"is required and must match {pattern.pattern}")
            metric[key] = value
        metric["label"] = p.text(raw.get("label"), f"{at}.label", max_len=200)
        value = p.number(raw.get("value"), f"{at}.value")
        metric["value"] = raw.get("value") if value is not None else None
        unit = metric["unit"] = p.enum(raw.get("unit", "count"), f"{at}.unit", METRIC_UNITS)
        currency = raw.get("currency_code")
        if unit == "currency" and (not isinstance(currency, str) or not _CURRENCY.match(currency)):
            p.add(f"{at}.currency_code", "is required (ISO 4217) when unit is currency")
        elif unit != "currency" and currency is not None:
            p.add(f"{at}.currency_code", "must be null unless unit is currency")
        metric["currency_code"] = currency
        metric["period_start"], metric["period_end"] = _clean_period(raw, at, p)
        metric["dimensions"] = _clean_dimensions(raw.get("dimensions", {}), f"{at}.dimensions", p)
        client_id = p.text(raw.get("client_id"), f"{at}.client_id", min_len=1, max_len=64)
        if client_id is not None and (client_id not in self.clients or
                                      self.clients[client_id]["account_id"] != account_id):
            p.add(f"{at}.client_id", "no such client in this account")
        metric["client_id"] = client_id
        metric["tags"] = p.tags(raw.get("tags", []), f"{at}.tags")
        metric["external_id"] = p.text(raw.get("external_id"), f"{at}.external_id", min_len=1,
                                       max_len=200)
        return metric if len(p.details) == before else None

    def get_metric(self, account_id: str, metric_id: str) -> dict[str, Any]:
        return self._owned(self.metrics, account_id, metric_id, "Metric")

    def delete_metric(self, account_id: str, metric_id: str) -> None:
        self.get_metric(account_id, metric_id)
        del self.metrics[metric_id]

    # -- webhook subscriptions (events go to ``outbox``; webhooks.py delivers them) ------

    def get_webhook(self, account_id: str, webhook_id: str) -> dict[str, Any]:
        return self._owned(self.webhooks, account_id, webhook_id, "Webhook")

    def create_webhook(self, account_id: str, body: dict[str, Any]) -> dict[str, Any]:
        fields = _clean_webhook(body, create=True)
        if len(self.of_account("webhooks", account_id)) >= 10:
            raise ApiError(422, "validation_failed", "Too many webhooks.",
                           [{"field": "url", "issue": "at most 10 subscriptions per account"}])
        now = self.stamp()
        secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode("ascii")
        hook = {"id": self.new_id(), "account_id": account_id, "url": fields["url"],
                "events": fields["events"], "description": fields.get("description"),
                "active": fields.get("active", True), "secret": secret,
                "created_at": now, "updated_at": now}
        self.webhooks[hook["id"]] = hook
        return hook

    def update_webhook(self, account_id: str, webhook_id: str,
                       body: dict[str, Any]) -> dict[str, Any]:
        hook = self.get_webhook(account_id, webhook_id)
        fields = _clean_webhook(body, create=False)
        if any(hook[k] != v for k, v in fields.items()):
            hook.update(fields, updated_at=self.stamp())
        return hook

    def delete_webhook(self, account_id: str, webhook_id: str) -> None:
        self.get_webhook(account_id, webhook_id)
        del self.webhooks[webhook_id]

    def queue_test_event(self, account_id: str, webhook_id: str) -> dict[str, Any]:
        """A ``webhook.test`` event for one subscription, whatever its event filter."""
        self.get_webhook(account_id, webhook_id)
        event = {"id": self.new_id(), "type": "webhook.test", "created_at": self.stamp(),
                 "account_id": account_id, "api_version": "v1", "data": {"object": {}}}
        self.outbox.append({"webhook_id": webhook_id, "event": event})
        return event

    # -- idempotency (§1.1) ----------------------------------------------------------------

    def idempotent(self, account_id: str, key: str) -> dict[str, Any] | None:
        now = self.now()
        for k in [k for k, r in self.idempotency.items() if r["at"] + IDEMPOTENCY_TTL <= now]:
            del self.idempotency[k]
        return self.idempotency.get(f"{account_id}|{key}")

    def remember(self, account_id: str, key: str, record: dict[str, Any]) -> None:
        self.idempotency[f"{account_id}|{key}"] = {**record, "at": self.now()}


def public_webhook(hook: dict[str, Any], *, with_secret: bool = False) -> dict[str, Any]:
    out = {k: v for k, v in hook.items() if k != "account_id"}
    if not with_secret:
        out["secret"] = None
    return out


def order_client(client: dict[str, Any]) -> dict[str, Any]:
    keys = ("id", "account_id", "name", "email", "contact_name", "phone", "mobile", "website",
            "billing_address", "shipping_address", "tax_number", "payment_terms_days", "notes",
            "tags", "created_at", "updated_at")
    return {k: client[k] for k in keys}


def blank_invoice(invoice_id: str, account_id: str, currency: str) -> dict[str, Any]:
    return {"id": invoice_id, "account_id": account_id, "document_type": "invoice",
            "document_number": "", "document_date": "", "due_date": None,
            "document_status": "unsent", "client_id": None, "name": None,
            "email_recipient": None, "document_recipient_address": None, "ship_address": None,
            "comment": None, "currency_code": currency, "part_payment": False, "items": [],
            "tax_totals": [], "discount_type": "no_discount", "discount_value": 0,
            "withholding_tax_rate": 0, "subtotal_amount": 0, "total_tax_amount": 0,
            "discount_amount": 0, "withholding_tax_amount": 0, "total_amount": 0,
            "amount_paid_amount": 0, "balance_due_amount": 0, "payments": [], "tags": [],
            "created_at": "", "updated_at": ""}


def _identity(metric: dict[str, Any]) -> tuple[Any, ...]:
    if metric["external_id"] is not None:
        return ("x", metric["source"], metric["external_id"])
    return ("k", metric["source"], metric["key"], metric["period_start"], metric["period_end"],
            tuple(sorted(metric["dimensions"].items())))


def _clean_period(raw: dict[str, Any], at: str, p: Problems) -> tuple[Any, Any]:
    start, end = raw.get("period_start"), raw.get("period_end")
    if parse_date(start) and parse_date(end):
        if str(end) < str(start):
            p.add(f"{at}.period_end", "must not be before period_start")
        return start, end
    ts_start, ts_end = parse_ts(start), parse_ts(end)
    if ts_start is not None and ts_end is not None:
        if ts_end < ts_start:
            p.add(f"{at}.period_end", "must not be before period_start")
        return iso(ts_start), iso(ts_end)
    for key, value in (("period_start", start), ("period_end", end)):
        if parse_date(value) is None and parse_ts(value) is None:
            p.add(f"{at}.{key}", "is required: a date or an RFC 3339 timestamp")
    if not any(d["field"].startswith(f"{at}.period") for d in p.details):
        p.add(f"{at}.period_end", "must be the same kind (date or timestamp) as period_start")
    return start, end


def _clean_dimensions(value: Any, at: str, p: Problems) -> dict[str, str]:
    if not isinstance(value, dict) or len(value) > 10:
        p.add(at, "must be an object of at most 10 string entries")
        return {}
    for key, item in value.items():
        if not _DIM_KEY.match(key):
            p.add(f"{at}.{key}", "key must match [a-z0-9_]{1,40}")
        elif not isinstance(item, str) or len(item) > 200:
            p.add(f"{at}.{key}", "must be a string of at most 200 characters")
    return dict(value)


def _clean_webhook(body: dict[str, Any], *, create: bool) -> dict[str, Any]:
    p, out = Problems(), cast(dict[str, Any], {})
    if create or "url" in body:
        url = p.text(body.get("url"), "url", min_len=1, max_len=2000, nullable=False)
        if url is not None and not (url.startswith("https://") or re.match(
                r"^http://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?(/|$)", url)):
            p.add("url", "must be https:// (http:// only for loopback hosts)")
        out["url"] = url
    if create or "events" in body:
        events = body.get("events")
        if not isinstance(events, list) or not events:
            p.add("events", "must be a non-empty array of event types")
        else:
            for i, event in enumerate(events):
                if event != "*" and event not in EVENT_TYPES:
                    p.add(f"events[{i}]", "is not a known event type")
        out["events"] = events
    if "description" in body:
        out["description"] = p.text(body["description"], "description", max_len=500)
    if "active" in body:
        out["active"] = p.boolean(body["active"], "active")
    p.raise_if_any("Webhook is not valid.")
    return out

"""Template filters shipped with splice, as plain functions.

``FILTERS`` maps a filter name to its function; the default plugin registers them through
``register_template_filters`` and :class:`splice.mapping.templates.TemplateEngine` uses them when it
is built without an explicit filter table. Jinja's own filters (``default``, ``join``,
``upper`` ...) stay available next to these.

Filters raise :class:`FilterError` with messages that describe the problem without quoting
the value: the value may be a secret and messages end up in logs.
"""

from __future__ import annotations

import hashlib
import json as _json
import re
import unicodedata
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from jinja2.runtime import Undefined

__all__ = ["FILTERS", "FilterError"]


class FilterError(ValueError):
    """A filter got a value it cannot handle; the message never quotes the value."""


# ---------------------------------------------------------------- helpers


def _kind(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _to_datetime(value: Any, name: str) -> datetime:
    """Coerce a datetime, date, ISO-8601 string (``Z`` allowed) or unix seconds."""
    if isinstance(value, datetime):
        return value
    if isinstance(value, date):
        return datetime.combine(value, time(0), tzinfo=UTC)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, tz=UTC)
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            return datetime.fromisoformat(text)
        except ValueError:
            raise FilterError(f"{name}: the string is not an ISO-8601 date or datetime") from None
    raise FilterError(f"{name}: expected a date, datetime or ISO-8601 string, got {_kind(value)}")


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _to_decimal(value: Any, name: str) -> Decimal:
    if isinstance(value, bool) or value is None:
        raise FilterError(f"{name}: expected a number, got {_kind(value)}")
    if isinstance(value, Decimal):
        return value
    try:
        return Decimal(str(value).strip()) if not isinstance(value, int) else Decimal(value)
    except (InvalidOperation, ValueError):
        raise FilterError(f"{name}: expected a number, got {_kind(value)}") from None


_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
_MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
           "September", "October", "November", "December"]


def _strftime(moment: date, fmt: str) -> str:
    """``strftime`` with English names whatever the process locale is."""

    def name(match: re.Match[str]) -> str:
        code = match.group(1)
        if code == "A":
            return _DAYS[moment.weekday()]
        if code == "a":
            return _DAYS[moment.weekday()][:3]
        if code == "B":
            return _MONTHS[moment.month - 1]
        if code in ("b", "h"):
            return _MONTHS[moment.month - 1][:3]
        if code == "p" and isinstance(moment, datetime):
            return "AM" if moment.hour < 12 else "PM"
        return match.group(0)

    return moment.strftime(re.sub(r"%([AaBbhp%])", name, fmt))


# ---------------------------------------------------------------- text


_NOT_SLUG = re.compile(r"[^a-z0-9]+")


def _ascii(value: Any) -> str:
    text = str(value)
    if text.isascii():
        return text
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()


def slug(value: Any, separator: str = "-") -> str:
    """Lowercase ASCII slug: ``"Black Friday 2024!"`` -> ``"black-friday-2024"``."""
    return _NOT_SLUG.sub(separator, _ascii(value).lower()).strip(separator)


def lower_snake(value: Any) -> str:
    """snake_case an identifier or phrase: ``"firstName"``/``"First Name"`` -> ``"first_name"``."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", _ascii(value))
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")


def truncate_chars(value: Any, length: int, end: str = "...") -> str:
    """Cut text to at most ``length`` characters, ending with ``end`` when it was cut."""
    text = str(value)
    if length < 0:
        raise FilterError("truncate_chars: length must not be negative")
    if len(text) <= length:
        return text
    if len(end) >= length:
        return text[:length]
    return text[: length - len(end)] + end


def split(value: Any, separator: str | None = None, maxsplit: int = -1) -> list[str]:
    """Split text into a list (on whitespace when no separator is given)."""
    if value is None:
        return []
    return str(value).split(separator, maxsplit)


def email_domain(value: Any) -> str | None:
    """Lowercased domain of an email address, or null when there is no ``@``."""
    if not isinstance(value, str) or "@" not in value:
        return None
    return value.rsplit("@", 1)[1].strip().lower() or None


_HASHES = {"md5", "sha1", "sha224", "sha256", "sha384", "sha512", "blake2b", "blake2s",
           "sha3_224", "sha3_256", "sha3_384", "sha3_512"}


def hash_digest(value: Any, algo: str = "sha256") -> str:
    """Hex digest of a string (UTF-8) or of any JSON value (canonical JSON)."""
    if algo not in _HASHES:
        raise FilterError(f"hash: unknown algorithm; use one of {', '.join(sorted(_HASHES))}")
    if isinstance(value, bytes):
        data = value
    elif isinstance(value, str):
        data = value.encode()
    else:
        data = to_json(value, sort_keys=True).encode()
    return hashlib.new(algo, data).hexdigest()


# ---------------------------------------------------------------- dates


def format_date(value: Any, format: str = "%Y-%m-%d") -> str:  # noqa: A002
    """Format a date, datetime, ISO string or unix time with ``strftime`` (default ISO date)."""
    return _strftime(_to_datetime(value, "date"), format)


def datetime_iso(value: Any) -> str:
    """ISO-8601 UTC timestamp ending in ``Z``; naive values are taken as UTC."""
    return _as_utc(_to_datetime(value, "datetime_iso")).isoformat().replace("+00:00", "Z")


def add_days(value: Any, days: int | float) -> date | datetime:
    """Shift a date or datetime by a number of days (strings become datetimes)."""
    if isinstance(value, date) and not isinstance(value, datetime):
        return value + timedelta(days=days)
    return _to_datetime(value, "add_days") + timedelta(days=days)


def days_ago(value: Any, days: int | float) -> date | datetime:
    """The moment ``days`` days before the value: ``{{ now | days_ago(7) }}``."""
    return add_days(value, -days)


def timestamp(value: Any) -> int:
    """Unix time in whole seconds; naive values are taken as UTC."""
    return int(_as_utc(_to_datetime(value, "timestamp")).timestamp())


# ---------------------------------------------------------------- money

_SYMBOLS = {"USD": "$", "EUR": "€", "GBP": "£", "JPY": "¥", "INR": "₹", "AUD": "A$",
            "CAD": "CA$", "NZD": "NZ$", "BRL": "R$", "MXN": "MX$"}
_ZERO_DECIMAL = {"JPY", "KRW", "VND", "CLP", "ISK", "HUF"}


def money(value: Any, currency: str = "USD") -> str:
    """Format an amount: ``1234.5 | money`` -> ``"$1,234.50"``; other currencies: ``"5.00 CHF"``."""
    code = str(currency).upper()
    places = 0 if code in _ZERO_DECIMAL else 2
    amount = _to_decimal(value, "money").quantize(Decimal(1).scaleb(-places), ROUND_HALF_UP)
    digits = f"{abs(amount):,.{places}f}"
    sign = "-" if amount < 0 else ""
    symbol = _SYMBOLS.get(code)
    return f"{sign}{symbol}{digits}" if symbol else f"{sign}{digits} {code}"


def cents_to_amount(value: Any, decimals: int = 2) -> float:
    """Minor units to an amount: ``1999`` -> ``19.99``."""
    return float(_to_decimal(value, "cents_to_amount").scaleb(-decimals))


def amount_to_cents(value: Any, decimals: int = 2) -> int:
    """An amount to minor units, rounding half up: ``19.995`` -> ``2000``."""
    return int(_to_decimal(value, "amount_to_cents").scaleb(decimals).quantize(1, ROUND_HALF_UP))


# ---------------------------------------------------------------- data


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return datetime_iso(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, set | frozenset | tuple):
        return list(value)
    raise FilterError(f"json: a {_kind(value)} value cannot be written as JSON")


def to_json(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """Dump a value as JSON (dates as ISO-8601, non-ASCII kept)."""
    return _json.dumps(value, indent=indent, sort_keys=sort_keys, ensure_ascii=False,
                       default=_json_default)


def from_json(value: Any) -> Any:
    """Parse a JSON string into a value."""
    if not isinstance(value, str | bytes):
        raise FilterError(f"from_json: expected a string, got {_kind(value)}")
    try:
        return _json.loads(value)
    except ValueError as exc:
        raise FilterError(f"from_json: invalid JSON at line {exc.lineno}, "  # type: ignore[attr-defined]
                          f"column {exc.colno}") from None  # type: ignore[attr-defined]


def pluck(items: Any, key: str | int) -> list[Any]:
    """The ``key`` of every object in a list (null where an object lacks it)."""
    if items is None:
        return []
    if isinstance(items, str | Mapping) or not isinstance(items, Iterable):
        raise FilterError(f"pluck: expected a list, got {_kind(items)}")
    out = []
    for item in items:
        if isinstance(item, Mapping):
            out.append(item.get(key))
        elif isinstance(item, list | tuple) and isinstance(key, int) and abs(key) < len(item):
            out.append(item[key])
        else:
            out.append(None)
    return out


def unique(items: Any) -> list[Any]:
    """Drop repeated values, keeping the first of each, order preserved, case-sensitive."""
    if items is None:
        return []
    if isinstance(items, str | Mapping) or not isinstance(items, Iterable):
        raise FilterError(f"unique: expected a list, got {_kind(items)}")
    seen: set[Any] = set()
    out = []
    for item in items:
        try:
            marker: Any = (type(item) is bool, item)
            fresh = marker not in seen
        except TypeError:  # lists and objects: compare their canonical JSON
            marker = ("json", to_json(item, sort_keys=True))
            fresh = marker not in seen
        if fresh:
            seen.add(marker)
            out.append(item)
    return out


def coalesce(value: Any, *others: Any) -> Any:
    """First value that is neither null nor undefined: ``{{ a | coalesce(b, "n/a") }}``."""
    for candidate in (value, *others):
        if candidate is not None and not isinstance(candidate, Undefined):
            return candidate
    return None


FILTERS: dict[str, Callable[..., Any]] = {
    "slug": slug,
    "lower_snake": lower_snake,
    "truncate_chars": truncate_chars,
    "split": split,
    "email_domain": email_domain,
    "hash": hash_digest,
    "date": format_date,
    "datetime_iso": datetime_iso,
    "add_days": add_days,
    "days_ago": days_ago,
    "timestamp": timestamp,
    "money": money,
    "cents_to_amount": cents_to_amount,
    "amount_to_cents": amount_to_cents,
    "json": to_json,
    "from_json": from_json,
    "pluck": pluck,
    "unique": unique,
    "coalesce": coalesce,
}

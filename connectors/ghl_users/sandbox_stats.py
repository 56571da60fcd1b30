"""Social Planner statistics for the HighLevel sandbox: the request and the analytics body.

Contract: :func:`statistics_request` checks what the spec's schemas cannot (date ranges that
parse, start not after end, ``prevRange`` only with ``currentRange``, at most 100 profiles:
400 ``BadRequestDTO`` as the spec's descriptions say) and picks the window: without ranges,
the 7 days before today against the 7 days before those. :func:`statistics` is a pure
function of seed, profile ids, days and metric, so the same request always gets the same
figures and a longer window contains a shorter one's days. :func:`trace_id` makes the
deterministic ``traceId`` HighLevel returns with them.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from .sandbox_http import ApiProblem

_DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
PLATFORMS = ("facebook", "instagram", "linkedin", "google", "pinterest", "youtube", "tiktok")


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode("utf-8")).digest()


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

    profile_ids: list[str] | None  # None: all of the location's
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
    if not 1900 <= moment.year <= 9000:
        raise ApiProblem(400, f"{name} is out of range")
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


def statistics_request(body: dict[str, Any] | None, today: date) -> StatisticsRequest:
    """Check a (schema-valid) statistics body. No body (the date-versioned spec makes it
    optional) means every profile of the location on every platform. Without ranges: the
    last 7 days before ``today`` and the 7 days before those. ``currentRange``/``prevRange``
    are the v3 spec's fields; the date-versioned spec allows extra fields, so both read them.
    """
    body = body or {}
    profiles, platforms = body.get("profileIds"), body.get("platforms")
    if isinstance(profiles, list) and len(profiles) > 100:
        raise ApiProblem(400, "Statistics can be requested for at most 100 accounts")
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
    return StatisticsRequest(None if profiles is None else list(profiles),
                             None if platforms is None else list(platforms), current, previous)


def trace_id(seed: int, n: int) -> str:
    """A deterministic UUID4-looking trace id for the ``n``-th traced response."""
    return str(uuid.UUID(bytes=_digest("trace", seed, n)[:16], version=4))

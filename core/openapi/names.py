"""Readable operation ids for imported OpenAPI operations.

``derive_operation_id`` reads a verb phrase from the method and path (``GET
/social-media-posting/{locationId}/tags`` -> ``list_tags``, ``POST /users/search/filter-by-email``
-> ``filter_users_by_email``); the spec's own ``operationId`` is only a fallback, because it is
often an opaque string.
"""

from __future__ import annotations

import re

__all__ = ["derive_operation_id", "snake", "title_from_id", "valid_id"]


_VERBS = frozenset(
    "search list filter bulk set start stop upload download export import send resend cancel "
    "attach detach verify validate publish unpublish archive unarchive restore duplicate clone "
    "copy move sync refresh reset enable disable activate deactivate approve reject preview "
    "generate reschedule add remove assign unassign connect disconnect finalize complete lock "
    "unlock merge void record refund mark upsert create update delete get fetch find lookup "
    "calculate pause resume submit accept decline invite revoke rotate transfer convert apply "
    "redeem replace bind unbind install uninstall block unblock".split()
)
# Verbs that act on a whole collection take a plural object: search_users, bulk_delete_posts.
_COLLECTION_VERBS = frozenset("search list filter bulk export import sync upsert find".split())
# Words that are verbs only when followed by an object ("record-payment", not "record").
_WEAK_VERBS = frozenset("record set block lock mark".split())
_VIEW_NOUNS = frozenset(
    "details detail statistics stats summary status analytics overview info report reports "
    "metrics insights".split()
)
_LINKERS = frozenset({"by", "for", "from", "to", "with", "in", "on", "of"})


def _is_verb(word: str) -> bool:
    words = word.split("_")
    return words[0] in _VERBS and (len(words) > 1 or words[0] not in _WEAK_VERBS)


def snake(text: str) -> str:
    """``filter-by-email`` / ``getUserById`` / ``Get tags`` -> ``filter_by_email`` ..."""
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", text)
    text = re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower()
    return text


def _singular(word: str) -> str:
    """Rough English singular of the last word of a snake_case noun."""
    head, _, last = word.rpartition("_")
    if last.endswith("ies") and len(last) > 4:
        last = last[:-3] + "y"
    elif last.endswith(("sses", "xes", "ches", "shes", "uses")):
        last = last[:-2]
    elif last.endswith("s") and not last.endswith(("ss", "us", "is")) and len(last) > 3:
        last = last[:-1]
    return f"{head}_{last}" if head else last


def _plural(word: str) -> str:
    """Rough English plural of the last word of a snake_case noun."""
    head, _, last = word.rpartition("_")
    if _singular(last) != last or last.endswith("data"):
        pass  # already plural
    elif last.endswith("y") and len(last) > 1 and last[-2] not in "aeiou":
        last = last[:-1] + "ies"
    elif last.endswith(("s", "x", "ch", "sh")):
        last += "es"
    else:
        last += "s"
    return f"{head}_{last}" if head else last


def derive_operation_id(method: str, path: str, namespace: str | None = None) -> str:
    """A snake_case verb phrase for ``method path`` (empty when the path says nothing)."""
    method = method.upper()
    segments = [s for s in path.split("/") if s]
    items: list[tuple[bool, str]] = []  # (is_param, snake words)
    for seg in segments:
        if "{" in seg:
            items.append((True, ""))
        elif not re.fullmatch(r"v\d+(\.\d+)?|api", seg, flags=re.I):
            items.append((False, snake(seg)))
    literals = [i for i, (param, word) in enumerate(items) if not param and word]
    if literals and namespace and items[literals[0]][1] == snake(namespace) and len(literals) > 1:
        literals = literals[1:]
    if not literals:
        return ""
    last_index = literals[-1]
    last = items[last_index][1]
    words = last.split("_")
    trailing_param = any(param for param, _ in items[last_index + 1 :])

    def noun_before(index: int) -> tuple[str, bool]:
        """The nearest noun segment before ``index`` and whether a param sits between."""
        for i in reversed([j for j in literals if j < index]):
            if not _is_verb(items[i][1]):
                return items[i][1], any(p for p, _ in items[i + 1 : index])
        return "", False

    verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "update"}.get(
        method, "delete"
    )
    if not trailing_param and _is_verb(last):
        noun, item = noun_before(last_index)
        if noun:
            noun = _plural(noun) if words[0] in _COLLECTION_VERBS and not item else _singular(noun)
        if all(w in _VERBS for w in words):  # "search", "bulk_delete"
            return "_".join(filter(None, [last, noun]))
        if words[1:] == ["all"]:  # "remove_all"
            return "_".join(filter(None, [words[0], "all", _plural(noun) if noun else ""]))
        if words[1] in _LINKERS:  # "filter_by_email"
            return "_".join(filter(None, [words[0], noun, *words[1:]]))
        return last  # "set_accounts", "record_payment"
    if not trailing_param and last in _VIEW_NOUNS:
        noun, _ = noun_before(last_index)
        prefix = "get" if method in ("GET", "POST") else verb
        return "_".join(filter(None, [prefix, _singular(noun) if noun else "", last]))
    if trailing_param:
        return f"{verb}_{_singular(last)}"
    if method == "GET":
        return f"list_{_plural(last)}"
    return f"{verb}_{_singular(last) if method != 'DELETE' else _plural(last)}"


def valid_id(text: str) -> str:
    """``getUserById`` -> ``get_user_by_id``; ids never start with a digit."""
    text = snake(text)
    if not text:
        return ""
    return text if text[0].isalpha() else f"op_{text}"


def title_from_id(op_id: str) -> str:
    """``list_tags`` -> ``List tags``."""
    text = op_id.replace("_", " ")
    return text[:1].upper() + text[1:]

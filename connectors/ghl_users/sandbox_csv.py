"""CSV post imports in the HighLevel sandbox: upload, choose accounts, review, finalize, delete.

Contract, following the Social Planner's import flow and the spec's shapes:

1. ``POST .../csv`` takes ``multipart/form-data`` with a ``file`` part (the only media type
   the spec declares; anything else is 400). The CSV needs a header row; columns are matched
   by name, case and punctuation ignored: ``content``/``summary``/``text``, ``scheduleDate``
   (or ``date``, ``postAtSpecificTime...``), ``imageUrls``, ``videoUrls``, ``gifUrl``,
   ``link``, ``followUpComment``, ``type``; several URLs in one cell are split on commas.
   201 with ``{filePath, rowsCount, fileName}``. No data rows, or no file part: 400.
2. ``POST .../set-accounts`` with that ``filePath`` (unknown: 400) and the location's account
   ids (others: 400) creates the import (status ``pending``); 201.
3. ``GET .../csv`` lists the location's imports (newest first, ``skip``/``limit``);
   ``GET .../csv/{id}`` shows one with its rows (``skip``/``limit`` over rows).
4. ``PATCH .../csv/{id}`` finalizes a pending import: every row without an ``errorMessage``
   becomes a post (``source: csv``) on the import's accounts; status ``completed``.
5. ``DELETE .../csv/{id}`` marks it ``deleted`` (200 with the spec's ``CsvResponse``);
   ``DELETE .../csv/{csvId}/post/{postId}`` drops one row of a pending import.

Unknown or deleted imports and rows are 400, as are changes to a finalized import.
"""

from __future__ import annotations

import copy
import csv
import io
import re
from typing import Any

from .sandbox_data import World, iso
from .sandbox_http import ApiProblem, Call, page_limit, parse_moment, whole_number
from .sandbox_posts import make_post

Json = dict[str, Any]
MAX_BYTES = 5 * 1024 * 1024
IMPORT_FIELDS = ("_id", "locationId", "fileName", "accountIds", "file", "status", "count",
                 "createdBy", "traceId", "originId", "approver", "createdAt")
_COLUMNS = {
    "summary": ("content", "summary", "text", "postcontent", "caption"),
    "scheduleDate": ("scheduledate", "date", "datetime", "schedule", "postatspecifictime"),
    "image": ("imageurls", "imageurl", "images", "image"),
    "video": ("videourls", "videourl", "videos", "video"),
    "gif": ("gifurl", "gif"),
    "link": ("link", "ogmetaurl", "url"),
    "followUpComment": ("followupcomment", "firstcomment", "comment"),
    "type": ("type", "posttype"),
}


def _key(header: str) -> str | None:
    flat = re.sub(r"[^a-z]", "", header.lower())
    for field, names in _COLUMNS.items():
        if flat in names or any(flat.startswith(n) for n in names if len(n) > 6):
            return field
    return None


def _row(world: World, values: dict[str, str]) -> Json:
    row: Json = {"_id": world.new_hex_id(), "accountIds": [], "medias": [],
                 "summary": values.get("summary", "").strip(), "type": "post"}
    for field, media in (("image", "image/png"), ("video", "video/mp4"), ("gif", "image/gif")):
        for url in (u.strip() for u in values.get(field, "").split(",")):
            if url:
                row["medias"].append({"url": url, "type": media})
    if values.get("link", "").strip():
        row["link"] = {"url": values["link"].strip()}
    for field in ("followUpComment", "type"):
        if values.get(field, "").strip():
            row[field] = values[field].strip()
    when = values.get("scheduleDate", "").strip()
    if when:
        moment = parse_moment(when.replace(" ", "T", 1) if "T" not in when else when)
        if moment is None:
            row["errorMessage"] = f"Invalid schedule date: {when}"
        else:
            row["scheduleDate"] = iso(moment)
    if not row["summary"] and not row["medias"]:
        row["errorMessage"] = "A post needs content or media"
    return row


def parse_csv(world: World, data: bytes) -> list[Json]:
    if len(data) > MAX_BYTES:
        raise ApiProblem(400, "The CSV file is larger than 5 MB")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise ApiProblem(400, "The CSV file must be UTF-8 text") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
        fields = [_key(h) for h in header]
        rows = [{f: cell for f, cell in zip(fields, record, strict=False) if f}
                for record in reader if any(cell.strip() for cell in record)]
    except (StopIteration, csv.Error):
        raise ApiProblem(400, "The file is not a CSV with a header row") from None
    if not any(fields):
        raise ApiProblem(400, "The CSV header names no known column (content, scheduleDate, "
                              "imageUrls, videoUrls, link, ...)")
    if not rows:
        raise ApiProblem(400, "The CSV file has no posts")
    return [_row(world, values) for values in rows]


def _import(world: World, location: str, csv_id: str, *, pending: bool = False) -> Json:
    for item in world.csv_imports:
        if item["_id"] == csv_id and item["locationId"] == location \
                and item["status"] != "deleted":
            if pending and item["status"] != "pending":
                raise ApiProblem(400, f"CSV import {csv_id} is already {item['status']}")
            return item
    raise ApiProblem(400, f"CSV import {csv_id} not found")


def _view(item: Json) -> Json:
    return {k: copy.deepcopy(item[k]) for k in IMPORT_FIELDS if k in item}


def _ok(status: int, message: str, results: Any = None) -> Json:
    body: Json = {"success": True, "statusCode": status, "message": message}
    if results is not None:
        body["results"] = results
    return body


# -- handlers ----------------------------------------------------------------------------------

async def upload_csv(call: Call) -> Json:
    world: World = call.host.world
    part = next((p for p in call.parts or [] if p.name == "file"), None)
    if part is None:
        raise ApiProblem(400, "file is required: send the CSV as the multipart part 'file'")
    rows = parse_csv(world, part.data)
    location = call.path["locationId"]
    file_name = part.filename or "upload.csv"
    file_path = f"{location}/social-planner-import/{world.new_hex_id()}.csv"
    world.csv_files.append({"filePath": file_path, "fileName": file_name,
                            "locationId": location, "rows": rows,
                            "uploadedAt": iso(call.host.now_dt())})
    call.host.save()
    return _ok(201, "Uploaded CSV", {"filePath": file_path, "rowsCount": len(rows),
                                     "fileName": file_name})


async def set_csv_accounts(call: Call) -> Json:
    world: World = call.host.world
    body, location = call.body, call.path["locationId"]
    upload = next((f for f in world.csv_files if f["filePath"] == body["filePath"]
                   and f["locationId"] == location), None)
    if upload is None:
        raise ApiProblem(400, f"No uploaded CSV file at {body['filePath']}")
    live = {a["id"] for a in world.accounts
            if a["_locationId"] == location and not a.get("_deleted")}
    unknown = [i for i in body["accountIds"] if i not in live]
    if unknown:
        raise ApiProblem(400, f"Invalid account ids: {', '.join(unknown[:5])}")
    accounts = list(dict.fromkeys(body["accountIds"]))
    rows = copy.deepcopy(upload["rows"])
    for row in rows:
        row["accountIds"] = list(accounts)
    item = {"_id": world.new_hex_id(), "locationId": location,
            "fileName": body["fileName"] or upload["fileName"], "accountIds": accounts,
            "file": upload["filePath"], "status": "pending", "count": len(rows),
            "createdBy": body.get("userId") or call.caller.user_id,
            "traceId": call.host.next_trace_id(), "originId": "",
            "createdAt": iso(call.host.now_dt()), "_rows": rows}
    if body.get("approver"):
        item["approver"] = body["approver"]
    world.csv_imports.append(item)
    world.csv_files.remove(upload)
    call.host.save()
    return _ok(201, "Accounts Set Successfully")


async def list_csv_imports(call: Call) -> Json:
    world: World = call.host.world
    location = call.path["locationId"]
    items = sorted((i for i in world.csv_imports
                    if i["locationId"] == location and i["status"] != "deleted"),
                   key=lambda i: (i["createdAt"], i["_id"]), reverse=True)
    skip = whole_number(call.query.get("skip"), 0)
    limit = page_limit(call.query.get("limit"), 10)
    return _ok(200, "Fetched CSV Upload Status",
               {"csvs": [_view(i) for i in items[skip: skip + limit]], "count": len(items)})


async def get_csv_import(call: Call) -> Json:
    world: World = call.host.world
    item = _import(world, call.path["locationId"], call.path["id"])
    skip = whole_number(call.query.get("skip"), 0)
    limit = page_limit(call.query.get("limit"), 10)
    rows = item["_rows"]
    return _ok(200, "Fetched CSV", {"csv": _view(item), "count": len(rows),
                                    "posts": copy.deepcopy(rows[skip: skip + limit])})


async def finalize_csv_import(call: Call) -> Json:
    world: World = call.host.world
    location = call.path["locationId"]
    item = _import(world, location, call.path["id"], pending=True)
    accounts = [a for a in world.accounts if a["id"] in item["accountIds"]
                and not a.get("_deleted")]
    now = call.host.now_dt()
    author = (call.body or {}).get("userId") or item["createdBy"]
    for row in item["_rows"]:
        if row.get("errorMessage"):
            continue
        body: Json = {"summary": row["summary"], "type": row.get("type", "post"),
                      "media": [{"url": m["url"], "type": m["type"]} for m in row["medias"]]}
        for key in ("scheduleDate", "followUpComment"):
            if key in row:
                body[key] = row[key]
        if "link" in row:
            body["ogTagsDetails"] = {"metaLink": row["link"]["url"]}
        world.posts.append(make_post(world, location_id=location, accounts=accounts,
                                     body=body, author=author, now=now, source="csv"))
    item["status"] = "completed"
    call.host.save()
    return _ok(200, "CSV import finalized")


async def delete_csv_import(call: Call) -> Json:
    world: World = call.host.world
    item = _import(world, call.path["locationId"], call.path["id"])
    item["status"] = "deleted"
    call.host.save()
    view = _view(item)
    del view["_id"], view["createdAt"]
    return _ok(200, "CSV deleted", {"csv": view})


async def delete_csv_post(call: Call) -> Json:
    world: World = call.host.world
    item = _import(world, call.path["locationId"], call.path["csvId"], pending=True)
    wanted = call.path["postId"]
    kept = [r for r in item["_rows"] if r["_id"] != wanted]
    if len(kept) == len(item["_rows"]):
        raise ApiProblem(400, f"Post {wanted} is not in CSV import {item['_id']}")
    item["_rows"], item["count"] = kept, len(kept)
    call.host.save()
    return _ok(200, "CSV post deleted", {"postId": wanted})

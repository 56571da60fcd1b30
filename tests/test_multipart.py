"""Multipart bodies over real loopback HTTP: file parts from a path, text, base64 bytes or a
URL an earlier step returned; the guards; dry runs; the importer; HighLevel's upload_csv."""

from __future__ import annotations

import base64
import email.parser
import email.policy
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from splice import plugins
from splice.sandbox import serve

from .conftest import FIXTURES, invoke

CSV = "text,date\nHello from splice,2026-05-04\n"


def parse_multipart(content_type: str, body: bytes) -> tuple[dict[str, str], list[dict]]:
    """(form fields, file parts) of a multipart/form-data body, with the stdlib parser."""
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        f"Content-Type: {content_type}\r\n\r\n".encode() + body)
    fields, files = {}, []
    for part in message.iter_parts():
        name = part.get_param("name", header="content-disposition")
        data = part.get_payload(decode=True) or b""
        filename = part.get_filename()
        if filename is None:
            fields[name] = data.decode()
        else:
            files.append({"name": name, "filename": filename,
                          "content_type": part.get_content_type(), "size": len(data),
                          "sha256": hashlib.sha256(data).hexdigest(), "text": data.decode()})
    return fields, files


def create_app() -> Starlette:
    async def upload(request: Request) -> Response:
        fields, files = parse_multipart(request.headers["content-type"], await request.body())
        request.app.state.uploads.append((fields, files))
        return JSONResponse({"fields": fields, "files": [
            {k: v for k, v in f.items() if k != "text"} for f in files]})

    async def export(request: Request) -> Response:
        return JSONResponse({"url": f"{request.base_url}files/export.csv"})

    async def file(request: Request) -> Response:
        return PlainTextResponse(CSV, media_type="text/csv")

    app = Starlette(routes=[Route("/upload", upload, methods=["POST"]),
                            Route("/export", export), Route("/files/export.csv", file)])
    app.state.uploads = []
    return app


@pytest.fixture
def api(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[tuple[Any, str]]:
    monkeypatch.setenv("SPLICE_CONNECTORS_PATH", str(FIXTURES / "uploads"))
    monkeypatch.setenv("SPLICE_FILES_DIR", str(tmp_path / "files"))
    (tmp_path / "files").mkdir()
    (tmp_path / "files/posts.csv").write_text(CSV)
    (tmp_path / "secret.txt").write_text("not for upload")
    plugins.reset()
    app = create_app()
    with serve(app) as url:
        invoke("connections", "add", "up", "--connector", "uploads", "--base-url", url,
               "--allow-private-network")
        yield app, url


def _upload(file: dict[str, Any], **fields: Any) -> Any:
    return invoke("call", "uploads.upload", "-c", "up", "--input",
                  json.dumps({"file": file, **fields}))


@pytest.mark.parametrize("file", [
    {"path": "posts.csv", "content_type": "text/csv"},
    {"content": CSV, "filename": "posts.csv", "content_type": "text/csv"},
    {"content_base64": base64.b64encode(CSV.encode()).decode(), "filename": "posts.csv",
     "content_type": "text/csv"},
])
def test_file_parts_from_a_path_text_or_bytes(api, file):
    app, _ = api
    result = _upload(file, note="weekly import", count=3)
    assert result.exit_code == 0, result.output
    fields, files = app.state.uploads[-1]
    assert fields == {"note": "weekly import", "count": "3"}
    assert [(f["name"], f["filename"], f["content_type"], f["text"]) for f in files] == \
        [("file", "posts.csv", "text/csv", CSV)]


def test_a_file_from_a_url_an_earlier_step_returned(api, tmp_path):
    app, url = api
    recipe = tmp_path / "forward.yaml"
    recipe.write_text("""\
name: Forward the export
trigger: {use: splice.token_refreshed}
steps:
  - id: export
    use: uploads.get_export
    connection: up
  - use: uploads.upload
    connection: up
    with:
      file: {url: "{{ steps.export.url }}"}
      note: "from {{ steps.export.url }}"
""")
    trial = invoke("test", str(recipe), "--sample", "--send", "--json")
    assert trial.exit_code == 0, trial.output
    fields, files = app.state.uploads[-1]
    assert fields == {"note": f"from {url}/files/export.csv"}
    assert [(f["filename"], f["content_type"], f["text"]) for f in files] == \
        [("export.csv", "text/csv", CSV)]


def test_dry_run_shows_the_parts_and_reads_nothing(api, tmp_path):
    app, _ = api
    recipe = tmp_path / "dry.yaml"
    recipe.write_text("""\
name: Upload
trigger: {use: splice.token_refreshed}
steps:
  - use: uploads.upload
    connection: up
    with:
      file: {path: missing-until-sent.csv, filename: posts.csv}
""")
    trial = invoke("test", str(recipe), "--sample", "--json")
    assert trial.exit_code == 0, trial.output
    request = json.loads(trial.stdout)["steps"][0]["request"]
    assert request["multipart"] == {"fields": {}, "files": {"file": {
        "from": "path", "path": "missing-until-sent.csv", "filename": "posts.csv",
        "content_type": None}}}
    assert app.state.uploads == []


@pytest.mark.parametrize(("file", "message"), [
    ({"path": "../secret.txt"}, "is outside the files directory"),
    ({"path": "/etc/passwd"}, "is outside the files directory"),
    ({"path": "nope.csv"}, "cannot read nope.csv"),
    ({"content_base64": "***"}, "content_base64 is not base64"),
    ({"url": "file:///etc/passwd"}, "input is not valid"),
])
def test_file_guards_refuse_before_anything_is_sent(api, file, message):
    app, _ = api
    result = _upload(file)
    assert result.exit_code != 0
    assert message in result.stderr, result.stderr
    assert "not for upload" not in result.output
    assert app.state.uploads == []


def test_importer_generates_multipart_file_parts(tmp_path):
    from splice.openapi.importer import import_openapi

    spec = {"openapi": "3.0.0", "info": {"title": "t", "version": "1"}, "paths": {"/csv": {
        "post": {"operationId": "upload", "requestBody": {"content": {"multipart/form-data": {
            "schema": {"type": "object", "required": ["file"], "properties": {
                "file": {"type": "string", "format": "binary"},
                "label": {"type": "string"}}}}}},
            "responses": {"201": {"description": "ok"}}}}}}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    result = import_openapi(tmp_path / "spec.json")
    op = next(iter(result.manifest["operations"].values()))
    assert op["body_encoding"] == "multipart" and op["files"] == ["file"]
    assert op["input"]["properties"]["file"]["title"] == "File"
    assert op["input"]["properties"]["label"] == {"type": "string"}
    assert op["input"]["required"] == ["file"]
    assert not [w for w in result.warnings if "multipart" in w]


def test_highlevel_upload_csv_sends_the_file_part_the_spec_names(api):
    connector = plugins.get_registry().connector("ghl_users")
    op = connector.operations["upload_csv"]
    assert op.body_encoding == "multipart" and op.files == ["file"]
    from splice.http.request import prepare_call

    call = prepare_call(op, connector, {"locationId": "loc1", "file": {
        "content": CSV, "filename": "posts.csv", "content_type": "text/csv"}},
        base_url="https://services.leadconnectorhq.com")
    request = call.to_request()
    fields, files = parse_multipart(request.headers["content-type"], request.read())
    assert fields == {} and [(f["name"], f["filename"], f["text"]) for f in files] == \
        [("file", "posts.csv", CSV)]
    assert request.url.path == "/social-media-posting/loc1/csv"

"""Multipart bodies: file parts resolved from a path, text, base64 bytes or a URL.

:class:`FilePart` is what a request will send for one ``files`` input (see
:mod:`splice.model.files`); its bytes are read once, when the request is first built, so a
dry run shows the part without reading or fetching anything. Guards:

* a ``path`` must resolve (symlinks followed) inside ``$SPLICE_FILES_DIR`` (default the
  working directory): data from an API can never make splice upload ``/etc/passwd``;
* a ``url`` must be ``http(s)``; it is fetched without credentials, with the default timeouts;
* a part is at most ``MAX_FILE_BYTES`` (50 MB).
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from ..errors import RequestError

__all__ = ["FILES_DIR_ENV", "MAX_FILE_BYTES", "FilePart", "files_root"]

FILES_DIR_ENV = "SPLICE_FILES_DIR"
MAX_FILE_BYTES = 50 * 1024 * 1024
FETCH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


def files_root() -> Path:
    """The directory ``path`` file parts must stay in."""
    return Path(os.environ.get(FILES_DIR_ENV) or os.getcwd()).expanduser().resolve()


@dataclass
class FilePart:
    """One file part: where its bytes come from, and (once read) the bytes."""

    name: str
    source: str                 # path | content | content_base64 | url
    value: str
    filename: str | None = None
    content_type: str | None = None
    _data: bytes | None = field(default=None, repr=False)

    @classmethod
    def from_input(cls, name: str, value: Any) -> FilePart:
        if not isinstance(value, dict):
            raise RequestError(f"file input '{name}' must be an object such as "
                               "{path: ...}, {content: ...} or {url: ...}")
        sources = [s for s in ("path", "content", "content_base64", "url") if s in value]
        if len(sources) != 1:
            raise RequestError(f"file input '{name}' needs exactly one of path, content, "
                               "content_base64 or url")
        return cls(name, sources[0], str(value[sources[0]]), value.get("filename"),
                   value.get("content_type"))

    def describe(self) -> dict[str, Any]:
        """What a dry run shows: never the content."""
        shown = self.value if self.source in ("path", "url") else \
            f"{len(self.value)} characters"
        return {"from": self.source, self.source: shown,
                "filename": self.guess_filename(), "content_type": self.content_type}

    def guess_filename(self) -> str:
        if self.filename:
            return self.filename
        if self.source == "path":
            return Path(self.value).name or "upload"
        if self.source == "url":
            return urlsplit(self.value).path.rsplit("/", 1)[-1] or "upload"
        return "upload"

    def read(self) -> tuple[str, bytes, str]:
        """(filename, bytes, content type), reading the source the first time."""
        if self._data is None:
            self._data = self._load()
        return (self.guess_filename(), self._data,
                self.content_type or "application/octet-stream")

    def _load(self) -> bytes:
        if self.source == "content":
            data = self.value.encode("utf-8")
        elif self.source == "content_base64":
            try:
                data = base64.b64decode(self.value, validate=True)
            except (binascii.Error, ValueError):
                raise RequestError(f"file input '{self.name}': content_base64 is not "
                                   "base64") from None
        elif self.source == "path":
            data = self._read_path()
        else:
            data = self._fetch()
        if len(data) > MAX_FILE_BYTES:
            raise RequestError(f"file input '{self.name}' is larger than "
                               f"{MAX_FILE_BYTES // (1024 * 1024)} MB")
        return data

    def _read_path(self) -> bytes:
        root = files_root()
        path = (root / self.value).resolve()
        if not path.is_relative_to(root):
            raise RequestError(f"file input '{self.name}': {self.value} is outside the files "
                               f"directory {root}",
                               hint=f"set {FILES_DIR_ENV} to the folder uploads come from")
        try:
            if path.stat().st_size > MAX_FILE_BYTES:
                raise RequestError(f"file input '{self.name}' is larger than "
                                   f"{MAX_FILE_BYTES // (1024 * 1024)} MB")
            return path.read_bytes()
        except OSError as exc:
            raise RequestError(f"file input '{self.name}': cannot read {self.value} "
                               f"({exc.strerror})") from None

    def _fetch(self) -> bytes:
        if urlsplit(self.value).scheme not in ("http", "https"):
            raise RequestError(f"file input '{self.name}': only http(s) URLs are fetched")
        try:
            with httpx.Client(timeout=FETCH_TIMEOUT, follow_redirects=True,
                              max_redirects=5) as client, \
                    client.stream("GET", self.value) as response:
                if response.status_code >= 400:
                    raise RequestError(f"file input '{self.name}': fetching it answered HTTP "
                                       f"{response.status_code}")
                chunks, size = [], 0
                for chunk in response.iter_bytes():
                    size += len(chunk)
                    if size > MAX_FILE_BYTES:
                        raise RequestError(f"file input '{self.name}' is larger than "
                                           f"{MAX_FILE_BYTES // (1024 * 1024)} MB")
                    chunks.append(chunk)
                if not self.content_type and response.headers.get("content-type"):
                    self.content_type = response.headers["content-type"].split(";")[0].strip()
                return b"".join(chunks)
        except httpx.HTTPError as exc:
            raise RequestError(f"file input '{self.name}': could not fetch it "
                               f"({type(exc).__name__})") from None

"""``splice connectors new NAME``: write a complete connector plugin package.

The package is what a published plugin looks like, and it passes its own tests as written::

    NAME/
      pyproject.toml          build system, the ``splice`` entry point, package data
      README.md               the author's loop in five commands
      splice_NAME/__init__.py the hook that registers the manifest and the sandbox
      splice_NAME/manifest.yaml  three operations (list, get, create) and a trigger
      splice_NAME/sandbox.py  a Starlette emulator of that API
      tests/test_conformance.py  splice's conformance suite (``splice.testing``)

The files come from ``template/*.tmpl`` (``string.Template``: ``${id}`` and friends), so
they are ordinary files to read and to change. Nothing is overwritten: an existing target
directory is refused.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from string import Template

from ..errors import InputError

__all__ = ["FILES", "scaffold"]

NAME = re.compile(r"^[a-z][a-z0-9_]*$")

#: template file -> path in the package (``{package}`` is ``splice_<name>``)
FILES = {
    "pyproject.toml.tmpl": "pyproject.toml",
    "README.md.tmpl": "README.md",
    "__init__.py.tmpl": "{package}/__init__.py",
    "manifest.yaml.tmpl": "{package}/manifest.yaml",
    "sandbox.py.tmpl": "{package}/sandbox.py",
    "test_conformance.py.tmpl": "tests/test_conformance.py",
}


def scaffold(name: str, target: Path) -> list[Path]:
    """Write the package for connector ``name`` into ``target`` (a new directory)."""
    if not NAME.match(name) or name == "splice":
        raise InputError(f"connector name {name!r} must be snake_case (a-z, 0-9, _) and "
                         "start with a letter")
    if target.exists():
        raise InputError(f"{target} already exists; choose another directory")
    words = name.split("_")
    values = {"id": name, "dist": name.replace("_", "-"), "package": f"splice_{name}",
              "title": " ".join(w.capitalize() for w in words),
              "Title": "".join(w.capitalize() for w in words),
              "item": "widget", "items": "widgets"}
    written = []
    folder = resources.files(__package__).joinpath("template")
    for source, dest in FILES.items():
        text = Template(folder.joinpath(source).read_text("utf-8")).substitute(values)
        path = target / dest.format(package=values["package"])
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written

"""Plugin loading: entry points of group ``splice`` plus splice's own default plugins.

Loading is lazy and idempotent. ``SPLICE_LOAD_PLUGINS`` (comma-separated entry-point names)
limits which third-party plugins load; an empty value loads none. Manifests can also be
loaded without packaging: every file (or ``*.yaml``/``*.yml``/``*.json`` file of a
directory) named in ``SPLICE_CONNECTORS_PATH`` (``os.pathsep``-separated) or added with
``splice connectors add PATH`` (kept in ``<SPLICE_HOME>/connectors.json``) is registered as
if a plugin called ``path:<file>`` had registered it. A plugin that fails to import,
raises in a hook, or registers an invalid manifest is recorded in :attr:`Registry.failures` with
its name and the reason, and skipped: the rest of splice keeps working.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

from . import hookspecs
from .errors import ConfigError, DocumentError, PluginError
from .secrets import home

if TYPE_CHECKING:  # the manifest model (jsonschema, YAML) is imported when a manifest loads:
    from .model.manifest import Connector  # `splice --help` loads plugins, not manifests

ENTRY_POINT_GROUP = "splice"
CONNECTORS_PATH_ENV = "SPLICE_CONNECTORS_PATH"
MANIFEST_SUFFIXES = (".yaml", ".yml", ".json")
DEFAULT_PLUGINS = (
    "splice.default_plugins.filters",
    "splice.default_plugins.auth",
    "splice.default_plugins.connection_events",
    "splice.default_plugins.signatures",
)

pm = pluggy.PluginManager("splice")
pm.add_hookspecs(hookspecs)


@dataclass
class PluginInfo:
    name: str
    version: str | None
    hooks: list[str]
    default: bool = False


@dataclass
class PluginFailure:
    plugin: str
    reason: str

    def __str__(self) -> str:
        return f"plugin '{self.plugin}' skipped: {self.reason}"


def load_manifest(source: str | Path | dict[str, Any], *, plugin: str = "",
                  sandbox: str | None = None) -> Connector:
    """``splice.model.manifest.load_manifest``, imported on first use (with jsonschema and
    YAML: ``splice --help`` loads the plugins but no manifest)."""
    from .model.manifest import load_manifest as load

    return load(source, plugin=plugin, sandbox=sandbox)


_TOP_LEVEL_ID = re.compile(r"""^id:[ \t]*(["']?)([A-Za-z0-9_.-]+)\1[ \t]*(?:#.*)?$""",
                           re.MULTILINE)


@dataclass
class _Pending:
    plugin: str
    source: str | Path | dict[str, Any]
    sandbox: str | None

    def declared_id(self) -> str | None:
        """The manifest's ``id`` read without checking the manifest (a dict's key, a JSON
        file's member, a YAML file's top-level ``id:`` line); None when it cannot be read
        that way (the manifest is then loaded to find out)."""
        if isinstance(self.source, dict):
            value = self.source.get("id")
            return value if isinstance(value, str) else None
        try:
            text = Path(self.source).read_text("utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        if text.lstrip().startswith("{"):
            try:
                value = json.loads(text).get("id")
            except (ValueError, AttributeError):
                return None
            return value if isinstance(value, str) else None
        match = _TOP_LEVEL_ID.search(text)
        return match.group(2) if match else None


@dataclass
class Registry:
    """Everything the loaded plugins registered.

    Connector manifests are checked lazily: ``connector(id)`` (and ``get``) load and check
    only the manifests that declare that id; ``connectors`` loads every one (listing them all,
    ``splice plugins``). A manifest is loaded at most once; its failure is recorded once.
    """

    filters: dict[str, Callable[..., Any]] = field(default_factory=dict)
    auth_types: dict[str, Callable[..., Any]] = field(default_factory=dict)
    signature_schemes: dict[str, Any] = field(default_factory=dict)
    failures: list[PluginFailure] = field(default_factory=list)
    _pending: list[_Pending] = field(default_factory=list)
    _loaded: dict[int, Connector | None] = field(default_factory=dict)  # None: it failed
    _owner: dict[str, int] = field(default_factory=dict)  # id -> index of the one that won
    _index: dict[str, list[int]] | None = None
    _all = False

    def _fail(self, plugin: str, reason: str) -> None:
        failure = PluginFailure(plugin, reason)
        if failure not in self.failures:
            self.failures.append(failure)

    def _load(self, index: int) -> Connector | None:
        """Pending manifest ``index``, loaded and checked once, registered under its id
        unless an earlier manifest holds the id."""
        if index in self._loaded:
            return self._loaded[index]
        item = self._pending[index]
        try:
            connector: Connector | None = load_manifest(item.source, plugin=item.plugin,
                                                        sandbox=item.sandbox)
        except DocumentError as exc:
            self._fail(item.plugin, f"invalid connector manifest:\n{exc}")
            connector = None
        if connector is not None:
            unknown = signature_problems(connector, self.signature_schemes)
            if unknown:
                self._fail(item.plugin, f"invalid connector manifest:\n{unknown}")
                connector = None
        self._loaded[index] = connector
        if connector is not None:
            owner = self._owner.setdefault(connector.id, index)
            if owner != index:
                self._duplicate(connector.id, index)
                self._loaded[index] = None
                return None
        return connector

    def _duplicate(self, connector_id: str, index: int) -> None:
        other = self._pending[self._owner[connector_id]]
        self._fail(self._pending[index].plugin,
                   f"connector id '{connector_id}' is already registered by plugin "
                   f"'{other.plugin}'; plugin '{self._pending[index].plugin}' must use "
                   "another id")

    def _ids(self) -> dict[str, list[int]]:
        """Declared id -> pending manifests declaring it, in registration order."""
        if self._index is None:
            index: dict[str, list[int]] = {}
            for number, item in enumerate(self._pending):
                declared = item.declared_id()
                if declared is None:  # only a full load can tell
                    connector = self._load(number)
                    declared = connector.id if connector is not None else None
                if declared is not None:
                    index.setdefault(declared, []).append(number)
            self._index = index
        return self._index

    @property
    def ids(self) -> list[str]:
        """Ids of every registered connector manifest (none of them checked)."""
        return sorted(self._ids())

    def get(self, connector_id: str) -> Connector | None:
        """The connector with this id, its manifest checked now if not before; None when no
        valid manifest declares it (a failure is recorded for an invalid one)."""
        for number in self._ids().get(connector_id, []):
            connector = self._load(number)
            if connector is not None and connector.id == connector_id:
                for later in self._ids()[connector_id]:
                    if later != number and later not in self._loaded:
                        self._loaded[later] = None
                        self._duplicate(connector_id, later)
                return connector
        owner = self._owner.get(connector_id)
        return self._loaded.get(owner) if owner is not None else None

    @property
    def connectors(self) -> dict[str, Connector]:
        """Connectors by id; every manifest is parsed and checked on first access."""
        if not self._all:
            for number in range(len(self._pending)):
                self._load(number)
            self._all = True
        loaded = {c.id: c for c in self._loaded.values() if c is not None}
        return {cid: loaded[cid] for cid in sorted(loaded, key=lambda c: self._owner[c])}

    def connector(self, connector_id: str) -> Connector:
        connector = self.get(connector_id)
        if connector is None and connector_id in self._ids():
            raise ConfigError(f"connector '{connector_id}' is installed but its manifest is "
                              "not valid", hint="`splice plugins` shows why")
        if connector is None:
            from .model.schema import did_you_mean

            raise ConfigError(f"unknown connector '{connector_id}'"
                              f"{did_you_mean(connector_id, self.ids)}",
                              hint="`splice connectors list` shows the installed connectors")
        return connector


_loaded = False
_registry: Registry | None = None
_infos: list[PluginInfo] = []
_load_failures: list[PluginFailure] = []


def _allowed() -> set[str] | None:
    raw = os.environ.get("SPLICE_LOAD_PLUGINS")
    if raw is None:
        return None
    return {name.strip() for name in raw.split(",") if name.strip()}


def load_plugins() -> None:
    """Import default plugins and allowed entry points once."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    allowed = _allowed()
    for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
        if allowed is not None and ep.name not in allowed:
            continue
        if pm.get_plugin(ep.name) is not None:
            continue
        try:
            module = ep.load()
            pm.register(module, name=ep.name)
        except Exception as exc:  # a broken plugin must never break splice
            _load_failures.append(PluginFailure(ep.name, f"failed to load: {_reason(exc)}"))
            continue
        version = ep.dist.version if ep.dist else None
        _infos.append(PluginInfo(ep.name, version, _hooks_of(module)))
    for modname in DEFAULT_PLUGINS:
        if pm.get_plugin(modname) is None:
            module = importlib.import_module(modname)
            pm.register(module, name=modname)
            _infos.append(PluginInfo(modname, None, _hooks_of(module), default=True))


def _hooks_of(module: Any) -> list[str]:
    return sorted(name for name in dir(hookspecs) if name.startswith("register_")
                  and callable(getattr(module, name, None)))


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _call_each(hook_name: str, make_register: Callable[[str], Callable[..., Any]],
               registry: Registry) -> None:
    """Call every implementation of a hook separately, so failures name their plugin."""
    hook = getattr(pm.hook, hook_name)
    for impl in reversed(hook.get_hookimpls()):  # default plugins first, then entry points
        name = pm.get_name(impl.plugin) or repr(impl.plugin)
        try:
            impl.function(register=make_register(name))
        except Exception as exc:
            registry.failures.append(PluginFailure(name, f"hook {hook_name} raised {_reason(exc)}"))


def get_registry() -> Registry:
    """The registry of all loaded plugins (built once per process)."""
    global _registry
    if _registry is not None:
        return _registry
    load_plugins()
    registry = Registry(failures=list(_load_failures))

    def connectors_register(plugin: str) -> Callable[..., None]:
        def register(source: str | Path | dict[str, Any], *, sandbox: str | None = None) -> None:
            if not isinstance(source, (str, Path, dict)):
                raise PluginError("register() takes a manifest path or a dict")
            registry._pending.append(_Pending(plugin, source, sandbox))
        return register

    def filters_register(plugin: str) -> Callable[..., None]:
        def register(name: str, function: Callable[..., Any]) -> None:
            if not callable(function):
                raise PluginError(f"filter '{name}' is not callable")
            registry.filters[name] = function
        return register

    def auth_register(plugin: str) -> Callable[..., None]:
        def register(name: str, factory: Callable[..., Any]) -> None:
            registry.auth_types[name] = factory
        return register

    _call_each("register_connectors", connectors_register, registry)
    for source in manifest_sources():
        if isinstance(source, PluginFailure):
            registry.failures.append(source)
        else:
            registry._pending.append(_Pending(f"path:{source}", source, None))
    _call_each("register_template_filters", filters_register, registry)

    def schemes_register(plugin: str) -> Callable[..., None]:
        def register(scheme: Any) -> None:
            from .signatures import check_scheme  # (cryptography: not for `splice --help`)

            problem = check_scheme(scheme)
            if problem is not None:
                raise PluginError(problem)
            registry.signature_schemes[scheme.name] = scheme
        return register

    _call_each("register_auth_types", auth_register, registry)
    _call_each("register_signature_schemes", schemes_register, registry)
    _registry = registry
    return registry


def _added_file() -> Path:
    return home() / "connectors.json"


def added_paths() -> list[str]:
    """Manifest paths added with ``splice connectors add`` (absolute, in order)."""
    import json

    try:
        data = json.loads(_added_file().read_text("utf-8"))
    except (OSError, ValueError):
        return []
    paths = data.get("paths") if isinstance(data, dict) else None
    return [str(p) for p in paths or [] if isinstance(p, str)]


def set_added_paths(paths: list[str]) -> None:
    """Replace the list kept for ``splice connectors add`` (written atomically)."""
    import json
    import tempfile

    target = _added_file()
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        json.dump({"paths": paths}, fh, indent=2)
    os.replace(tmp, target)


def manifest_sources() -> list[Path | PluginFailure]:
    """Manifest files from ``SPLICE_CONNECTORS_PATH`` then ``splice connectors add``.

    A directory stands for its ``*.yaml``/``*.yml``/``*.json`` files (not its subfolders);
    a missing entry becomes a :class:`PluginFailure` naming it.
    """
    entries = [e for e in os.environ.get(CONNECTORS_PATH_ENV, "").split(os.pathsep) if e]
    entries += added_paths()
    found: list[Path | PluginFailure] = []
    seen: set[Path] = set()
    for entry in entries:
        path = Path(entry).expanduser()
        if path.is_dir():
            files = sorted(p for p in path.iterdir()
                           if p.suffix in MANIFEST_SUFFIXES and p.is_file())
        elif path.is_file():
            files = [path]
        else:
            found.append(PluginFailure(f"path:{entry}", "no such manifest file or directory"))
            continue
        for file in files:
            resolved = file.resolve()
            if resolved not in seen:
                seen.add(resolved)
                found.append(resolved)
    return found


def signature_problems(connector: Connector, schemes: dict[str, Any]) -> str | None:
    """Located problems of webhook triggers' signature blocks: a scheme nobody registered, or
    a default ``public_key`` the scheme cannot load."""
    from .model.documents import Document, load_document
    from .model.schema import did_you_mean
    from .signatures import SignatureSpec

    problems = []
    for tid, trigger in connector.triggers.items():
        if not trigger.signature:
            continue
        path: tuple[str | int, ...] = ("triggers", tid, "signature")
        for spec in SignatureSpec.from_dict(trigger.signature).chain():
            scheme = schemes.get(spec.scheme)
            if scheme is None:
                problems.append((path + ("scheme",),
                                 f"unknown signature scheme '{spec.scheme}'"
                                 f"{did_you_mean(spec.scheme, schemes)}; registered: "
                                 f"{', '.join(sorted(schemes)) or 'none'}"))
            elif spec.public_key is not None:
                if scheme.key_kind != "public_key":
                    problems.append((path + ("public_key",), f"scheme '{spec.scheme}' uses a "
                                     "shared secret, not a public key"))
                else:
                    try:
                        scheme.load_key(spec.public_key)
                    except ValueError as exc:
                        problems.append((path + ("public_key",), f"unusable key: {exc}"))
            path = path + ("fallback",)
    if not problems:
        return None
    try:
        doc = load_document(connector.source)
    except DocumentError:  # registered as a dict: a path, no position
        doc = Document(path=connector.source, data=None)
    return "\n".join(str(doc.problem(p, m)) for p, m in problems)


def plugin_infos() -> list[PluginInfo]:
    load_plugins()
    return list(_infos)


def reset() -> None:
    """Forget loaded plugins (tests use this after changing SPLICE_LOAD_PLUGINS)."""
    global _loaded, _registry
    for name, plugin in list(pm.list_name_plugin()):
        pm.unregister(plugin, name=name)
    _loaded = False
    _registry = None
    _infos.clear()
    _load_failures.clear()

"""The connector conformance checks, as plain functions returning problems.

* :func:`sample_problems`, :func:`trigger_problems` (from :mod:`splice.authoring.checks`):
  every operation has a sample that validates; every trigger's key reads fields its record
  schema has;
* :func:`sandbox_problems`: the connector's sandbox, served on a loopback port, answers every
  operation, called through splice's own request building and auth, with a 2xx response
  whose body validates against the operation's output schema.

The sandbox is called with a throwaway state database and a connection made the way a user
would make one: the OAuth code flow (approved by the sandbox) for ``oauth2``; the sandbox's
client id/secret (``SandboxConfig``) for ``oauth2_client_credentials``; its
``client_secret`` as the token, key or password for ``bearer``, ``api_key``, ``basic`` and
plugin auth types (a sandbox built with the kit accepts it). Reads run first, then creates,
updates and deletes, so a delete does not remove what a read needs.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from ..authoring.checks import sample_problems, trigger_problems
from ..errors import SpliceError
from ..http.network import OPTION as PRIVATE_NETWORK
from ..model.examples import example
from ..model.manifest import Connector, Operation, load_manifest
from ..sandbox.server import SandboxConfig, load_factory, serve

__all__ = ["example_input", "load_connector", "sample_problems", "sandbox_problems",
           "trigger_problems"]

_ORDER = {"GET": 0, "POST": 1, "PUT": 2, "PATCH": 2, "DELETE": 3}


def load_connector(connector: str | Connector, *, manifest: str | Path | None = None,
                   sandbox: str | None = None) -> Connector:
    """A connector by id (installed plugins and ``SPLICE_CONNECTORS_PATH``) or from a file."""
    if isinstance(connector, Connector):
        return connector
    if manifest is not None:
        return load_manifest(manifest, plugin="conformance", sandbox=sandbox)
    from ..plugins import get_registry

    found = get_registry().connector(connector)
    if sandbox is not None:
        found.sandbox = sandbox
    return found


def example_input(op: Operation) -> dict[str, Any]:
    """An input for ``op`` built from its input schema: its required fields (but those the
    operation's ``defaults`` fill, e.g. from the connection), from their examples."""
    value = example(op.input, required_only=True)
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if k not in op.defaults}


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _connect(connector: Connector, store: Any, url: str, config: SandboxConfig) -> str | None:
    """Create the connection ``conformance`` against the running sandbox."""
    kind = connector.auth_type
    name = "conformance"
    if kind == "none":
        return None
    if kind == "oauth2":
        from ..run.demo import connect_to_sandbox

        connect_to_sandbox(connector, store, name=name, base_url=url, config=config,
                           scopes=connector.scopes)
        return name
    if kind == "oauth2_client_credentials":
        store.put_connection(name, connector=connector.id, auth_type=kind, base_url=url,
                             config={"client_id_ref": {"$env": "SPLICE_CONFORMANCE_ID"},
                                     "client_secret_ref": {"$env": "SPLICE_CONFORMANCE_SECRET"},
                                     PRIVATE_NETWORK: True})  # a sandbox on 127.0.0.1
        return name
    secret_key = {"bearer": "token", "api_key": "api_key", "basic": "password"}.get(kind,
                                                                                     "secret")
    store.put_connection(name, connector=connector.id, auth_type=kind, base_url=url,
                         config={"username": config.client_id, PRIVATE_NETWORK: True}
                         if kind == "basic" else {PRIVATE_NETWORK: True},
                         secret={secret_key: config.client_secret})
    return name


def sandbox_problems(connector: str | Connector, *,
                     inputs: Mapping[str, Mapping[str, Any]] | None = None,
                     skip: set[str] | frozenset[str] = frozenset(),
                     config: SandboxConfig | None = None) -> list[str]:
    """Call every operation (but ``skip``) on the connector's sandbox; list what failed.

    ``inputs`` gives the input of an operation (e.g. the id of a record the sandbox seeds);
    other operations get :func:`example_input`. Operation ``defaults`` apply as in a recipe.
    """
    from ..plugins import get_registry
    from ..secrets import SecretBox
    from ..store.database import Store

    found = load_connector(connector)
    registry = get_registry()
    config = config or SandboxConfig()
    app = load_factory(found)(config)
    problems: list[str] = []
    ops = sorted((op for op in found.operations.values() if op.id not in skip),
                 key=lambda op: _ORDER.get(op.method, 1))
    with tempfile.TemporaryDirectory(prefix="splice-conformance-") as tmp, serve(app) as url, \
            _env({"SPLICE_CONFORMANCE_ID": config.client_id,
                  "SPLICE_CONFORMANCE_SECRET": config.client_secret}):
        store = Store.open(f"sqlite:///{Path(tmp) / 'state.db'}",
                           box=SecretBox(SecretBox.generate_key()))
        try:
            name = _connect(found, store, url, config)
            record = store.require_connection(name) if name else None
            for op in ops:
                payload = dict((inputs or {}).get(op.id) or example_input(op))
                try:
                    problems += _call(found, registry, store, record, op, payload)
                except SpliceError as exc:
                    message = str(exc).splitlines()[0]
                    problems.append(message if message.startswith(op.ref)
                                    else f"{op.ref}: {message}")
        finally:
            store.close()
    return problems


def _call(connector: Connector, registry: Any, store: Any, record: Any, op: Operation,
          payload: dict[str, Any]) -> list[str]:
    """One call (two pages at most); problems with the input or any response body."""
    from datetime import UTC, datetime

    from ..connections.client import connection_client, public_fields
    from ..http.request import prepare_call
    from ..mapping.templates import TemplateEngine
    from ..run.steps import render_defaults, rendered_parts

    context = {"connection": public_fields(connector, record, "conformance"),
               "now": datetime.now(UTC)}
    engine = TemplateEngine(registry.filters)
    merged = render_defaults(engine, op.defaults, context)
    merged.update(payload)
    bad = op.input_checker.errors(merged)
    if bad:
        path, msg = bad[0][0], bad[0][1]
        return [f"{op.ref}: the input is not valid ({'.'.join(map(str, path)) or 'input'}: "
                f"{msg}); give one in `inputs`"]
    parts = rendered_parts(
        op, {"input": merged, "connection": context["connection"]},
        lambda part, value: engine.compile_mapping(value, where=f"{op.ref}.{part}"))
    with connection_client(connector, record, store, registry) as client:
        call = prepare_call(op, connector, merged, base_url=client.base_url,
                            idempotency_key=f"splice-conformance-{op.id}" if op.writes
                            else None, **parts)
        bodies = ([body for body, _ in client.pages(op, call, max_pages=2)] if op.is_list
                  else [client.send(op, call).json()])
    out = []
    for body in bodies:
        for path, msg, _ in op.output_checker.errors(body):
            out.append(f"{op.ref}: response does not match output at "
                       f"{'.'.join(map(str, path)) or 'the body'}: {msg}")
            break
    return out

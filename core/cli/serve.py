"""``splice serve``: run every enabled recipe, receive webhooks, answer the JSON API and
serve the dashboard; ``splice login-link``: a one-time sign-in link for the dashboard."""

from __future__ import annotations

import json
import logging

import click

from .common import handle_errors, load_registry, open_store


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on (loopback by default; put a TLS proxy in front "
                   "to receive webhooks from the internet).")
@click.option("--port", type=click.IntRange(1, 65535), default=8750, show_default=True)
@click.option("--public-url", metavar="URL",
              help="The URL providers deliver webhooks to, when it is not http://HOST:PORT "
                   "(a tunnel or reverse proxy); REST-hook subscriptions use it.")
@click.option("--workers", type=click.IntRange(1, 64), default=4, show_default=True,
              help="Recipe jobs (polls, webhook batches) run at once.")
@click.option("--inbox-max", type=click.IntRange(1), default=10_000, show_default=True,
              help="Deliveries waiting to be processed before new ones get 503 + "
                   "Retry-After.")
@click.option("--shutdown-grace", type=click.FloatRange(0, 8), default=7.0, show_default=True,
              metavar="SECONDS",
              help="On SIGTERM, how long running recipe jobs may finish before they are "
                   "abandoned (safely: the next start resumes them).")
@click.option("--print-login", is_flag=True,
              help="Print a one-time link that signs a browser in to the dashboard "
                   "(works once, for 15 minutes; `splice login-link` makes more).")
@click.option("--requeue-after", type=click.FloatRange(0.5), default=30.0, show_default=True,
              metavar="SECONDS",
              help="With a broker: deliveries and events not done this long after they were "
                   "sent to the workers are sent again.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]),
              default="info", show_default=True, help="JSON logs on stderr from this level.")
@handle_errors
def serve(host: str, port: int, public_url: str | None, workers: int, inbox_max: int,
          shutdown_grace: float, requeue_after: float, print_login: bool,
          log_level: str) -> None:
    """Run every enabled recipe until stopped (SIGTERM or Ctrl-C).

    \b
    Polling recipes run on their interval (with jitter; one poll of a recipe at a time);
    webhook deliveries to /hooks/CONNECTION are verified, stored, acknowledged and processed;
    changed recipe files are picked up without a restart (an invalid new version keeps the
    old one running). The dashboard (/, sign in with --print-login or `splice login-link`),
    the JSON API (/api, bearer token printed on first start), /healthz and /metrics are on
    the same port. Register recipes first: `splice recipes add FILE`.

    \b
    With SPLICE_BROKER_URL (redis://...) set, serve runs no recipe itself: it stores each
    delivery and sends it to `splice worker` processes, and one serve process in the fleet
    (the holder of the scheduler lease) sends due polls and re-sends work not done after
    --requeue-after seconds. See docs/deploy.md.
    """
    from ..serve.config import ServeConfig
    from ..serve.logs import setup_json_logging
    from ..serve.server import serve_forever
    from ..worker.broker import broker_url, check_broker

    broker = broker_url()
    if broker is not None:
        check_broker(broker)
    setup_json_logging(getattr(logging, log_level.upper()))
    config = ServeConfig(host=host, port=port, public_url=public_url, workers=workers,
                         inbox_max=inbox_max, shutdown_grace=shutdown_grace,
                         broker_url=broker, requeue_after=requeue_after)
    serve_forever(open_store(), load_registry(), config, out=click.echo,
                  print_login=print_login)


@click.command("login-link")
@click.option("--url", metavar="URL",
              help="The dashboard's address (default: the running serve's, else "
                   "http://127.0.0.1:8750).")
@click.option("--json", "as_json", is_flag=True, help="Print {url, expires_in} as JSON.")
@handle_errors
def login_link(url: str | None, as_json: bool) -> None:
    """Print a one-time link that signs a browser in to the dashboard.

    \b
    The link works once, for 15 minutes, on every serve process sharing this state
    database. Anyone holding an unused link can sign in: send it only to yourself.
    """
    from ..serve.config import DEFAULT_PORT
    from ..store import inbox, logins

    store = open_store()
    if url is None:
        live = [i["url"] for i in inbox.live_instances(store) if i.get("url")]
        url = live[0] if live else f"http://127.0.0.1:{DEFAULT_PORT}"
    link = f"{url.rstrip('/')}/login?token={logins.mint(store)}"
    ttl = int(logins.DEFAULT_TTL.total_seconds())
    if as_json:
        click.echo(json.dumps({"url": link, "expires_in": ttl}))
    else:
        click.echo(f"Sign in to the dashboard (works once, for {ttl // 60} minutes):\n{link}")

"""Click commands: `sandbox` runs the sandbox in the foreground; `sandbox-fault` drives a running one over HTTP.

The lead adds both to the `itam` group; they also run alone (`python -m servicenow_sandbox`). Neither prints a
client secret.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click
import requests

from servicenow_sandbox.server import SandboxServer, check_loopback, serve
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.update_sets import UpdateSetError

DEFAULT_URL = "http://127.0.0.1:8765"


def _rate_limit(value: str | None) -> tuple[int, float] | None:
    if not value:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+(?:\.\d+)?)\s*", value)
    if not match or int(match[1]) < 1 or float(match[2]) <= 0:
        raise click.BadParameter("use N/SECONDS, e.g. 100/3600 for 100 requests an hour")
    return int(match[1]), float(match[2])


def _client(value: str) -> tuple[str, str]:
    client_id, sep, secret = value.partition(":")
    if not sep or not client_id or not secret:
        raise click.BadParameter(f"use ID:SECRET, not {value!r}")
    return client_id, secret


def _default_database() -> str:
    """instance/sandbox.sqlite3 of the Flask app when run under `flask --app ...`, else of the current folder."""
    try:
        from flask import current_app, has_app_context

        if has_app_context():
            return str(Path(current_app.instance_path) / "sandbox.sqlite3")
    except RuntimeError:
        pass
    return str(Path("instance") / "sandbox.sqlite3")


@click.command("sandbox")
@click.option("--port", default=8765, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Loopback only.")
@click.option(
    "--db", "db_path", type=click.Path(dir_okay=False), help="SQLite file [default: instance/sandbox.sqlite3]"
)
@click.option("--memory", is_flag=True, help="Keep the state in memory (lost at exit).")
@click.option("--latency-ms", type=click.FloatRange(0), default=0.0, help="Added to every API and token request.")
@click.option("--add-client", "clients", multiple=True, metavar="ID:SECRET", help="Register an OAuth client.")
@click.option("--rate-limit", metavar="N/SECONDS", help="Allow N API requests per user per SECONDS, then 429.")
@click.option("--access-token-seconds", type=click.FloatRange(1), help="Access token lifetime [default: 1800].")
@click.option("--refresh-token-seconds", type=click.FloatRange(1), help="Refresh token lifetime [default: 100 days].")
@click.option("--rotate-refresh-tokens", is_flag=True, help="Refresh grants return a new refresh token.")
@click.option(
    "--max-payload-mb",
    type=click.FloatRange(0.001),
    help="Request body limit (refused past it, as ServiceNow does) [default: 10].",
)
@click.option("--stock", is_flag=True, help="Start as a stock instance: nothing installed (see the import page).")
@click.option(
    "--install-app",
    "install_app",
    type=click.Path(exists=True, dir_okay=False),
    metavar="FILE",
    help="Install this update set XML (e.g. from `itam servicenow-app`) instead of the connector's built-in one.",
)
@click.option(
    "--transform-seconds",
    type=click.FloatRange(0),
    default=2.0,
    show_default=True,
    help="How long each import set's asynchronous transform takes (import sets overlap).",
)
@click.option(
    "--transform-jitter",
    type=click.FloatRange(0, 1, max_open=True),
    default=0.5,
    show_default=True,
    help="Spread of each transform time (0.5: 0.5x to 1.5x), so import sets may finish out of order.",
)
@click.option("--tls", is_flag=True, help="Serve https with a throwaway self-signed certificate.")
@click.option("--access-log", is_flag=True, help="Log every request to stderr.")
def sandbox_command(
    port: int,
    host: str,
    db_path: str | None,
    memory: bool,
    latency_ms: float,
    clients: tuple[str, ...],
    rate_limit: str | None,
    access_token_seconds: float | None,
    refresh_token_seconds: float | None,
    rotate_refresh_tokens: bool,
    max_payload_mb: float | None,
    stock: bool,
    install_app: str | None,
    transform_seconds: float,
    transform_jitter: float,
    tls: bool,
    access_log: bool,
) -> None:
    """Run the ServiceNow sandbox on HOST:PORT until Ctrl-C."""
    try:
        host = check_loopback(host)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--host") from None
    if memory and db_path:
        raise click.UsageError("Use either --db or --memory, not both.")
    parsed_clients = [_client(value) for value in clients]
    parsed_rate = _rate_limit(rate_limit)
    database = None if memory else (db_path or _default_database())
    if database:
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    if stock and install_app:
        raise click.UsageError("Use either --stock or --install-app, not both.")
    app_xml = None
    if install_app:
        try:
            app_xml = Path(install_app).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise click.BadParameter(f"cannot read {install_app}: {error}", param_hint="--install-app") from None
    overrides: dict[str, object] = {
        "database": database,
        "transform_seconds": transform_seconds,
        "transform_jitter": transform_jitter,
    }
    if access_token_seconds:
        overrides["access_token_seconds"] = access_token_seconds
    if refresh_token_seconds:
        overrides["refresh_token_seconds"] = refresh_token_seconds
    if rotate_refresh_tokens:
        overrides["rotate_refresh_tokens"] = True
    if max_payload_mb:
        overrides["max_payload_bytes"] = int(max_payload_mb * 1024 * 1024)
    try:
        server = SandboxServer(
            port,
            host,
            settings=SandboxSettings.from_env(**overrides),
            app=app_xml,
            installed=not stock,
            tls=tls,
            access_log=access_log,
        )
    except OSError as error:
        raise click.ClickException(f"Cannot listen on {host}:{port}: {error.strerror or error}") from None
    except UpdateSetError as error:
        raise click.BadParameter(f"{install_app} is not an update set the sandbox can install: {error}") from None
    for client_id, secret in parsed_clients:
        server.add_client(client_id, secret)
    server.faults.set_latency(latency_ms)
    if parsed_rate:
        server.faults.set_rate_limit(*parsed_rate)

    def announce(running: SandboxServer) -> None:
        click.echo(f"ServiceNow sandbox listening on {running.url}", err=False)
        click.echo(f"  state: {database or 'memory'}; users admin/admin, itil/itil", err=True)
        sets = [found["name"] for found in running.state.installed_update_sets()]
        click.echo(f"  installed: {', '.join(sets) if sets else 'nothing (a stock instance)'}", err=True)
        click.echo(f"  import an update set: {running.url}/sys_remote_update_set.do", err=True)
        click.echo(f"  transforms: {transform_seconds:g} s per import set (jitter {transform_jitter:g})", err=True)
        page = running.state.catalog.token_page()
        if page is not None:
            click.echo(f"  default OAuth client: {running.state.settings.default_client_id}", err=True)
            click.echo(f"  Generate OAuth Token: {running.url}{page[1].path}", err=True)

    serve(server, announce)


def _post(url: str, payload: dict) -> dict:
    try:
        response = requests.post(f"{url.rstrip('/')}/sandbox/api/faults", json=payload, timeout=10)
    except requests.RequestException as error:
        raise click.ClickException(f"Cannot reach the sandbox at {url}: {error}") from None
    if response.status_code != 200:
        raise click.ClickException(f"The sandbox refused: {response.text}")
    return response.json()


@click.command("sandbox-fault")
@click.option("--url", default=lambda: os.environ.get("ITAM_SANDBOX_URL", DEFAULT_URL), show_default=DEFAULT_URL)
@click.option("--fail-next", type=click.IntRange(1), help="Fail the next N requests ...")
@click.option("--status", type=click.IntRange(400, 599), default=503, show_default=True, help="... with this status")
@click.option("--markup", is_flag=True, help="... and HTML in the error message (escaping tests)")
@click.option("--retry-after", type=click.IntRange(0), help="... and this Retry-After (seconds)")
@click.option("--scope", type=click.Choice(["api", "token", "all"]), default="api", show_default=True)
@click.option("--drop-next", type=click.IntRange(1), help="Close the connection of the next N requests unanswered.")
@click.option("--drop-after", is_flag=True, help="Drop after handling the request (the answer is lost).")
@click.option("--latency-ms", type=click.FloatRange(0), help="Added latency per request.")
@click.option("--revoke-tokens", metavar="USER", help="Revoke every token of USER.")
@click.option("--revoke-all", is_flag=True, help="Revoke every token.")
@click.option("--expire-tokens", metavar="USER", help="Expire USER's access tokens now.")
@click.option("--rate-limit", metavar="N/SECONDS", help="Rate limit API requests; 'off' removes it.")
@click.option("--quota-cancel", type=click.IntRange(1), help="Next N requests: 200 with the quota error appended.")
@click.option("--malformed", is_flag=True, help="... and the real answer cut off before it (KB1297438).")
@click.option("--hibernate", type=click.IntRange(1), help="Next N requests: the hibernation page (HTML, 200).")
@click.option("--login-redirect", type=click.IntRange(1), help="Next N requests: 302 to the login page.")
@click.option("--too-many-requests", type=click.IntRange(1), help="Next N requests: 429 without Retry-After.")
@click.option("--reject-every", type=click.IntRange(1), help="The transform rejects every Nth row from now on.")
@click.option("--reject-source-id", "reject_source_ids", multiple=True, metavar="ID", help="... or these rows.")
@click.option("--reject-comment", help="The sys_import_state_comment of rejected rows.")
@click.option("--no-rejects", is_flag=True, help="The transform rejects no row any more.")
@click.option("--hold-transforms/--release-transforms", default=None, help="Stop (or resume) transforming.")
@click.option("--transform-seconds", type=click.FloatRange(0), help="Transform time per import set from now on.")
@click.option("--clear", is_flag=True, help="Remove every fault first.")
def sandbox_fault_command(
    url: str,
    fail_next: int | None,
    status: int,
    markup: bool,
    retry_after: int | None,
    scope: str,
    drop_next: int | None,
    drop_after: bool,
    latency_ms: float | None,
    revoke_tokens: str | None,
    revoke_all: bool,
    expire_tokens: str | None,
    rate_limit: str | None,
    quota_cancel: int | None,
    malformed: bool,
    hibernate: int | None,
    login_redirect: int | None,
    too_many_requests: int | None,
    reject_every: int | None,
    reject_source_ids: tuple[str, ...],
    reject_comment: str | None,
    no_rejects: bool,
    hold_transforms: bool | None,
    transform_seconds: float | None,
    clear: bool,
) -> None:
    """Tell a running sandbox to misbehave; prints the faults now in force (JSON)."""
    payload: dict[str, object] = {"clear": clear}
    if quota_cancel:
        payload["quota_cancel_next"] = {"count": quota_cancel, "malformed": malformed, "scope": scope}
    for key, count in (
        ("hibernate_next", hibernate),
        ("login_redirect_next", login_redirect),
        ("too_many_requests_next", too_many_requests),
    ):
        if count:
            payload[key] = {"count": count, "scope": scope}
    if reject_every or reject_source_ids:
        rule: dict[str, object] = {"every": reject_every, "source_ids": list(reject_source_ids)}
        if reject_comment:
            rule["comment"] = reject_comment
        payload["reject_rows"] = rule
    elif no_rejects:
        payload["reject_rows"] = None
    if hold_transforms is not None:
        payload["hold_transforms"] = hold_transforms
    if transform_seconds is not None:
        payload["transform_seconds"] = transform_seconds
    if fail_next:
        payload["fail_next"] = {"count": fail_next, "status": status, "markup": markup, "scope": scope}
        if retry_after is not None:
            payload["fail_next"]["retry_after"] = retry_after  # type: ignore[index]
    if drop_next:
        payload["drop_next"] = {"count": drop_next, "when": "after" if drop_after else "before", "scope": scope}
    if latency_ms is not None:
        payload["latency_ms"] = latency_ms
    if revoke_tokens or revoke_all:
        payload["revoke_tokens"] = {"all": True} if revoke_all else {"user": revoke_tokens}
    if expire_tokens:
        payload["expire_tokens"] = {"user": expire_tokens, "kind": "access"}
    if rate_limit:
        if rate_limit.strip().lower() == "off":
            payload["rate_limit"] = None
        else:
            limit, window = _rate_limit(rate_limit) or (0, 0)
            payload["rate_limit"] = {"limit": limit, "window_seconds": window}
    click.echo(json.dumps(_post(url, payload), indent=2))

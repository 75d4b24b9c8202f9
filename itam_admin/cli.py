"""The `flask itam ...` commands for operators; they print outcomes, never a secret."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import click
from flask import current_app
from flask.cli import AppGroup

from itam_admin.crypto import SecretUnreadable
from itam_admin.db import db
from itam_admin.exports import jobs, runs
from itam_admin.exports.job_queue import QUEUE_NAME
from itam_admin.exports.schedule import next_due_at
from itam_admin.exports.scheduler_loop import scheduler_pass, start_scheduler_thread
from itam_admin.exports.worker import run_worker
from itam_admin.plugin import current_plugin
from itam_admin.servicenow_app import build_update_set
from itam_admin.settings.store import configured_settings, rotate_secrets

itam_cli = AppGroup("itam", help="ITAM ServiceNow Connector: exports, workers, sandbox and key rotation.")


@itam_cli.command("rotate-keys")
def rotate_keys() -> None:
    """Re-encrypt every stored secret with the first key of ITAM_ENCRYPTION_KEYS (all or nothing)."""
    try:
        count = rotate_secrets()
    except SecretUnreadable as error:
        db.session.rollback()
        raise click.ClickException(f"{error} Nothing was changed.") from None
    click.echo(f"Re-encrypted {count} stored secret(s) with the first key. Older keys can now be removed.")


@itam_cli.command("export")
@click.argument("tenant")
@click.option("--full", is_flag=True, help="Send every record, not only what changed.")
def export_command(tenant: str, full: bool) -> None:
    """Enqueue an export for a tenant (by its id, the slug in the demo portal)."""
    try:
        run = runs.queue_run(current_plugin().redis_or_none, tenant, runs.MANUAL, full=full)
    except runs.ExportNotStarted as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Export run {run.id} queued for {tenant}{' (full)' if full else ''}.")


@itam_cli.command("servicenow-app")
@click.option("-o", "--output", type=click.Path(dir_okay=False, writable=True), help="Write to FILE, not stdout.")
def servicenow_app_command(output: str | None) -> None:
    """Write the update set a ServiceNow admin imports once (staging tables, transform maps, token page)."""
    xml = build_update_set(default_client_id=current_plugin().config.default_client_id or None)
    if output:
        with open(output, "w", encoding="utf-8") as handle:
            handle.write(xml)
        click.echo(f"Wrote the ServiceNow update set to {output}.")
    else:
        click.echo(xml, nl=False)


@itam_cli.command("schedule")
def schedule_command() -> None:
    """Show each tenant's next weekly export."""
    config = current_plugin().config
    click.echo(f"Weekly exports: {config.weekly_export} UTC, spread over {config.weekly_window_minutes} minutes.")
    tenants = configured_settings()
    if not tenants:
        click.echo("No tenant has saved ServiceNow settings yet.")
    for tenant, settings in tenants.items():
        if not settings.export_enabled:
            click.echo(f"{tenant}: disabled ({settings.export_disabled_reason})")
            continue
        due = next_due_at(tenant, settings, config)
        click.echo(f"{tenant}: next export {due:%a %Y-%m-%d %H:%M:%S} UTC")


@itam_cli.command("schedule-tick")
@click.option("--now", "now_text", help="Act as if it were this UTC time (YYYY-MM-DDTHH:MM), e.g. to check a catch-up.")
def schedule_tick_command(now_text: str | None) -> None:
    """Run one scheduler pass: start the weekly exports that are due (workers do this every 30 s by themselves)."""
    try:
        now = datetime.fromisoformat(now_text) if now_text else None
    except ValueError:
        raise click.BadParameter("use YYYY-MM-DDTHH:MM (UTC)", param_hint="--now") from None
    if now is not None and now.tzinfo is not None:
        now = now.astimezone(UTC).replace(tzinfo=None)
    done = scheduler_pass(now)
    click.echo("\n".join(done) if done else "No weekly export was due.")


@itam_cli.command("worker")
@click.option("--burst", is_flag=True, help="Stop when the queue is empty (tests, one-off runs).")
@click.option("--no-scheduler", is_flag=True, help="Run only jobs, not the weekly scheduler and run reaper.")
@click.option("--tick-seconds", default=30.0, show_default=True, help="How often the scheduler looks for due exports.")
def worker_command(burst: bool, no_scheduler: bool, tick_seconds: float) -> None:
    """An RQ worker for the plugin's queue, with the weekly scheduler (safe to run on several machines). It waits
    out Redis and database outages instead of exiting."""
    app = current_app._get_current_object()
    jobs.set_worker_app(app)
    plugin = current_plugin()
    ours = logging.getLogger("itam_admin")
    if not ours.handlers and not logging.getLogger().handlers:
        # The outage and recovery lines must reach the operator even when the host configured no logging.
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
        ours.addHandler(handler)
        ours.setLevel(logging.INFO)
    if not no_scheduler:
        start_scheduler_thread(app, tick_seconds)

    def announce(name: str) -> None:
        scheduler = " with the scheduler" if not no_scheduler else ""
        click.echo(f"Worker {name} listening on {QUEUE_NAME}{scheduler}.")

    run_worker(plugin.redis, burst=burst, announce=announce)

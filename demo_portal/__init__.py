"""The demo host portal: tenants, users, a login and the Settings > General page that mounts the plugin.

Real hosts replace it; it shows what a host hands the plugin (an identity loader and a layout template).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from flask import Flask, g
from flask_migrate import Migrate
from flask_wtf.csrf import CSRFProtect
from werkzeug.middleware.proxy_fix import ProxyFix

from itam_admin import ITAMAdmin, package_folder
from itam_admin.config import ConfigError, load_config
from itam_admin.db import db
from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "object-src 'none'; base-uri 'self'; form-action 'self'; frame-ancestors 'none'"
)

csrf = CSRFProtect()
migrate = Migrate()


def _with_demo_defaults(environ: dict[str, str]) -> dict[str, str]:
    """In demo mode the sandbox's default OAuth client is the operator's, unless one is configured."""
    if environ.get("ITAM_DEMO", "").strip().lower() in ("1", "true", "yes", "on"):
        for name, value in (
            ("ITAM_SERVICENOW_CLIENT_ID", DEMO_CLIENT_ID),
            ("ITAM_SERVICENOW_CLIENT_SECRET", DEMO_CLIENT_SECRET),
        ):
            if not environ.get(name, "").strip():
                environ[name] = value
    return environ


def create_app(env: Mapping[str, str] | None = None, instance_path: str | None = None) -> Flask:
    """The demo portal; `env` overrides os.environ (tests pass their own settings this way)."""
    environ = _with_demo_defaults({**os.environ, **(env or {})})
    app = Flask(
        "demo_portal",
        instance_path=instance_path or environ.get("ITAM_INSTANCE_PATH") or os.path.abspath("instance"),
        template_folder="templates",
        static_folder="static",
        static_url_path="/portal-static",
    )
    config = load_config(environ, app.instance_path)
    app.config.update(
        SECRET_KEY=config.secret_key,
        SQLALCHEMY_DATABASE_URI=config.database_url,
        SQLALCHEMY_ENGINE_OPTIONS={"pool_pre_ping": True},
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",
        # Secure always when the portal's public address is https; else per request, when it came over https.
        SESSION_COOKIE_SECURE=environ.get("ITAM_PUBLIC_URL", "").strip().lower().startswith("https://"),
        ITAM_DEMO=config.demo,
    )
    proxies = _trusted_proxies(environ)
    if proxies:
        # Behind that many reverse proxies, take the client's address and scheme from their X-Forwarded headers
        # (login throttling and Secure cookies need them); with none, those headers are not believed.
        app.wsgi_app = ProxyFix(app.wsgi_app, x_for=proxies, x_proto=proxies, x_host=proxies)
    db.init_app(app)
    csrf.init_app(app)
    migrate.init_app(app, db, directory=package_folder("migrations"), render_as_batch=True, compare_type=True)

    from demo_portal import auth, views

    plugin = ITAMAdmin(identity_loader=auth.current_identity, layout_template="portal/layout.html", login_url="/login")
    plugin.init_app(app, config=config)
    app.register_blueprint(views.bp)
    auth.init_app(app)
    from itam_admin.cli import itam_cli

    if "seed-demo" not in itam_cli.commands:
        register_demo_commands(itam_cli)
        from servicenow_sandbox.cli import sandbox_command, sandbox_fault_command

        itam_cli.add_command(sandbox_command)
        itam_cli.add_command(sandbox_fault_command)
    app.context_processor(views.layout_context)

    @app.after_request
    def security_headers(response):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Content-Type-Options", "nosniff")
        response.headers.setdefault("Referrer-Policy", "same-origin")
        response.headers.setdefault("X-Frame-Options", "DENY")
        return response

    @app.teardown_appcontext
    def forget_user(_exc):
        g.pop("current_user", None)

    return app


def _trusted_proxies(environ: Mapping[str, str]) -> int:
    value = environ.get("ITAM_TRUSTED_PROXIES", "").strip() or "0"
    if not value.isdigit():
        raise ConfigError(
            f"ITAM_TRUSTED_PROXIES must be the number of reverse proxies in front (0 or more), not {value!r}"
        )
    return int(value)


def register_demo_commands(group) -> None:
    """`flask itam seed-demo`: the demo portal's tenants, users and inventory."""
    import click

    @group.command("seed-demo")
    @click.option("--scale", type=click.Choice(["demo", "small"]), default="demo", show_default=True)
    def seed_demo(scale: str) -> None:
        """Create the demo tenants, users and inventory (idempotent)."""
        from demo_portal.demo import DEMO_TENANTS, seed_demo_portal
        from demo_portal.demo_data import counts_text, inventory_counts, seed_demo_inventory

        created = seed_demo_portal()
        if created["tenants"] or created["users"]:
            click.echo(f"Demo portal: {created['tenants']} tenant(s) and {created['users']} user(s) created.")
        else:
            click.echo("Demo portal: the demo tenants and users are already there.")
        for slug, _name in DEMO_TENANTS:
            counts = seed_demo_inventory(slug, scale=scale)
            if any(counts.values()):
                click.echo(f"Inventory of {slug}: created {counts_text(counts)}.")
            else:
                # A second start: the inventory from the first one (and any changes since) is kept, not re-made.
                click.echo(f"Inventory of {slug}: already present ({counts_text(inventory_counts(slug))}), kept as is.")

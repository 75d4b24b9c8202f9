"""The plugin object a host mounts: `ITAMAdmin` holds one host app's configuration, crypto and Redis, and
`init_app()` registers the Integrations tab and the CLI. Domain code gets these passed in; only entry points (views,
jobs, CLI) look the plugin up with `current_plugin()`."""

from __future__ import annotations

import os
from pathlib import Path

from flask import Flask, current_app
from redis import Redis

from itam_admin.config import Config, load_config
from itam_admin.crypto import CRYPTO_EXTENSION, Crypto
from itam_admin.db import db
from itam_admin.identity import Identity, IdentityLoader

EXTENSION_NAME = "itam_admin"


def package_folder(name: str) -> str:
    """`templates` or `migrations`: inside the installed package, or beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / name, here.parent / name):
        if candidate.is_dir():
            return str(candidate)
    raise RuntimeError(f"the plugin's {name} folder is missing from the installation")


class ITAMAdmin:
    """The plugin's face: configuration, crypto, Redis and the Integrations blueprint of one host app."""

    def __init__(
        self,
        app: Flask | None = None,
        *,
        identity_loader: IdentityLoader | None = None,
        layout_template: str = "layout.html",
        url_prefix: str = "/settings",
        login_url: str | None = None,
    ) -> None:
        self.identity_loader = identity_loader
        self.layout_template = layout_template
        self.url_prefix = url_prefix
        self.login_url = login_url
        self.config: Config | None = None
        self.crypto: Crypto | None = None
        self._redis: Redis | None = None
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask, config: Config | None = None) -> None:
        if self.identity_loader is None:
            raise RuntimeError("ITAMAdmin needs identity_loader: a callable returning the current Identity or None")
        # Imported here, not at the top: the tab's views and the CLI look the plugin up through this module, so
        # importing them at module level would be a cycle (plugin -> integrations -> plugin).
        import itam_admin.models  # noqa: F401  (every table in the metadata, for Alembic and create_all)
        from itam_admin.cli import itam_cli
        from itam_admin.integrations.blueprint import make_blueprint
        from itam_admin.integrations.views import settings_tabs

        self.config = config or load_config(os.environ, app.instance_path)
        self.crypto = Crypto(list(self.config.encryption_keys))
        app.config.setdefault("SQLALCHEMY_DATABASE_URI", self.config.database_url)
        if "sqlalchemy" not in app.extensions:
            db.init_app(app)
        app.extensions[EXTENSION_NAME] = self
        app.extensions[CRYPTO_EXTENSION] = self.crypto
        app.register_blueprint(make_blueprint(), url_prefix=self.url_prefix)
        app.jinja_env.globals["itam_settings_tabs"] = settings_tabs
        if "itam" not in app.cli.commands:
            app.cli.add_command(itam_cli)

    def current_identity(self) -> Identity | None:
        return self.identity_loader()

    @property
    def redis(self) -> Redis:
        """The Redis connection for RQ, locks and the token cache (created on first use)."""
        if self._redis is None:
            if not self.config.redis_url:
                raise RuntimeError("REDIS_URL is not set")
            self._redis = Redis.from_url(self.config.redis_url, socket_connect_timeout=3, socket_timeout=10)
        return self._redis

    @property
    def redis_or_none(self) -> Redis | None:
        """The Redis connection, or None when REDIS_URL is not set (callers then say the queue is unavailable)."""
        return self.redis if self.config.redis_url else None


def current_plugin() -> ITAMAdmin:
    return current_app.extensions[EXTENSION_NAME]

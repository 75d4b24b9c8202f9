"""The portal app a benchmark worker runs the exporter in: one database per dataset (a SQLite file or a fresh
PostgreSQL database), Redis for the token cache, the sandbox's OAuth client, and the batch size and requests in flight
under test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from flask import Flask

from benchmarks.common import BATCH_SIZE

REQUESTS_IN_FLIGHT = 4


def app_env(
    database_url: str, redis_url: str, encryption_key: str, client_id: str, client_secret: str
) -> dict[str, str]:
    """The app's environment; ``database_url`` is a SQLAlchemy URL (sqlite:///FILE or postgresql+psycopg://...)."""
    return {
        "ITAM_DEMO": "0",
        "SECRET_KEY": "benchmark-secret-key",
        "ITAM_ENCRYPTION_KEYS": encryption_key,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "ITAM_SERVICENOW_CLIENT_ID": client_id,
        "ITAM_SERVICENOW_CLIENT_SECRET": client_secret,
        "ITAM_SERVICENOW_ALLOW_INSECURE": "1",
        "ITAM_EXPORT_BATCH_SIZE": str(BATCH_SIZE),
        "ITAM_EXPORT_REQUESTS_IN_FLIGHT": str(REQUESTS_IN_FLIGHT),
        # What is measured is sending; waiting for the sandbox to finish its asynchronous transforms is not.
        "ITAM_EXPORT_READ_BACK_WAIT_SECONDS": "0",
    }


def load_app(config_path: str | Path, env: dict[str, str] | None = None) -> tuple[Flask, dict[str, Any]]:
    """The app described by a dataset's config.json (written by benchmarks.dataset prepare); `env` overrides some of
    its environment."""
    from demo_portal import create_app

    config = json.loads(Path(config_path).read_text())
    config["env"] = {**config["env"], **(env or {})}
    app = create_app(env=config["env"], instance_path=config["instance_path"])
    with app.app_context():
        import itam_admin.models  # noqa: F401  (the whole schema)
    return app, config

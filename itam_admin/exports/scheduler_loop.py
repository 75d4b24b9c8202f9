"""The scheduler thread a worker runs: weekly exports that are due, and runs whose worker died. Any number of
workers may run it at once; the database makes each weekly export start once."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from flask import Flask

from itam_admin import current_plugin
from itam_admin.db import db

log = logging.getLogger("itam_admin.schedule")


def scheduler_pass(now: datetime | None = None) -> list[str]:
    """Reap runs whose worker died, then start the weekly exports due at `now` (default: the clock)."""
    from itam_admin.exports.runner import reap_stale_runs
    from itam_admin.exports.schedule import scheduler_tick

    config = current_plugin().config
    reaped = reap_stale_runs(config.interrupted_after_seconds)
    if reaped:
        log.warning("marked %d export run(s) as interrupted", reaped)
    return scheduler_tick(config, now=now)


def start_scheduler_thread(app: Flask, tick_seconds: float) -> threading.Thread:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with app.app_context():
                try:
                    scheduler_pass()
                except Exception:  # the database or Redis may be down for a while: try again next tick
                    log.exception("scheduler pass failed; retrying in %s s", tick_seconds)
                    db.session.rollback()
                finally:
                    db.session.remove()
            stop.wait(tick_seconds)

    thread = threading.Thread(target=loop, name="itam-scheduler", daemon=True)
    thread.start()
    return thread

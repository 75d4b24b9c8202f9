"""The scheduler thread a worker runs: weekly exports that are due, runs whose worker died, runs whose pause for
ServiceNow's rate limit is over, and queued runs whose job the queue lost. Any number of workers may run it at once;
the database makes each weekly export start once. It never gives up on Redis or the database: an outage is logged
once and the next tick tries again."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from flask import Flask
from redis.exceptions import RedisError
from sqlalchemy.exc import DBAPIError

from itam_admin.db import db
from itam_admin.exports import outage, runs
from itam_admin.exports.schedule import scheduler_tick
from itam_admin.plugin import current_plugin

log = logging.getLogger("itam_admin.schedule")


def scheduler_pass(now: datetime | None = None) -> list[str]:
    """Reap runs whose worker died, queue the job of runs whose rate-limit pause is over, queue again (or end) runs
    whose job was lost, then start the weekly exports due at `now` (default: the clock; the others always go by the
    clock)."""
    plugin = current_plugin()
    reaped = runs.reap_stale_runs(plugin.config.interrupted_after_seconds)
    if reaped:
        log.warning("marked %d export run(s) as interrupted", reaped)
    try:
        runs.resume_waiting_runs(plugin.redis_or_none)
        runs.recover_lost_runs(plugin.redis_or_none)
    except RedisError as error:
        db.session.rollback()
        outage.REDIS.failed(error)  # a queue we cannot see is not a lost queue: decide nothing until it answers
    return scheduler_tick(plugin.config, plugin.redis_or_none, now=now)


def start_scheduler_thread(app: Flask, tick_seconds: float) -> threading.Thread:
    stop = threading.Event()

    def loop() -> None:
        while not stop.is_set():
            with app.app_context():
                try:
                    scheduler_pass()
                    outage.DATABASE.recovered()
                except DBAPIError as error:  # the database is down or locked for a while: try again next tick
                    outage.DATABASE.failed(error.orig or error)
                    _rollback()
                except Exception:
                    log.exception("scheduler pass failed; retrying in %s s", tick_seconds)
                    _rollback()
                finally:
                    db.session.remove()
            stop.wait(tick_seconds)

    thread = threading.Thread(target=loop, name="itam-scheduler", daemon=True)
    thread.start()
    return thread


def _rollback() -> None:
    try:
        db.session.rollback()
    except DBAPIError:
        pass  # the connection is gone; the session is removed right after

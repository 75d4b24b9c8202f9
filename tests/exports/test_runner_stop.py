"""When a run stops while other batches have finished, each accepted batch is counted and remembered exactly once."""

from __future__ import annotations

from concurrent.futures import Future

import pytest
from sqlalchemy import func, select

from itam_admin.db import db
from itam_admin.exports import planner
from itam_admin.exports.exporter import Batch, BatchOutcome, Exporter, RunStopped
from itam_admin.exports.models import SentRecord
from itam_admin.exports.runs import create_run
from itam_admin.plugin import current_plugin
from itam_admin.servicenow.errors import ErrorKind, make_error
from tests.exports.conftest import ACME_ADMIN


def accepted_batch(number: int, size: int) -> Future:
    items = [
        planner.Planned(planner.NEW, f"src-{number}-{n}", {"u_source_id": f"src-{number}-{n}"}, f"hash-{number}-{n}")
        for n in range(size)
    ]
    future: Future = Future()
    future.set_result(BatchOutcome(Batch("hardware_inventory", number, items), accepted=items, import_set_ids=["x"]))
    return future


def stopped_batch() -> Future:
    future: Future = Future()
    future.set_exception(RunStopped(make_error(ErrorKind.TOKEN_REFUSED, "acme.service-now.com")))
    return future


def test_batches_finished_alongside_a_stop_are_recorded_once(app, configure_tenant):
    configure_tenant(types=("hardware_inventory",))
    with app.app_context():
        run = create_run("acme", "manual", ACME_ADMIN, False)
        exporter = Exporter(run, client=None, source=None, config=current_plugin().config)
        # Many finished batches beside the stop, so whatever order a set yields them in, some come before it.
        pending = {accepted_batch(number, 3) for number in range(1, 11)} | {stopped_batch()}
        with pytest.raises(RunStopped):
            exporter.collect(pending)
        exporter.drain(pending)  # what the runner does after a stop
        assert pending == set()
        assert exporter.counts["hardware_inventory"].sent == 30
        remembered = db.session.scalar(select(func.count()).select_from(SentRecord))
        assert remembered == 30

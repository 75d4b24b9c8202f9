"""The outcome rule itself (SPEC 5, revised): `succeeded` only when the counts account for every record sent as
written by ServiceNow."""

from __future__ import annotations

from itam_admin.exports.exporter import COUNTS, outcome_of
from itam_admin.exports.models import ExportRun, ExportRunDataType


def run_with(**counts: int) -> ExportRun:
    data_type = ExportRunDataType(data_type="contracts", position=0, **dict.fromkeys(COUNTS, 0) | counts)
    return ExportRun(tenant_id="acme", instance_url="https://acme.service-now.com", data_types=[data_type])


def test_every_record_confirmed_is_succeeded():
    assert outcome_of(run_with(total=5, sent=5, new=5, confirmed=5))[0] == "succeeded"


def test_records_sent_but_neither_confirmed_nor_counted_failed_are_never_succeeded():
    status, message = outcome_of(run_with(total=5, sent=5, new=5, confirmed=3))
    assert status != "succeeded" and "did not write every record" in message

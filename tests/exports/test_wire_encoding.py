"""The bodies an export posts are the JSON ServiceNow's Import Set API parses: byte for byte what Python's own
compact encoder (without ASCII escaping) writes, for every kind of text a record can hold."""

from __future__ import annotations

import json

from itam_admin.exports.planner import encode, encode_batch

TEXTS = [
    "plain",
    'quotes " and back\\slash / slash',
    "newline\n tab\t carriage\r return, bell \x07 and \x1f",
    "non-ASCII: Zürich – 東京 – emoji 🖥️",
    "",
    "\u2028 line and \u2029 paragraph separators",
]


def test_batches_and_records_encode_exactly_as_the_standard_encoder():
    reference = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
    records = [{"u_source_id": f"acme:{n}", "u_name": text} for n, text in enumerate(TEXTS)]
    assert encode_batch(records) == reference.encode({"records": records}).encode()
    for record in records:
        assert encode(record) == reference.encode(record).encode()
    assert json.loads(encode_batch(records)) == {"records": records}

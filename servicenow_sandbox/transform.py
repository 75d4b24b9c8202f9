"""Transform maps at work: staged rows become computers, contracts and software installs, coalescing on
`u_source_id` (the same source id again updates the record; an unchanged one is `ignored`, as ServiceNow does).

Planning reads the database briefly and computes without holding its lock; applying writes in the caller's
transaction. Callers serialise transforms (one at a time), so a plan never goes stale before it is applied.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from servicenow_sandbox.faults import Faults
from servicenow_sandbox.schema import IMPORT_ROW_COLUMNS, TABLES, TRANSFORM_MAPS, Table, TransformMap
from servicenow_sandbox.store import Store, now_text, quoted

RETIRED = "retired"
_CHUNK = 500  # bound parameters per IN (...)
_YIELD_EVERY = 20  # records between GIL hand-overs, so request threads answer while a batch transforms


@dataclass
class RowResult:
    state: str  # inserted | updated | ignored | skipped | error
    target_sys_id: str
    display_value: str
    staging_sys_id: str
    comment: str = ""


@dataclass
class Plan:
    tmap: TransformMap
    import_set_id: str
    staged: list[dict]
    results: list[RowResult] = field(default_factory=list)
    inserts: dict[str, dict] = field(default_factory=dict)
    updates: dict[str, dict] = field(default_factory=dict)
    staging_rows: list[dict] = field(default_factory=list)  # as staged, in sys_import_row order


def as_text(value: object) -> str:
    """ServiceNow staging columns hold strings: numbers become text, objects JSON, null empty."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _derived(target: Table, values: dict[str, object]) -> None:
    """Columns the transform map scripts would set: retirement state and integers."""
    retired = str(values.get("u_operational_status", "")).strip().lower() == RETIRED
    if target.name == "cmdb_ci_computer":
        values["install_status"] = "7" if retired else "1"
        values["operational_status"] = "6" if retired else "1"
    elif target.name == "ast_contract":
        values["active"] = "false" if retired else "true"
        if retired:
            values["state"] = "cancelled"
    elif target.name == "cmdb_sam_sw_install":
        values["active"] = "false" if retired else "true"
    for column in target.integers:
        if column in values:
            text = str(values[column]).strip()
            values[column] = int(text) if text.lstrip("-").isdigit() else 0


def _lookup(store: Store, table: Table, column: str, keys: Iterable[str]) -> dict[str, dict]:
    found: dict[str, dict] = {}
    keys = [k for k in dict.fromkeys(keys) if k]
    for start in range(0, len(keys), _CHUNK):
        chunk = keys[start : start + _CHUNK]
        sql = f"SELECT * FROM {quoted(table.name)} WHERE {quoted(column)} IN ({', '.join('?' for _ in chunk)})"
        for row in store.execute(sql, chunk):
            found[row[column]] = dict(row)
    return found


def plan(
    store: Store,
    staging_table: str,
    import_set_id: str,
    user: str,
    faults: Faults | None = None,
    orphans: str = "link_later",
) -> Plan:
    """Decide, for each staged row of the import set, inserted / updated / ignored / skipped / error and the rows
    to write. ``faults`` may reject rows on purpose (Faults.reject_rows)."""
    tmap = TRANSFORM_MAPS[staging_table]
    staging, target = TABLES[staging_table], TABLES[tmap.target_table]
    staged_rows = store.select(staging, "sys_import_set = ?", (import_set_id,), "sys_import_row")
    fields = [c for c in staging.columns if c not in IMPORT_ROW_COLUMNS]
    result = Plan(tmap, import_set_id, [{c: str(row[c]) for c in fields if row[c] != ""} for row in staged_rows])
    result.staging_rows = staged_rows
    existing = _lookup(store, target, "u_source_id", (s.get("u_source_id", "") for s in result.staged))
    computers: dict[str, dict] = {}
    if target.name == "cmdb_sam_sw_install":
        wanted_ids = (s.get("u_computer_source_id", "") for s in result.staged)
        computers = _lookup(store, TABLES["cmdb_ci_computer"], "u_source_id", wanted_ids)
    stamp = now_text()
    for index, values in enumerate(result.staged):
        if index % _YIELD_EVERY == 0:
            time.sleep(0)
        source_id = values.get("u_source_id", "").strip()
        staging_id = str(staged_rows[index]["sys_id"])
        if not source_id:
            result.results.append(RowResult("skipped", "", "", staging_id, "Coalesce field u_source_id is empty"))
            continue
        rejected = faults.rejection_for(staging_table, source_id) if faults is not None else None
        if rejected is not None:
            result.results.append(RowResult("error", "", "", staging_id, rejected))
            continue
        wanted = {tmap.field_map[k]: v for k, v in values.items() if k in tmap.field_map}
        _derived(target, wanted)
        comment = ""
        if target.name == "cmdb_sam_sw_install":
            computer = computers.get(values.get("u_computer_source_id", ""))
            wanted["installed_on"] = computer["sys_id"] if computer else ""
            if computer is None:
                comment = f"Computer with u_source_id {values.get('u_computer_source_id', '')!r} not found"
                if orphans == "error":
                    result.results.append(RowResult("error", "", "", staging_id, comment))
                    continue
                comment += "; the install is linked when the computer arrives"
        current = existing.get(source_id)
        if current is None:
            current = existing[source_id] = result.inserts[source_id] = Store.complete_row(target, wanted, user, stamp)
            state = "inserted"
        elif all(str(current.get(c, "")) == str(v) for c, v in wanted.items()):
            state, comment = "ignored", comment or "No field values changed"
        else:
            current.update(wanted, sys_updated_on=stamp, sys_updated_by=user)
            if source_id not in result.inserts:
                result.updates[source_id] = current
            state = "updated"
        display = str(current.get(target.display, ""))
        result.results.append(RowResult(state, str(current["sys_id"]), display, staging_id, comment))
    return result


def apply(conn: sqlite3.Connection, planned: Plan) -> list[RowResult]:
    """Write a plan: target rows, links of waiting installs, and the staging rows with their import state."""
    target = TABLES[planned.tmap.target_table]
    if target.name == "ast_contract":
        numbers = {}
        for row in planned.inserts.values():
            row["number"] = numbers[row["sys_id"]] = Store.next_number(conn, "CNTR")
        for result in planned.results:
            result.display_value = str(numbers.get(result.target_sys_id, result.display_value))
    Store.insert_rows(conn, target, planned.inserts.values())
    if planned.updates:
        columns = [c for c in target.columns if c != "number"] + ["sys_updated_on", "sys_updated_by"]
        Store.update_rows(conn, target, columns, planned.updates.values())
    if target.name == "cmdb_ci_computer":
        conn.executemany(
            "UPDATE cmdb_sam_sw_install SET installed_on = ? WHERE u_computer_source_id = ? AND installed_on = ''",
            [(c["sys_id"], c["u_source_id"]) for c in (*planned.inserts.values(), *planned.updates.values())],
        )
    _update_staging_rows(conn, planned)
    return planned.results


_RESULT_COLUMNS = (
    "sys_import_state",
    "sys_import_state_comment",
    "sys_target_sys_id",
    "sys_target_table",
    "sys_transform_map",
    "sys_row_error",
    "sys_updated_on",
)


def _update_staging_rows(conn: sqlite3.Connection, planned: Plan) -> None:
    """Each staged row gets its result: the import state, ServiceNow's comment and the target record."""
    stamp = now_text()
    rows = []
    for result in planned.results:
        rows.append(
            {
                "sys_id": result.staging_sys_id,
                "sys_import_state": result.state,
                "sys_import_state_comment": result.comment,
                "sys_target_sys_id": result.target_sys_id,
                "sys_target_table": planned.tmap.target_table,
                "sys_transform_map": planned.tmap.name,
                "sys_row_error": result.comment if result.state == "error" else "",
                "sys_updated_on": stamp,
            }
        )
    Store.update_rows(conn, TABLES[planned.tmap.staging_table], _RESULT_COLUMNS, rows)

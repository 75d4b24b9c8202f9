"""Installed transform maps at work: staged rows become target records through the map's field maps, coalescing on
its coalesce fields (the same source id again updates the record; an unchanged one is `ignored`).

The sandbox cannot run JavaScript. A transform script whose first line declares its purpose
(`// ITAM connector: <purpose>`, see update_sets.SCRIPT_MARKER) is emulated natively; any other script is skipped:
- identify-computer (onBefore): the computer goes through an IRE-like identification (existing CI by u_source_id,
  else serial_number, else name) and is inserted or updated there, so a computer another source (SCCM) put in is
  updated, not duplicated; the row ends `ignored` with the comment
  `Written through IRE: INSERT|UPDATE|NO_CHANGE <table> <sys_id>`, as the update set's script writes it.
- require-computer (onBefore): an install needs its computer (by u_computer_source_id, else
  u_computer_serial_number, else u_computer_name); without one the row is `error` with the script's comment. The
  retirement of an install ServiceNow never had is `ignored`.
- retire-install (onAfter): a retired install is deleted.
Planning reads the database briefly and computes without holding its lock; applying writes in the caller's
transaction. Callers apply one plan at a time, so a plan never goes stale before it is applied.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from servicenow_sandbox.catalog import Catalog
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.schema import IMPORT_ROW_COLUMNS, Table
from servicenow_sandbox.store import Store, now_text, quoted
from servicenow_sandbox.update_sets import TransformMap

_CHUNK = 500  # bound parameters per IN (...)
_YIELD_EVERY = 20  # rows between GIL hand-overs, so request threads answer while a set transforms

# What the update set's script include reads (ITAMConnectorUtil): the retirement flag, and the columns an install
# names its computer by, in the order computerOf tries them.
STATUS_COLUMN, RETIRED = "u_operational_status", "retired"
COMPUTER_KEYS = (
    ("u_source_id", "u_computer_source_id"),
    ("serial_number", "u_computer_serial_number"),
    ("name", "u_computer_name"),
)
COMPUTERS = "cmdb_ci_computer"
IDENTIFY, REQUIRE_COMPUTER, RETIRE_INSTALL = "identify-computer", "require-computer", "retire-install"
UNCHANGED = "No field values changed"


@dataclass
class RowResult:
    state: str  # inserted | updated | ignored | skipped | error
    target_sys_id: str
    display_value: str
    staging_sys_id: str
    comment: str = ""


@dataclass
class Plan:
    transform_map: TransformMap
    staging: Table
    target: Table
    import_set_id: str
    results: list[RowResult] = field(default_factory=list)
    inserts: dict[str, dict] = field(default_factory=dict)  # by sys_id
    updates: dict[str, dict] = field(default_factory=dict)
    deletes: set[str] = field(default_factory=set)


def as_text(value: object) -> str:
    """ServiceNow staging columns hold strings: numbers become text, objects JSON, null empty."""
    if value.__class__ is str:  # most values, first: this runs for every field of every staged record
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


class _Rows:
    """Target rows known to this plan (read from the database or planned), found by column values."""

    def __init__(self, store: Store, table: Table) -> None:
        self.store = store
        self.table = table
        self.by_id: dict[str, dict] = {}
        self._index: dict[str, dict[str, list[str]]] = {}

    def load(self, column: str, keys: Iterable[str]) -> None:
        index = self._index.setdefault(column, {})
        wanted = [k for k in dict.fromkeys(keys) if k and k not in index]
        for start in range(0, len(wanted), _CHUNK):
            chunk = wanted[start : start + _CHUNK]
            sql = (
                f"SELECT * FROM {quoted(self.table.name)} WHERE {quoted(column)} IN ({', '.join('?' for _ in chunk)}) "
                "ORDER BY rowid"
            )
            for row in self.store.execute(sql, chunk):
                row = self.by_id.setdefault(row["sys_id"], dict(row))
                index.setdefault(str(row[column]), []).append(str(row["sys_id"]))

    def find(self, column: str, value: str, source_id: str | None = None) -> dict | None:
        """The first row whose ``column`` is ``value``; with ``source_id``, skipping rows that carry another
        non-empty u_source_id (another record of ours, which a serial number or name must not merge into)."""
        for sys_id in self._index.get(column, {}).get(value, ()) if value else ():
            row = self.by_id[sys_id]
            if source_id is None or str(row.get("u_source_id", "")) in ("", source_id):
                return row
        return None

    def add(self, row: dict) -> None:
        self.by_id[str(row["sys_id"])] = row
        self.reindex(row)

    def reindex(self, row: dict) -> None:
        for column, index in self._index.items():
            value, sys_id = str(row.get(column, "")), str(row["sys_id"])
            if value and sys_id not in index.setdefault(value, []):
                index[value].append(sys_id)


def _typed(target: Table, values: dict[str, object]) -> None:
    for column in target.integers & set(values):
        text = str(values[column]).strip()
        values[column] = int(text) if text.lstrip("-").isdigit() else 0


def _field_values(tmap: TransformMap, target: Table, staged: dict[str, str]) -> dict[str, object]:
    """The target values a row's plain field maps give (empty ones only with copy_empty_fields)."""
    wanted: dict[str, object] = {}
    for entry in tmap.field_maps:
        if entry.scripted or not target.has(entry.target_field):
            continue
        value = staged.get(entry.source_field, "")
        if value == "" and not tmap.copy_empty_fields:
            continue
        choices = target.choices.get(entry.target_field)
        if choices and value not in choices and entry.choice_action in ("ignore", "reject"):
            continue  # an unknown choice leaves the field as it is (choice action ignore)
        wanted[entry.target_field] = value
    _typed(target, wanted)
    return wanted


def _changed(current: dict, wanted: dict[str, object]) -> bool:
    return any(str(current.get(column, "")) != str(value) for column, value in wanted.items())


class _Planner:
    def __init__(self, store: Store, catalog: Catalog, plan: Plan, faults: Faults | None, user: str) -> None:
        self.store, self.catalog, self.plan, self.faults, self.user = store, catalog, plan, faults, user
        self.stamp = now_text()
        self.targets = _Rows(store, plan.target)
        self.computers = self.targets if plan.target.name == COMPUTERS else _Rows(store, catalog.tables[COMPUTERS])
        self.coalesce = [e for e in plan.transform_map.field_maps if e.coalesce and not e.scripted]
        self.before = plan.transform_map.purposes("onBefore")
        self.after = plan.transform_map.purposes("onAfter")

    def prepare(self, staged_rows: list[dict]) -> None:
        for entry in self.coalesce:
            self.targets.load(entry.target_field, (r.get(entry.source_field, "") for r in staged_rows))
        if IDENTIFY in self.before:
            for target_field, source_field in self._identity_fields():
                self.computers.load(target_field, (r.get(source_field, "") for r in staged_rows))
        if REQUIRE_COMPUTER in self.before or any(e.scripted for e in self.plan.transform_map.field_maps):
            for target_field, source_field in COMPUTER_KEYS:
                self.computers.load(target_field, (r.get(source_field, "") for r in staged_rows))

    def _identity_fields(self) -> list[tuple[str, str]]:
        """(computer field, staging column) for the IRE's identifiers: the coalesce field, serial number, name."""
        mapped = {e.target_field: e.source_field for e in self.plan.transform_map.field_maps if not e.scripted}
        return [(f, mapped[f]) for f in ("u_source_id", "serial_number", "name") if f in mapped]

    def computer_of(self, staged: dict[str, str]) -> dict | None:
        for target_field, source_field in COMPUTER_KEYS:
            found = self.computers.find(target_field, staged.get(source_field, ""))
            if found is not None:
                return found
        return None

    def existing(self, staged: dict[str, str]) -> dict | None:
        if not self.coalesce:
            return None
        first = self.coalesce[0]
        found = self.targets.find(first.target_field, staged.get(first.source_field, ""))
        if found is None:
            return None
        same = all(str(found.get(e.target_field, "")) == staged.get(e.source_field, "") for e in self.coalesce)
        return found if same else None

    def insert(self, rows: _Rows, values: dict[str, object]) -> dict:
        row = Store.complete_row(rows.table, {**rows.table.defaults, **values}, self.user, self.stamp)
        rows.add(row)
        self.plan.inserts[str(row["sys_id"])] = row
        return row

    def update(self, rows: _Rows, row: dict, values: dict[str, object]) -> None:
        row.update(values, sys_updated_on=self.stamp, sys_updated_by=self.user)
        rows.reindex(row)
        if str(row["sys_id"]) not in self.plan.inserts:
            self.plan.updates[str(row["sys_id"])] = row

    def result(self, staging_id: str, state: str, row: dict | None = None, comment: str = "") -> None:
        target = self.plan.target
        sys_id = str(row["sys_id"]) if row is not None else ""
        display = str(row.get(target.display, "")) if row is not None else ""
        self.plan.results.append(RowResult(state, sys_id, display, staging_id, comment))

    # -- one row ---------------------------------------------------------------------------------

    def row(self, staging_id: str, staged: dict[str, str]) -> None:
        empty = [e.source_field for e in self.coalesce if not staged.get(e.source_field, "").strip()]
        if empty:
            self.result(staging_id, "skipped", comment=f"Coalesce field {', '.join(empty)} is empty")
            return
        rejected = (
            self.faults.rejection_for(self.plan.staging.name, staged.get("u_source_id", "")) if self.faults else None
        )
        if rejected is not None:
            self.result(staging_id, "error", comment=rejected)
            return
        retired = staged.get(STATUS_COLUMN, "").strip().lower() == RETIRED
        current = self.existing(staged)
        if IDENTIFY in self.before:
            self.identify(staging_id, staged, retired)
            return
        computer = None
        if REQUIRE_COMPUTER in self.before:
            if retired:
                if current is None:  # nothing to retire: ServiceNow never had this install
                    self.result(staging_id, "ignored")
                    return
            else:
                computer = self.computer_of(staged)
                if computer is None:
                    self.result(staging_id, "error", comment=_computer_not_found(staged))
                    return
        wanted = _field_values(self.plan.transform_map, self.plan.target, staged)
        for entry in self.plan.transform_map.field_maps:
            if entry.scripted and entry.target_field == "installed_on":
                found = computer or self.computer_of(staged)
                if found is not None:  # choice action ignore: no computer leaves the field as it is
                    wanted["installed_on"] = str(found["sys_id"])
        if current is None:
            current, state, comment = self.insert(self.targets, wanted), "inserted", ""
        elif _changed(current, wanted):
            self.update(self.targets, current, wanted)
            state, comment = "updated", ""
        else:
            state, comment = "ignored", UNCHANGED
        if RETIRE_INSTALL in self.after and retired:
            self.plan.deletes.add(str(current["sys_id"]))
        self.result(staging_id, state, current, comment)

    def identify(self, staging_id: str, staged: dict[str, str], retired: bool) -> None:
        """IRE in an onBefore script, then ``ignore = true`` ("Applying IRE to Import Sets")."""
        target = self.computers.table
        values = _field_values(self.plan.transform_map, target, staged)
        if retired:
            values.update(install_status="7", operational_status="6")
        source_id = staged.get("u_source_id", "")
        found = None
        for target_field, _ in self._identity_fields():
            found = self.computers.find(target_field, str(values.get(target_field, "")), source_id)
            if found is not None:
                break
        if found is None:
            if not values.get("serial_number") and not values.get("name"):
                self.result(
                    staging_id,
                    "error",
                    comment=(
                        f"The Identification and Reconciliation Engine refused computer {source_id}: "
                        f"MISSING_MATCHING_ATTRIBUTES: no serial_number or name to identify a {target.name} by"
                    ),
                )
                return
            found, operation = self.insert(self.computers, values), "INSERT"
        elif _changed(found, values):
            self.update(self.computers, found, values)
            operation = "UPDATE"
        else:
            operation = "NO_CHANGE"
        self.result(staging_id, "ignored", comment=f"Written through IRE: {operation} {target.name} {found['sys_id']}")


def _computer_not_found(staged: dict[str, str]) -> str:
    """The update set's ITAMConnectorUtil.computerNotFound message."""
    return (
        f'No computer in ServiceNow has ITAM source ID "{staged.get("u_computer_source_id", "")}", serial number '
        f'"{staged.get("u_computer_serial_number", "")}" or name "{staged.get("u_computer_name", "")}": export the '
        "hardware inventory too, or check that the computer exists in Configuration > Computers."
    )


def plan(
    store: Store, catalog: Catalog, tmap: TransformMap, import_set_id: str, user: str, faults: Faults | None = None
) -> Plan:
    """Decide, for each staged row of the import set, inserted / updated / ignored / skipped / error under the
    transform map ``tmap``, and the rows to write. ``faults`` may reject rows on purpose (Faults.reject_rows)."""
    staging = catalog.tables[tmap.source_table]
    target = catalog.tables.get(tmap.target_table)
    staged_rows = store.select(staging, "sys_import_set = ?", (import_set_id,), "sys_import_row")
    fields = [c for c in staging.columns if c not in IMPORT_ROW_COLUMNS]
    values = [{c: str(row[c]) for c in fields if row[c] != ""} for row in staged_rows]
    if target is None:
        result = Plan(tmap, staging, Table(tmap.target_table, tmap.target_table, ()), import_set_id)
        for row in staged_rows:
            comment = f"The ServiceNow sandbox has no table {tmap.target_table}"
            result.results.append(RowResult("error", "", "", str(row["sys_id"]), comment))
        return result
    planner = _Planner(store, catalog, Plan(tmap, staging, target, import_set_id), faults, user)
    planner.prepare(values)
    for index, (row, staged) in enumerate(zip(staged_rows, values, strict=True)):
        if index % _YIELD_EVERY == 0:
            time.sleep(0)
        planner.row(str(row["sys_id"]), staged)
    return planner.plan


def apply(conn: sqlite3.Connection, catalog: Catalog, planned: Plan) -> list[RowResult]:
    """Write a plan: target rows (and computers written through IRE), deletions, and each staged row's result."""
    by_table: dict[str, tuple[list[dict], list[dict]]] = {}
    for rows, kind in ((planned.inserts, 0), (planned.updates, 1)):
        for row in rows.values():
            by_table.setdefault(str(row["sys_class_name"]), ([], []))[kind].append(row)
    numbers: dict[str, str] = {}
    for name, (inserts, updates) in by_table.items():
        table = catalog.tables[name]
        if table.number_prefix:
            for row in inserts:
                if not row.get("number"):
                    row["number"] = numbers[str(row["sys_id"])] = Store.next_number(conn, table.number_prefix)
        Store.insert_rows(conn, table, inserts)
        if updates:
            columns = [c for c in table.columns if c != "number"] + ["sys_updated_on", "sys_updated_by"]
            Store.update_rows(conn, table, columns, updates)
    for result in planned.results:
        result.display_value = numbers.get(result.target_sys_id, result.display_value)
    deletes = sorted(planned.deletes)
    for start in range(0, len(deletes), _CHUNK):
        chunk = deletes[start : start + _CHUNK]
        conn.execute(
            f"DELETE FROM {quoted(planned.target.name)} WHERE sys_id IN ({', '.join('?' for _ in chunk)})", chunk
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
    """Each staged row gets its result: the import state, the comment and the target record."""
    stamp = now_text()
    rows = [
        {
            "sys_id": result.staging_sys_id,
            "sys_import_state": result.state,
            "sys_import_state_comment": result.comment,
            # The record the row coalesced onto (also for an unchanged one, ignored); none when a script ignored it.
            "sys_target_sys_id": result.target_sys_id,
            "sys_target_table": planned.target.name,
            "sys_transform_map": planned.transform_map.sys_id,
            "sys_row_error": result.comment if result.state == "error" else "",
            "sys_updated_on": stamp,
        }
        for result in planned.results
    ]
    Store.update_rows(conn, planned.staging, _RESULT_COLUMNS, rows)

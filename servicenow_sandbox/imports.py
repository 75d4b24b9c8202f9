"""Import sets: insertMultiple stages its rows (`sys_import_state=pending`) as it arrives and answers at once; a
scheduler transforms each import set later, as ServiceNow's asynchronous transforms do.

Timing follows ServiceNow, not one worker's queue: an import set's transform starts when it arrives (or, with
`run_after`, when the named import set finished) and takes `transform_seconds`; import sets in flight overlap, so
they transform concurrently and finish in the order their times give, not the order they came in. Only the writes
at the end of each transform are applied one at a time, so coalescing on u_source_id stays exact. The request path
never transforms; the scheduler never answers HTTP and never loses a staged import set (a file database re-queues
unfinished ones at start).
"""

from __future__ import annotations

import logging
import random
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from servicenow_sandbox.catalog import Catalog
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store, new_sys_ids, now_text
from servicenow_sandbox.transform import RowResult, apply, as_text, plan
from servicenow_sandbox.update_sets import TransformMap

log = logging.getLogger(__name__)
STATES = ("inserted", "updated", "ignored", "skipped", "error")


def _maps_column_names(entry: dict | None) -> bool:
    """Whether a REST Insert Multiple entry has JSON keys matched to column names; without one, or with Label, they
    are matched to column labels (Import Set API docs)."""
    return entry is not None and entry["column_mapping"] == "column_name"


@dataclass
class Job:
    """One import set waiting for, or in, its asynchronous transform."""

    job_id: int
    import_set_id: str
    staging_table: str
    user_name: str
    run_after: str
    seconds: float
    started_at: float | None = None
    run_id: str = ""

    @property
    def due_at(self) -> float | None:
        return None if self.started_at is None else self.started_at + self.seconds


class ImportService:
    def __init__(
        self,
        store: Store,
        settings: SandboxSettings,
        faults: Faults,
        catalog: Catalog,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.catalog = catalog
        self.settings = settings
        self.faults = faults
        self.clock = clock
        self._jobs: dict[int, Job] = {}  # in arrival order
        self._changed = threading.Condition()
        self._held = False
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._transforming = threading.Lock()  # one set's writes at a time, so a plan is applied before the next
        self._random = random.Random()
        self.work_seconds = 0.0  # time spent computing and writing transforms (the configured waits excluded)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for row in self.store.execute("SELECT * FROM sandbox_job WHERE state = 'pending' ORDER BY id"):
            self._add_job(row["id"], row["import_set"], row["staging_table"], row["user_name"], row["run_after"])
        self._thread = threading.Thread(target=self._schedule, name="sandbox-transform", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop transforming; staged import sets stay pending (a file database transforms them after a restart)."""
        with self._changed:
            self._stopping = True
            self._changed.notify_all()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def _add_job(self, job_id: int, import_set_id: str, staging: str, user: str, run_after: str) -> None:
        seconds = self.settings.transform_seconds_for(staging)
        jitter = self.settings.transform_jitter
        if seconds and jitter:
            seconds *= self._random.uniform(1 - jitter, 1 + jitter)
        with self._changed:
            self._jobs[job_id] = Job(job_id, import_set_id, staging, user, run_after, seconds)
            self._changed.notify_all()

    @property
    def pending(self) -> int:
        """Import sets not transformed yet (waiting, held or in their transform time)."""
        with self._changed:
            return len(self._jobs)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every staged import set is transformed; False when timeout passed first (or transforms are
        held)."""
        with self._changed:
            return self._changed.wait_for(lambda: not self._jobs, timeout)

    def hold(self) -> None:
        """From now on no transform starts or finishes: import sets stay pending until release()."""
        with self._changed:
            self._held = True

    def release(self) -> None:
        with self._changed:
            self._held = False
            self._changed.notify_all()

    @property
    def held(self) -> bool:
        return self._held

    def discard_all(self, delete: Callable[[], None]) -> None:
        """Drop every waiting transform and run ``delete`` (which removes their import sets) while no transform
        writes, so nothing transformed before the reset lands after it."""
        with self._transforming:
            with self._changed:
                self._jobs.clear()
                self._changed.notify_all()
            delete()

    # -- the request path ----------------------------------------------------------------------

    def _new_import_set(self, conn: sqlite3.Connection, staging_table: str, mode: str, multi_id: str | None, user: str):
        if (
            not multi_id
            or not conn.execute("SELECT 1 FROM sys_multi_import_set WHERE sys_id = ?", (multi_id,)).fetchone()
        ):
            multi = Store.complete_row(self.catalog.tables["sys_multi_import_set"], {"state": "pending"}, user)
            Store.insert_rows(conn, self.catalog.tables["sys_multi_import_set"], [multi])
            multi_id = str(multi["sys_id"])
        values = {
            "number": Store.next_number(conn, "ISET"),
            "table_name": staging_table,
            "state": "loading",
            "mode": mode,
            "multi_import_set": multi_id,
        }
        import_set = Store.complete_row(self.catalog.tables["sys_import_set"], values, user)
        Store.insert_rows(conn, self.catalog.tables["sys_import_set"], [import_set])
        return import_set, multi_id

    def transform_map(self, staging_table: str) -> TransformMap | None:
        """The staging table's transform map as the instance has it now: the first (by order) whose
        sys_transform_map record is active (an admin may deactivate one), with the installed field maps."""
        staging = self.catalog.staging.get(staging_table)
        if staging is None:
            return None
        rows = self.store.execute(
            "SELECT sys_id FROM sys_transform_map WHERE source_table = ? AND active = 'true' ORDER BY \"order\", name",
            (staging_table,),
        )
        by_id = {m.sys_id: m for m in staging.maps}
        return next((by_id[row[0]] for row in rows if row[0] in by_id), None)

    def insert_multiple_entry(self, staging_table: str) -> dict | None:
        """The active REST Insert Multiple record of a staging table, as it stands now (an admin may edit it)."""
        rows = self.store.execute(
            "SELECT * FROM sys_rest_insert_multiple WHERE source_table = ? AND active = 'true' ORDER BY rowid",
            (staging_table,),
        )
        return dict(rows[0]) if rows else None

    def _stage(
        self,
        conn: sqlite3.Connection,
        staging_table: str,
        import_set_id: str,
        records: list,
        user: str,
        by_column_name: bool,
    ) -> None:
        """Insert the records as pending staging rows of the import set. JSON keys are matched to column names when
        ``by_column_name`` (see _maps_column_names; a Table API insert always); otherwise to column labels, so keys
        that are column names land nowhere and the rows arrive empty. Unknown keys are dropped.

        Each row is a copy of one template filled by column position: this runs for every record of every batch,
        and a dict and complete_row a record cost several times as much."""
        staging = self.catalog.staging[staging_table]
        columns = staging.table.all_columns
        if by_column_name:
            at = {name: columns.index(name) for name in staging.table.labels}  # JSON key -> column position
        else:
            at = {label: columns.index(name) for label, name in staging.columns_by_label.items()}
        id_at, set_at, number_at, state_at = (
            columns.index(name) for name in ("sys_id", "sys_import_set", "sys_import_row", "sys_import_state")
        )
        template = Store.row_template(staging.table, user)
        rows = []
        for number, (record, sys_id) in enumerate(zip(records, new_sys_ids(len(records)), strict=True), start=1):
            row = template.copy()
            row[id_at] = sys_id
            for key, value in record.items() if isinstance(record, dict) else ():
                position = at.get(key)
                if position is not None:
                    row[position] = as_text(value)
            row[set_at], row[number_at], row[state_at] = import_set_id, number, "pending"
            rows.append(row)
        Store.insert_values(conn, staging.table, rows)

    def accept_batch(
        self,
        staging_table: str,
        records: list,
        user_name: str,
        multi_id: str | None = None,
        run_after: str | None = None,
    ) -> dict:
        """Stage an insertMultiple body's records and queue their import set; answer ServiceNow's ids. With
        ``run_after`` (an import set's sys_id) the transform waits until that import set is transformed."""
        entry = self.insert_multiple_entry(staging_table)
        mode = "synchronous" if entry is not None and entry["transform"] == "synchronous" else "asynchronous"
        with self.store.transaction() as conn:
            import_set, multi_id = self._new_import_set(conn, staging_table, mode, multi_id, user_name)
            by_column_name = _maps_column_names(entry)
            self._stage(conn, staging_table, str(import_set["sys_id"]), records, user_name, by_column_name)
            conn.execute("UPDATE sys_import_set SET state = 'loaded' WHERE sys_id = ?", (import_set["sys_id"],))
            cursor = None
            if mode == "asynchronous":
                cursor = conn.execute(
                    "INSERT INTO sandbox_job (import_set, staging_table, user_name, run_after) VALUES (?, ?, ?, ?)",
                    (import_set["sys_id"], staging_table, user_name, run_after or ""),
                )
        if cursor is None:  # a synchronous entry: transformed before answering (run_after does not apply)
            self._transform(staging_table, str(import_set["sys_id"]), user_name)
        else:
            self._add_job(int(cursor.lastrowid), str(import_set["sys_id"]), staging_table, user_name, run_after or "")
        return {"import_set_id": import_set["sys_id"], "multi_import_set_id": multi_id}

    def insert_row(self, staging_table: str, record: dict, user_name: str) -> dict:
        """A Table API insert into a staging table (what pysnc's GlideRecord.insert() sends): the row goes into a
        synchronous import set of its own and is transformed before the answer, which is the staging row as it is
        then (ServiceNow docs, "Web service import set mode": a web service insert into an import set table creates
        a synchronous import set and transforms the row at once). Fields are column names, as always on the Table
        API."""
        with self.store.transaction() as conn:
            import_set, _ = self._new_import_set(conn, staging_table, "synchronous", None, user_name)
            self._stage(conn, staging_table, str(import_set["sys_id"]), [record], user_name, by_column_name=True)
        results = self._transform(staging_table, str(import_set["sys_id"]), user_name)
        staging = self.catalog.staging[staging_table]
        if results:
            row = self.store.get(staging.table, results[0].staging_sys_id)
            if row is not None:
                return row
        rows = self.store.select(staging.table, "sys_import_set = ?", [str(import_set["sys_id"])], "", 1, 0)
        return rows[0] if rows else {}

    def import_one(self, staging_table: str, record: dict, user_name: str, base_url: str) -> dict:
        """The synchronous single-record import: stage, transform and answer the per-record result."""
        by_column_name = _maps_column_names(self.insert_multiple_entry(staging_table))
        with self.store.transaction() as conn:
            import_set, _ = self._new_import_set(conn, staging_table, "synchronous", None, user_name)
            self._stage(conn, staging_table, str(import_set["sys_id"]), [record], user_name, by_column_name)
        results = self._transform(staging_table, str(import_set["sys_id"]), user_name)
        tmap = self.transform_map(staging_table)
        if not results or tmap is None:
            return {"import_set": import_set["number"], "staging_table": staging_table, "result": []}
        result = results[0]
        target = self.catalog.tables.get(tmap.target_table)
        sys_id = result.target_sys_id or result.staging_sys_id
        table_name = tmap.target_table if result.target_sys_id else staging_table
        answer = {
            "transform_map": tmap.name,
            "table": tmap.target_table,
            "display_name": target.display if target else "",
            "display_value": result.display_value,
            "record_link": f"{base_url}/api/now/table/{table_name}/{sys_id}",
            "status": result.state,
            "sys_id": sys_id,
        }
        if result.state == "error":
            answer["error_message"] = result.comment
        elif result.comment:
            answer["status_message"] = result.comment
        return {"import_set": import_set["number"], "staging_table": staging_table, "result": [answer]}

    # -- the scheduler ---------------------------------------------------------------------------

    def _may_start(self, job: Job) -> bool:
        """ServiceNow's run_after: not before the named import set finished (an unknown one holds nothing up)."""
        return not job.run_after or all(other.import_set_id != job.run_after for other in self._jobs.values())

    def _next_steps(self) -> tuple[list[Job], list[Job], float | None]:
        """Under the lock: the jobs to start now, the jobs whose time is up, and how long to sleep otherwise."""
        if self._held:
            return [], [], None
        now = self.clock()
        starting = [job for job in self._jobs.values() if job.started_at is None and self._may_start(job)]
        for job in starting:
            job.started_at = now
        due = sorted(
            (job for job in self._jobs.values() if job.due_at is not None and job.due_at <= now),
            key=lambda job: (job.due_at, job.job_id),
        )
        waits = [job.due_at - now for job in self._jobs.values() if job.due_at is not None and job.due_at > now]
        return starting, due, min(waits) if waits else None

    def _schedule(self) -> None:
        while True:
            with self._changed:
                if self._stopping:
                    return
                starting, due, wait = self._next_steps()
                if not starting and not due:
                    self._changed.wait(wait)
                    continue
            for job in starting:
                self._guarded(job, self._begin)
            for job in due:
                self._guarded(job, self._finish)
                with self._changed:
                    if self._held or any(other.started_at is None for other in self._jobs.values()):
                        # One at a time while a job waits for its run_after: finishing this one may let it start
                        # before the next due one. Without such a job, every due one in a row: looking at every
                        # job again after each finished one made draining thousands of import sets quadratic.
                        break

    def _guarded(self, job: Job, step: Callable[[Job], None]) -> None:
        try:
            step(job)
        except Exception:
            log.exception("sandbox: transforming import set %s failed", job.import_set_id)
            self.store.execute("UPDATE sandbox_job SET state = 'failed' WHERE id = ?", (job.job_id,))
            self._done(job)

    def _begin(self, job: Job) -> None:
        """The transform starts: a running sys_import_set_run appears, as in ServiceNow's Transform History."""
        tmap = self.transform_map(job.staging_table)
        if tmap is None:
            return  # no transform map: no run, the rows stay pending (see _transform)
        total = self.store.count(self.catalog.tables[job.staging_table], "sys_import_set = ?", (job.import_set_id,))
        runs = self.catalog.tables["sys_import_set_run"]
        values = {"set": job.import_set_id, "sys_transform_map": tmap.sys_id, "state": "running", "total": total}
        run = Store.complete_row(runs, values, "system")
        with self.store.transaction() as conn:
            Store.insert_rows(conn, runs, [run])
        job.run_id = str(run["sys_id"])

    def _finish(self, job: Job) -> None:
        self._transform(job.staging_table, job.import_set_id, job.user_name, job)
        self._done(job)

    def _done(self, job: Job) -> None:
        with self._changed:
            self._jobs.pop(job.job_id, None)
            self._changed.notify_all()

    def _transform(self, staging: str, import_set_id: str, user: str, job: Job | None = None) -> list[RowResult]:
        """Plan from the staged rows, then write everything (and the run's counts) in one transaction. Without an
        active transform map nothing happens: the import set stays loaded and its rows pending, as ServiceNow leaves
        an import set it has no map for."""
        started = time.perf_counter()
        with self._transforming:
            tmap = self.transform_map(staging)
            planned = plan(self.store, self.catalog, tmap, import_set_id, user, self.faults) if tmap else None
            with self.store.transaction() as conn:
                results: list[RowResult] = []
                if planned is not None:
                    results = apply(conn, self.catalog, planned)
                    took = time.perf_counter() - started
                    self._record_run(conn, planned.transform_map.sys_id, import_set_id, results, user, took, job)
                if job is not None:
                    conn.execute("UPDATE sandbox_job SET state = 'done' WHERE id = ?", (job.job_id,))
            self.work_seconds += time.perf_counter() - started
        return results

    def _record_run(
        self,
        conn: sqlite3.Connection,
        transform_map_id: str,
        import_set_id: str,
        results: list[RowResult],
        user: str,
        took: float,
        job: Job | None,
    ) -> None:
        counts = {state: sum(1 for r in results if r.state == state) for state in STATES}
        runs = self.catalog.tables["sys_import_set_run"]
        values = {
            "set": import_set_id,
            "sys_transform_map": transform_map_id,
            "state": "complete_with_errors" if counts["error"] else "complete",
            "total": len(results),
            "processed": len(results),
            "inserts": counts["inserted"],
            "updates": counts["updated"],
            "ignored": counts["ignored"],
            "skipped": counts["skipped"],
            "errors": counts["error"],
            "completed": now_text(),
            "run_time": f"{(job.seconds if job else 0) + took:.3f}",
        }
        if job is not None and job.run_id:
            Store.update_rows(conn, runs, list(values), [{**values, "sys_id": job.run_id}])
        else:
            Store.insert_rows(conn, runs, [Store.complete_row(runs, values, user)])
        conn.execute(
            "UPDATE sys_import_set SET state = 'processed', load_completed = ? WHERE sys_id = ?",
            (now_text(), import_set_id),
        )

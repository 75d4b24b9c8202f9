"""Import sets: a batch is stored as it arrives and transformed by one background worker, in arrival order.

The request path only records the batch (a few inserts), so it answers in milliseconds; the worker never
answers HTTP and never loses a stored batch (a file database re-queues unfinished batches at start).
"""

from __future__ import annotations

import json
import logging
import queue
import sqlite3
import threading
import time

from servicenow_sandbox.schema import TABLES, TRANSFORM_MAPS
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store, now_text
from servicenow_sandbox.transform import RowResult, apply, plan

log = logging.getLogger(__name__)
STATES = ("inserted", "updated", "ignored", "skipped", "error")


class ImportService:
    def __init__(self, store: Store, settings: SandboxSettings) -> None:
        self.store = store
        self.settings = settings
        self._queue: queue.Queue[int | None] = queue.Queue()
        self._idle = threading.Condition()
        self._pending = 0
        self._thread: threading.Thread | None = None
        self._transforming = threading.Lock()  # one transform at a time, so a plan is applied before the next
        self.transform_seconds = 0.0

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        for row in self.store.execute("SELECT id FROM sandbox_batch WHERE state = 'pending' ORDER BY id"):
            self._enqueue(row[0])
        self._thread = threading.Thread(target=self._work, name="sandbox-transform", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout)
            self._thread = None

    def _enqueue(self, batch_id: int) -> None:
        with self._idle:
            self._pending += 1
        self._queue.put(batch_id)

    @property
    def pending(self) -> int:
        return self._pending

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until every received batch is transformed; False when timeout passed first."""
        with self._idle:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    # -- the request path ----------------------------------------------------------------------

    def _new_import_set(self, conn: sqlite3.Connection, staging_table: str, mode: str, multi_id: str | None, user: str):
        if (
            not multi_id
            or not conn.execute("SELECT 1 FROM sys_multi_import_set WHERE sys_id = ?", (multi_id,)).fetchone()
        ):
            multi = Store.complete_row(TABLES["sys_multi_import_set"], {"state": "pending"}, user)
            Store.insert_rows(conn, TABLES["sys_multi_import_set"], [multi])
            multi_id = str(multi["sys_id"])
        values = {
            "number": Store.next_number(conn, "ISET"),
            "table_name": staging_table,
            "state": "loading" if mode == "asynchronous" else "processed",
            "mode": mode,
            "multi_import_set": multi_id,
        }
        import_set = Store.complete_row(TABLES["sys_import_set"], values, user)
        Store.insert_rows(conn, TABLES["sys_import_set"], [import_set])
        return import_set, multi_id

    def accept_batch(self, staging_table: str, payload: str, user_name: str, multi_id: str | None = None) -> dict:
        """Store an insertMultiple body (JSON text with a `records` list) for the worker; answer ServiceNow's ids."""
        with self.store.transaction() as conn:
            import_set, multi_id = self._new_import_set(conn, staging_table, "asynchronous", multi_id, user_name)
            cursor = conn.execute(
                "INSERT INTO sandbox_batch (import_set, staging_table, payload, user_name) VALUES (?, ?, ?, ?)",
                (import_set["sys_id"], staging_table, payload, user_name),
            )
            conn.execute("UPDATE sys_import_set SET state = 'loaded' WHERE sys_id = ?", (import_set["sys_id"],))
        self._enqueue(int(cursor.lastrowid))
        return {"import_set_id": import_set["sys_id"], "multi_import_set_id": multi_id}

    def import_one(self, staging_table: str, record: dict, user_name: str, base_url: str) -> dict:
        """The synchronous single-record import: stage, transform and answer the per-record result."""
        tmap = TRANSFORM_MAPS[staging_table]
        with self.store.transaction() as conn:
            import_set, _ = self._new_import_set(conn, staging_table, "synchronous", None, user_name)
        result = self._run(staging_table, str(import_set["sys_id"]), [record], user_name)[0]
        target = TABLES[tmap.target_table]
        sys_id = result.target_sys_id or result.staging_sys_id
        table_name = tmap.target_table if result.target_sys_id else staging_table
        answer = {
            "transform_map": tmap.name,
            "table": tmap.target_table,
            "display_name": target.display,
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

    # -- the worker ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            batch_id = self._queue.get()
            if batch_id is None:
                return
            try:
                self._process(batch_id)
            except Exception:
                log.exception("sandbox: transforming batch %s failed", batch_id)
                self.store.execute("UPDATE sandbox_batch SET state = 'failed' WHERE id = ?", (batch_id,))
            finally:
                with self._idle:
                    self._pending -= 1
                    self._idle.notify_all()

    def _process(self, batch_id: int) -> None:
        rows = self.store.execute("SELECT * FROM sandbox_batch WHERE id = ? AND state = 'pending'", (batch_id,))
        if not rows:
            return
        batch = rows[0]
        records = json.loads(batch["payload"]).get("records", [])
        self._run(batch["staging_table"], batch["import_set"], records, batch["user_name"], batch_id)

    def _run(
        self, staging: str, import_set_id: str, records: list, user: str, batch_id: int | None = None
    ) -> list[RowResult]:
        """Plan outside the database lock, then write everything (and the run's counts) in one transaction."""
        started = time.perf_counter()
        records = [r if isinstance(r, dict) else {} for r in records]
        with self._transforming:
            planned = plan(self.store, staging, import_set_id, records, user, self.settings.orphan_installs)
            with self.store.transaction() as conn:
                results = apply(conn, planned)
                self._record_run(conn, staging, import_set_id, results, user, time.perf_counter() - started)
                if batch_id is not None:
                    conn.execute("UPDATE sandbox_batch SET state = 'done', payload = '' WHERE id = ?", (batch_id,))
            self.transform_seconds += time.perf_counter() - started
        return results

    @staticmethod
    def _record_run(
        conn: sqlite3.Connection, staging: str, import_set_id: str, results: list[RowResult], user: str, took: float
    ) -> None:
        counts = {state: sum(1 for r in results if r.state == state) for state in STATES}
        run = Store.complete_row(
            TABLES["sys_import_set_run"],
            {
                "set": import_set_id,
                "sys_transform_map": TRANSFORM_MAPS[staging].name,
                "state": "complete_with_errors" if counts["error"] else "complete",
                "total": len(results),
                "processed": len(results),
                "inserts": counts["inserted"],
                "updates": counts["updated"],
                "ignored": counts["ignored"],
                "skipped": counts["skipped"],
                "errors": counts["error"],
                "completed": now_text(),
                "run_time": f"{took:.3f}",
            },
            user,
        )
        Store.insert_rows(conn, TABLES["sys_import_set_run"], [run])
        conn.execute(
            "UPDATE sys_import_set SET state = 'processed', load_completed = ? WHERE sys_id = ?",
            (now_text(), import_set_id),
        )

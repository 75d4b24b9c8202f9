"""One sandbox instance's state and the Python controls tests use: data, accounts, faults and counters.

It holds no HTTP code; the web layer and the control endpoint call it, never the other way round.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict

from servicenow_sandbox.accounts import Accounts, OAuthClient
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.imports import ImportService
from servicenow_sandbox.query import compile_query
from servicenow_sandbox.schema import STAGING_TABLES, TABLES
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store
from servicenow_sandbox.transform import as_text


class Metrics:
    """Counters of what the sandbox saw, and how long it spent handling requests (injected latency excluded)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: Counter[str] = Counter()
        self.statuses: Counter[str] = Counter()
        self.records_received: Counter[str] = Counter()
        self.batches_received: Counter[str] = Counter()
        self.handling_seconds = 0.0
        self.handling_max_seconds = 0.0
        self.api_handling_seconds = 0.0
        self.dropped = 0
        self.failed_on_purpose = 0

    def request_done(self, kind: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[kind] += 1
            self.statuses[str(status)] += 1
            self.handling_seconds += seconds
            if kind == "api":
                self.api_handling_seconds += seconds
            self.handling_max_seconds = max(self.handling_max_seconds, seconds)

    def fault_applied(self, kind: str) -> None:
        """kind: "dropped" or "failed_on_purpose"."""
        with self._lock:
            setattr(self, kind, getattr(self, kind) + 1)

    def batch_received(self, staging_table: str, records: int) -> None:
        with self._lock:
            self.batches_received[staging_table] += 1
            self.records_received[staging_table] += records

    def snapshot(self) -> dict[str, object]:
        with self._lock:
            total = sum(self.requests.values())
            return {
                "requests": {"total": total, **self.requests},
                "statuses": dict(self.statuses),
                "dropped": self.dropped,
                "failed_on_purpose": self.failed_on_purpose,
                "handling_ms_total": round(self.handling_seconds * 1000, 3),
                "handling_ms_max": round(self.handling_max_seconds * 1000, 3),
                "api_handling_ms_total": round(self.api_handling_seconds * 1000, 3),
                "handling_ms_mean": round(self.handling_seconds * 1000 / total, 3) if total else 0.0,
                "records_received": {t: self.records_received[t] for t in STAGING_TABLES},
                "batches_received": {t: self.batches_received[t] for t in STAGING_TABLES},
            }


class SandboxState:
    def __init__(self, settings: SandboxSettings | None = None) -> None:
        self.settings = settings or SandboxSettings.from_env()
        self.store = Store(self.settings.database)
        self.accounts = Accounts(self.store, self.settings)
        self.accounts.seed()
        self.faults = Faults()
        self.imports = ImportService(self.store, self.settings, self.faults)
        self.metrics = Metrics()
        self.imports.start()

    def close(self) -> None:
        self.imports.stop()
        self.store.close()

    # -- tokens and clients --------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str | None = None, name: str | None = None) -> OAuthClient:
        return self.accounts.add_client(client_id, client_secret, name)

    def generate_refresh_token(
        self, username: str = "admin", password: str = "admin", client_id: str | None = None
    ) -> str:
        """What the Generate OAuth Token page gives an admin (raises NotAdmin / GrantRefused otherwise)."""
        return self.accounts.generate_refresh_token(username, password, client_id)

    def revoke_tokens(self, user: str | None = None, token: str | None = None, everything: bool = False) -> int:
        return self.accounts.revoke(token=token, user=user, everything=everything)

    def expire_tokens(self, user: str | None = None, kind: str = "access") -> int:
        """Expire live tokens now (kind: access, refresh or all), without waiting for their lifetime."""
        if kind not in ("access", "refresh", "all"):
            raise ValueError("kind must be access, refresh or all")
        return self.accounts.expire(user=user, kind=kind)

    def set_token_lifetimes(
        self, access_seconds: float | None = None, refresh_seconds: float | None = None, rotate: bool | None = None
    ) -> None:
        """Lifetimes of tokens issued from now on; rotate=True makes refresh grants return a new refresh token."""
        if access_seconds is not None:
            self.settings.access_token_seconds = float(access_seconds)
        if refresh_seconds is not None:
            self.settings.refresh_token_seconds = float(refresh_seconds)
        if rotate is not None:
            self.settings.rotate_refresh_tokens = bool(rotate)

    def set_transform_seconds(
        self, seconds: float | None = None, *, table: str | None = None, jitter: float | None = None
    ) -> None:
        """How long each import set's transform takes from now on (for one staging table with ``table``), and the
        random spread around it (jitter 0.5: between 0.5 and 1.5 times). Import sets already waiting keep theirs."""
        if seconds is not None:
            if seconds < 0:
                raise ValueError("transform_seconds must be >= 0")
            if table is None:
                self.settings.transform_seconds = float(seconds)
            else:
                self.settings.transform_seconds_by_table[table] = float(seconds)
        if jitter is not None:
            if not 0 <= jitter < 1:
                raise ValueError("jitter must be at least 0 and below 1")
            self.settings.transform_jitter = float(jitter)

    def hold_transforms(self) -> None:
        """No transform starts or finishes until release_transforms(): import sets stay `loaded`, their rows
        `pending` and their runs (if started) `running`, however long a client waits."""
        self.imports.hold()

    def release_transforms(self) -> None:
        self.imports.release()

    def set_max_payload_bytes(self, limit: int) -> None:
        if limit < 1:
            raise ValueError("the payload limit must be positive")
        self.settings.max_payload_bytes = int(limit)

    # -- data ------------------------------------------------------------------------------------

    def records(self, table: str, query: str | None = None) -> list[dict[str, object]]:
        """Rows of a table (as stored: references are sys_ids), filtered by an encoded query."""
        schema = TABLES.get(table)
        if schema is None:
            raise KeyError(f"the sandbox has no table {table!r}")
        compiled = compile_query(schema, query)
        return self.store.select(schema, compiled.where, compiled.params, compiled.order)

    def count(self, table: str) -> int:
        return self.store.count(TABLES[table])

    def add_records(
        self, table: str, records: list[dict[str, object]], user_name: str = "system"
    ) -> list[dict[str, object]]:
        """Insert records straight into a table, as another source (SCCM, Discovery, a person) would: no import
        set, no u_source_id unless given. Returns the stored rows (with their sys_ids). Unknown columns are refused
        so a typo cannot pass silently."""
        schema = TABLES.get(table)
        if schema is None or table in STAGING_TABLES:
            raise KeyError(f"the sandbox has no target table {table!r}")
        rows = []
        for record in records:
            unknown = sorted(key for key in record if not schema.has(key) or key == "sys_id")
            if unknown:
                raise ValueError(f"{table} has no column(s) {', '.join(unknown)}")
            values = {**schema.defaults, **{key: as_text(value) for key, value in record.items()}}
            for column in schema.integers & set(values):
                text = str(values[column]).strip()
                values[column] = int(text) if text.lstrip("-").isdigit() else 0
            rows.append(Store.complete_row(schema, values, user_name))
        with self.store.transaction() as conn:
            Store.insert_rows(conn, schema, rows)
        return rows

    def wait_idle(self, timeout: float = 10.0) -> bool:
        return self.imports.wait_idle(timeout)

    def reset_data(self) -> None:
        """Forget imported records and import sets, and the transforms still waiting (users, clients and tokens
        stay); releases held transforms."""
        self.imports.discard_all(self.store.clear_records)
        self.imports.release()

    def snapshot(self) -> dict[str, object]:
        """The counters `GET /sandbox/api/state` answers."""
        settings = asdict(self.settings)
        settings.pop("default_client_secret")
        return {
            **self.metrics.snapshot(),
            "import_sets": self.count("sys_import_set"),
            "import_set_runs": self.count("sys_import_set_run"),
            "pending_batches": self.imports.pending,
            "idle": self.imports.pending == 0,
            "transforms_held": self.imports.held,
            "transform_ms_total": round(self.imports.work_seconds * 1000, 3),
            "tables": {name: self.count(name) for name in TABLES},
            "tokens": self.accounts.token_counts(),
            "faults": self.faults.snapshot(),
            "settings": settings,
        }

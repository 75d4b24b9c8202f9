"""One sandbox instance's state and the Python controls tests use: what is installed, data, accounts, access,
faults and counters.

It holds no HTTP code; the web layer and the control endpoint call it, never the other way round. An instance
starts stock (no staging tables, no OAuth client, no token page) and gets the connector's side only by installing
an update set's XML (install_update_set), as a ServiceNow admin does.
"""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import asdict

from servicenow_sandbox.access import Access
from servicenow_sandbox.accounts import Accounts, OAuthClient
from servicenow_sandbox.catalog import Catalog
from servicenow_sandbox.faults import Faults
from servicenow_sandbox.imports import ImportService
from servicenow_sandbox.query import compile_query
from servicenow_sandbox.schema import IMPORT_TABLES, TARGET_TABLES
from servicenow_sandbox.settings import SandboxSettings
from servicenow_sandbox.store import Store, now_text
from servicenow_sandbox.transform import as_text
from servicenow_sandbox.update_sets import InstalledApp, parse_update_set


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

    def snapshot(self, staging_tables: tuple[str, ...] = ()) -> dict[str, object]:
        with self._lock:
            total = sum(self.requests.values())
            tables = tuple(dict.fromkeys((*staging_tables, *self.records_received)))
            return {
                "requests": {"total": total, **self.requests},
                "statuses": dict(self.statuses),
                "dropped": self.dropped,
                "failed_on_purpose": self.failed_on_purpose,
                "handling_ms_total": round(self.handling_seconds * 1000, 3),
                "handling_ms_max": round(self.handling_max_seconds * 1000, 3),
                "api_handling_ms_total": round(self.api_handling_seconds * 1000, 3),
                "handling_ms_mean": round(self.handling_seconds * 1000 / total, 3) if total else 0.0,
                "records_received": {t: self.records_received[t] for t in tables},
                "batches_received": {t: self.batches_received[t] for t in tables},
            }


class SandboxState:
    def __init__(self, settings: SandboxSettings | None = None, app_xml: str | None = None) -> None:
        """A stock instance, with whatever update sets its database already holds installed again; ``app_xml``
        (an update set's XML text) is installed on top unless the same text is installed already."""
        self.settings = settings or SandboxSettings.from_env()
        self.catalog = Catalog()
        self.store = Store(self.settings.database, self.catalog.tables.values())
        with self.store.transaction() as conn:
            self.catalog.write_stock_records(conn)
        self.access = Access(self.catalog)
        self.accounts = Accounts(self.store, self.settings, self.catalog)
        self.accounts.seed()
        self.faults = Faults()
        self.imports = ImportService(self.store, self.settings, self.faults, self.catalog)
        self.metrics = Metrics()
        installed = {
            row["name"]: row["xml"]
            for row in self.store.execute("SELECT name, xml FROM sandbox_update_set ORDER BY sequence")
        }
        for xml in installed.values():
            self._take_in(parse_update_set(xml))
        if app_xml is not None and app_xml not in installed.values():
            self.install_update_set(app_xml)
        self.imports.start()

    # -- what is installed ---------------------------------------------------------------------

    def _take_in(self, app: InstalledApp) -> None:
        for table in self.catalog.apply(app):
            self.store.ensure_table(table)

    def install_update_set(self, xml_text: str) -> InstalledApp:
        """Import and commit an update set (ServiceNow: Retrieved Update Sets > Import Update Set from XML, Preview,
        Commit): its tables, columns, transform maps, REST Insert Multiple entries, roles, ACLs, UI pages and OAuth
        entries. Committing the same update set again updates what it installed. Raises UpdateSetError (nothing
        installed) for text that is not a well-formed update set."""
        app = parse_update_set(xml_text)
        self._take_in(app)
        with self.store.transaction() as conn:
            self.catalog.write_app_records(conn, app)
            sequence = conn.execute("SELECT COALESCE(MAX(sequence), 0) + 1 FROM sandbox_update_set").fetchone()[0]
            conn.execute(
                "INSERT OR REPLACE INTO sandbox_update_set (name, xml, installed_on, sequence) VALUES (?, ?, ?, ?)",
                (app.name, xml_text, now_text(), sequence),
            )
        self.accounts.install_clients(app)
        self.accounts.refresh_role_records()  # contained roles may have changed
        return app

    def installed_update_sets(self) -> list[dict[str, str]]:
        """Name and commit time of each installed update set, oldest first."""
        rows = self.store.execute("SELECT name, installed_on FROM sandbox_update_set ORDER BY sequence")
        return [{"name": row["name"], "installed_on": row["installed_on"]} for row in rows]

    def set_column_mapping(self, staging_table: str, mapping: str | None) -> None:
        """Change a staging table's REST Insert Multiple entry as an admin would: "column_name", "label", or None to
        delete the entry (insertMultiple then maps JSON keys by label, ServiceNow's default)."""
        if staging_table not in self.catalog.staging:
            raise KeyError(f"the sandbox has no staging table {staging_table!r}")
        if mapping is None:
            self.store.execute("DELETE FROM sys_rest_insert_multiple WHERE source_table = ?", (staging_table,))
            return
        if mapping not in ("column_name", "label"):
            raise ValueError("the column mapping is column_name or label")
        updated = self.store.execute(
            "UPDATE sys_rest_insert_multiple SET column_mapping = ? WHERE source_table = ? RETURNING sys_id",
            (mapping, staging_table),
        )
        if not updated:
            values = {"source_table": staging_table, "column_mapping": mapping, "transform": "asynchronous"}
            self.store.insert(self.catalog.tables["sys_rest_insert_multiple"], {**values, "active": "true"}, "admin")

    def set_transform_map_active(self, staging_table: str, active: bool) -> None:
        """(De)activate a staging table's transform maps, as an admin would on the Table Transform Map form; an
        import set without an active map is not transformed (its rows stay pending)."""
        self.store.execute(
            "UPDATE sys_transform_map SET active = ? WHERE source_table = ?",
            ("true" if active else "false", staging_table),
        )

    # -- users and access ------------------------------------------------------------------------

    def add_user(self, user_name: str, password: str, roles: list[str] | tuple[str, ...] = (), name: str = "") -> dict:
        """A local user (password grants work) with these roles; contained roles follow (sys_user_has_role)."""
        return self.accounts.add_user(user_name, password, roles, name)

    def set_roles(self, user_name: str, roles: list[str] | tuple[str, ...]) -> None:
        self.accounts.set_roles(user_name, roles)

    def set_read_roles(self, table: str, roles: list[str] | tuple[str, ...] | None) -> None:
        """Who may read a table through the Table API from now on (any of ``roles``; "*" anyone; [] admin only;
        None: the default). Others get an empty list, as ServiceNow filters rows by ACL."""
        self.access.set_read_roles(table, roles)

    def close(self) -> None:
        self.imports.stop()
        self.store.close()

    # -- tokens and clients --------------------------------------------------------------------

    def add_client(self, client_id: str, client_secret: str | None = None, name: str | None = None) -> OAuthClient:
        return self.accounts.add_client(client_id, client_secret, name)

    def generate_refresh_token(
        self, username: str = "admin", password: str = "admin", client_id: str | None = None
    ) -> str:
        """What the installed Generate OAuth Token page gives a user: a refresh token of the default client (or
        ``client_id``). Raises GrantRefused for a wrong password, ClientRefused for a client the instance does not
        have (a stock instance has none: add_client first) or that has no secret."""
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
        schema = self.catalog.table(table)
        if schema is None:
            raise KeyError(f"the sandbox has no table {table!r}")
        compiled = compile_query(schema, query, self.catalog.table)
        return self.store.select(schema, compiled.where, compiled.params, compiled.order)

    def count(self, table: str) -> int:
        return self.store.count(self.catalog.tables[table])

    def add_records(
        self, table: str, records: list[dict[str, object]], user_name: str = "system"
    ) -> list[dict[str, object]]:
        """Insert records straight into a table, as another source (SCCM, Discovery, a person) would: no import
        set, no u_source_id unless given. Returns the stored rows (with their sys_ids). Unknown columns are refused
        so a typo cannot pass silently."""
        schema = self.catalog.table(table)
        if schema is None or table in self.catalog.staging:
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
        names = (*TARGET_TABLES, *IMPORT_TABLES, *self.catalog.staging_tables)
        self.imports.discard_all(lambda: self.store.clear_records(self.catalog.tables[name] for name in names))
        self.imports.release()

    def snapshot(self) -> dict[str, object]:
        """The counters `GET /sandbox/api/state` answers."""
        settings = asdict(self.settings)
        settings.pop("default_client_secret")
        return {
            **self.metrics.snapshot(self.catalog.staging_tables),
            "import_sets": self.count("sys_import_set"),
            "import_set_runs": self.count("sys_import_set_run"),
            "pending_batches": self.imports.pending,
            "idle": self.imports.pending == 0,
            "transforms_held": self.imports.held,
            "transform_ms_total": round(self.imports.work_seconds * 1000, 3),
            "tables": {name: self.count(name) for name in self.catalog.tables},
            "update_sets": [found["name"] for found in self.installed_update_sets()],
            "tokens": self.accounts.token_counts(),
            "faults": self.faults.snapshot(),
            "settings": settings,
        }

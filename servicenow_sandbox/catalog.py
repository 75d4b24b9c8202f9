"""What this sandbox instance has: the stock tables and roles, plus whatever installed update sets added (staging
tables, custom columns, transform maps, REST Insert Multiple entries, roles, ACLs, UI pages, OAuth entries).

It is the only place that turns a parsed update set (update_sets.InstalledApp) into tables; it never reads the
connector's code and never runs a script from an update set. Installing writes the configuration records the Table
API shows (sys_db_object, sys_dictionary, sys_rest_insert_multiple, sys_transform_map, sys_transform_entry,
sys_user_role, sys_user_role_contains), so a client can check them as it would on ServiceNow.
"""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from servicenow_sandbox.schema import (
    IMPORT_ROW_COLUMNS,
    IMPORT_ROW_STATES,
    IMPORT_SET_ROW,
    STOCK_ROLES,
    STOCK_TABLES,
    Table,
)
from servicenow_sandbox.store import Store
from servicenow_sandbox.update_sets import InstalledApp, TableAcl, TransformMap, UIPage

_NAMESPACE = uuid.UUID("0b9a3f7e-2f44-4c0e-8f2b-51d1a7c6e4a9")
_INTEGER_TYPES = {"integer", "decimal"}


def stable_id(kind: str, name: str) -> str:
    """A sys_id that is the same for the same record on every start, so reinstalling updates instead of adding."""
    return uuid.uuid5(_NAMESPACE, f"{kind}:{name}").hex


@dataclass(frozen=True)
class Staging:
    """An installed staging table and the transform maps that read it (active or not, in transform order)."""

    table: Table
    maps: tuple[TransformMap, ...]

    @property
    def columns_by_label(self) -> Mapping[str, str]:
        """label -> column name, for insertMultiple's label mapping (its default without a column-name entry)."""
        return {label: column for column, label in self.table.labels.items()}


def _staging_table(app: InstalledApp, name: str) -> Table:
    staged = app.staging_tables[name]
    return Table(
        name,
        staged.label,
        staged.column_names + IMPORT_ROW_COLUMNS,
        integers=frozenset({"sys_import_row"}),
        references={"sys_import_set": "sys_import_set", "sys_transform_map": "sys_transform_map"},
        choices={"sys_import_state": IMPORT_ROW_STATES},
        labels={column.name: column.label for column in staged.columns},
        extends=staged.extends,
    )


class Catalog:
    """Read by every request; replaced piecewise (never mutated in place) when an update set is installed."""

    def __init__(self) -> None:
        self.tables: dict[str, Table] = dict(STOCK_TABLES)
        self.staging: dict[str, Staging] = {}
        self.apps: dict[str, InstalledApp] = {}
        self.roles: dict[str, tuple[str, ...]] = dict(STOCK_ROLES)
        self.acls: tuple[TableAcl, ...] = ()
        self.pages: dict[str, tuple[InstalledApp, UIPage]] = {}

    # -- lookups -----------------------------------------------------------------------------------

    def table(self, name: str) -> Table | None:
        return self.tables.get(name)

    @property
    def staging_tables(self) -> tuple[str, ...]:
        return tuple(self.staging)

    def effective_roles(self, roles: Iterable[str]) -> frozenset[str]:
        """The roles and every role they contain, transitively."""
        seen: set[str] = set()
        pending = list(roles)
        while pending:
            role = pending.pop()
            if role not in seen:
                seen.add(role)
                pending.extend(self.roles.get(role, ()))
        return frozenset(seen)

    def acl_roles(self, table: str, operation: str) -> frozenset[str] | None:
        """The roles an installed table ACL requires for ``operation`` on ``table``; None when no ACL names it."""
        found = [acl for acl in self.acls if acl.table == table and acl.operation == operation]
        return frozenset(role for acl in found for role in acl.roles) if found else None

    def page(self, path: str) -> tuple[InstalledApp, UIPage] | None:
        return self.pages.get(path)

    def token_page(self) -> tuple[InstalledApp, UIPage] | None:
        """The installed page that generates OAuth tokens, if any (for the sandbox's old alias path)."""
        return next((found for found in self.pages.values() if found[1].generates_tokens), None)

    # -- installing ---------------------------------------------------------------------------------

    def apply(self, app: InstalledApp) -> list[Table]:
        """Take in what ``app`` installs; returns the tables created or widened (for the store to match)."""
        tables = dict(self.tables)
        changed: list[Table] = []
        for name in app.staging_tables:
            table = _staging_table(app, name)
            old = tables.get(name)
            tables[name] = old.with_columns(table.columns, table.labels, table.integers) if old else table
            changed.append(tables[name])
        for name, columns in app.custom_columns.items():
            base = tables.get(name)
            if base is None:
                continue  # a column on a table the sandbox does not model (e.g. cmdb_ci's own): nothing to store
            integers = frozenset(c.name for c in columns if c.internal_type in _INTEGER_TYPES)
            tables[name] = base.with_columns(
                tuple(c.name for c in columns), {c.name: c.label for c in columns}, integers
            )
            changed.append(tables[name])
        staging = dict(self.staging)
        for name in app.staging_tables:
            staging[name] = Staging(tables[name], app.transform_maps.get(name, ()))
        roles = dict(self.roles)
        for role in app.roles.values():
            roles[role.name] = tuple(dict.fromkeys((*roles.get(role.name, ()), *role.contains)))
        pages = dict(self.pages)
        for page in app.ui_pages:
            pages[page.path] = (app, page)
        apps = {**self.apps, app.name: app}
        acls = tuple(acl for other in apps.values() for acl in other.acls)
        self.tables, self.staging, self.roles, self.pages, self.apps, self.acls = (
            tables,
            staging,
            roles,
            pages,
            apps,
            acls,
        )
        return changed

    def write_stock_records(self, conn: sqlite3.Connection) -> None:
        """The configuration records of a stock instance (its tables and roles), once per database."""
        rows = [_table_record(table) for table in STOCK_TABLES.values()]
        rows.append(_table_record(Table(IMPORT_SET_ROW, "Import Set Row", ()), extendable=True))
        Store.upsert_rows(conn, self.tables["sys_db_object"], rows, "system", only_new=True)
        Store.upsert_rows(conn, self.tables["sys_user_role"], [_role_record(r) for r in STOCK_ROLES], "system", True)
        contains = [_contains_record(role, inner) for role, inners in STOCK_ROLES.items() for inner in inners]
        Store.upsert_rows(conn, self.tables["sys_user_role_contains"], contains, "system", only_new=True)

    def write_app_records(self, conn: sqlite3.Connection, app: InstalledApp) -> None:
        """The configuration records ``app`` installs, as ServiceNow would show them after the commit (an update
        set's INSERT_OR_UPDATE: committing it again overwrites them)."""
        rows = {name: [] for name in self.tables}
        for name in app.staging_tables:
            table = self.tables[name]
            rows["sys_db_object"].append(_table_record(table))
            for column in app.staging_tables[name].columns:
                rows["sys_dictionary"].append(_column_record(name, column.name, column.label, column))
        for name, columns in app.custom_columns.items():
            for column in columns:
                rows["sys_dictionary"].append(_column_record(name, column.name, column.label, column))
        for name, entry in app.insert_multiple.items():
            rows["sys_rest_insert_multiple"].append(
                {
                    "sys_id": stable_id("sys_rest_insert_multiple", name),
                    "source_table": name,
                    "column_mapping": entry.column_mapping,
                    "transform": entry.transform,
                    "use_data_source_format": "false",
                    "active": "true" if entry.active else "false",
                }
            )
        for maps in app.transform_maps.values():
            for transform_map in maps:
                rows["sys_transform_map"].append(
                    {
                        "sys_id": transform_map.sys_id,
                        "name": transform_map.name,
                        "source_table": transform_map.source_table,
                        "target_table": transform_map.target_table,
                        "active": "true" if transform_map.active else "false",
                        "order": transform_map.order,
                        "run_business_rules": "true" if transform_map.run_business_rules else "false",
                        "copy_empty_fields": "true" if transform_map.copy_empty_fields else "false",
                    }
                )
                for entry in transform_map.field_maps:
                    key = f"{transform_map.sys_id}:{entry.source_field}>{entry.target_field}"
                    rows["sys_transform_entry"].append(
                        {
                            "sys_id": stable_id("sys_transform_entry", key),
                            "map": transform_map.sys_id,
                            "source_table": transform_map.source_table,
                            "source_field": entry.source_field,
                            "target_table": transform_map.target_table,
                            "target_field": entry.target_field,
                            "coalesce": "true" if entry.coalesce else "false",
                            "use_source_script": "true" if entry.scripted else "false",
                        }
                    )
        for role in app.roles.values():
            rows["sys_user_role"].append(_role_record(role.name, f"Installed by {app.name}"))
            rows["sys_user_role_contains"].extend(_contains_record(role.name, inner) for inner in role.contains)
        for name, found in rows.items():
            if found:
                Store.upsert_rows(conn, self.tables[name], found, "admin")


def _table_record(table: Table, extendable: bool = False) -> dict[str, object]:
    return {
        "sys_id": stable_id("sys_db_object", table.name),
        "name": table.name,
        "label": table.label,
        "super_class": stable_id("sys_db_object", table.extends) if table.extends else "",
        "is_extendable": "true" if extendable else "false",
        "access": "public",
    }


def _column_record(table: str, element: str, label: str, column) -> dict[str, object]:
    return {
        "sys_id": stable_id("sys_dictionary", f"{table}.{element}"),
        "name": table,
        "element": element,
        "column_label": label,
        "internal_type": column.internal_type,
        "max_length": column.max_length,
        "active": "true",
    }


def _role_record(name: str, description: str = "") -> dict[str, object]:
    return {"sys_id": stable_id("sys_user_role", name), "name": name, "description": description}


def _contains_record(role: str, contains: str) -> dict[str, object]:
    return {
        "sys_id": stable_id("sys_user_role_contains", f"{role}>{contains}"),
        "role": stable_id("sys_user_role", role),
        "contains": stable_id("sys_user_role", contains),
    }

"""What the instance has of the connector's ServiceNow app (the update set, SPEC 5a), for the chosen data types: the
staging tables, their column-name mapping, their transform maps and the user's roles, each gap with its fix. It only
reads (a few Table API requests, bounded by the number of data types) and never calls a missing piece "missing" when
ServiceNow merely did not let the user look.

Sources: an unknown table answers 400 `Invalid table <name>` in the Table API (SERVICENOW-FACTS, recorded answers);
without a `sys_rest_insert_multiple` entry set to Column name, insertMultiple maps JSON keys by column label (Import
Set API docs, `c_ImportSetAPI.md`); a user's grants, direct and inherited (from contained roles and groups), are rows
of `sys_user_has_role` with `inherited` true for the inherited ones (ServiceNow's User Role Inheritance API docs:
"a user's role can be directly granted, inherited from other roles, or inherited from groups"; public scripts filter
`inherited=false` to get direct grants only). Whether a least-privileged user may read the configuration tables is
unverified (research notes): a 403 or an empty answer there is "could not verify".
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from itam_admin.datatypes import DATA_TYPES, DataType
from itam_admin.datatypes import data_type as registered_data_type
from itam_admin.servicenow import errors
from itam_admin.servicenow.client import ServiceNowClient
from itam_admin.servicenow.errors import ErrorKind, ServiceNowError
from itam_admin.servicenow.query import encoded_query_value
from itam_admin.servicenow_app import ROLE, UPDATE_SET_NAME

# Roles that let the user load through the Import Set API (import_transformer is the least one: practitioner and
# Harness docs in the research notes; u_itam_integration contains it; admin has every role).
LOADING_ROLES = (ROLE, "import_transformer", "admin")
# Enough for an admin's inherited grants; direct grants come first (inherited false sorts before true).
ROLE_ROWS = 1000
# The steps of the tab's Set up ServiceNow list (and the README's), named in "could not verify" fixes.
STEP_IMPORT, STEP_CHECK, STEP_ROLE = 1, 2, 4


@dataclass(frozen=True)
class Finding:
    """One thing the instance lacks (or that could not be checked), and what the ServiceNow admin must do."""

    problem: str
    fix: str


@dataclass(frozen=True)
class AppStatus:
    """The app check's answer: `installed` when nothing the chosen data types need is known to be missing."""

    host: str
    data_types: tuple[DataType, ...]
    gaps: tuple[Finding, ...] = ()
    unverified: tuple[Finding, ...] = ()
    missing_tables: tuple[str, ...] = ()  # staging tables the instance does not have

    @property
    def installed(self) -> bool:
        return not self.gaps

    @property
    def labels(self) -> str:
        return ", ".join(data_type.label for data_type in self.data_types)

    @property
    def summary(self) -> str:
        if self.installed:
            return f"The ServiceNow app is installed for {self.labels}."
        count = len(self.gaps)
        return f"The ServiceNow app is not ready for {self.labels}: {count} thing{'s' if count > 1 else ''} to fix."

    @property
    def missing_message(self) -> str | None:
        """The export's fail-fast message when staging tables are missing (no batch could land), else None."""
        error = self.not_installed_error()
        return error.message if error else None

    def not_installed_error(self) -> ServiceNowError | None:
        if not self.missing_tables:
            return None
        missing = [t for t in self.data_types if t.staging_table in self.missing_tables]
        return errors.app_not_installed(
            self.host, [t.label for t in missing], [t.staging_table for t in missing], UPDATE_SET_NAME
        )

    def raise_if_missing(self) -> None:
        """Raise the APP_NOT_INSTALLED ServiceNowError (it stops the run) when a staging table is missing."""
        error = self.not_installed_error()
        if error is not None:
            raise error


def _chosen(data_types: Iterable[str | DataType]) -> tuple[DataType, ...]:
    chosen = [t if isinstance(t, DataType) else registered_data_type(t) for t in data_types]
    # Registry order, once each, so the findings read the same way as the tab lists the data types.
    return tuple(t for t in DATA_TYPES if t in chosen)


def _names_table(error: ServiceNowError, table: str) -> bool:
    """ServiceNow's answer for a table it does not have: 400 (404 seen too) whose message names the table."""
    detail = (error.detail or "").lower()
    return error.kind in (ErrorKind.BAD_REQUEST, ErrorKind.NOT_FOUND) and (
        table.lower() in detail or "invalid table" in detail
    )


@dataclass
class _Check:
    client: ServiceNowClient
    data_types: tuple[DataType, ...]
    username: str
    gaps: list[Finding]
    unverified: list[Finding]
    missing: list[str]

    def gap(self, problem: str, fix: str) -> None:
        self.gaps.append(Finding(problem, fix))

    def cannot_verify(self, what: str, table: str, why: str, step: int, check: str) -> None:
        self.unverified.append(
            Finding(
                errors.app_could_not_verify(what, table, self.username, why), errors.app_fix_check_step(step, check)
            )
        )

    def status(self) -> AppStatus:
        return AppStatus(
            self.client.host, self.data_types, tuple(self.gaps), tuple(self.unverified), tuple(self.missing)
        )

    # ---- staging tables: one request per data type ------------------------------------------------------------

    def probe_staging_tables(self) -> None:
        for data_type in self.data_types:
            table = data_type.staging_table
            try:
                self.client.read_table(table, "", ["sys_id"], 1, what=f"the staging table {table}")
            except ServiceNowError as error:
                if _names_table(error, table):
                    self.missing.append(table)
                    self.gap(
                        errors.app_staging_table_missing(data_type.label, table), errors.app_fix_import(UPDATE_SET_NAME)
                    )
                elif error.kind is ErrorKind.FORBIDDEN:
                    # The table exists (an unknown one answers Invalid table), but our ACL lets only the role read it.
                    self.gap(
                        errors.app_staging_table_unreadable(data_type.label, table, self.username),
                        errors.app_fix_role(self.username, ROLE),
                    )
                else:
                    raise

    @property
    def present(self) -> list[DataType]:
        return [t for t in self.data_types if t.staging_table not in self.missing]

    # ---- the user's roles: one request ------------------------------------------------------------------------

    def roles(self, user_sys_id: str | None) -> bool:
        """Check the user's grants; True when the user is known to be admin (then empty answers are conclusive)."""
        if user_sys_id:
            who = f"user={encoded_query_value(user_sys_id)}"
        else:
            who = f"user.user_name={encoded_query_value(self.username)}"
        what = f"{self.username} has one of the roles {', '.join(LOADING_ROLES)}"
        check = f"{self.username} has the role {ROLE}"
        try:
            rows = self.client.read_table(
                "sys_user_has_role",
                f"{who}^ORDERBYinherited",
                ["role.name", "inherited", "state"],
                ROLE_ROWS,
                what="the sys_user_has_role table",
            )
        except ServiceNowError as error:
            if error.kind is ErrorKind.FORBIDDEN or _names_table(error, "sys_user_has_role"):
                self.cannot_verify(what, "sys_user_has_role", f"HTTP {error.status}", STEP_ROLE, check)
                return False
            raise
        # A grant whose state is set to anything but active (a pending or expired time-limited grant) gives nothing.
        held = {row["role.name"] for row in rows if row.get("state", "") in ("", "active")}
        if not rows:
            self.cannot_verify(what, "sys_user_has_role", "no role grants visible", STEP_ROLE, check)
        elif not held & set(LOADING_ROLES):
            self.gap(errors.app_roles_missing(self.username, LOADING_ROLES), errors.app_fix_role(self.username, ROLE))
        return "admin" in held

    # ---- configuration of the present staging tables: one request per configuration table ---------------------

    def _config_rows(self, table: str, query: str, fields: list[str], what: str, step: int, check: str):
        """Rows of a configuration table, or None after noting that it could not be read."""
        try:
            return self.client.read_table(table, query, fields, 10 * len(self.present), what=f"the {table} table")
        except ServiceNowError as error:
            if error.kind is ErrorKind.FORBIDDEN or _names_table(error, table):
                why = f"HTTP {error.status}" + (
                    ", the table does not exist" if error.kind is not ErrorKind.FORBIDDEN else ""
                )
                self.cannot_verify(what, table, why, step, check)
                return None
            raise

    def column_mapping(self, conclusive: bool) -> None:
        present = self.present
        tables = ",".join(encoded_query_value(t.staging_table, in_list=True) for t in present)
        names = ", ".join(t.staging_table for t in present)
        what = f"insertMultiple maps JSON keys by column name for {names}"
        check = (
            "System Web Services > REST Insert Multiples lists each ITAM staging table with Column mapping Column name"
        )
        rows = self._config_rows(
            "sys_rest_insert_multiple",
            f"source_tableIN{tables}",
            ["source_table", "column_mapping"],
            what,
            STEP_CHECK,
            check,
        )
        if rows is None:
            return
        if not rows and not conclusive:
            self.cannot_verify(what, "sys_rest_insert_multiple", "no entries visible", STEP_CHECK, check)
            return
        by_table = {row["source_table"]: row.get("column_mapping", "") for row in rows}
        for data_type in present:
            table = data_type.staging_table
            mapping = by_table.get(table)
            if mapping is not None and _by_column_name(mapping):
                continue
            if mapping == "":
                # The entry exists but its mapping field did not come back: the field's name is unverified.
                self.cannot_verify(
                    f"insertMultiple maps JSON keys by column name for {table}",
                    "sys_rest_insert_multiple",
                    "its Column mapping field did not come back",
                    STEP_CHECK,
                    check,
                )
                continue
            self.gap(errors.app_label_mapped(data_type.label, table, mapping), errors.app_fix_column_name(table))

    def transform_maps(self, conclusive: bool) -> None:
        present = self.present
        tables = ",".join(encoded_query_value(t.staging_table, in_list=True) for t in present)
        names = ", ".join(t.staging_table for t in present)
        what = f"{names} {'have' if len(present) > 1 else 'has'} an active transform map"
        check = "System Import Sets > Transform Maps lists an active map for each ITAM staging table"
        rows = self._config_rows(
            "sys_transform_map",
            f"source_tableIN{tables}^active=true",
            ["source_table", "name"],
            what,
            STEP_CHECK,
            check,
        )
        if rows is None:
            return
        if not rows and not conclusive:
            self.cannot_verify(what, "sys_transform_map", "no maps visible", STEP_CHECK, check)
            return
        mapped = {row["source_table"] for row in rows}
        for data_type in present:
            if data_type.staging_table not in mapped:
                self.gap(
                    errors.app_no_transform_map(data_type.label, data_type.staging_table, data_type.target_table),
                    errors.app_fix_transform_map(map_name(data_type)),
                )


def _by_column_name(mapping: str) -> bool:
    # The stored choice value is unverified: the update set writes column_name; the form says "Column name".
    return mapping.strip().lower().replace(" ", "_") in ("column_name", "name", "column")


def map_name(data_type: DataType) -> str:
    """The transform map's name as the update set creates it."""
    return f"{data_type.staging_label} to {data_type.target_label}"


def _start(client: ServiceNowClient, data_types: Iterable[str | DataType]) -> _Check:
    chosen = _chosen(data_types)
    if not chosen:
        raise ValueError("choose at least one data type to check")
    return _Check(client, chosen, client.creds.username, [], [], [])


def check_app(
    client: ServiceNowClient, data_types: Iterable[str | DataType], *, user_sys_id: str | None = None
) -> AppStatus:
    """What the instance has of the app for `data_types` (names or DataType), for Test connection: the user's roles
    (one request; `user_sys_id` from the sys_user lookup, else by the settings' Username), one staging table probe
    per data type, then one read of sys_rest_insert_multiple and one of sys_transform_map for the tables present:
    at most N + 3 requests. Connection faults raise ServiceNowError as any call does."""
    check = _start(client, data_types)
    is_admin = check.roles(user_sys_id)
    check.probe_staging_tables()
    if check.present:
        # An admin sees every row (admin overrides ACLs), so an empty answer means absent; for anyone else it may
        # mean "not allowed to see".
        check.column_mapping(conclusive=is_admin)
        check.transform_maps(conclusive=is_admin)
    return check.status()


def check_staging_tables(client: ServiceNowClient, data_types: Iterable[str | DataType]) -> AppStatus:
    """Only the staging table probes (exactly one request per data type): what an export checks before it sends."""
    check = _start(client, data_types)
    check.probe_staging_tables()
    return check.status()


def require_app(client: ServiceNowClient, data_types: Iterable[str | DataType]) -> None:
    """Fail fast before an export: raise the APP_NOT_INSTALLED ServiceNowError (stops_run) naming the missing
    staging tables and the fix, after at most one request per data type. A 403 on a probe does not raise here: the
    export's own requests will say what the user may not do."""
    check_staging_tables(client, data_types).raise_if_missing()

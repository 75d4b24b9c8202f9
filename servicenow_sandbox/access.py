"""Who may load into a staging table and who may read a table, decided by roles (inherited ones count) and the
table ACLs installed update sets bring; admin passes every check. It never answers HTTP itself.

ServiceNow's own rules on stock tables are not public in full. What is modelled, and how sure it is:
- loading through the Import Set API needs import_transformer (a practitioner's test, SERVICENOW-FACTS) and the
  create ACL an update set puts on the staging table;
- a table ACL lists the roles that pass (any of them), with admin overriding (update set: admin_overrides);
- a user without read access to a table gets an empty list (ServiceNow filters rows by ACL instead of refusing:
  Table API docs, "sysparm_limit ... is applied before ACL evaluation") and 404 for one record ("Record doesn't
  exist or ACL restricts the record retrieval");
- the read roles of stock tables below are *unverified* guesses; tests that need another answer change them with
  SandboxState.set_read_roles(table, roles).
"""

from __future__ import annotations

from collections.abc import Iterable

from servicenow_sandbox.catalog import Catalog

ANYONE = "*"  # any logged-in user (ServiceNow's snc_internal)
IMPORT_ROLES = frozenset({"import_transformer", "import_admin"})
LOAD_ROLE = "import_transformer"

STOCK_READ_ROLES: dict[str, frozenset[str]] = {
    "sys_user": frozenset({ANYONE}),
    "cmdb_ci_computer": frozenset({"itil", "cmdb_read", "asset"}),
    "cmdb_sam_sw_install": frozenset({"itil", "cmdb_read", "asset"}),
    "ast_contract": frozenset({"itil", "asset", "contract_manager"}),
    "sys_import_set": IMPORT_ROLES,
    "sys_import_set_run": IMPORT_ROLES,
    "sys_multi_import_set": IMPORT_ROLES,
    "sys_transform_map": IMPORT_ROLES,
    "sys_transform_entry": IMPORT_ROLES,
    "sys_rest_insert_multiple": IMPORT_ROLES | {"web_service_admin"},
    "sys_db_object": frozenset({ANYONE}),
    "sys_dictionary": frozenset({ANYONE}),
    "sys_user_role": frozenset({ANYONE}),
    "sys_user_role_contains": frozenset({ANYONE}),
    # Everyone sees their own role records; user_admin sees all of them.
    "sys_user_has_role": frozenset({"user_admin"}),
}
OWN_ROWS = {"sys_user_has_role": "user"}  # tables where a user may always read the rows that are theirs


class Access:
    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog
        self._read_overrides: dict[str, frozenset[str]] = {}

    def set_read_roles(self, table: str, roles: Iterable[str] | None) -> None:
        """Who may read ``table`` from now on (any of ``roles``; "*" for anyone; [] for admin only); None goes back
        to the default."""
        if roles is None:
            self._read_overrides.pop(table, None)
        else:
            self._read_overrides[table] = frozenset(roles)

    def read_roles(self, table: str) -> frozenset[str]:
        if table in self._read_overrides:
            return self._read_overrides[table]
        installed = self.catalog.acl_roles(table, "read")
        if installed is not None:
            return installed
        if table in self.catalog.staging:
            return IMPORT_ROLES
        return STOCK_READ_ROLES.get(table, frozenset())

    def may_read(self, roles: frozenset[str], table: str) -> str | None:
        """ "all" (every row), "own" (the caller's rows of OWN_ROWS tables) or None (no row)."""
        if "admin" in roles:
            return "all"
        allowed = self.read_roles(table)
        if ANYONE in allowed or roles & allowed:
            return "all"
        return "own" if table in OWN_ROWS else None

    def may_load(self, roles: frozenset[str], staging_table: str) -> bool:
        """May this caller insert into the staging table through the Import Set API?"""
        if "admin" in roles:
            return True
        if LOAD_ROLE not in roles:
            return False
        required = self.catalog.acl_roles(staging_table, "create")
        return required is None or bool(roles & required)

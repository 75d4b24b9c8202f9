"""The tables and roles a stock ServiceNow instance has, as far as this integration meets them; pure data.

Nothing the connector's update set installs is described here: staging tables, their columns, the custom columns
on target tables, transform maps, roles and the token page come only from installing that update set (catalog.py).
Only names the catalog knows ever reach SQL as identifiers, so nothing a client sends can name a column or table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace


def _cols(text: str) -> tuple[str, ...]:
    return tuple(text.split())


SYSTEM_COLUMNS = (
    "sys_id",
    "sys_class_name",
    "sys_created_on",
    "sys_created_by",
    "sys_updated_on",
    "sys_updated_by",
    "sys_mod_count",
)


@dataclass(frozen=True)
class Table:
    name: str
    label: str
    columns: tuple[str, ...]
    display: str = "sys_id"
    integers: frozenset[str] = frozenset()
    references: Mapping[str, str] = field(default_factory=dict)
    choices: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    defaults: Mapping[str, object] = field(default_factory=dict)  # dictionary defaults of a new record
    labels: Mapping[str, str] = field(default_factory=dict)  # column -> label, where one is known
    number_prefix: str = ""  # tables whose records get numbers (ISET0010001, CNTR0010001, ...)
    extends: str = ""

    @property
    def all_columns(self) -> tuple[str, ...]:
        return SYSTEM_COLUMNS + self.columns

    def has(self, column: str) -> bool:
        return column in SYSTEM_COLUMNS or column in self.columns

    def is_integer(self, column: str) -> bool:
        return column == "sys_mod_count" or column in self.integers

    def with_columns(self, columns: tuple[str, ...], labels: Mapping[str, str], integers: frozenset[str]) -> Table:
        """This table with more columns (an update set adding custom columns, or a staging table's own)."""
        added = tuple(column for column in columns if column not in self.columns)
        return replace(
            self,
            columns=self.columns + added,
            labels={**self.labels, **labels},
            integers=self.integers | integers,
        )


INSTALL_STATUS = {"1": "Installed", "7": "Retired"}
OPERATIONAL_STATUS = {"1": "Operational", "6": "Retired"}
# ast_contract's state choices as far as public material shows them (*unverified* beyond these).
CONTRACT_STATES = {"draft": "Draft", "active": "Active", "expired": "Expired", "cancelled": "Cancelled"}
IMPORT_ROW_COLUMNS = (
    "sys_import_set",
    "sys_import_row",
    "sys_import_state",
    "sys_import_state_comment",
    "sys_target_sys_id",
    "sys_target_table",
    "sys_transform_map",
    "sys_row_error",
)
IMPORT_ROW_STATES = {s: s.capitalize() for s in ("pending", "inserted", "updated", "ignored", "skipped", "error")}
IMPORT_SET_ROW = "sys_import_set_row"

# The data ServiceNow holds and an export writes into; reset_data() empties these, never the configuration.
TARGET_TABLES = ("cmdb_ci_computer", "ast_contract", "cmdb_sam_sw_install")
IMPORT_TABLES = ("sys_import_set", "sys_import_set_run", "sys_multi_import_set")

STOCK_TABLES: dict[str, Table] = {
    t.name: t
    for t in (
        Table(
            "sys_user",
            "Users",
            ("user_name", "name", "first_name", "last_name", "email", "active", "locked_out", "roles"),
            display="name",
        ),
        Table(
            "cmdb_ci_computer",
            "Computers",
            _cols(
                "name serial_number manufacturer model_number os os_version cpu_type cpu_count cpu_core_count ram "
                "disk_space ip_address mac_address virtual last_discovered discovery_source install_status "
                "operational_status"
            ),
            display="name",
            integers=frozenset({"cpu_count", "cpu_core_count", "ram"}),
            choices={"install_status": INSTALL_STATUS, "operational_status": OPERATIONAL_STATUS},
            defaults={"install_status": "1", "operational_status": "1"},
        ),
        Table(
            "ast_contract",
            "Contracts",
            _cols(
                "number vendor_contract vendor short_description contract_model starts ends total_cost state "
                "renewable active"
            ),
            display="number",
            choices={"state": CONTRACT_STATES},
            defaults={"active": "true"},
            number_prefix="CNTR",
        ),
        Table(
            "cmdb_sam_sw_install",
            "Software installations",
            _cols("display_name installed_on publisher version edition install_date install_location active"),
            display="display_name",
            references={"installed_on": "cmdb_ci_computer"},
            defaults={"active": "true"},
        ),
        Table(
            "sys_import_set",
            "Import sets",
            ("number", "table_name", "state", "mode", "multi_import_set", "load_completed", "short_description"),
            display="number",
            references={"multi_import_set": "sys_multi_import_set"},
            number_prefix="ISET",
        ),
        Table(
            "sys_import_set_run",
            "Import set runs",
            _cols(
                "set sys_transform_map state total processed inserts updates ignored skipped errors completed run_time"
            ),
            integers=frozenset({"total", "processed", "inserts", "updates", "ignored", "skipped", "errors"}),
            references={"set": "sys_import_set", "sys_transform_map": "sys_transform_map"},
        ),
        Table("sys_multi_import_set", "Multi import sets", ("state",)),
        # Configuration the connector's Test connection reads; an installed update set adds rows to them.
        Table(
            "sys_db_object",
            "Tables",
            ("name", "label", "super_class", "is_extendable", "access"),
            display="label",
            references={"super_class": "sys_db_object"},
        ),
        Table(
            "sys_dictionary",
            "Dictionary entries",
            ("name", "element", "column_label", "internal_type", "max_length", "active"),
            display="element",
            integers=frozenset({"max_length"}),
        ),
        Table(
            "sys_rest_insert_multiple",
            "REST Insert Multiples",
            ("source_table", "column_mapping", "transform", "use_data_source_format", "active"),
            display="source_table",
            choices={
                "column_mapping": {"label": "Label", "column_name": "Column name"},
                "transform": {"asynchronous": "Asynchronous", "synchronous": "Synchronous"},
            },
        ),
        Table(
            "sys_transform_map",
            "Table Transform Maps",
            ("name", "source_table", "target_table", "active", "order", "run_business_rules", "copy_empty_fields"),
            display="name",
            integers=frozenset({"order"}),
        ),
        Table(
            "sys_transform_entry",
            "Field Maps",
            ("map", "source_table", "source_field", "target_table", "target_field", "coalesce", "use_source_script"),
            display="target_field",
            references={"map": "sys_transform_map"},
        ),
        Table("sys_user_role", "Roles", ("name", "description", "elevated_privilege"), display="name"),
        Table(
            "sys_user_role_contains",
            "Contained Roles",
            ("role", "contains"),
            references={"role": "sys_user_role", "contains": "sys_user_role"},
        ),
        Table(
            "sys_user_has_role",
            "User Roles",
            ("user", "role", "inherited", "state"),
            references={"user": "sys_user", "role": "sys_user_role"},
        ),
    )
}

# Roles of a stock instance and what they contain. *Unverified* beyond the names: import_admin containing the
# other import roles is how the roles read, not something checked on an instance.
STOCK_ROLES: dict[str, tuple[str, ...]] = {
    "admin": (),
    "itil": (),
    "snc_internal": (),
    "user_admin": (),
    "web_service_admin": (),
    "import_transformer": (),
    "import_set_loader": (),
    "import_scheduler": (),
    "import_admin": ("import_transformer", "import_set_loader", "import_scheduler"),
    "cmdb_read": (),
    "asset": (),
    "contract_manager": (),
}

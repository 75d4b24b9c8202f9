"""The tables the sandbox knows (columns, references, choices) and the transform maps between them; pure data.

Only names listed here ever reach SQL as identifiers, so nothing a client sends can name a column or table.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


def _cols(text: str) -> tuple[str, ...]:
    return tuple(text.split())


def _pairs(text: str) -> dict[str, str]:
    """'staging=target ...' pairs of a transform map."""
    return dict(pair.split("=", 1) for pair in text.split())


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

    @property
    def all_columns(self) -> tuple[str, ...]:
        return SYSTEM_COLUMNS + self.columns

    def has(self, column: str) -> bool:
        return column in SYSTEM_COLUMNS or column in self.columns

    def is_integer(self, column: str) -> bool:
        return column == "sys_mod_count" or column in self.integers


@dataclass(frozen=True)
class TransformMap:
    name: str
    staging_table: str
    target_table: str
    field_map: Mapping[str, str]  # staging column -> target column


INSTALL_STATUS = {"1": "Installed", "7": "Retired"}
OPERATIONAL_STATUS = {"1": "Operational", "6": "Retired"}
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

HARDWARE_FIELDS = _cols(
    "u_source_id u_name u_serial_number u_manufacturer u_model u_os u_os_version u_cpu_type u_cpu_count "
    "u_cpu_core_count u_ram_mb u_disk_space_gb u_ip_address u_mac_address u_is_virtual "
    "u_last_inventory_date u_operational_status"
)
CONTRACT_FIELDS = _cols(
    "u_source_id u_contract_number u_vendor u_description u_contract_type u_starts u_ends u_total_cost "
    "u_currency u_state u_renewable u_operational_status"
)
INSTALL_FIELDS = _cols(
    "u_source_id u_computer_source_id u_computer_name u_display_name u_publisher u_version u_edition "
    "u_install_date u_install_location u_operational_status"
)


def _staging(name: str, label: str, fields: tuple[str, ...]) -> Table:
    return Table(
        name,
        label,
        fields + IMPORT_ROW_COLUMNS,
        integers=frozenset({"sys_import_row"}),
        references={"sys_import_set": "sys_import_set"},
        choices={"sys_import_state": IMPORT_ROW_STATES},
    )


TABLES: dict[str, Table] = {
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
                "name u_source_id serial_number manufacturer model_number os os_version cpu_type cpu_count "
                "cpu_core_count ram disk_space ip_address mac_address virtual last_discovered install_status "
                "operational_status u_operational_status"
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
                "number u_source_id vendor_contract vendor short_description contract_model starts ends "
                "total_cost u_currency state renewable active u_operational_status"
            ),
            display="number",
        ),
        Table(
            "cmdb_sam_sw_install",
            "Software installations",
            _cols(
                "display_name u_source_id installed_on u_computer_source_id u_computer_name publisher version "
                "edition install_date install_location active u_operational_status"
            ),
            display="display_name",
            references={"installed_on": "cmdb_ci_computer"},
        ),
        _staging("u_itam_hardware_inventory", "ITAM hardware inventory (staging)", HARDWARE_FIELDS),
        _staging("u_itam_contracts", "ITAM contracts (staging)", CONTRACT_FIELDS),
        _staging("u_itam_installed_applications", "ITAM installed applications (staging)", INSTALL_FIELDS),
        Table(
            "sys_import_set",
            "Import sets",
            ("number", "table_name", "state", "mode", "multi_import_set", "load_completed", "short_description"),
            display="number",
            references={"multi_import_set": "sys_multi_import_set"},
        ),
        Table(
            "sys_import_set_run",
            "Import set runs",
            _cols(
                "set sys_transform_map state total processed inserts updates ignored skipped errors completed run_time"
            ),
            integers=frozenset({"total", "processed", "inserts", "updates", "ignored", "skipped", "errors"}),
            references={"set": "sys_import_set"},
        ),
        Table("sys_multi_import_set", "Multi import sets", ("state",)),
    )
}

TRANSFORM_MAPS: dict[str, TransformMap] = {
    m.staging_table: m
    for m in (
        TransformMap(
            "ITAM Hardware Inventory to Computer",
            "u_itam_hardware_inventory",
            "cmdb_ci_computer",
            _pairs(
                "u_source_id=u_source_id u_name=name u_serial_number=serial_number u_manufacturer=manufacturer "
                "u_model=model_number u_os=os u_os_version=os_version u_cpu_type=cpu_type u_cpu_count=cpu_count "
                "u_cpu_core_count=cpu_core_count u_ram_mb=ram u_disk_space_gb=disk_space u_ip_address=ip_address "
                "u_mac_address=mac_address u_is_virtual=virtual u_last_inventory_date=last_discovered "
                "u_operational_status=u_operational_status"
            ),
        ),
        TransformMap(
            "ITAM Contracts to Contract",
            "u_itam_contracts",
            "ast_contract",
            _pairs(
                "u_source_id=u_source_id u_contract_number=vendor_contract u_vendor=vendor "
                "u_description=short_description u_contract_type=contract_model u_starts=starts u_ends=ends "
                "u_total_cost=total_cost u_currency=u_currency u_state=state u_renewable=renewable "
                "u_operational_status=u_operational_status"
            ),
        ),
        TransformMap(
            "ITAM Installed Applications to Software Installation",
            "u_itam_installed_applications",
            "cmdb_sam_sw_install",
            _pairs(
                "u_source_id=u_source_id u_computer_source_id=u_computer_source_id "
                "u_computer_name=u_computer_name u_display_name=display_name u_publisher=publisher "
                "u_version=version u_edition=edition u_install_date=install_date "
                "u_install_location=install_location u_operational_status=u_operational_status"
            ),
        ),
    )
}

STAGING_TABLES = tuple(TRANSFORM_MAPS)
TARGET_TABLES = tuple(m.target_table for m in TRANSFORM_MAPS.values())

"""The one description of each data type's ServiceNow shape: staging table, its columns (labels, lengths) and the
target table field each column lands in. Pure data; it must never import from the rest of the package, so the record
mapping, the update set and the sandbox can all derive from it without import cycles.
"""

from __future__ import annotations

from dataclasses import dataclass

# What a column's text means once ServiceNow writes it to the target table. Staging columns are always strings
# (the Import Set API takes only strings), so the kind says how the exporter formats the value and how the target
# field stores it.
KINDS = frozenset({"string", "integer", "decimal", "date", "datetime", "boolean"})

SOURCE_ID = "u_source_id"
OPERATIONAL_STATUS = "u_operational_status"
OPERATIONAL = "operational"
RETIRED = "retired"
SOURCE_ID_LENGTH = 200


@dataclass(frozen=True)
class Column:
    """A staging table column: the JSON key the exporter sends and, when the transform writes it straight to a
    target field, that field. ``target_field`` is None for columns a transform script reads instead (e.g. the
    computer name an install uses to find its computer). ``reference`` names the table a reference target field
    points to; ServiceNow resolves the value by the referenced record's display value (its name)."""

    name: str
    label: str
    max_length: int
    target_field: str | None
    kind: str = "string"
    reference: str | None = None

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"column {self.name}: unknown kind {self.kind!r}; expected one of {sorted(KINDS)}")
        if not self.name.startswith("u_"):
            raise ValueError(f"column {self.name}: custom ServiceNow columns start with u_")


@dataclass(frozen=True)
class TargetColumn:
    """A custom column the update set adds to a stock target table, because the transform writes a value the stock
    table has no field for (our source id, the operational status as ITAM says it)."""

    name: str
    label: str
    max_length: int
    kind: str = "string"


@dataclass(frozen=True)
class DataType:
    """One kind of ITAM data: where it is staged in ServiceNow and where the transform writes it."""

    name: str
    label: str
    staging_table: str
    staging_label: str
    target_table: str
    columns: tuple[Column, ...]
    target_label: str = ""
    custom_target_columns: tuple[TargetColumn, ...] = ()

    @property
    def field_names(self) -> tuple[str, ...]:
        """The record's JSON keys in the order the exporter sends them (the staging table's column names)."""
        return tuple(column.name for column in self.columns)

    def column(self, name: str) -> Column:
        """The staging column called ``name``; raises ValueError naming the known ones."""
        for column in self.columns:
            if column.name == name:
                return column
        raise ValueError(f"{self.staging_table} has no column {name!r}; it has {', '.join(self.field_names)}")


def _source_id(label: str = "Source ID") -> Column:
    # `<tenant id>:<record id>`: tenant ids take up to 64 characters and ITAM's own record ids up to 128, so 200
    # (the ledger's width too) holds every scoped id whole; ServiceNow would cut a longer one silently, and
    # coalescing on a cut id would merge two records.
    return Column(SOURCE_ID, label, SOURCE_ID_LENGTH, SOURCE_ID)


def _status() -> Column:
    return Column(OPERATIONAL_STATUS, "Operational status", 40, OPERATIONAL_STATUS)


_SOURCE_ID_TARGET = TargetColumn(SOURCE_ID, "ITAM source ID", SOURCE_ID_LENGTH)
_STATUS_TARGET = TargetColumn(OPERATIONAL_STATUS, "ITAM operational status", 40)

HARDWARE_INVENTORY = DataType(
    name="hardware_inventory",
    label="Hardware inventory",
    staging_table="u_itam_hardware_inventory",
    staging_label="ITAM Hardware Inventory",
    target_table="cmdb_ci_computer",
    target_label="Computer",
    columns=(
        _source_id(),
        Column("u_name", "Name", 255, "name"),
        Column("u_serial_number", "Serial number", 255, "serial_number"),
        # Manufacturer is a reference to Company [core_company]; the computer goes through IRE, which resolves a
        # reference given by display value (the company name) and leaves it empty when no company has that name.
        Column("u_manufacturer", "Manufacturer", 255, "manufacturer", reference="core_company"),
        # model_id is a reference to a product model that rarely exists for ITAM's free-text models; the
        # computer's model number field is plain text.
        Column("u_model", "Model", 255, "model_number"),
        Column("u_os", "Operating system", 255, "os"),
        Column("u_os_version", "OS version", 100, "os_version"),
        Column("u_cpu_type", "CPU type", 255, "cpu_type"),
        Column("u_cpu_count", "CPU count", 40, "cpu_count", kind="integer"),
        Column("u_cpu_core_count", "CPU core count", 40, "cpu_core_count", kind="integer"),
        Column("u_ram_mb", "RAM (MB)", 40, "ram", kind="integer"),
        Column("u_disk_space_gb", "Disk space (GB)", 40, "disk_space", kind="decimal"),
        Column("u_ip_address", "IP address", 255, "ip_address"),
        Column("u_mac_address", "MAC address", 255, "mac_address"),
        Column("u_is_virtual", "Is virtual", 40, "virtual", kind="boolean"),
        # Not last_discovered: IRE and Discovery stamp that themselves, and ours would be overwritten or would
        # overwrite theirs.
        Column("u_last_inventory_date", "Last inventory date", 40, "u_last_inventory_date", kind="datetime"),
        _status(),
    ),
    custom_target_columns=(
        _SOURCE_ID_TARGET,
        TargetColumn("u_last_inventory_date", "ITAM last inventory date", 40, kind="datetime"),
        _STATUS_TARGET,
    ),
)

CONTRACTS = DataType(
    name="contracts",
    label="Contracts",
    staging_table="u_itam_contracts",
    staging_label="ITAM Contracts",
    target_table="ast_contract",
    target_label="Contract",
    columns=(
        _source_id(),
        Column("u_contract_number", "Contract number", 255, "vendor_contract"),
        Column("u_vendor", "Vendor", 255, "vendor", reference="core_company"),
        Column("u_description", "Description", 4000, "short_description"),
        Column("u_contract_type", "Contract type", 255, "contract_model", reference="cmdb_contract_product_model"),
        Column("u_starts", "Starts", 40, "starts", kind="date"),
        Column("u_ends", "Ends", 40, "ends", kind="date"),
        Column("u_total_cost", "Total cost", 40, "total_cost", kind="decimal"),
        Column("u_currency", "Currency", 3, "u_currency"),
        Column("u_state", "State", 40, "state"),
        Column("u_renewable", "Renewable", 40, "renewable", kind="boolean"),
        _status(),
    ),
    custom_target_columns=(
        _SOURCE_ID_TARGET,
        TargetColumn("u_currency", "ITAM currency", 3),
        _STATUS_TARGET,
    ),
)

INSTALLED_APPLICATIONS = DataType(
    name="installed_applications",
    label="Installed applications",
    staging_table="u_itam_installed_applications",
    staging_label="ITAM Installed Applications",
    target_table="cmdb_sam_sw_install",
    target_label="Software Installation",
    columns=(
        _source_id(),
        # The three computer columns find the install's computer (installed_on): by our source id, else serial
        # number, else name. Only the source id is kept on the install, so a later run can find it again.
        Column("u_computer_source_id", "Computer source ID", SOURCE_ID_LENGTH, "u_computer_source_id"),
        Column("u_computer_name", "Computer name", 255, None),
        Column("u_computer_serial_number", "Computer serial number", 255, None),
        Column("u_display_name", "Display name", 255, "display_name"),
        Column("u_publisher", "Publisher", 255, "publisher"),
        Column("u_version", "Version", 100, "version"),
        Column("u_edition", "Edition", 100, "edition"),
        Column("u_install_date", "Install date", 40, "install_date", kind="date"),
        Column("u_install_location", "Install location", 1024, "install_location"),
        _status(),
    ),
    custom_target_columns=(
        _SOURCE_ID_TARGET,
        TargetColumn("u_computer_source_id", "ITAM computer source ID", SOURCE_ID_LENGTH),
        _STATUS_TARGET,
    ),
)

# Export order: installs refer to computers, so hardware goes first.
DATA_TYPES: tuple[DataType, ...] = (HARDWARE_INVENTORY, CONTRACTS, INSTALLED_APPLICATIONS)
DATA_TYPE_NAMES: tuple[str, ...] = tuple(data_type.name for data_type in DATA_TYPES)
_BY_NAME = {data_type.name: data_type for data_type in DATA_TYPES}


def data_type(name: str) -> DataType:
    """The data type called ``name``; raises ValueError naming the known ones."""
    try:
        return _BY_NAME[name]
    except KeyError:
        raise ValueError(f"unknown data type {name!r}; expected one of {', '.join(DATA_TYPE_NAMES)}") from None

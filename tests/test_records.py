"""Records exactly as ServiceNow receives them: the staging tables and fields of SPEC section 5, all strings, source
ids scoped to their tenant (`<tenant id>:<record id>`)."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone
from decimal import Decimal

import pytest

from itam_admin import records
from itam_admin.datatypes import DATA_TYPE_NAMES as DATA_TYPES
from itam_admin.datatypes import DATA_TYPES as REGISTRY
from itam_admin.records import (
    FIELDS,
    RECORD_BUILDERS,
    ROW_COLUMNS,
    contract_record,
    hardware_inventory_record,
    installed_application_record,
    record_builder,
    retirement_record,
)

# SPEC section 5, copied by hand: the contract these tests hold the code to.
SPEC_FIELDS = {
    "hardware_inventory": "u_source_id, u_name, u_serial_number, u_manufacturer, u_model, u_os, u_os_version, "
    "u_cpu_type, u_cpu_count, u_cpu_core_count, u_ram_mb, u_disk_space_gb, u_ip_address, u_mac_address, "
    "u_is_virtual, u_last_inventory_date, u_operational_status",
    "contracts": "u_source_id, u_contract_number, u_vendor, u_description, u_contract_type, u_starts, u_ends, "
    "u_total_cost, u_currency, u_state, u_renewable, u_operational_status",
    "installed_applications": "u_source_id, u_computer_source_id, u_computer_name, u_computer_serial_number, "
    "u_display_name, u_publisher, u_version, u_edition, u_install_date, u_install_location, u_operational_status",
}

ACME = "acme:"  # records.source_id_prefix("acme")
HARDWARE_ROW = (
    "HW-00000042",
    "NYC-NB-000042",
    "5CG1234XYZ",
    "HP",
    "HP EliteBook 840 G10",
    "Microsoft Windows 11 Enterprise",
    "10.0.22631",
    "13th Gen Intel(R) Core(TM) i5-1345U",
    1,
    10,
    16384,
    512,
    "10.1.2.3",
    "00:1a:2b:3c:4d:5e",
    False,
    datetime(2026, 10, 5, 7, 8, 9, 987654),
)
CONTRACT_ROW = (
    "CT-00000007",
    "MSEA-2025-00007",
    "Microsoft",
    "Enterprise Agreement, 3-year term",
    "Software License",
    date(2025, 1, 1),
    date(2027, 12, 31),
    Decimal("1234.50"),
    "USD",
    "active",
    True,
)
INSTALL_ROW = (
    "SW-000000099",
    "HW-00000042",
    "NYC-NB-000042",
    "5CG1234XYZ",
    "Google Chrome",
    "Google LLC",
    "123.0.6312.59",
    None,
    date(2024, 3, 1),
    "C:\\Program Files\\Google\\Chrome\\Application",
)


def test_data_types_are_exported_in_spec_order_with_labels_and_staging_tables():
    assert DATA_TYPES == ("hardware_inventory", "contracts", "installed_applications")
    assert {data_type.name: data_type.label for data_type in REGISTRY} == {
        "hardware_inventory": "Hardware inventory",
        "contracts": "Contracts",
        "installed_applications": "Installed applications",
    }
    assert {data_type.name: data_type.staging_table for data_type in REGISTRY} == {
        "hardware_inventory": "u_itam_hardware_inventory",
        "contracts": "u_itam_contracts",
        "installed_applications": "u_itam_installed_applications",
    }


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_fields_are_those_of_the_spec_in_its_order(data_type):
    assert FIELDS[data_type] == tuple(SPEC_FIELDS[data_type].split(", "))
    assert ROW_COLUMNS[data_type] == tuple(f[2:] for f in FIELDS[data_type][:-1])


def test_hardware_inventory_record_is_exactly_what_servicenow_receives():
    assert hardware_inventory_record(HARDWARE_ROW, ACME) == {
        "u_source_id": "acme:HW-00000042",
        "u_name": "NYC-NB-000042",
        "u_serial_number": "5CG1234XYZ",
        "u_manufacturer": "HP",
        "u_model": "HP EliteBook 840 G10",
        "u_os": "Microsoft Windows 11 Enterprise",
        "u_os_version": "10.0.22631",
        "u_cpu_type": "13th Gen Intel(R) Core(TM) i5-1345U",
        "u_cpu_count": "1",
        "u_cpu_core_count": "10",
        "u_ram_mb": "16384",
        "u_disk_space_gb": "512",
        "u_ip_address": "10.1.2.3",
        "u_mac_address": "00:1a:2b:3c:4d:5e",
        "u_is_virtual": "false",
        "u_last_inventory_date": "2026-10-05 07:08:09",
        "u_operational_status": "operational",
    }


def test_contract_record_is_exactly_what_servicenow_receives():
    assert contract_record(CONTRACT_ROW, ACME) == {
        "u_source_id": "acme:CT-00000007",
        "u_contract_number": "MSEA-2025-00007",
        "u_vendor": "Microsoft",
        "u_description": "Enterprise Agreement, 3-year term",
        "u_contract_type": "Software License",
        "u_starts": "2025-01-01",
        "u_ends": "2027-12-31",
        "u_total_cost": "1234.50",
        "u_currency": "USD",
        "u_state": "active",
        "u_renewable": "true",
        "u_operational_status": "operational",
    }


def test_installed_application_record_is_exactly_what_servicenow_receives():
    assert installed_application_record(INSTALL_ROW, ACME) == {
        "u_source_id": "acme:SW-000000099",
        "u_computer_source_id": "acme:HW-00000042",
        "u_computer_name": "NYC-NB-000042",
        "u_computer_serial_number": "5CG1234XYZ",
        "u_display_name": "Google Chrome",
        "u_publisher": "Google LLC",
        "u_version": "123.0.6312.59",
        "u_edition": "",
        "u_install_date": "2024-03-01",
        "u_install_location": "C:\\Program Files\\Google\\Chrome\\Application",
        "u_operational_status": "operational",
    }


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_unknown_values_are_sent_as_empty_strings(data_type):
    row = ("X-1",) + (None,) * (len(ROW_COLUMNS[data_type]) - 1)
    record = record_builder(data_type, "acme")(row)
    assert list(record) == list(FIELDS[data_type])
    assert record["u_source_id"] == "acme:X-1"
    assert record["u_operational_status"] == "operational"
    assert {value for name, value in record.items() if name not in ("u_source_id", "u_operational_status")} == {""}


ROWS = {"hardware_inventory": HARDWARE_ROW, "contracts": CONTRACT_ROW, "installed_applications": INSTALL_ROW}


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_every_field_is_present_and_a_string(data_type):
    record = RECORD_BUILDERS[data_type](ROWS[data_type], ACME)
    assert list(record) == list(FIELDS[data_type])
    assert all(type(value) is str for value in record.values())


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (datetime(2026, 1, 2, 3, 4, 5), "2026-01-02 03:04:05"),
        (datetime(2026, 1, 2, 3, 4, 5, 999999), "2026-01-02 03:04:05"),  # truncated, never rounded up
        (datetime(2026, 1, 2, 0, 30, tzinfo=timezone(timedelta(hours=2))), "2026-01-01 22:30:00"),  # to UTC
        (datetime(999, 12, 31, 23, 59, 59), "0999-12-31 23:59:59"),
    ],
)
def test_date_times_are_utc_to_the_second(value, text):
    row = HARDWARE_ROW[:-1] + (value,)
    assert hardware_inventory_record(row, ACME)["u_last_inventory_date"] == text


@pytest.mark.parametrize(
    ("value", "text"),
    [(date(2026, 2, 28), "2026-02-28"), (date(999, 1, 5), "0999-01-05"), (datetime(2026, 3, 4, 5, 6), "2026-03-04")],
)
def test_dates_are_year_month_day(value, text):
    assert installed_application_record(INSTALL_ROW[:8] + (value, None), ACME)["u_install_date"] == text
    assert contract_record(CONTRACT_ROW[:5] + (value, value) + CONTRACT_ROW[7:], ACME)["u_ends"] == text


def test_many_distinct_dates_are_all_formatted_right_with_bounded_memory(monkeypatch):
    monkeypatch.setattr(records, "_DATE_TEXTS_MAX", 100)
    for days in range(0, 2_900_000, 997):
        day = date(2000, 1, 1) + timedelta(days=days)
        assert installed_application_record(INSTALL_ROW[:8] + (day, None), ACME)["u_install_date"] == day.isoformat()
    assert len(records._DATE_TEXTS) <= 100


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Decimal("1234.50"), "1234.50"),
        (Decimal("0.00"), "0.00"),
        (Decimal("0E-2"), "0.00"),
        (Decimal("1E+3"), "1000"),
        (Decimal("999999999999.99"), "999999999999.99"),
        (16384, "16384"),
        (1e16, "10000000000000000"),
        (0.1, "0.1"),
    ],
)
def test_numbers_never_use_an_exponent(value, text):
    assert contract_record(CONTRACT_ROW[:7] + (value,) + CONTRACT_ROW[8:], ACME)["u_total_cost"] == text
    assert hardware_inventory_record(HARDWARE_ROW[:10] + (value,) + HARDWARE_ROW[11:], ACME)["u_ram_mb"] == text


@pytest.mark.parametrize(("value", "text"), [(True, "true"), (False, "false"), (1, "true"), (0, "false")])
def test_booleans_are_true_or_false(value, text):
    assert hardware_inventory_record(HARDWARE_ROW[:14] + (value, None), ACME)["u_is_virtual"] == text
    assert contract_record(CONTRACT_ROW[:10] + (value,), ACME)["u_renewable"] == text


def test_two_tenants_rows_with_the_same_record_id_become_different_source_ids_in_the_same_order():
    ids = ["CT-1", "CT-10", "CT-2", "CT-\u00e9", "ct-1"]  # code-point order
    for tenant in ("acme", "globex"):
        build = record_builder("contracts", tenant)
        sent = [build((record_id,) + CONTRACT_ROW[1:])["u_source_id"] for record_id in ids]
        assert sent == [f"{tenant}:{record_id}" for record_id in ids] == sorted(sent)
    assert records.scoped_source_id("acme", "CT-1") == "acme:CT-1" == records.source_id_prefix("acme") + "CT-1"


@pytest.mark.parametrize("data_type", DATA_TYPES)
def test_retirement_record_has_every_field_and_only_the_source_id(data_type):
    record = retirement_record(data_type, "acme:HW-00000001")  # as it was sent, already scoped
    assert list(record) == list(FIELDS[data_type])
    assert record["u_source_id"] == "acme:HW-00000001"
    assert record["u_operational_status"] == "retired"
    assert {value for name, value in record.items() if name not in ("u_source_id", "u_operational_status")} == {""}


def test_an_unknown_data_type_is_refused_with_the_known_ones_named():
    with pytest.raises(ValueError, match="hardware_inventory, contracts, installed_applications"):
        retirement_record("printers", "P-1")
    with pytest.raises(ValueError, match="unknown data type 'printers'"):
        record_builder("printers", "acme")

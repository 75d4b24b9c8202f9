"""Demo inventory: realistic, deterministic for a seed, idempotent to seed, and mutations that say what they did."""

from __future__ import annotations

import re

import pytest

from demo_portal.demo_data import (
    SCALES,
    delete_inventory,
    generate_inventory,
    mutate_inventory,
    seed_demo_inventory,
)
from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.inventory import catalog
from itam_admin.inventory.source import SqlInventorySource

SIZES = {"computers": 40, "installs": 500, "contracts": 12}
COUNTS = {"hardware_inventory": 40, "contracts": 12, "installed_applications": 500}


def records_of(tenant_id: str) -> dict[str, dict[str, dict[str, str]]]:
    """Every record of a tenant, per data type and record id, as an export would send it but with the tenant's
    prefix taken off the source ids (so two tenants' inventories compare)."""
    source = SqlInventorySource()
    prefix = f"{tenant_id}:"
    result: dict[str, dict[str, dict[str, str]]] = {}
    for data_type in DATA_TYPE_NAMES:
        result[data_type] = {}
        for record in source.iter_records(tenant_id, data_type):
            for field in ("u_source_id", "u_computer_source_id"):
                if field in record:
                    assert record[field].startswith(prefix)
                    record[field] = record[field].removeprefix(prefix)
            result[data_type][record["u_source_id"]] = record
    return result


def test_generates_the_counts_asked_for(engine):
    assert generate_inventory("acme", seed=3, **SIZES) == COUNTS
    source = SqlInventorySource()
    assert {data_type: source.count("acme", data_type) for data_type in DATA_TYPE_NAMES} == COUNTS


def test_the_same_seed_gives_the_same_records_and_another_seed_others(engine):
    generate_inventory("acme", seed=3, **SIZES)
    generate_inventory("globex", seed=3, **SIZES)
    generate_inventory("initech", seed=4, **SIZES)
    acme, globex, initech = records_of("acme"), records_of("globex"), records_of("initech")
    assert acme == globex
    for data_type in DATA_TYPE_NAMES:
        assert acme[data_type].keys() == initech[data_type].keys()  # source ids are numbered
        assert acme[data_type] != initech[data_type]


def test_installs_are_spread_over_the_computers(engine):
    generate_inventory("acme", seed=1, **SIZES)
    records = records_of("acme")
    per_computer: dict[str, int] = {}
    for install in records["installed_applications"].values():
        assert install["u_computer_source_id"] in records["hardware_inventory"]
        assert install["u_computer_name"] == records["hardware_inventory"][install["u_computer_source_id"]]["u_name"]
        per_computer[install["u_computer_source_id"]] = per_computer.get(install["u_computer_source_id"], 0) + 1
    assert len(per_computer) == SIZES["computers"]
    assert max(per_computer.values()) < 3 * SIZES["installs"] / SIZES["computers"]


def test_data_looks_like_a_real_inventory_with_some_unknowns(engine):
    generate_inventory("acme", seed=2, computers=300, installs=1500, contracts=60)
    records = records_of("acme")
    computers = list(records["hardware_inventory"].values())
    manufacturers = {p.manufacturer for p in catalog.HARDWARE_PROFILES}
    assert {c["u_manufacturer"] for c in computers} <= manufacturers | {""}
    assert {c["u_is_virtual"] for c in computers} == {"true", "false", ""}
    assert all(re.fullmatch(r"10\.\d+\.\d+\.\d+", c["u_ip_address"]) for c in computers if c["u_ip_address"])
    assert all(
        re.fullmatch(r"([0-9a-f]{2}:){5}[0-9a-f]{2}", c["u_mac_address"]) for c in computers if c["u_mac_address"]
    )
    assert all(c["u_name"] and c["u_os"] for c in computers)
    for field in ("u_serial_number", "u_ram_mb", "u_ip_address", "u_last_inventory_date"):
        unknown = sum(1 for c in computers if c[field] == "")
        assert 0 < unknown < len(computers) / 5, field
    installs = list(records["installed_applications"].values())
    publishers = {a.publisher for apps in catalog.APPLICATIONS.values() for a in apps}
    assert {i["u_publisher"] for i in installs} <= publishers | {""}
    assert any(i["u_install_date"] == "" for i in installs)
    contracts = list(records["contracts"].values())
    assert {c["u_state"] for c in contracts} <= {"active", "expired", "draft"}
    assert all(re.fullmatch(r"\d+\.\d\d", c["u_total_cost"]) for c in contracts if c["u_total_cost"])


def test_generating_for_a_tenant_with_inventory_is_refused(engine):
    generate_inventory("acme", computers=1, installs=0, contracts=0)
    with pytest.raises(ValueError, match="already has inventory"):
        generate_inventory("acme", computers=1, installs=0, contracts=0)


def test_installs_without_computers_are_refused(engine):
    with pytest.raises(ValueError, match="computers"):
        generate_inventory("acme", computers=0, installs=5, contracts=0)


def test_seeding_demo_inventory_is_idempotent(engine):
    created = seed_demo_inventory("acme", "small")
    sizes = SCALES["small"]
    assert created == {
        "hardware_inventory": sizes["computers"],
        "contracts": sizes["contracts"],
        "installed_applications": sizes["installs"],
    }
    before = records_of("acme")
    assert seed_demo_inventory("acme", "small") == dict.fromkeys(DATA_TYPE_NAMES, 0)
    assert records_of("acme") == before


def test_the_demo_scale_is_a_few_thousand_computers(engine):
    assert seed_demo_inventory("acme") == {
        "hardware_inventory": 3_000,
        "contracts": 300,
        "installed_applications": 36_000,
    }


def test_demo_tenants_get_different_inventories(engine):
    seed_demo_inventory("acme", "small")
    seed_demo_inventory("globex", "small")
    assert records_of("acme")["hardware_inventory"] != records_of("globex")["hardware_inventory"]


def test_deleting_inventory_deletes_only_that_tenants(engine):
    generate_inventory("acme", seed=1, **SIZES)
    generate_inventory("globex", seed=1, **SIZES)
    assert delete_inventory("acme") == COUNTS
    assert all(not records for records in records_of("acme").values())
    assert {t: len(r) for t, r in records_of("globex").items()} == COUNTS


def test_mutating_changes_deletes_and_adds_what_it_says(engine):
    generate_inventory("acme", seed=5, **SIZES)
    generate_inventory("globex", seed=5, **SIZES)
    before = records_of("acme")
    assert records_of("globex") == before
    result = mutate_inventory("acme", change_fraction=0.25, delete=2, add=3, seed=9)
    after = records_of("acme")
    for data_type in DATA_TYPE_NAMES:
        old, new, said = before[data_type], after[data_type], result[data_type]
        assert said["deleted"] == sorted(old.keys() - new.keys())
        assert said["added"] == sorted(new.keys() - old.keys())
        assert len(said["added"]) == 3
        assert said["changed"] == sorted(s for s in old.keys() & new.keys() if old[s] != new[s])
    # Installs deleted with their computers are reported too.
    hardware, installs = result["hardware_inventory"], result["installed_applications"]
    assert len(hardware["deleted"]) == 2 and len(installs["deleted"]) > 2
    assert len(hardware["changed"]) == round(0.25 * 40)
    assert len(installs["changed"]) == round(0.25 * (500 - (len(installs["deleted"]) - 2)))
    assert records_of("globex") == before  # the other tenant is untouched
    assert mutate_inventory("globex", change_fraction=0.25, delete=2, add=3, seed=9) == result  # deterministic
    assert records_of("globex") == after


def test_mutating_only_some_data_types_leaves_the_others(engine):
    generate_inventory("acme", seed=5, **SIZES)
    before = records_of("acme")
    result = mutate_inventory("acme", change_fraction=0.5, delete=1, data_types=["contracts"])
    after = records_of("acme")
    assert set(result) == {"contracts"}
    assert len(result["contracts"]["changed"]) == 6 and len(result["contracts"]["deleted"]) == 1
    assert after["hardware_inventory"] == before["hardware_inventory"]
    assert after["installed_applications"] == before["installed_applications"]

"""Deterministic, fast demo inventory for tenants: seeding, bulk generation for benchmarks, and mutations for
differential-export tests. Only ever writes the tenant it is given; never used by an export."""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime, timedelta
from decimal import Decimal
from itertools import islice
from typing import Any

from sqlalchemy import Connection, Engine, Table, bindparam, delete, func, insert, select, text, update

from itam_admin.datatypes import DATA_TYPE_NAMES
from itam_admin.db import db, utcnow
from itam_admin.inventory import catalog
from itam_admin.inventory.models import TABLES_BY_DATA_TYPE
from itam_admin.records import check_data_type

# Generated data is dated relative to this fixed moment, so a seed always gives the same rows.
REFERENCE_TIME = datetime(2026, 11, 1, 6, 0, 0)

SCALES: dict[str, dict[str, int]] = {
    "small": {"computers": 50, "installs": 600, "contracts": 10},
    "demo": {"computers": 3_000, "installs": 36_000, "contracts": 300},
    "large": {"computers": 100_000, "installs": 1_200_000, "contracts": 5_000},
}
SOURCE_ID_PREFIXES = {"hardware_inventory": "HW-", "contracts": "CT-", "installed_applications": "SW-"}

_CHUNK = 10_000  # rows per executemany / COPY flush: big enough to amortise round trips, small enough for memory
_IN_CHUNK = 500  # values per IN (...) list, well under SQLite's bound-parameter limit

_COMPUTER = TABLES_BY_DATA_TYPE["hardware_inventory"]
_INSTALL = TABLES_BY_DATA_TYPE["installed_applications"]
_CONTRACT = TABLES_BY_DATA_TYPE["contracts"]

_COMPUTER_COLUMNS = (
    "tenant_id", "source_id", "name", "serial_number", "manufacturer", "model", "os", "os_version", "cpu_type",
    "cpu_count", "cpu_core_count", "ram_mb", "disk_space_gb", "ip_address", "mac_address", "is_virtual",
    "last_inventory_date", "updated_at",
)  # fmt: skip
_INSTALL_COLUMNS = (
    "tenant_id", "source_id", "computer_id", "display_name", "publisher", "version", "edition", "install_date",
    "install_location", "updated_at",
)  # fmt: skip
_CONTRACT_COLUMNS = (
    "tenant_id", "source_id", "contract_number", "vendor", "description", "contract_type", "starts", "ends",
    "total_cost", "currency", "state", "renewable", "updated_at",
)  # fmt: skip

_PROFILES = [p for p in catalog.HARDWARE_PROFILES for _ in range(p.weight)]
_SERIAL_CHARS = "0123456789BCDFGHJKLMNPQRSTVWXYZ"
_HEX = "0123456789abcdef"
_MAC_OUIS = {"VMware, Inc.": "00:50:56", "Microsoft Corporation": "00:15:5d", "Amazon EC2": "02:a3:4f"}


def _maybe(rng: random.Random, value: Any, unknown: float) -> Any:
    """The value, or None (unknown to the inventory agent) with the given probability."""
    return None if rng.random() < unknown else value


def _serial(rng: random.Random, manufacturer: str) -> str:
    chars = "".join(rng.choices(_SERIAL_CHARS, k=10))
    if manufacturer.startswith("VMware"):
        return "VMware-42 " + " ".join("".join(rng.choices(_HEX, k=2)) for _ in range(8))
    if manufacturer == "Dell Inc.":
        return chars[:7]
    if manufacturer == "HP":
        return "5CG" + chars[:7]
    if manufacturer == "Apple Inc.":
        return "C02" + chars[:9]
    return chars[:8]


def _computer_rows(tenant_id: str, rng: random.Random, first: int, count: int, now: datetime) -> Iterator[tuple]:
    r = rng.random
    for number in range(first, first + count):
        profile = _PROFILES[int(r() * len(_PROFILES))]
        kind = profile.kind
        os_name, os_version = rng.choice(catalog.OPERATING_SYSTEMS[profile.os_family])
        cpus = 2 if kind == "server" else rng.choice((2, 4, 8)) if kind == "vm" else 1
        cores = cpus if kind == "vm" else cpus * rng.choice(catalog.CORES_PER_CPU[kind])
        prefix = rng.choice(catalog.HOST_PREFIXES[kind])
        mac_oui = _MAC_OUIS.get(profile.manufacturer) or f"{int(r() * 64) * 4:02x}:1a:2b"
        seen = REFERENCE_TIME - timedelta(seconds=int(r() * 30 * 86_400), microseconds=int(r() * 1_000_000))
        yield (
            tenant_id,
            f"HW-{number:08d}",
            f"{rng.choice(catalog.SITES)}-{prefix}-{number:06d}",
            _maybe(rng, _serial(rng, profile.manufacturer), 0.02),
            _maybe(rng, profile.manufacturer, 0.01),
            _maybe(rng, profile.model, 0.02),
            os_name,
            _maybe(rng, os_version, 0.02),
            _maybe(rng, rng.choice(profile.cpu_types), 0.03),
            _maybe(rng, cpus, 0.03),
            _maybe(rng, cores, 0.03),
            _maybe(rng, rng.choice(catalog.RAM_MB[kind]), 0.02),
            _maybe(rng, rng.choice(catalog.DISK_GB[kind]), 0.02),
            _maybe(rng, f"10.{int(r() * 64)}.{int(r() * 256)}.{1 + int(r() * 254)}", 0.05),
            _maybe(rng, mac_oui + "".join(f":{int(r() * 256):02x}" for _ in range(3)), 0.03),
            _maybe(rng, kind == "vm", 0.02),
            _maybe(rng, seen, 0.03),
            now,
        )


_VARIANTS = 64  # pre-drawn (publisher, version, location) variants per application, nulls included
_INSTALL_DAYS = 1500  # installs date back up to about four years
_STEPS = (1, 7, 11, 13, 17, 19, 23, 29)  # strides through a catalogue; primes, so a stride visits every entry


def _application_variants(rng: random.Random) -> dict[str, list[list[tuple]]]:
    """Per OS family and application, variants of (name, publisher, version, edition, location) with the unknowns
    already drawn: picking a variant per install is several times cheaper than drawing each field."""
    r = rng.random
    return {
        family: [
            [
                (
                    app.display_name,
                    None if r() < 0.02 else app.publisher,
                    None if r() < 0.03 else app.versions[int(r() * len(app.versions))],
                    app.edition,
                    None if r() < 0.05 else app.location,
                )
                for _ in range(_VARIANTS)
            ]
            for app in apps
        ]
        for family, apps in catalog.APPLICATIONS.items()
    }


def _install_rows(
    tenant_id: str, rng: random.Random, first: int, computers: Sequence[tuple[int, str]], count: int, now: datetime
) -> Iterator[tuple]:
    """``count`` installs spread over ``computers`` ((id, os family) pairs): each computer gets a share around the
    mean, drawn without repeats from its operating system's catalogue while it lasts."""
    r = rng.random
    variants = _application_variants(rng)
    today = REFERENCE_TIME.date()
    install_dates = [today - timedelta(days=days) for days in range(_INSTALL_DAYS)]
    install_dates += [None] * (_INSTALL_DAYS // 12)  # about 8% unknown
    weights = [0.5 + r() for _ in computers]
    scale = count / sum(weights) if computers else 0.0
    number, made, cumulative = first, 0, 0.0
    for index, ((computer_id, os_family), weight) in enumerate(zip(computers, weights, strict=True), 1):
        cumulative += weight * scale
        share = (count if index == len(computers) else min(round(cumulative), count)) - made
        apps = variants[os_family]
        size = len(apps)
        start, step = int(r() * size), _STEPS[int(r() * len(_STEPS))]
        for pick in range(share):
            name, publisher, version, edition, location = apps[(start + pick * step) % size][int(r() * _VARIANTS)]
            installed = install_dates[int(r() * len(install_dates))]
            yield (
                tenant_id,
                f"SW-{number:09d}",
                computer_id,
                name,
                publisher,
                version,
                edition,
                installed,
                location,
                now,
            )
            number += 1
        made += share


def _contract_rows(tenant_id: str, rng: random.Random, first: int, count: int, now: datetime) -> Iterator[tuple]:
    today = REFERENCE_TIME.date()
    for number in range(first, first + count):
        kind = rng.choice(catalog.CONTRACT_KINDS)
        years = rng.choice((1, 1, 1, 2, 3))
        starts = today - timedelta(days=rng.randint(-60, 3 * 365))
        ends = date(starts.year + years, starts.month, min(starts.day, 28)) - timedelta(days=1)
        state = "draft" if starts > today else "expired" if ends < today else "active"
        cents = rng.randint(kind.yearly_cost[0] * 100, kind.yearly_cost[1] * 100) * years
        yield (
            tenant_id,
            f"CT-{number:08d}",
            f"{kind.code}-{starts.year}-{number:05d}",
            kind.vendor,
            _maybe(rng, f"{kind.product}, {years}-year term", 0.05),
            kind.contract_type,
            starts,
            _maybe(rng, ends, 0.05),
            _maybe(rng, Decimal(cents).scaleb(-2), 0.04),
            rng.choice(catalog.CURRENCIES),
            state,
            _maybe(rng, rng.random() < 0.7, 0.1),
            now,
        )


def _insert_rows(connection: Connection, table: Table, columns: Sequence[str], rows: Iterable[tuple]) -> int:
    """Bulk-inserts the rows, one chunk in memory at a time: COPY on PostgreSQL; elsewhere a Core insert() compiled
    once and run with executemany of plain tuples, the values passed through the columns' own bind processors
    (so stored exactly as the ORM stores them) but without SQLAlchemy's per-row parameter dicts, which cost more
    than the insert itself."""
    total = 0
    dialect = connection.dialect
    if dialect.name == "postgresql":
        with connection.connection.driver_connection.cursor() as cursor:
            with cursor.copy(f"COPY {table.name} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows:
                    copy.write_row(row)
                    total += 1
        return total
    iterator = iter(rows)
    if not dialect.positional:
        statement = insert(table)
        while chunk := [dict(zip(columns, row, strict=True)) for row in islice(iterator, _CHUNK)]:
            connection.execute(statement, chunk)
            total += len(chunk)
        return total
    compiled = insert(table).compile(dialect=dialect, column_keys=list(columns))
    order = [columns.index(name) for name in compiled.positiontup]
    types = [table.c[columns[i]].type for i in order]
    processors = [(at, _memoised(t.dialect_impl(dialect).bind_processor(dialect))) for at, t in enumerate(types)]
    processors = [(at, process) for at, process in processors if process is not None]
    reorder = order != sorted(order)
    while chunk := list(islice(iterator, _CHUNK)):
        if reorder or processors:
            values = []
            for row in chunk:
                bound = [row[i] for i in order] if reorder else list(row)
                for at, process in processors:
                    bound[at] = process(bound[at])
                values.append(tuple(bound))
            chunk = values
        connection.exec_driver_sql(compiled.string, chunk)
        total += len(chunk)
    return total


def _memoised(process: Callable[[Any], Any] | None) -> Callable[[Any], Any] | None:
    """A bind processor that remembers its last few thousand results: generated dates repeat a lot."""
    if process is None:
        return None
    memo: dict[Any, Any] = {}

    def remembered(value: Any) -> Any:
        result = memo.get(value, memo)
        if result is memo:
            if len(memo) > 10_000:
                memo.clear()
            result = memo[value] = process(value)
        return result

    return remembered


def _os_family(os_name: str | None) -> str:
    if os_name and os_name.startswith("macOS"):
        return "mac"
    if os_name and "Windows Server" in os_name:
        return "windows_server"
    if os_name and "Windows" in os_name:
        return "windows"
    return "linux"


def _engine(engine: Engine | None) -> Engine:
    return engine if engine is not None else db.engine


def _counts(connection: Connection, tenant_id: str) -> dict[str, int]:
    return {
        data_type: connection.scalar(select(func.count()).select_from(table).where(table.c.tenant_id == tenant_id))
        for data_type, table in TABLES_BY_DATA_TYPE.items()
    }


def inventory_counts(tenant_id: str, *, engine: Engine | None = None) -> dict[str, int]:
    """How many records of each data type the tenant has now."""
    with _engine(engine).connect() as connection:
        return _counts(connection, tenant_id)


COUNT_NOUNS = {"hardware_inventory": "computers", "installed_applications": "installed applications"}


def counts_text(counts: dict[str, int]) -> str:
    """'3,000 computers, 300 contracts and 36,000 installed applications'."""
    parts = [f"{counts.get(name, 0):,} {COUNT_NOUNS.get(name, name.replace('_', ' '))}" for name in DATA_TYPE_NAMES]
    return ", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else "".join(parts)


def generate_inventory(
    tenant_id: str, *, computers: int, installs: int, contracts: int, seed: int = 0, engine: Engine | None = None
) -> dict[str, int]:
    """Creates that many computers, installs (spread over those computers) and contracts for a tenant that has no
    inventory yet, the same rows for the same seed. Returns the count created per data type."""
    if installs and not computers:
        raise ValueError("installs need computers to be installed on")
    rng, now = random.Random(seed), utcnow()
    with _engine(engine).begin() as connection:
        if any(_counts(connection, tenant_id).values()):
            raise ValueError(f"tenant {tenant_id!r} already has inventory; delete_inventory() it first")
        created = {
            "hardware_inventory": _insert_rows(
                connection, _COMPUTER, _COMPUTER_COLUMNS, _computer_rows(tenant_id, rng, 1, computers, now)
            ),
            "contracts": _insert_rows(
                connection, _CONTRACT, _CONTRACT_COLUMNS, _contract_rows(tenant_id, rng, 1, contracts, now)
            ),
        }
        computer_rows = connection.execute(
            select(_COMPUTER.c.id, _COMPUTER.c.os)
            .where(_COMPUTER.c.tenant_id == tenant_id)
            .order_by(_COMPUTER.c.source_id)
        ).all()
        hosts = [(computer_id, _os_family(os_name)) for computer_id, os_name in computer_rows]
        created["installed_applications"] = _insert_rows(
            connection, _INSTALL, _INSTALL_COLUMNS, _install_rows(tenant_id, rng, 1, hosts, installs, now)
        )
        if connection.dialect.name == "postgresql":
            # Fresh statistics, or the planner, still believing the tables empty, sorts a whole tenant for every
            # chunk an export reads instead of walking the (tenant_id, source_id) index.
            connection.exec_driver_sql(f"ANALYZE {_COMPUTER.name}, {_INSTALL.name}, {_CONTRACT.name}")
    return created


def seed_demo_inventory(tenant_id: str, scale: str = "demo", *, engine: Engine | None = None) -> dict[str, int]:
    """Gives a tenant demo inventory of the named scale (see ``SCALES``), unless it already has some: idempotent.
    Returns the count created per data type (all zero when there was inventory already)."""
    sizes = SCALES[scale]
    with _engine(engine).connect() as connection:
        if any(_counts(connection, tenant_id).values()):
            return dict.fromkeys(DATA_TYPE_NAMES, 0)
    # Seeded by the tenant's id so that two demo tenants do not hold identical inventories.
    return generate_inventory(tenant_id, seed=zlib.crc32(tenant_id.encode()), engine=engine, **sizes)


def age_inventory(tenant_id: str, days: float = 7, *, engine: Engine | None = None) -> None:
    """Makes a tenant's generated inventory look as old as a real one (last changed `days` ago), so that the first
    differential export after a complete one reads only what changed since, as it would a week later."""
    when = utcnow() - timedelta(days=days)
    with _engine(engine).begin() as connection:
        for table in TABLES_BY_DATA_TYPE.values():
            connection.execute(update(table).where(table.c.tenant_id == tenant_id).values(updated_at=when))


def delete_inventory(tenant_id: str, *, engine: Engine | None = None) -> dict[str, int]:
    """Deletes all of a tenant's inventory; returns the count deleted per data type."""
    with _engine(engine).begin() as connection:
        # Installs first: SQLite only cascades when foreign keys are switched on for the connection.
        return {
            data_type: connection.execute(delete(table).where(table.c.tenant_id == tenant_id)).rowcount
            for data_type, table in sorted(
                TABLES_BY_DATA_TYPE.items(), key=lambda item: item[0] != "installed_applications"
            )
        }


def _picked_source_ids(connection: Connection, table: Table, tenant_id: str, positions: set[int]) -> list[str]:
    """The source ids at these positions in source id order, read in keyset chunks so memory holds only the picks."""
    picked: list[str] = []
    last, position = None, 0
    while len(picked) < len(positions):
        query = select(table.c.source_id).where(table.c.tenant_id == tenant_id)
        if last is not None:
            query = query.where(table.c.source_id > last)
        chunk = connection.scalars(query.order_by(table.c.source_id).limit(_CHUNK)).all()
        if not chunk:
            break
        picked.extend(source_id for offset, source_id in enumerate(chunk, position) if offset in positions)
        last, position = chunk[-1], position + len(chunk)
    return picked


def _chunks(values: Sequence[Any], size: int = _IN_CHUNK) -> Iterator[Sequence[Any]]:
    for start in range(0, len(values), size):
        yield values[start : start + size]


def _bump_version(version: str | None) -> str:
    head, _, tail = (version or "1.0").rpartition(".")
    return f"{head}.{int(tail) + 1}" if head and tail.isdigit() else f"{version or '1.0'}.1"


# Per data type, the field a mutation changes and how: each is sent, and only in that data type's records
# (a computer's name would also change its installs' records).
_CHANGES: dict[str, tuple[str, Callable[[Any], Any]]] = {
    "hardware_inventory": ("ram_mb", lambda ram_mb: (ram_mb or 0) + 8192),
    "contracts": ("ends", lambda ends: (ends or REFERENCE_TIME.date()) + timedelta(days=365)),
    "installed_applications": ("version", _bump_version),
}


def _change(connection: Connection, table: Table, data_type: str, tenant_id: str, source_ids: list[str]) -> None:
    name, changed = _CHANGES[data_type]
    now = utcnow()
    if connection.dialect.name == "postgresql":
        # One UPDATE ... FROM unnest(arrays) per chunk: an executemany costs a round trip and a plan per row.
        sql_type = table.c[name].type.compile(dialect=connection.dialect)
        statement = text(
            f"UPDATE {table.name} AS t SET {name} = new.value, updated_at = :now"
            f" FROM unnest(CAST(:source_ids AS text[]), CAST(:values AS {sql_type}[])) AS new(source_id, value)"
            " WHERE t.tenant_id = :tenant_id AND t.source_id = new.source_id"
        )
    else:
        statement = (
            update(table)
            .where(table.c.tenant_id == tenant_id, table.c.source_id == bindparam("b_source_id"))
            .values({name: bindparam("b_value"), "updated_at": now})
        )
    for chunk in _chunks(source_ids):
        current = connection.execute(
            select(table.c.source_id, table.c[name]).where(table.c.tenant_id == tenant_id, table.c.source_id.in_(chunk))
        ).all()
        if not current:
            continue
        if connection.dialect.name == "postgresql":
            connection.execute(
                statement,
                {
                    "now": now,
                    "tenant_id": tenant_id,
                    "source_ids": [source_id for source_id, _ in current],
                    "values": [changed(value) for _, value in current],
                },
            )
        else:
            connection.execute(statement, [{"b_source_id": s, "b_value": changed(v)} for s, v in current])


def _delete(connection: Connection, table: Table, data_type: str, tenant_id: str, source_ids: list[str]) -> list[str]:
    """Deletes the rows; returns the source ids of installs that went with deleted computers."""
    cascaded: list[str] = []
    for chunk in _chunks(source_ids):
        if data_type == "hardware_inventory":
            computer_ids = select(_COMPUTER.c.id).where(
                _COMPUTER.c.tenant_id == tenant_id, _COMPUTER.c.source_id.in_(chunk)
            )
            on_them = _INSTALL.c.computer_id.in_(computer_ids)
            cascaded += connection.scalars(select(_INSTALL.c.source_id).where(on_them)).all()
            connection.execute(delete(_INSTALL).where(on_them))
        connection.execute(delete(table).where(table.c.tenant_id == tenant_id, table.c.source_id.in_(chunk)))
    return cascaded


def _add(
    connection: Connection, data_type: str, tenant_id: str, rng: random.Random, count: int, now: datetime
) -> list[str]:
    table, prefix = TABLES_BY_DATA_TYPE[data_type], SOURCE_ID_PREFIXES[data_type]
    highest = connection.scalar(
        select(func.max(table.c.source_id)).where(table.c.tenant_id == tenant_id, table.c.source_id.like(prefix + "%"))
    )
    first = int(highest[len(prefix) :]) + 1 if highest and highest[len(prefix) :].isdigit() else 1
    if data_type == "hardware_inventory":
        rows = list(_computer_rows(tenant_id, rng, first, count, now))
        _insert_rows(connection, table, _COMPUTER_COLUMNS, rows)
    elif data_type == "contracts":
        rows = list(_contract_rows(tenant_id, rng, first, count, now))
        _insert_rows(connection, table, _CONTRACT_COLUMNS, rows)
    else:
        total = connection.scalar(select(func.count()).where(_COMPUTER.c.tenant_id == tenant_id))
        if not total:
            raise ValueError("installs need computers to be installed on")
        positions = {rng.randrange(total) for _ in range(count)}
        computer_rows = connection.execute(
            select(_COMPUTER.c.id, _COMPUTER.c.os).where(
                _COMPUTER.c.tenant_id == tenant_id,
                _COMPUTER.c.source_id.in_(_picked_source_ids(connection, _COMPUTER, tenant_id, positions)),
            )
        ).all()
        hosts = [(computer_id, _os_family(os_name)) for computer_id, os_name in sorted(computer_rows)]
        rows = list(_install_rows(tenant_id, rng, first, hosts, count, now))
        _insert_rows(connection, table, _INSTALL_COLUMNS, rows)
    return [row[1] for row in rows]


def mutate_inventory(
    tenant_id: str,
    *,
    change_fraction: float,
    delete: int,
    add: int = 0,
    seed: int = 1,
    data_types: Sequence[str] = DATA_TYPE_NAMES,
    engine: Engine | None = None,
) -> dict[str, dict[str, list[str]]]:
    """Changes ``change_fraction`` of a tenant's records of each data type (a field that is sent), deletes
    ``delete`` and adds ``add`` of them, the same ones for the same seed and data. Returns, per data type, the
    sorted source ids ``changed``, ``deleted`` and ``added``; deleting a computer also deletes its installs, which
    are listed under ``installed_applications`` even when that data type was not asked for."""
    if not 0 <= change_fraction <= 1 or delete < 0 or add < 0:
        raise ValueError("change_fraction must be within [0, 1]; delete and add at least 0")
    wanted = {check_data_type(data_type) for data_type in data_types}
    rng, now = random.Random(seed), utcnow()
    result: dict[str, dict[str, list[str]]] = {}
    with _engine(engine).begin() as connection:
        for data_type in DATA_TYPE_NAMES:  # computers first, so their installs are gone before installs are picked
            if data_type not in wanted:
                continue
            table = TABLES_BY_DATA_TYPE[data_type]
            total = connection.scalar(select(func.count()).where(table.c.tenant_id == tenant_id))
            changes = min(round(change_fraction * total), total - min(delete, total))
            positions = rng.sample(range(total), min(delete, total) + changes)
            picked = _picked_source_ids(connection, table, tenant_id, set(positions))
            by_position = dict(zip(sorted(positions), picked, strict=True))
            deleted = sorted(by_position[p] for p in positions[: min(delete, total)])
            changed = sorted(by_position[p] for p in positions[min(delete, total) :])
            _change(connection, table, data_type, tenant_id, changed)
            cascaded = _delete(connection, table, data_type, tenant_id, deleted)
            entry = result.setdefault(data_type, {"changed": [], "deleted": [], "added": []})
            entry.update(changed=changed, deleted=sorted(entry["deleted"] + deleted))
            if cascaded:
                installs = result.setdefault("installed_applications", {"changed": [], "deleted": [], "added": []})
                installs["deleted"] = sorted(installs["deleted"] + cascaded)
            entry["added"] = sorted(_add(connection, data_type, tenant_id, rng, add, now)) if add else []
    return result

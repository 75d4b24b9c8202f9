"""Reads a ServiceNow update set (XML unload) into what the sandbox installs from it: staging tables and their
columns, custom columns on stock tables, transform maps, insertMultiple mapping modes, OAuth clients, UI pages and
roles. Standard library only; it never runs a script from the XML, and it refuses input that is not a well-formed
update set instead of installing part of it.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass, field

# The marker the connector's transform scripts start with (see itam_admin.servicenow_app); the sandbox cannot run
# JavaScript, so it acts on the purpose a script declares.
SCRIPT_MARKER = "// ITAM connector: "
RUN_AFTER_PROPERTY = "itam_connector.run_after"


class UpdateSetError(ValueError):
    """The text is not an update set the sandbox can install; the message says what is wrong and where."""


@dataclass(frozen=True)
class TableColumn:
    name: str
    label: str
    max_length: int
    internal_type: str


@dataclass(frozen=True)
class StagingTable:
    name: str
    label: str
    extends: str
    columns: tuple[TableColumn, ...]

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(column.name for column in self.columns)


@dataclass(frozen=True)
class FieldMap:
    source_field: str
    target_field: str
    coalesce: bool
    scripted: bool
    choice_action: str
    date_format: str


@dataclass(frozen=True)
class TransformScript:
    when: str
    order: int
    active: bool
    purpose: str  # what the first line declares after SCRIPT_MARKER, or "" for a script without it


@dataclass(frozen=True)
class TransformMap:
    name: str
    sys_id: str
    source_table: str
    target_table: str
    active: bool
    order: int
    run_business_rules: bool
    copy_empty_fields: bool
    field_maps: tuple[FieldMap, ...]
    scripts: tuple[TransformScript, ...]

    @property
    def coalesce_fields(self) -> tuple[str, ...]:
        """The target fields a row is matched on."""
        return tuple(entry.target_field for entry in self.field_maps if entry.coalesce)

    def purposes(self, when: str | None = None) -> tuple[str, ...]:
        """The declared purposes of the active scripts (of one kind, e.g. ``onBefore``), in running order."""
        scripts = sorted(
            (script for script in self.scripts if script.active and (when is None or script.when == when)),
            key=lambda script: script.order,
        )
        return tuple(script.purpose for script in scripts)


@dataclass(frozen=True)
class InsertMultiple:
    source_table: str
    column_mapping: str  # "column_name" or "label"
    transform: str  # "asynchronous" or "synchronous"
    active: bool


@dataclass(frozen=True)
class OAuthClient:
    name: str
    client_id: str
    type: str
    active: bool
    has_secret: bool
    access_token_lifespan: int
    refresh_token_lifespan: int


@dataclass(frozen=True)
class UIPage:
    name: str
    # A page whose processing script posts a password grant to the instance's own token endpoint: the sandbox
    # serves such a page as its Generate OAuth Token page (it cannot run the Jelly or the script itself).
    generates_tokens: bool = False

    @property
    def path(self) -> str:
        return f"/{self.name}.do"


@dataclass(frozen=True)
class Role:
    name: str
    contains: tuple[str, ...]


@dataclass(frozen=True)
class TableAcl:
    table: str
    operation: str
    roles: tuple[str, ...]


@dataclass(frozen=True)
class Choice:
    table: str
    element: str
    value: str
    label: str


@dataclass(frozen=True)
class InstalledApp:
    """Everything an update set installs, keyed the way the sandbox looks it up."""

    name: str
    staging_tables: Mapping[str, StagingTable]
    custom_columns: Mapping[str, tuple[TableColumn, ...]]  # stock table -> columns the update set adds
    transform_maps: Mapping[str, tuple[TransformMap, ...]]  # staging table -> its maps, in transform order
    insert_multiple: Mapping[str, InsertMultiple]  # staging table -> its REST Insert Multiple entry
    oauth_clients: tuple[OAuthClient, ...]
    ui_pages: tuple[UIPage, ...]
    roles: Mapping[str, Role]
    acls: tuple[TableAcl, ...]
    choices: tuple[Choice, ...]
    run_after: Mapping[str, str]  # staging table -> the staging table whose import sets it waits for
    properties: Mapping[str, str] = field(default_factory=dict)

    def mapping_mode(self, staging_table: str) -> str:
        """How insertMultiple maps JSON keys for ``staging_table``: by "column_name" only with an active REST
        Insert Multiple entry saying so, else by "label" (Import Set API docs)."""
        entry = self.insert_multiple.get(staging_table)
        return entry.column_mapping if entry is not None and entry.active else "label"

    def roles_granting(self, table: str, operation: str) -> frozenset[str]:
        """The roles an ACL of the update set requires for ``operation`` on ``table`` (empty: no ACL here)."""
        return frozenset(
            role for acl in self.acls if acl.table == table and acl.operation == operation for role in acl.roles
        )

    def effective_roles(self, role: str) -> frozenset[str]:
        """``role`` and every role it contains, transitively (roles the update set does not define count as
        themselves)."""
        seen: set[str] = set()
        pending = [role]
        while pending:
            current = pending.pop()
            if current in seen:
                continue
            seen.add(current)
            if current in self.roles:
                pending.extend(self.roles[current].contains)
        return frozenset(seen)


# --- reading ------------------------------------------------------------------------------------------------------


def _parse(text: str, what: str) -> ET.Element:
    try:
        return ET.fromstring(text)
    except ET.ParseError as error:
        raise UpdateSetError(f"{what} is not well-formed XML ({error})") from None


def _flag(value: str | None) -> bool:
    return (value or "").strip().lower() in {"true", "1", "yes"}


def _number(value: str | None, default: int, where: str) -> int:
    text = (value or "").strip()
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise UpdateSetError(f"{where}: {text!r} is not a number") from None


def _text(record: ET.Element, name: str) -> str:
    return (record.findtext(name) or "").strip()


def _reference_name(record: ET.Element, name: str) -> str:
    """A reference's target by name: the ``name`` attribute ServiceNow writes for named records, else its display
    value (what a loading instance can resolve without the source instance's sys_ids)."""
    element = record.find(name)
    if element is None:
        return ""
    return (element.get("name") or element.get("display_value") or element.text or "").strip()


@dataclass(frozen=True)
class _Record:
    update_name: str
    table: str
    element: ET.Element  # the <TABLE action="INSERT_OR_UPDATE"> element


def _records(unload: ET.Element) -> list[_Record]:
    records: list[_Record] = []
    for index, update in enumerate(unload.findall("sys_update_xml"), start=1):
        name = _text(update, "name")
        where = f"update {index} ({name or 'no name'})"
        if not name:
            raise UpdateSetError(f"{where} has no name")
        payload_text = update.findtext("payload")
        if not payload_text or not payload_text.strip():
            raise UpdateSetError(f"{where} has an empty payload")
        payload = _parse(payload_text.strip(), f"the payload of {where}")
        if payload.tag != "record_update":
            raise UpdateSetError(f"the payload of {where} is <{payload.tag}>, not <record_update>")
        # Ordinary records name their table on <record_update>; dictionary entries and field labels do not and
        # carry it as the tag of the record element instead (ServiceNow's unload format).
        table = payload.get("table") or (payload[0].tag if len(payload) else "")
        if not table:
            raise UpdateSetError(f"the payload of {where} holds no record")
        element = next(
            (child for child in payload.iter(table) if (child.get("action") or "").upper() == "INSERT_OR_UPDATE"),
            None,
        )
        if element is None:
            raise UpdateSetError(f'the payload of {where} has no <{table} action="INSERT_OR_UPDATE"> record')
        if not name.startswith(table):
            raise UpdateSetError(f"{where} is named for another table than the {table} record it holds")
        records.append(_Record(name, table, element))
    return records


def _generates_tokens(script: str) -> bool:
    return "oauth_token.do" in script and "grant_type" in script and "password" in script


def parse_update_set(xml_text: str) -> InstalledApp:
    """What the update set ``xml_text`` installs; raises UpdateSetError, naming the faulty update, for anything
    that is not a well-formed ServiceNow update set (only INSERT_OR_UPDATE records are understood)."""
    if not xml_text or not xml_text.strip():
        raise UpdateSetError("the update set is empty")
    unload = _parse(xml_text.strip(), "the update set")
    if unload.tag != "unload":
        raise UpdateSetError(f"an update set starts with <unload>, this one with <{unload.tag}>")
    headers = unload.findall("sys_remote_update_set")
    if len(headers) != 1:
        raise UpdateSetError(f"an update set has exactly one <sys_remote_update_set>; this one has {len(headers)}")
    app_name = _text(headers[0], "name")
    if not app_name:
        raise UpdateSetError("the update set has no name")
    records = _records(unload)
    by_table: dict[str, list[_Record]] = {}
    for record in records:
        by_table.setdefault(record.table, []).append(record)

    def of(table: str) -> list[ET.Element]:
        return [record.element for record in by_table.get(table, [])]

    labels: dict[tuple[str, str], str] = {}
    for element in of("sys_documentation"):
        labels[(_text(element, "name"), _text(element, "element"))] = _text(element, "label")

    columns: dict[str, list[TableColumn]] = {}
    collections: set[str] = set()
    for element in of("sys_dictionary"):
        table = _text(element, "name")
        column = _text(element, "element")
        if not table:
            raise UpdateSetError("a dictionary entry names no table")
        if not column:
            collections.add(table)
            continue
        max_length = _number(element.findtext("max_length"), 40, f"{table}.{column} max_length")
        columns.setdefault(table, []).append(
            TableColumn(
                column,
                _text(element, "column_label") or labels.get((table, column), column),
                max_length,
                _text(element, "internal_type") or "string",
            )
        )

    staging_tables: dict[str, StagingTable] = {}
    for element in of("sys_db_object"):
        table = _text(element, "name")
        extends = _reference_name(element, "super_class")
        if table not in collections:
            raise UpdateSetError(f"table {table} has no dictionary entry of its own (sys_dictionary_{table}_null)")
        if extends != "sys_import_set_row":
            raise UpdateSetError(
                f"table {table} extends {extends or 'no table'}: the sandbox installs only staging tables, which "
                "extend sys_import_set_row"
            )
        label = _text(element, "label") or labels.get((table, ""), table)
        staging_tables[table] = StagingTable(table, label, extends, tuple(columns.get(table, ())))
    custom_columns = {table: tuple(found) for table, found in columns.items() if table not in staging_tables}

    maps: dict[str, TransformMap] = {}
    entries: dict[str, list[FieldMap]] = {}
    scripts: dict[str, list[TransformScript]] = {}
    for element in of("sys_transform_entry"):
        map_id = (element.findtext("map") or "").strip()
        entries.setdefault(map_id, []).append(
            FieldMap(
                _text(element, "source_field"),
                _text(element, "target_field"),
                _flag(element.findtext("coalesce")),
                _flag(element.findtext("use_source_script")),
                _text(element, "choice_action") or "create",
                _text(element, "date_format"),
            )
        )
    for element in of("sys_transform_script"):
        map_id = (element.findtext("map") or "").strip()
        body = (element.findtext("script") or "").lstrip()
        first_line = body.splitlines()[0] if body else ""
        purpose = first_line[len(SCRIPT_MARKER) :].strip() if first_line.startswith(SCRIPT_MARKER) else ""
        scripts.setdefault(map_id, []).append(
            TransformScript(
                _text(element, "when"),
                _number(element.findtext("order"), 100, "transform script order"),
                _flag(element.findtext("active")),
                purpose,
            )
        )
    for element in of("sys_transform_map"):
        map_sys_id = _text(element, "sys_id")
        source_table = _text(element, "source_table")
        name = _text(element, "name")
        if not source_table or not _text(element, "target_table"):
            raise UpdateSetError(f"transform map {name or map_sys_id} names no source or target table")
        maps[map_sys_id] = TransformMap(
            name=name,
            sys_id=map_sys_id,
            source_table=source_table,
            target_table=_text(element, "target_table"),
            active=_flag(element.findtext("active")),
            order=_number(element.findtext("order"), 100, f"transform map {name} order"),
            run_business_rules=_flag(element.findtext("run_business_rules")),
            copy_empty_fields=_flag(element.findtext("copy_empty_fields")),
            field_maps=tuple(entries.get(map_sys_id, ())),
            scripts=tuple(scripts.get(map_sys_id, ())),
        )
    orphans = (set(entries) | set(scripts)) - set(maps)
    if orphans:
        raise UpdateSetError(
            f"field maps or transform scripts refer to transform maps the update set lacks: {sorted(orphans)}"
        )
    transform_maps: dict[str, tuple[TransformMap, ...]] = {}
    for transform_map in sorted(maps.values(), key=lambda found: (found.source_table, found.order, found.name)):
        transform_maps[transform_map.source_table] = (
            *transform_maps.get(transform_map.source_table, ()),
            transform_map,
        )

    insert_multiple = {
        _text(element, "source_table"): InsertMultiple(
            _text(element, "source_table"),
            _text(element, "column_mapping") or "label",
            _text(element, "transform") or "asynchronous",
            _flag(element.findtext("active") or "true"),
        )
        for element in of("sys_rest_insert_multiple")
    }

    oauth_clients = tuple(
        OAuthClient(
            name=_text(element, "name"),
            client_id=_text(element, "client_id"),
            type=_text(element, "type"),
            active=_flag(element.findtext("active")),
            has_secret=bool(_text(element, "client_secret")),
            access_token_lifespan=_number(element.findtext("access_token_lifespan"), 1800, "access_token_lifespan"),
            refresh_token_lifespan=_number(
                element.findtext("refresh_token_lifespan"), 8640000, "refresh_token_lifespan"
            ),
        )
        for element in of("oauth_entity")
    )
    ui_pages = tuple(
        UIPage(_text(element, "name"), _generates_tokens(element.findtext("processing_script") or ""))
        for element in of("sys_ui_page")
    )

    role_names = {_text(element, "sys_id"): _text(element, "name") for element in of("sys_user_role")}
    contains: dict[str, list[str]] = {name: [] for name in role_names.values()}
    for element in of("sys_user_role"):
        listed = [part.strip() for part in _text(element, "includes_roles").split(",") if part.strip()]
        contains[_text(element, "name")].extend(listed)
    for element in of("sys_user_role_contains"):
        role = _reference_name(element, "role")
        contained = _reference_name(element, "contains")
        if role and contained and contained not in contains.setdefault(role, []):
            contains[role].append(contained)
    roles = {name: Role(name, tuple(dict.fromkeys(found))) for name, found in contains.items()}

    acl_tables = {
        _text(element, "sys_id"): (_text(element, "name"), _reference_name(element, "operation"))
        for element in of("sys_security_acl")
        if _flag(element.findtext("active"))
    }
    acl_roles: dict[str, list[str]] = {acl_id: [] for acl_id in acl_tables}
    for element in of("sys_security_acl_role"):
        acl_id = (element.findtext("sys_security_acl") or "").strip()
        if acl_id in acl_roles:
            acl_roles[acl_id].append(_reference_name(element, "sys_user_role"))
    acls = tuple(
        TableAcl(table, operation, tuple(acl_roles[acl_id])) for acl_id, (table, operation) in acl_tables.items()
    )

    choices = tuple(
        Choice(_text(element, "name"), _text(element, "element"), _text(element, "value"), _text(element, "label"))
        for element in of("sys_choice")
    )
    properties = {_text(element, "name"): element.findtext("value") or "" for element in of("sys_properties")}
    run_after: dict[str, str] = {}
    for pair in properties.get(RUN_AFTER_PROPERTY, "").split(","):
        later, _, earlier = pair.partition("=")
        if later.strip() and earlier.strip():
            run_after[later.strip()] = earlier.strip()

    return InstalledApp(
        name=app_name,
        staging_tables=staging_tables,
        custom_columns=custom_columns,
        transform_maps=transform_maps,
        insert_multiple=insert_multiple,
        oauth_clients=oauth_clients,
        ui_pages=ui_pages,
        roles=roles,
        acls=acls,
        choices=choices,
        run_after=run_after,
        properties=properties,
    )

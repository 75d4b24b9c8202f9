"""The connector's ServiceNow side as an update set (XML unload) a ServiceNow admin imports once: staging tables,
transform maps, the insertMultiple column mapping, the Generate OAuth Token page, the default client's Application
Registry entry and the integration role, all generated from the data-type registry. It must never put a secret in
the XML (no client secret, no token) and never depend on the clock, so the same inputs give the same bytes.
"""

from __future__ import annotations

import json
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime

from itam_admin.datatypes import (
    DATA_TYPES,
    HARDWARE_INVENTORY,
    INSTALLED_APPLICATIONS,
    OPERATIONAL_STATUS,
    RETIRED,
    SOURCE_ID,
    Column,
    DataType,
)

APP_NAME = "ITAM ServiceNow Connector"
APP_VERSION = "1.0.0"
UPDATE_SET_NAME = f"{APP_NAME} {APP_VERSION}"
# A fixed unload date keeps downloads byte-identical; it changes with the app version, not with the clock.
RELEASE_DATE = "2026-12-01 00:00:00"

ROLE = "u_itam_integration"
# import_transformer is the least role that loads through the Import Set API (SERVICENOW-FACTS, practitioner).
CONTAINED_ROLES = ("import_transformer",)
UI_PAGE = "itam_generate_oauth_token"
DEFAULT_CLIENT_NAME = "ITAM Connector default client"
# IRE accepts only sources that are choices of cmdb_ci.discovery_source (IdentificationEngineScriptableApi docs).
DISCOVERY_SOURCE = "ITAMConnector"
DISCOVERY_SOURCE_LABEL = "ITAM Connector"
SCRIPT_INCLUDE = "ITAMConnectorUtil"
RUN_AFTER_PROPERTY = "itam_connector.run_after"
# ServiceNow's own defaults for an external client: 30-minute access tokens, 100-day refresh tokens.
ACCESS_TOKEN_LIFESPAN = "1800"
REFRESH_TOKEN_LIFESPAN = "8640000"

# The first line of each transform script names what it does, so a reader (and the sandbox, which cannot run
# JavaScript) knows its purpose without interpreting the code.
SCRIPT_MARKER = "// ITAM connector: "
PURPOSE_IRE = "identify-computer"
PURPOSE_REQUIRE_COMPUTER = "require-computer"
PURPOSE_RETIRE_INSTALL = "retire-install"

_NAMESPACE = uuid.UUID("5d1f0c3e-6a47-4f0b-9a55-2f1e8c7b9d01")
_ACL_OPERATIONS = ("create", "read", "write")


def sys_id(kind: str, name: str) -> str:
    """A stable 32-hex sys_id for the record ``kind``/``name``: the same on every build, unique per record."""
    return uuid.uuid5(_NAMESPACE, f"{kind}:{name}").hex


@dataclass(frozen=True)
class Ref:
    """A reference field's value as ServiceNow unloads it: the sys_id as text, the display value and, for records
    that have a unique name (roles, tables), that name, by which the loading instance can find its own record."""

    value: str
    display: str
    name: str | None = None


@dataclass
class _Update:
    name: str
    type: str
    table: str
    target_name: str
    payload: ET.Element = field(repr=False)


# --- record payloads ---------------------------------------------------------------------------------------------


def _fill(parent: ET.Element, fields: dict[str, str | Ref]) -> None:
    for key, value in fields.items():
        child = ET.SubElement(parent, key)
        if isinstance(value, Ref):
            child.set("display_value", value.display)
            if value.name is not None:
                child.set("name", value.name)
            child.text = value.value
        else:
            child.text = value


def _scope() -> dict[str, str | Ref]:
    return {
        "sys_package": Ref("global", "Global"),
        "sys_scope": Ref("global", "Global"),
        "sys_created_by": "admin",
        "sys_created_on": RELEASE_DATE,
        "sys_updated_by": "admin",
        "sys_updated_on": RELEASE_DATE,
        "sys_mod_count": "0",
    }


def _record(table: str, update_name: str, record_sys_id: str, fields: dict[str, str | Ref]) -> ET.Element:
    """The payload of an ordinary record: ``<record_update table=T><T action="INSERT_OR_UPDATE">``."""
    root = ET.Element("record_update", {"table": table})
    record = ET.SubElement(root, table, {"action": "INSERT_OR_UPDATE"})
    _fill(
        record,
        {
            **fields,
            "sys_class_name": table,
            "sys_id": record_sys_id,
            "sys_update_name": update_name,
            **_scope(),
        },
    )
    return root


def _dictionary(table: str, element: str, fields: dict[str, str | Ref], update_name: str) -> ET.Element:
    """A dictionary entry's payload, in the shape ServiceNow unloads it: ``<record_update>`` without a table
    attribute, and ``<sys_dictionary element=... table=...>`` (a real unload in a public repository shows it)."""
    root = ET.Element("record_update")
    record = ET.SubElement(root, "sys_dictionary", {"action": "INSERT_OR_UPDATE", "element": element, "table": table})
    _fill(
        record,
        {
            "active": "true",
            "array": "false",
            "attributes": "",
            "audit": "false",
            "display": "false",
            "element": element,
            "mandatory": "false",
            "name": table,
            "primary": "false",
            "read_only": "false",
            "reference": "",
            "spell_check": "false",
            "unique": "false",
            "virtual": "false",
            **fields,
            "sys_class_name": "sys_dictionary",
            "sys_id": sys_id("sys_dictionary", f"{table}.{element}"),
            "sys_update_name": update_name,
            **_scope(),
        },
    )
    return root


def _documentation(table: str, element: str, label: str, plural: str, update_name: str) -> ET.Element:
    """A field label's payload: ``<sys_documentation element label language table>`` wrapping the record."""
    root = ET.Element("record_update")
    outer = ET.SubElement(
        root, "sys_documentation", {"element": element, "label": label, "language": "en", "table": table}
    )
    record = ET.SubElement(outer, "sys_documentation", {"action": "INSERT_OR_UPDATE"})
    _fill(
        record,
        {
            "element": element,
            "help": "",
            "hint": "",
            "label": label,
            "language": "en",
            "name": table,
            "plural": plural,
            "url": "",
            "url_target": "",
            "sys_class_name": "sys_documentation",
            "sys_id": sys_id("sys_documentation", f"{table}.{element}"),
            "sys_name": label,
            "sys_update_name": update_name,
            **_scope(),
        },
    )
    return root


def _internal_type(kind: str) -> Ref:
    # Staging columns are strings whatever their meaning (the Import Set API takes strings); custom target
    # columns get the type of what they hold.
    return {
        "string": Ref("string", "String"),
        "integer": Ref("integer", "Integer"),
        "decimal": Ref("decimal", "Decimal"),
        "date": Ref("glide_date", "Date"),
        "datetime": Ref("glide_date_time", "Date/Time"),
        "boolean": Ref("boolean", "True/False"),
    }[kind]


# --- the pieces of the app ---------------------------------------------------------------------------------------


def _column_updates(table: str, table_label: str, name: str, label: str, max_length: int, kind: str) -> list[_Update]:
    dictionary_name = f"sys_dictionary_{table}_{name}"
    documentation_name = f"sys_documentation_{table}_{name}_en"
    fields: dict[str, str | Ref] = {
        "column_label": label,
        "internal_type": _internal_type(kind),
        "max_length": str(max_length),
        "sys_name": label,
    }
    return [
        _Update(
            dictionary_name, "Dictionary", table, f"{table}.{name}", _dictionary(table, name, fields, dictionary_name)
        ),
        _Update(
            documentation_name,
            "Field Label",
            table,
            f"{table_label}.{label}",
            _documentation(table, name, label, label, documentation_name),
        ),
    ]


def _staging_table(data_type: DataType) -> list[_Update]:
    table = data_type.staging_table
    label = data_type.staging_label
    object_id = sys_id("sys_db_object", table)
    object_name = f"sys_db_object_{object_id}"
    updates = [
        _Update(
            object_name,
            "Table",
            table,
            label,
            _record(
                "sys_db_object",
                object_name,
                object_id,
                {
                    "access": "public",
                    "create_access_controls": "false",
                    "is_extendable": "false",
                    "label": label,
                    "name": table,
                    "read_access": "true",
                    # Import Set API staging tables extend Import Set Row (Import sets key concepts; SDK docs).
                    # *Unverified*: that the loader resolves the parent by the name attribute, since the sys_id of
                    # sys_import_set_row's own sys_db_object record differs per instance as far as we know.
                    "super_class": Ref("", "Import Set Row", "sys_import_set_row"),
                    "sys_name": label,
                    "user_role": Ref(sys_id("sys_user_role", ROLE), ROLE, ROLE),
                    "ws_access": "true",
                },
            ),
        ),
        _Update(
            f"sys_dictionary_{table}_null",
            "Dictionary",
            table,
            label,
            _dictionary(
                table,
                "",
                {
                    "column_label": "",
                    "element": "",
                    "internal_type": Ref("collection", "Collection"),
                    "max_length": "40",
                    "sys_name": table,
                },
                f"sys_dictionary_{table}_null",
            ),
        ),
        _Update(
            f"sys_documentation_{table}__en",
            "Field Label",
            table,
            label,
            _documentation(table, "", label, label, f"sys_documentation_{table}__en"),
        ),
    ]
    for column in data_type.columns:
        updates += _column_updates(table, label, column.name, column.label, column.max_length, "string")
    return updates


def _custom_target_columns(data_type: DataType) -> list[_Update]:
    updates: list[_Update] = []
    for column in data_type.custom_target_columns:
        updates += _column_updates(
            data_type.target_table,
            data_type.target_label,
            column.name,
            column.label,
            column.max_length,
            column.kind,
        )
    return updates


def _acls(table: str) -> list[_Update]:
    """Create, read and write on a staging table for the integration role only: the Import Set API needs create,
    the run's read-back reads the rows. Only our own tables get ACLs: a table-level ACL on a stock table would
    take precedence over the ACLs other users rely on there."""
    updates: list[_Update] = []
    role_ref = Ref(sys_id("sys_user_role", ROLE), ROLE, ROLE)
    for operation in _ACL_OPERATIONS:
        acl_id = sys_id("sys_security_acl", f"{table}.{operation}")
        acl_name = f"sys_security_acl_{acl_id}"
        updates.append(
            _Update(
                acl_name,
                "Access Control",
                table,
                table,
                _record(
                    "sys_security_acl",
                    acl_name,
                    acl_id,
                    {
                        "active": "true",
                        "admin_overrides": "true",
                        "advanced": "false",
                        "condition": "",
                        "decision_type": "allow",
                        "description": f"{APP_NAME}: {operation} on {table} for {ROLE}",
                        "name": table,
                        "operation": Ref(operation, operation),
                        "script": "",
                        "sys_name": table,
                        "type": Ref("record", "record"),
                    },
                ),
            )
        )
        link_id = sys_id("sys_security_acl_role", f"{table}.{operation}")
        link_name = f"sys_security_acl_role_{link_id}"
        updates.append(
            _Update(
                link_name,
                "Access Roles",
                table,
                f"{table}.{ROLE}",
                _record(
                    "sys_security_acl_role",
                    link_name,
                    link_id,
                    {
                        "sys_name": f"{table}.{ROLE}",
                        "sys_security_acl": Ref(acl_id, table),
                        "sys_user_role": role_ref,
                    },
                ),
            )
        )
    return updates


def _insert_multiple(data_type: DataType) -> _Update:
    """The REST Insert Multiple entry that makes insertMultiple map JSON keys by column name (by default it maps
    them by column label: Import Set API docs). *Unverified*: the field names and choice values of this table;
    the docs name only the form fields (source table, transformation, Column mapping: Label / Column name)."""
    record_id = sys_id("sys_rest_insert_multiple", data_type.staging_table)
    name = f"sys_rest_insert_multiple_{record_id}"
    return _Update(
        name,
        "REST Insert Multiple",
        data_type.staging_table,
        data_type.staging_label,
        _record(
            "sys_rest_insert_multiple",
            name,
            record_id,
            {
                "source_table": data_type.staging_table,
                "transform": "asynchronous",
                "column_mapping": "column_name",
                "use_data_source_format": "false",
                "active": "true",
            },
        ),
    )


def _script(purpose: str, body: str) -> str:
    return f"{SCRIPT_MARKER}{purpose}\n{body}"


_IRE_ON_BEFORE = """(function runTransformScript(source, map, log, target) {
    // ServiceNow's documented way to apply IRE to an import set: identify and write the CI in onBefore, then
    // ignore the row so the transform does not insert it a second time ("Applying IRE to Import Sets").
    var result = new ITAMConnectorUtil().upsertComputer(source);
    if (result.error) {
        error = true;
        error_message = result.error;
        log.error(result.error);
        return;
    }
    // The row ends "ignored" although the computer was written; this comment says so (see the README).
    var written = 'Written through IRE: ' + result.operation + ' cmdb_ci_computer ' + result.sysId;
    source.sys_import_state_comment = written;
    status_message = written;
    ignore = true;
})(source, map, log, target);"""

_REQUIRE_COMPUTER_ON_BEFORE = """(function runTransformScript(source, map, log, target) {
    var util = new ITAMConnectorUtil();
    if (util.isRetired(source)) {
        if (action == 'insert') {
            ignore = true; // nothing to retire: ServiceNow never had this install
        }
        return;
    }
    if (!util.computerOf(source)) {
        error = true;
        error_message = util.computerNotFound(source);
        log.error(error_message);
    }
})(source, map, log, target);"""

_RETIRE_INSTALL_ON_AFTER = """(function runTransformScript(source, map, log, target) {
    // An install deleted from ITAM is gone from the computer: remove it, as a discovery source would.
    if (new ITAMConnectorUtil().isRetired(source)) {
        target.deleteRecord();
    }
})(source, map, log, target);"""

_INSTALLED_ON_SOURCE_SCRIPT = """answer = (function transformEntry(source) {
    return new ITAMConnectorUtil().computerOf(source);
})(source);"""


def _field_map(map_id: str, data_type: DataType, source_field: str, target_field: str, **extra: str) -> _Update:
    entry_id = sys_id("sys_transform_entry", f"{data_type.staging_table}.{source_field}>{target_field}")
    name = f"sys_transform_entry_{entry_id}"
    fields: dict[str, str | Ref] = {
        "choice_action": "create",
        "coalesce": "false",
        "coalesce_case_sensitive": "false",
        "coalesce_empty_fields": "false",
        "date_format": "yyyy-MM-dd HH:mm:ss",
        "map": Ref(map_id, _map_name(data_type)),
        "source_field": source_field,
        "source_script": "",
        "source_table": data_type.staging_table,
        "target_field": target_field,
        "target_table": data_type.target_table,
        "use_source_script": "false",
    }
    fields.update(extra)
    return _Update(
        name,
        "Field Map",
        data_type.target_table,
        f"{data_type.staging_table}.{source_field} > {data_type.target_table}.{target_field}",
        _record("sys_transform_entry", name, entry_id, fields),
    )


def _entry_options(column: Column) -> dict[str, str]:
    options: dict[str, str] = {}
    if column.name == SOURCE_ID:
        options["coalesce"] = "true"
        # Source ids differ only by case never; matching them exactly keeps two records apart.
        options["coalesce_case_sensitive"] = "true"
    if column.kind == "date":
        options["date_format"] = "yyyy-MM-dd"
    if column.reference is not None or column.target_field == "state":
        # An unknown model or state leaves that field empty and writes the rest of the record; an unknown vendor
        # becomes a new company (transform maps' choice action: create, ignore or reject).
        options["choice_action"] = "create" if column.target_field == "vendor" else "ignore"
    return options


def _map_name(data_type: DataType) -> str:
    return f"{data_type.staging_label} to {data_type.target_label}"


def _transform_script(map_id: str, data_type: DataType, when: str, purpose: str, body: str) -> _Update:
    script_id = sys_id("sys_transform_script", f"{data_type.staging_table}.{when}.{purpose}")
    name = f"sys_transform_script_{script_id}"
    return _Update(
        name,
        "Transform Script",
        data_type.target_table,
        f"{_map_name(data_type)}: {when}",
        _record(
            "sys_transform_script",
            name,
            script_id,
            {
                "active": "true",
                "map": Ref(map_id, _map_name(data_type)),
                "order": "100",
                "script": _script(purpose, body),
                "sys_name": when,
                "when": when,
            },
        ),
    )


def _transform_map(data_type: DataType) -> list[_Update]:
    map_id = sys_id("sys_transform_map", data_type.staging_table)
    name = f"sys_transform_map_{map_id}"
    updates = [
        _Update(
            name,
            "Transform Map",
            data_type.target_table,
            _map_name(data_type),
            _record(
                "sys_transform_map",
                name,
                map_id,
                {
                    "active": "true",
                    # Retirement rows carry only the source id and the status: empty fields must never blank
                    # what ServiceNow holds.
                    "copy_empty_fields": "false",
                    "create_new_record_on_empty_coalesce_fields": "false",
                    "enforce_mandatory_fields": "No",
                    "name": _map_name(data_type),
                    "order": "100",
                    "run_business_rules": "true",
                    "run_script": "false",
                    "script": "",
                    "source_table": data_type.staging_table,
                    "sys_name": _map_name(data_type),
                    "target_table": data_type.target_table,
                },
            ),
        )
    ]
    for column in data_type.columns:
        if column.target_field is not None:
            updates.append(_field_map(map_id, data_type, column.name, column.target_field, **_entry_options(column)))
    if data_type is HARDWARE_INVENTORY:
        updates.append(_transform_script(map_id, data_type, "onBefore", PURPOSE_IRE, _IRE_ON_BEFORE))
    if data_type is INSTALLED_APPLICATIONS:
        updates.append(
            _field_map(
                map_id,
                data_type,
                "u_computer_source_id",
                "installed_on",
                use_source_script="true",
                source_script=_INSTALLED_ON_SOURCE_SCRIPT,
                choice_action="ignore",
            )
        )
        updates.append(
            _transform_script(map_id, data_type, "onBefore", PURPOSE_REQUIRE_COMPUTER, _REQUIRE_COMPUTER_ON_BEFORE)
        )
        updates.append(
            _transform_script(map_id, data_type, "onAfter", PURPOSE_RETIRE_INSTALL, _RETIRE_INSTALL_ON_AFTER)
        )
    return updates


def _script_include_source() -> str:
    computer_fields = {
        column.name: column.target_field
        for column in HARDWARE_INVENTORY.columns
        if column.target_field is not None and column.reference is None
    }
    computer_references = {
        column.name: column.target_field
        for column in HARDWARE_INVENTORY.columns
        if column.target_field is not None and column.reference is not None
    }
    return f"""var ITAMConnectorUtil = Class.create();
ITAMConnectorUtil.prototype = {{
    // Generated from the connector's data-type registry: staging column -> cmdb_ci_computer field.
    SOURCE: '{DISCOVERY_SOURCE}',
    COMPUTER_FIELDS: {json.dumps(computer_fields, sort_keys=True)},
    // Reference fields, passed to IRE by display value (the referenced record's name).
    COMPUTER_REFERENCES: {json.dumps(computer_references, sort_keys=True)},

    initialize: function() {{}},

    isRetired: function(source) {{
        return String(source.getValue('{OPERATIONAL_STATUS}') || '') == '{RETIRED}';
    }},

    // Writes the computer of a staging row through the Identification and Reconciliation Engine, so a computer
    // already in the CMDB (from SCCM, Discovery, ...) is found by our source key, serial number or name and
    // updated instead of duplicated. Returns {{sysId, operation}} or {{error}}.
    upsertComputer: function(source) {{
        var values = {{}};
        var displayValues = {{}};
        var column;
        var value;
        for (column in this.COMPUTER_FIELDS) {{
            value = String(source.getValue(column) || '');
            if (value !== '') {{ // a retirement row carries only the source id: never blank a field
                values[this.COMPUTER_FIELDS[column]] = value;
            }}
        }}
        for (column in this.COMPUTER_REFERENCES) {{
            value = String(source.getValue(column) || '');
            if (value !== '') {{
                displayValues[this.COMPUTER_REFERENCES[column]] = value;
            }}
        }}
        if (this.isRetired(source)) {{
            values.install_status = '7';
            values.operational_status = '6';
        }}
        var item = {{
            className: 'cmdb_ci_computer',
            values: values,
            sys_object_source_info: {{
                source_name: this.SOURCE,
                source_native_key: String(source.getValue('{SOURCE_ID}'))
            }}
        }};
        for (column in displayValues) {{
            item.display_values = displayValues;
            break;
        }}
        var output;
        try {{
            output = JSON.parse(SNC.IdentificationEngineScriptableApi.createOrUpdateCI(
                this.SOURCE, JSON.stringify({{items: [item]}})));
        }} catch (e) {{
            return {{error: 'The Identification and Reconciliation Engine refused computer ' +
                source.getValue('{SOURCE_ID}') + ': ' + e + '. If it names the data source, add "' + this.SOURCE +
                '" to the choices of Configuration Item > Discovery source.'}};
        }}
        var result = output && output.items && output.items[0];
        if (!result) {{
            return {{error: 'The Identification and Reconciliation Engine returned no result for computer ' +
                source.getValue('{SOURCE_ID}')}};
        }}
        if (result.errors && result.errors.length) {{
            var messages = [];
            for (var i = 0; i < result.errors.length; i++) {{
                messages.push(result.errors[i].error + ': ' + result.errors[i].message);
            }}
            return {{error: 'The Identification and Reconciliation Engine refused computer ' +
                source.getValue('{SOURCE_ID}') + ': ' + messages.join('; ')}};
        }}
        return {{sysId: result.sysId, operation: result.operation}};
    }},

    // The computer an install belongs to: ours by source id, else by serial number, else by name ('' if none).
    computerOf: function(source) {{
        var keys = [
            ['{SOURCE_ID}', source.getValue('u_computer_source_id')],
            ['serial_number', source.getValue('u_computer_serial_number')],
            ['name', source.getValue('u_computer_name')]
        ];
        for (var i = 0; i < keys.length; i++) {{
            var value = String(keys[i][1] || '');
            if (value === '') {{
                continue;
            }}
            var computer = new GlideRecord('cmdb_ci_computer');
            computer.addQuery(keys[i][0], value);
            computer.setLimit(1);
            computer.query();
            if (computer.next()) {{
                return computer.getUniqueValue();
            }}
        }}
        return '';
    }},

    computerNotFound: function(source) {{
        return 'No computer in ServiceNow has ITAM source ID "' + (source.getValue('u_computer_source_id') || '') +
            '", serial number "' + (source.getValue('u_computer_serial_number') || '') + '" or name "' +
            (source.getValue('u_computer_name') || '') + '": export the hardware inventory too, or check that ' +
            'the computer exists in Configuration > Computers.';
    }},

    type: 'ITAMConnectorUtil'
}};"""


def _script_include() -> _Update:
    record_id = sys_id("sys_script_include", SCRIPT_INCLUDE)
    name = f"sys_script_include_{record_id}"
    return _Update(
        name,
        "Script Include",
        "",
        SCRIPT_INCLUDE,
        _record(
            "sys_script_include",
            name,
            record_id,
            {
                "access": "package_private",
                "active": "true",
                "api_name": f"global.{SCRIPT_INCLUDE}",
                "client_callable": "false",
                "description": f"{APP_NAME}: writes computers through IRE and finds the computer of an install.",
                "name": SCRIPT_INCLUDE,
                "script": _script_include_source(),
                "sys_name": SCRIPT_INCLUDE,
            },
        ),
    )


def _role() -> list[_Update]:
    role_id = sys_id("sys_user_role", ROLE)
    role_name = f"sys_user_role_{role_id}"
    updates = [
        _Update(
            role_name,
            "Role",
            "",
            ROLE,
            _record(
                "sys_user_role",
                role_name,
                role_id,
                {
                    "assignable_by": "",
                    "can_delegate": "true",
                    "description": (
                        f"{APP_NAME}: loads ITAM data through the Import Set API into the ITAM staging tables and "
                        "reads the rows back. Give it to the integration user instead of admin."
                    ),
                    "elevated_privilege": "false",
                    "grantable": "true",
                    "includes_roles": ",".join(CONTAINED_ROLES),
                    "name": ROLE,
                    "scoped_admin": "false",
                    "suffix": ROLE,
                    "sys_name": ROLE,
                },
            ),
        )
    ]
    for contained in CONTAINED_ROLES:
        link_id = sys_id("sys_user_role_contains", f"{ROLE}>{contained}")
        link_name = f"sys_user_role_contains_{link_id}"
        updates.append(
            _Update(
                link_name,
                "Contains Role",
                "",
                f"{ROLE} contains {contained}",
                _record(
                    "sys_user_role_contains",
                    link_name,
                    link_id,
                    {
                        "contains": Ref("", contained, contained),
                        "role": Ref(role_id, ROLE, ROLE),
                    },
                ),
            )
        )
    return updates


def _discovery_source() -> _Update:
    # One sys_choice record, not a choice list: a choice-list update replaces every choice of the field, and
    # cmdb_ci.discovery_source holds the choices of every other data source.
    record_id = sys_id("sys_choice", f"cmdb_ci.discovery_source.{DISCOVERY_SOURCE}")
    name = f"sys_choice_{record_id}"
    return _Update(
        name,
        "Choice",
        "cmdb_ci",
        f"Configuration Item.Discovery source: {DISCOVERY_SOURCE_LABEL}",
        _record(
            "sys_choice",
            name,
            record_id,
            {
                "dependent_value": "",
                "element": "discovery_source",
                "hint": "",
                "inactive": "false",
                "label": DISCOVERY_SOURCE_LABEL,
                "language": "en",
                "name": "cmdb_ci",
                "sequence": "1000",
                "value": DISCOVERY_SOURCE,
            },
        ),
    )


def _run_after() -> _Update:
    """What runs after what, for the exporter and for readers: installs after the computers they refer to. The
    instance does not act on this property; the exporter passes ServiceNow's ``run_after`` (Import Set API)."""
    order = f"{INSTALLED_APPLICATIONS.staging_table}={HARDWARE_INVENTORY.staging_table}"
    record_id = sys_id("sys_properties", RUN_AFTER_PROPERTY)
    name = f"sys_properties_{record_id}"
    return _Update(
        name,
        "System Property",
        "",
        RUN_AFTER_PROPERTY,
        _record(
            "sys_properties",
            name,
            record_id,
            {
                "description": (
                    f"{APP_NAME}: staging table=staging table it is transformed after. The connector sends each "
                    "installs import set with run_after set to the hardware import set of the same run."
                ),
                "name": RUN_AFTER_PROPERTY,
                "type": "string",
                "value": order,
                "sys_name": RUN_AFTER_PROPERTY,
            },
        ),
    )


_UI_PAGE_HTML = """<?xml version="1.0" encoding="utf-8" ?>
<j:jelly trim="false" xmlns:j="jelly:core" xmlns:g="glide" xmlns:j2="null" xmlns:g2="null">
  <g2:evaluate var="jvar_token" jelly="true">
    var token = String(gs.getSession().getProperty('itam_connector_token') || '');
    gs.getSession().clearProperty('itam_connector_token');
    token;
  </g2:evaluate>
  <g2:evaluate var="jvar_error" jelly="true">
    var problem = String(gs.getSession().getProperty('itam_connector_error') || '');
    gs.getSession().clearProperty('itam_connector_error');
    problem;
  </g2:evaluate>
  <div class="container" style="max-width: 40em; margin: 2em auto;">
    <h1>Generate OAuth Token</h1>
    <j2:if test="$[jvar_token != '']">
      <div class="alert alert-success" role="status">
        <p><strong>Refresh Token</strong> (shown once: copy it into IT Asset Management now)</p>
        <textarea id="itam_refresh_token" readonly="readonly" rows="4"
                  style="width: 100%;">$[HTML:jvar_token]</textarea>
      </div>
    </j2:if>
    <j2:if test="$[jvar_error != '']">
      <div class="alert alert-danger" role="alert">$[HTML:jvar_error]</div>
    </j2:if>
    <p>Enter the ServiceNow user the IT Asset Management connection works as. The password must be the user's
      local ServiceNow password (single sign-on passwords do not work here) and is used once, by this instance,
      to ask its own token endpoint for a refresh token.</p>
    <g:ui_form>
      <div class="form-group">
        <label for="itam_username">Username</label>
        <input class="form-control" id="itam_username" name="itam_username" autocomplete="username"
               required="required"/>
      </div>
      <div class="form-group">
        <label for="itam_password">Password</label>
        <input class="form-control" id="itam_password" name="itam_password" type="password"
               autocomplete="current-password" required="required"/>
      </div>
      <div class="form-group">
        <label for="itam_client_id">Client ID (leave empty for the ITAM Connector default client)</label>
        <input class="form-control" id="itam_client_id" name="itam_client_id" autocomplete="off"/>
      </div>
      <button class="btn btn-primary" type="submit">Generate OAuth Token</button>
    </g:ui_form>
  </div>
</j:jelly>"""

_UI_PAGE_PROCESSING = f"""(function generateToken() {{
    // Runs on this instance: the password goes from the user's browser to this page and from here to this
    // instance's own token endpoint, and nowhere else; the client secret never reaches the browser.
    var session = gs.getSession();
    var page = '{UI_PAGE}.do';
    function fail(message) {{
        session.putProperty('itam_connector_error', message);
        response.sendRedirect(page);
    }}
    var clientId = String(typeof itam_client_id == 'undefined' ? '' : itam_client_id).trim();
    var entity = new GlideRecord('oauth_entity');
    if (clientId) {{
        entity.addQuery('client_id', clientId);
    }} else {{
        entity.addQuery('name', '{DEFAULT_CLIENT_NAME}');
    }}
    entity.addActiveQuery();
    entity.setLimit(1);
    entity.query();
    if (!entity.next()) {{
        return fail(clientId ? 'No active Application Registry entry has client ID ' + clientId + '.' :
            'The Application Registry entry "{DEFAULT_CLIENT_NAME}" is missing or inactive: ask your ServiceNow ' +
            'admin to commit the {APP_NAME} update set.');
    }}
    var secret = entity.client_secret.getDecryptedValue();
    if (!secret) {{
        return fail('The Application Registry entry "' + entity.getValue('name') + '" has no client secret yet: ' +
            'your ServiceNow admin sets it after importing the update set.');
    }}
    function form(values) {{
        var parts = [];
        for (var key in values) {{
            parts.push(encodeURIComponent(key) + '=' + encodeURIComponent(values[key]));
        }}
        return parts.join('&');
    }}
    var request = new sn_ws.RESTMessageV2();
    request.setEndpoint(gs.getProperty('glide.servlet.uri') + 'oauth_token.do');
    request.setHttpMethod('post');
    request.setRequestHeader('Content-Type', 'application/x-www-form-urlencoded');
    request.setRequestHeader('Accept', 'application/json');
    request.setRequestBody(form({{
        grant_type: 'password',
        client_id: entity.getValue('client_id'),
        client_secret: secret,
        username: String(itam_username),
        password: String(itam_password)
    }}));
    var answer = request.execute();
    var body = {{}};
    try {{
        body = JSON.parse(answer.getBody());
    }} catch (e) {{
        body = {{}};
    }}
    if (answer.getStatusCode() != 200 || !body.refresh_token) {{
        return fail('ServiceNow refused the username or password (HTTP ' + answer.getStatusCode() + '). Use the ' +
            'user\\'s local ServiceNow password; single sign-on passwords do not work here.');
    }}
    session.putProperty('itam_connector_token', body.refresh_token);
    response.sendRedirect(page);
}})();"""


def _ui_page() -> _Update:
    record_id = sys_id("sys_ui_page", UI_PAGE)
    name = f"sys_ui_page_{record_id}"
    return _Update(
        name,
        "UI Page",
        "",
        UI_PAGE,
        _record(
            "sys_ui_page",
            name,
            record_id,
            {
                "category": "general",
                "client_script": "",
                "description": f"{APP_NAME}: Generate OAuth Token (the refresh token IT Asset Management needs).",
                "direct": "false",
                "endpoint": f"{UI_PAGE}.do",
                "html": _UI_PAGE_HTML,
                "name": UI_PAGE,
                "processing_script": _UI_PAGE_PROCESSING,
                "sys_name": UI_PAGE,
            },
        ),
    )


def _oauth_entity(client_id: str) -> _Update:
    """The default client's Application Registry entry ("OAuth API endpoint for external clients"), with the
    operator's client id and no secret: the ServiceNow admin types the secret the operator gave them into this
    entry after committing. *Unverified*: that type "client" is the stored value of that registry choice."""
    record_id = sys_id("oauth_entity", DEFAULT_CLIENT_NAME)
    name = f"oauth_entity_{record_id}"
    return _Update(
        name,
        "OAuth Application",
        "",
        DEFAULT_CLIENT_NAME,
        _record(
            "oauth_entity",
            name,
            record_id,
            {
                "access_token_lifespan": ACCESS_TOKEN_LIFESPAN,
                "active": "true",
                "client_id": client_id,
                "client_secret": "",
                "comments": (
                    f"{APP_NAME}: the portal's default OAuth client. Set Client Secret to the value the portal's "
                    "operator gives you; it never travels in the update set."
                ),
                "logo_url": "",
                "name": DEFAULT_CLIENT_NAME,
                "redirect_url": "",
                "refresh_token_lifespan": REFRESH_TOKEN_LIFESPAN,
                "sys_name": DEFAULT_CLIENT_NAME,
                "type": "client",
            },
        ),
    )


def _updates(default_client_id: str | None) -> Iterator[_Update]:
    # Dependency order, as ServiceNow unloads it: role and tables first, then what refers to them.
    yield from _role()
    for data_type in DATA_TYPES:
        yield from _staging_table(data_type)
    for data_type in DATA_TYPES:
        yield from _custom_target_columns(data_type)
    for data_type in DATA_TYPES:
        yield from _acls(data_type.staging_table)
    yield _discovery_source()
    yield _script_include()
    for data_type in DATA_TYPES:
        yield _insert_multiple(data_type)
        yield from _transform_map(data_type)
    yield _run_after()
    yield _ui_page()
    if default_client_id:
        yield _oauth_entity(default_client_id)


def _java_hash(text: str) -> int:
    """Java's String.hashCode, which ServiceNow stores as payload_hash."""
    data = text.encode("utf-16-be")
    value = 0
    for index in range(0, len(data), 2):
        value = (31 * value + (data[index] << 8 | data[index + 1])) & 0xFFFFFFFF
    return value - (1 << 32) if value & 0x80000000 else value


def _payload_text(payload: ET.Element) -> str:
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(payload, encoding="unicode")


def _unload_date(value: datetime | str | None) -> str:
    if value is None:
        return RELEASE_DATE
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return value


def build_update_set(default_client_id: str | None = None, *, unload_date: datetime | str | None = None) -> str:
    """The update set XML a ServiceNow admin imports (System Update Sets > Retrieved Update Sets > Import Update
    Set from XML, then Preview and Commit). ``default_client_id`` is the portal operator's default OAuth client id;
    without it the Application Registry entry is left out (tenants then use custom credentials). Same arguments,
    same text."""
    if default_client_id is not None and (not default_client_id.strip() or len(default_client_id) > 255):
        raise ValueError("the default client id must be 1 to 255 characters")
    date = _unload_date(unload_date)
    updates = list(_updates(default_client_id.strip() if default_client_id else None))
    set_id = sys_id("sys_remote_update_set", UPDATE_SET_NAME)
    unload = ET.Element("unload", {"unload_date": date})
    header = ET.SubElement(unload, "sys_remote_update_set", {"action": "INSERT_OR_UPDATE"})
    _fill(
        header,
        {
            "application": Ref("global", "Global"),
            "application_name": "Global",
            "application_scope": "global",
            "application_version": APP_VERSION,
            "collisions": "",
            "commit_date": "",
            "deleted": "",
            "description": (
                f"{APP_NAME} {APP_VERSION}: staging tables, transform maps, REST Insert Multiple entries, the "
                f"{ROLE} role, the Generate OAuth Token page ({UI_PAGE}.do)"
                + (f" and the Application Registry entry {DEFAULT_CLIENT_NAME}" if default_client_id else "")
                + ". Contains no secret."
            ),
            "inserted": "",
            "name": UPDATE_SET_NAME,
            "origin_sys_id": "",
            "parent": Ref("", ""),
            "release_date": date,
            "remote_base_update_set": Ref("", ""),
            "remote_parent_id": "",
            "remote_sys_id": set_id,
            "state": "loaded",
            "summary": "",
            "sys_class_name": "sys_remote_update_set",
            "sys_created_by": "admin",
            "sys_created_on": date,
            "sys_id": set_id,
            "sys_mod_count": "0",
            "sys_updated_by": "admin",
            "sys_updated_on": date,
            "update_set": Ref("", ""),
            "update_source": Ref("", ""),
            "updated": "",
        },
    )
    for index, update in enumerate(updates):
        payload = _payload_text(update.payload)
        payload_hash = str(_java_hash(payload))
        guid = sys_id("update_guid", f"{update.name}:{payload_hash}")
        record = ET.SubElement(unload, "sys_update_xml", {"action": "INSERT_OR_UPDATE"})
        _fill(
            record,
            {
                "action": "INSERT_OR_UPDATE",
                "application": Ref("global", "Global"),
                "category": "customer",
                "comments": "",
                "name": update.name,
                "payload": payload,
                "payload_hash": payload_hash,
                "remote_update_set": Ref(set_id, UPDATE_SET_NAME),
                "replace_on_upgrade": "false",
                "sys_created_by": "admin",
                "sys_created_on": date,
                "sys_id": sys_id("sys_update_xml", update.name),
                "sys_mod_count": "0",
                "sys_recorded_at": f"{0x19A00000000 + index:x}0000001",
                "sys_updated_by": "admin",
                "sys_updated_on": date,
                "table": update.table,
                "target_name": update.target_name,
                "type": update.type,
                "update_domain": "global",
                "update_guid": guid,
                "update_guid_history": f"{guid}:{payload_hash}",
                "update_set": Ref("", ""),
                "view": "",
            },
        )
    ET.indent(unload, space="")
    return '<?xml version="1.0" encoding="UTF-8"?>' + ET.tostring(unload, encoding="unicode") + "\n"

"""ServiceNow's own Python client, pysnc, logs in to the sandbox with its password grant flow and reads records
with GlideRecord queries: proof that the sandbox speaks the protocol real clients speak.

pysnc refuses http:// instance URLs, so these tests use the sandbox's https mode (a throwaway self-signed
certificate that the client is told to trust)."""

from __future__ import annotations

import pytest

from servicenow_sandbox.settings import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET

pysnc = pytest.importorskip("pysnc")
pytest.importorskip("requests_oauthlib", reason="pysnc's password grant flow needs requests-oauthlib")


@pytest.fixture(autouse=True)
def trust_the_sandbox_certificate(monkeypatch):
    """requests lets REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE override the verify= that pysnc is given."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)


@pytest.fixture
def loaded(tls_sandbox, wire_for, make):
    """A https sandbox holding 25 computers (PC-00..PC-24) and one install on PC-03."""
    wire = wire_for(tls_sandbox)
    records = [make.computer(f"{i:02d}", u_name=f"PC-{i:02d}", u_ram_mb=str(1024 * (i + 1))) for i in range(25)]
    wire.send_and_wait(make.HARDWARE, records)
    wire.send_and_wait(make.INSTALLS, [make.install("app-1", "03", u_display_name="Visio")])
    return tls_sandbox


def client(sandbox, user: str = "admin", password: str = "admin"):
    flow = pysnc.ServiceNowPasswordGrantFlow(user, password, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return pysnc.ServiceNowClient(sandbox.url, flow, verify=sandbox.ca_path)


def test_pysnc_refuses_plain_http_which_is_why_these_tests_use_https(sandbox):
    with pytest.raises(pysnc.exceptions.InstanceException):
        pysnc.ServiceNowClient(sandbox.url, ("admin", "admin"))


def test_password_grant_flow_logs_in_and_reads_the_current_user(loaded):
    gr = client(loaded, "itil", "itil").GlideRecord("sys_user")
    gr.add_query("user_name", "itil")
    gr.query()

    assert gr.get_row_count() == 1
    assert gr.next()
    assert gr.get_value("name") == "ITIL User"


def test_wrong_password_fails_to_log_in(loaded):
    with pytest.raises(Exception, match="access_denied|401"):
        client(loaded, "admin", "wrong")


def test_glide_record_filters_and_orders(loaded):
    gr = client(loaded).GlideRecord("cmdb_ci_computer")
    gr.add_query("ram", ">", "21000")
    gr.add_query("name", "STARTSWITH", "PC-")
    gr.order_by_desc("name")
    gr.query()

    names = [record.get_value("name") for record in gr]

    assert names == ["PC-24", "PC-23", "PC-22", "PC-21", "PC-20"]
    assert gr.get_row_count() == 5


def test_glide_record_pages_through_batches(loaded):
    gr = client(loaded).GlideRecord("cmdb_ci_computer", batch_size=7)
    gr.order_by("name")
    gr.query()

    names = [record.get_value("name") for record in gr]

    assert names == [f"PC-{i:02d}" for i in range(25)]
    assert loaded.state.snapshot()["requests"]["api"] >= 4  # 25 records in batches of 7


def test_glide_record_limit(loaded):
    gr = client(loaded).GlideRecord("cmdb_ci_computer", batch_size=4)
    gr.order_by("name")
    gr.limit = 6
    gr.query()

    assert [record.get_value("name") for record in gr] == [f"PC-{i:02d}" for i in range(6)]


def test_glide_record_gets_by_sys_id_and_follows_display_values(loaded):
    sn = client(loaded)
    install = sn.GlideRecord("cmdb_sam_sw_install")
    install.add_query("display_name", "Visio")
    install.query()
    assert install.next()

    computer = sn.GlideRecord("cmdb_ci_computer")
    assert computer.get(install.get_value("installed_on"))

    assert computer.get_value("name") == "PC-03"
    assert install.get_display_value("installed_on") == "PC-03"
    assert computer.get_display_value("install_status") == "Installed"


def test_import_set_runs_are_readable_with_pysnc(loaded):
    """Computers go through IRE and their rows end ignored (the update set's script; see test_sandbox_import_sets);
    sys_transform_map is a reference, shown by the map's name."""
    gr = client(loaded).GlideRecord("sys_import_set_run")
    gr.add_query("ignored", "25")
    gr.query()

    assert gr.next()
    assert gr.get_value("state") == "complete"
    assert gr.get_display_value("sys_transform_map") == "ITAM Hardware Inventory to Computer"


def test_glide_record_insert_into_a_staging_table_is_transformed_at_once(loaded):
    """pysnc's users insert into an import set table with GlideRecord.insert() (Table API POST); ServiceNow treats a
    web service insert into an import set table as a synchronous import and transforms the row at once ("Web
    service import set mode", ServiceNow docs). The answer is the staging row as transformed."""
    gr = client(loaded).GlideRecord("u_itam_hardware_inventory")
    gr.initialize()
    gr.u_source_id = "acme:PC-99"
    gr.u_name = "PC-99"
    gr.u_serial_number = "SN-99"
    staged = gr.insert()

    assert staged
    assert gr.get_value("sys_import_state") == "ignored"  # written through IRE by the update set's onBefore script
    assert gr.get_value("sys_import_state_comment").startswith("Written through IRE: INSERT")
    computers = client(loaded).GlideRecord("cmdb_ci_computer")
    computers.add_query("name", "PC-99")
    computers.query()
    assert computers.get_row_count() == 1
    other = client(loaded).GlideRecord("sys_user")
    other.initialize()
    other.user_name = "nobody"
    with pytest.raises(Exception, match="405|Method not Supported"):
        other.insert()

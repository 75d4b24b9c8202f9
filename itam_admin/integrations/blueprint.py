"""URL rules of the Integrations tab (SPEC section 9); handlers live in views.py."""

from __future__ import annotations

from flask import Blueprint
from sqlalchemy.exc import OperationalError

from itam_admin.integrations import views
from itam_admin.plugin import package_folder

BASE = "/general/integrations"


def make_blueprint() -> Blueprint:
    bp = Blueprint(
        "itam_integrations",
        __name__,
        template_folder=package_folder("templates"),
        static_folder="../static",
        static_url_path="/itam-static",
    )
    bp.register_error_handler(OperationalError, views.database_unavailable)
    bp.add_url_rule(BASE, "integrations", views.integrations_page, methods=["GET"])
    bp.add_url_rule(f"{BASE}/servicenow", "save", views.save_servicenow, methods=["POST"])
    bp.add_url_rule(f"{BASE}/servicenow/test", "test", views.test_servicenow, methods=["POST"])
    bp.add_url_rule(f"{BASE}/servicenow/export", "export", views.queue_export, methods=["POST"])
    bp.add_url_rule(f"{BASE}/servicenow/status", "status", views.status, methods=["GET"])
    bp.add_url_rule(f"{BASE}/servicenow/servicenow-app.xml", "servicenow_app", views.servicenow_app, methods=["GET"])
    bp.add_url_rule(f"{BASE}/servicenow/preview", "preview", views.preview, methods=["GET"])
    bp.add_url_rule(f"{BASE}/servicenow/runs", "history", views.history_page, methods=["GET"])
    bp.add_url_rule(f"{BASE}/servicenow/runs/<int:run_id>", "run", views.run_detail, methods=["GET"])
    bp.add_url_rule(
        f"{BASE}/servicenow/runs/<int:run_id>/failed-records.csv",
        "failed_csv",
        views.failed_records_csv,
        methods=["GET"],
    )
    return bp

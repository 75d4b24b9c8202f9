"""Imports every model of the plugin so that the metadata (and Alembic) sees the whole schema."""

from itam_admin.exports.models import (
    ExportBatchFailure,
    ExportRun,
    ExportRunDataType,
    ExportWatermark,
    SentRecord,
    WeeklySlot,
)
from itam_admin.inventory.models import Computer, Contract, InstalledApplication
from itam_admin.settings.models import ComplianceTenantSetting, ConnectionState, SettingAudit

__all__ = [
    "ComplianceTenantSetting",
    "Computer",
    "ConnectionState",
    "Contract",
    "ExportBatchFailure",
    "ExportRun",
    "ExportRunDataType",
    "ExportWatermark",
    "InstalledApplication",
    "SentRecord",
    "SettingAudit",
    "WeeklySlot",
]

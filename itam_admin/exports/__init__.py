"""Exports to ServiceNow: what a run sends and how (record maps, runner, jobs, schedule)."""

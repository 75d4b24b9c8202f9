"""`python -m servicenow_sandbox [options]`: the `sandbox` command without the portal's CLI (end-to-end tests)."""

from servicenow_sandbox.cli import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="python -m servicenow_sandbox")

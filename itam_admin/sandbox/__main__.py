"""`python -m itam_admin.sandbox [options]`: the `sandbox` command without the portal's CLI (end-to-end tests)."""

from itam_admin.sandbox.cli import sandbox_command

if __name__ == "__main__":
    sandbox_command(prog_name="python -m itam_admin.sandbox")

"""Build glue: ships the top-level templates/ and migrations/ folders inside the plugin package, so an installed
plugin finds them exactly as a checkout does, and installs the demo portal and the ServiceNow sandbox beside it (the
plugin never imports them). Everything else is declared in setup.cfg."""

from setuptools import find_packages, setup

setup(
    packages=find_packages(include=["itam_admin", "itam_admin.*", "servicenow_sandbox", "demo_portal"])
    + ["itam_admin.templates", "itam_admin.migrations"],
    package_dir={"itam_admin.templates": "templates", "itam_admin.migrations": "migrations"},
    package_data={
        "itam_admin.templates": ["*.html", "**/*.html"],
        "itam_admin.migrations": ["*.py", "*.ini", "*.mako", "README", "versions/*.py"],
        "itam_admin": ["static/*", "static/**/*"],
        "servicenow_sandbox": ["templates/*.html", "templates/**/*.html", "static/*"],
        "demo_portal": ["templates/**/*.html", "static/*"],
    },
)

"""Everything that talks to a ServiceNow instance lives in this package, and nothing outside it does."""

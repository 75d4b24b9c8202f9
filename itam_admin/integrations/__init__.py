"""The Integrations tab of the host's Settings > General page: URL rules, handlers and forms."""

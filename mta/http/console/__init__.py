"""The operator's web console at `/console/` on the API listener: static pages from the package and
thin JSON views over what the CLI uses (policyd's admin commands, the queue, suppressions)."""

"""Report writers: text for terminals, JSON for scripts, SARIF for code scanning."""

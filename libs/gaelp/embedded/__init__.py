"""Embedded mode: the whole system on one machine (local broker, service processes, SQLite)."""

"""One async data layer over SQLite (embedded default) and PostgreSQL (production)."""

from gaelp.db.database import Database, Executor, Migration, Row

__all__ = ["Database", "Executor", "Migration", "Row"]

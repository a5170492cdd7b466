"""One async data layer over SQLite (embedded default) and PostgreSQL (production)."""

from gaelp.db.database import Database, Migration, Row

__all__ = ["Database", "Migration", "Row"]

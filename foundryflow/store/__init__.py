"""PostgreSQL state: SQLAlchemy 2 models, engine/session handling, Alembic migrations."""

"""Tables, the session factory and the Alembic migrations."""

"""The reference SMS server: a Starlette app over the control plane, with SQLite or PostgreSQL stores."""

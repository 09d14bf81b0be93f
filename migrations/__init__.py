"""Alembic migrations of the study store (applied by `qalign db upgrade`)."""

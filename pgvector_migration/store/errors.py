"""The errors the target database raises to the user: its configuration, and locks not granted."""

from __future__ import annotations


class TargetConfigurationError(RuntimeError):
    """The target database or table cannot take our rows as configured; nothing was written."""


class TargetLockTimeout(RuntimeError):
    """A lock on the target was not granted within PGVECTOR_MIGRATION_LOCK_TIMEOUT: another
    session holds it. Nothing of the waiting unit was written; a re-run picks it up."""

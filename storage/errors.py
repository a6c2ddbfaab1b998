"""Errors of the storage adapters; each message names what failed and what to check."""

from __future__ import annotations

from fraudcore.clients import ConfigError


class StorageError(Exception):
    """A storage operation failed; the message names the object and what to check."""


class ObjectNotFound(StorageError):
    """The named object does not exist; the message carries its url."""


class StorageConfigError(StorageError, ConfigError):
    """Storage settings are invalid or name a backend this build does not provide."""

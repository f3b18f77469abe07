"""User-facing errors: one clear line, exit status 2 from the CLI."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from a user (unknown name, bad value, missing or corrupt file, full disk).

    The message is one line that names the problem and what is allowed; the CLI prints it and
    exits with status 2.
    """


class ConfigError(UsageError):
    """A configuration field holds a value outside its allowed range."""


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)

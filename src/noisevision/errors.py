"""User-facing errors: one clear line, exit status 2 from the CLI."""

from __future__ import annotations


class UsageError(ValueError):
    """Bad input from a user (unknown name, bad value, missing or corrupt file, full disk).

    The message is one line that names the problem and what is allowed; the CLI prints it and
    exits with status 2.
    """


class ConfigError(UsageError):
    """A configuration field holds a value outside its allowed range."""


class Stopped(KeyboardInterrupt):
    """A run that a signal asked to stop (SIGTERM or SIGUSR1: a scheduler's preemption warning)
    and that saved its progress first. The CLI prints the message as one line and exits with
    128 + the signal's number; like an interrupt, it is never taken for a failure of one step."""

    def __init__(self, message: str, signum: int) -> None:
        super().__init__(message)
        self.message, self.signum = message, signum


def check(condition: bool, message: str) -> None:
    """Raise ConfigError(message) unless condition holds."""
    if not condition:
        raise ConfigError(message)

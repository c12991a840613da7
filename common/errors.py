"""The project's error base class.

Every error the project raises on purpose -- bad input, missing data, an unreadable result store, a
bad option -- derives from ``BenchmarkError`` and carries a message that names the problem and the
fix. The command line catches this one class (benchmark/cli.py) and prints the message; anything
else is a bug and keeps its traceback.
"""
from __future__ import annotations


class BenchmarkError(Exception):
    """Base of the project's own errors; ``str(error)`` is the message shown to the user."""


class InvalidValueError(BenchmarkError, ValueError):
    """A parameter or option whose value is outside its domain (e.g. a non-positive bit length)."""

"""Primitives every package of the project shares: the error base class, atomic file writes, value
checks and the two run modes. The root of the import graph: datasets/, methods/ and benchmark/
import it; it imports none of them.
"""
__version__ = "0.2.0"  # the project's version (setup.cfg reads it from here)

from .checks import check_nonnegative_int, check_positive_int
from .errors import BenchmarkError, InvalidValueError
from .io import atomic_write, file_slug
from .modes import MODES

__all__ = ["BenchmarkError", "InvalidValueError", "atomic_write", "file_slug", "check_positive_int",
           "check_nonnegative_int", "MODES"]

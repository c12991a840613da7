#!/usr/bin/env python
"""Entry point: ``python run_benchmark.py --methods all --if 1 50 100`` (see --help)."""
import sys

from benchmark.cli import main

if __name__ == "__main__":
    sys.exit(main())

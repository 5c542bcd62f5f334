"""The benchmark's modules are scripts in bench/, importing each other by plain name
(`import harness`), as `python bench/suite.py` puts that folder first on sys.path."""

from __future__ import annotations

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

"""Imported first by every benchmark script (`python benchmarks/x.py` puts this folder on sys.path): adds the
repository root, so that the helpers the tests use import as `tests.support`."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

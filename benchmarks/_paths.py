"""Imported first by every benchmark script (`python benchmarks/x.py` puts this folder on sys.path): adds the
repository root, so that the helpers the tests use import as `tests.support`, and byte-compiles the `feedsvc`
package, as an installed package is: with PYTHONDONTWRITEBYTECODE set, a tree never run before is compiled again
by every process a benchmark starts (a sixth of a small `digest send`'s instructions), which no user pays."""

from __future__ import annotations

import compileall
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
compileall.compile_dir(ROOT / "feedsvc", quiet=1)

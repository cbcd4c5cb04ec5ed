"""Files shipped beside the code: the default templates and the example site.

In a source checkout they are the top-level `templates/` and `examples/` folders; an installed wheel
carries them under `feedsvc/_bundled/`.
"""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def bundled_path(name: str) -> Path:
    checkout = _PACKAGE.parent / name
    if checkout.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE / "_bundled" / name

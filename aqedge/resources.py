"""Where the data directories (templates/, firmware/, boards/) are, installed or in a checkout."""

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(name: str) -> Path:
    """Return the directory `name` (one of templates, firmware, boards).

    A wheel carries them as aqedge/_data/<name>; a source checkout has them at the repo's top.
    """
    for candidate in (_PACKAGE / "_data" / name, _PACKAGE.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"aqedge data directory '{name}' is missing from the installation")

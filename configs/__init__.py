"""The YAML configs every run reads (installed with the package): ``configs.path(name)``."""
from pathlib import Path

DIR = Path(__file__).resolve().parent


def path(name: str) -> Path:
    """``configs/<name>``, e.g. ``path("syncers.yaml")`` or ``path("render/vox-256.yaml")``."""
    return DIR / name

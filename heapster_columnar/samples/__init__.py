"""Real kubelet payloads shipped with the package (attribution and licences in kubelet/SOURCES.md).

They back the demo and the tests; every decoder change must keep decoding all of them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

__all__ = ["kubelet_dir", "summary_paths"]


def kubelet_dir() -> Path:
    """Folder holding the captured payloads and object lists."""
    return Path(str(resources.files(__name__) / "kubelet"))


def summary_paths() -> list[Path]:
    """The captured ``/stats/summary`` documents, sorted by name."""
    return sorted(kubelet_dir().glob("summary-*.json"))

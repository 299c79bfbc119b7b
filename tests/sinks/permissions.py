"""Helpers for the sinks' permission tests (a helper module, import it by name).

Root ignores file modes, so "read-only directory" tests drop to ``nobody`` for the block; the
directory they use must be reachable by that user (pytest's ``tmp_path`` sits in a root-only one).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

NOBODY = 65534


@contextmanager
def shared_directory(prefix: str) -> Iterator[Path]:
    """A fresh directory another user can reach; removed afterwards, whatever modes tests set."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o755)
    try:
        yield path
    finally:
        for sub in path.rglob("*"):
            if sub.is_dir():
                sub.chmod(0o755)
        shutil.rmtree(path)


@contextmanager
def unprivileged() -> Iterator[None]:
    """Act as nobody for the block when running as root (seteuid is reversible for root)."""
    if os.geteuid() != 0:
        yield
        return
    os.setegid(NOBODY)
    os.seteuid(NOBODY)
    try:
        yield
    finally:
        os.seteuid(0)
        os.setegid(0)

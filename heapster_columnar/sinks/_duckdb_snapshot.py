"""The reader path: a complete copy of the database file that notebooks open read-only.

DuckDB lets one process write a file and refuses every other process while it does, readers
included. So the writer, between windows and right after a ``CHECKPOINT`` (the file then holds
every committed window and no write is in flight), copies the file to a temporary name and
renames it over ``<stem>.snapshot.duckdb``. A rename is atomic: a reader opening the snapshot
gets the previous complete copy or the new one, never a half-copied file, and a reader that
already has it open keeps reading its copy (the old inode) until it reconnects.

The copy itself runs in a child process. POSIX drops every ``fcntl`` lock a process holds on a
file when that process closes *any* descriptor of the file, so opening the database here, even
to read it, would silently release DuckDB's writer lock and let a second writer in (the reader
test caught exactly that).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

SUFFIX = ".snapshot.duckdb"


def snapshot_path(database: Path) -> Path:
    """``/data/metrics.duckdb`` -> ``/data/metrics.snapshot.duckdb``."""
    return database.with_name(database.stem + SUFFIX)


# Runs as ``python -I -S -c``: standard library only, nothing from the collector's environment.
_COPIER = """
import os, shutil, sys
with open(sys.argv[1], "rb") as src, open(sys.argv[2], "wb") as dst:
    size, copied = os.fstat(src.fileno()).st_size, 0
    try:  # in-kernel, no user-space buffers; a reflink on btrfs/XFS
        while copied < size:
            step = os.copy_file_range(src.fileno(), dst.fileno(), size - copied, copied, copied)
            if not step:
                break
            copied += step
    except OSError:  # a filesystem or kernel without it: plain copy from where it stopped
        src.seek(copied)
        dst.seek(copied)
        shutil.copyfileobj(src, dst, 16 << 20)
    dst.flush()
    os.fsync(dst.fileno())
print(size)
"""


def write_snapshot(database: Path, target: Path) -> int:
    """Copy ``database`` to ``target`` atomically; bytes copied. The caller guarantees no write runs."""
    temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    command = [sys.executable, "-I", "-S", "-c", _COPIER, str(database), str(temporary)]
    try:
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode:
            last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise OSError(f"copying {database} to {temporary} failed: {last}")
        # A WAL beside the snapshot could only come from a reader that opened it read-write; DuckDB
        # would replay it onto the new copy, so it goes before the copy takes the name.
        Path(f"{target}.wal").unlink(missing_ok=True)
        os.replace(temporary, target)
        _fsync_directory(target.parent)
        return int(done.stdout)
    finally:
        temporary.unlink(missing_ok=True)


def remove_stale_temporaries(target: Path) -> None:
    """Half-written copies left by a collector killed in the middle of a snapshot."""
    for stale in target.parent.glob(f".{target.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def _fsync_directory(directory: Path) -> None:
    """Make the rename itself durable."""
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""The Parquet sink's storage: a pyarrow filesystem from the target, atomic file creation, and
errors translated into ones an operator can act on.

A file appears whole or not at all. On a local disk it is written under ``<root>/_staging``,
flushed to disk, and renamed into place (rename is atomic within a filesystem; the staging
directory sits outside the dataset, so no reader lists it). On object stores and fsspec
filesystems a single PUT (or a completed multipart upload) is already atomic, and a rename is a
copy, so the final name is written directly.
"""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from heapster_columnar.errors import ConfigError, SinkError
from heapster_columnar.sinks._parquet_layout import STAGING

__all__ = ["Staged", "Store", "check_target", "is_corrupt", "open_store", "sink_error"]

SINK = "parquet"
_NATIVE_SCHEMES = frozenset({"", "file", "s3", "gs", "gcs", "hdfs", "viewfs", "abfs", "abfss"})
_PERMANENT = {
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.EROFS: "read-only file system",
}
_TRANSIENT = {errno.ENOSPC: "no space left on device", errno.EDQUOT: "disk quota exceeded"}
_CORRUPT_HINTS = ("corrupt", "decompress", "thrift", "magic bytes", "unexpected end", "page header", "invalid")


def check_target(target: str) -> None:
    """Refuse a target no filesystem can serve, without touching it (``--sink`` validation)."""
    if not target:
        raise ConfigError("parquet: no target directory (expected parquet:/path or parquet:s3://bucket/prefix)")
    scheme = urlsplit(target).scheme
    if len(scheme) == 1:  # a Windows drive letter, not a scheme
        scheme = ""
    if scheme in _NATIVE_SCHEMES:
        return
    try:
        import fsspec
    except ImportError:
        raise ConfigError(
            f"parquet: target {target!r}: scheme {scheme!r} needs fsspec (pip install fsspec), which is not installed"
        ) from None
    if scheme not in fsspec.available_protocols():
        raise ConfigError(f"parquet: target {target!r}: unknown filesystem scheme {scheme!r}")


def sink_error(action: str, path: str, exc: BaseException) -> SinkError:
    """``cannot <action> <path>: <cause>``; permission problems are permanent, space and network are not."""
    code = getattr(exc, "errno", None)
    if code in _PERMANENT:
        return SinkError(SINK, f"cannot {action} {path}: {_PERMANENT[code]} ({exc})", retryable=False)
    if code in _TRANSIENT:
        return SinkError(SINK, f"cannot {action} {path}: {_TRANSIENT[code]} ({exc})", retryable=True)
    if isinstance(exc, OSError):
        return SinkError(SINK, f"cannot {action} {path}: {exc}", retryable=True)
    return SinkError(SINK, f"cannot {action} {path}: {type(exc).__name__}: {exc}", retryable=False)


def is_corrupt(exc: BaseException) -> bool:
    """A read error that says the bytes are wrong (not that the storage is unreachable)."""
    if isinstance(exc, FileNotFoundError):
        return False
    if isinstance(exc, pa.ArrowInvalid | ValueError):
        return True
    return (
        isinstance(exc, OSError)
        and getattr(exc, "errno", None) is None
        and any(hint in str(exc).lower() for hint in _CORRUPT_HINTS)
    )


@dataclass(frozen=True, slots=True)
class Staged:
    """A file encoded but not yet visible: a local staging file, or bytes for one upload."""

    path: str
    staging: str | None
    data: pa.Buffer | None


@dataclass(slots=True)
class Store:
    """A filesystem and the sink's root in it; ``local`` means rename-based atomic writes and fsync."""

    fs: pafs.FileSystem
    root: str
    local: bool
    fsync: bool = True

    def path(self, *parts: str) -> str:
        return "/".join([self.root.rstrip("/"), *(p for p in parts if p)])

    def write_table(
        self, path: str, table: pa.Table, options: Mapping[str, Any], *, row_groups: Sequence[int] | None = None
    ) -> None:
        """Create the Parquet file ``path`` atomically (``options``: ``pq.write_table`` keywords;
        ``row_groups``: explicit row-group sizes instead of ``row_group_size``)."""
        staged = self.stage(path, table, options, row_groups=row_groups)
        try:
            self.publish([staged])
        finally:
            self.discard([staged])

    def stage(
        self, path: str, table: pa.Table, options: Mapping[str, Any], *, row_groups: Sequence[int] | None = None
    ) -> Staged:
        """Encode a file without making it visible: the slow half, safe to run in parallel."""
        if not self.local:
            # in memory: an encoding error must never reach the store, where closing a
            # half-written stream could publish a shorter but valid file
            buffer = pa.BufferOutputStream()
            _write(table, buffer, options, row_groups)
            return Staged(path, None, buffer.getvalue())
        staging = self.path(STAGING, f"{uuid.uuid4().hex[:12]}-{path.rsplit('/', 1)[-1]}.tmp")
        try:
            with self.fs.open_output_stream(staging) as out:
                _write(table, out, options, row_groups)
            if self.fsync:
                _fsync(staging)
        except BaseException:
            self.delete(staging)
            raise
        return Staged(path, staging, None)

    def publish(self, staged: Sequence[Staged]) -> None:
        """Make staged files visible, one after the other (renames: microseconds apart)."""
        for item in staged:
            if item.data is not None:
                with self.fs.open_output_stream(item.path) as out:
                    out.write(item.data)
            elif item.staging is not None:
                self.fs.move(item.staging, item.path)
        if self.local and self.fsync:
            for directory in sorted({item.path.rsplit("/", 1)[0] for item in staged}):
                _fsync(directory, directory=True)

    def discard(self, staged: Sequence[Staged]) -> None:
        """Remove staging files not published (after a failure); published ones are gone already."""
        for item in staged:
            if item.staging is not None:
                self.delete(item.staging)

    def create_dir(self, path: str) -> None:
        self.fs.create_dir(path, recursive=True)

    def delete(self, path: str) -> None:
        """Remove a file; one already gone is fine (recovery may race a previous run's work)."""
        try:
            self.fs.delete_file(path)
        except FileNotFoundError:
            pass
        except OSError:
            if self.fs.get_file_info(path).type != pafs.FileType.NotFound:
                raise

    def move(self, source: str, destination: str) -> None:
        self.fs.create_dir(destination.rsplit("/", 1)[0], recursive=True)
        self.fs.move(source, destination)

    def listing(self, path: str) -> list[pafs.FileInfo]:
        """Every file below ``path`` (recursive), or nothing when it does not exist yet."""
        return [
            info
            for info in self.fs.get_file_info(pafs.FileSelector(path, recursive=True, allow_not_found=True))
            if info.type == pafs.FileType.File
        ]

    def read_metadata(self, path: str) -> pq.FileMetaData:
        with self.fs.open_input_file(path) as f:
            return pq.read_metadata(f)

    def read_table(self, path: str) -> pa.Table:
        with self.fs.open_input_file(path) as f:
            return pq.read_table(f)


def _write(table: pa.Table, where: Any, options: Mapping[str, Any], row_groups: Sequence[int] | None) -> None:
    if row_groups is None:
        pq.write_table(table, where, **options)
    else:
        from heapster_columnar.sinks._parquet_write import write_row_groups

        write_row_groups(table, where, row_groups, dict(options))


def open_store(target: str, *, fsync: bool) -> Store:
    """Resolve the target (this may do I/O, e.g. an S3 region lookup: call it on first write)."""
    scheme = urlsplit(target).scheme
    if scheme in ("", "file") or len(scheme) == 1:
        local = target[len("file://") :] if scheme == "file" else target
        return Store(pafs.LocalFileSystem(), os.path.abspath(local), local=True, fsync=fsync)
    try:
        fs, root = pafs.FileSystem.from_uri(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        fs, root = _fsspec(target)
    return Store(fs, root.rstrip("/") or root, local=isinstance(fs, pafs.LocalFileSystem), fsync=fsync)


def _fsspec(target: str) -> tuple[pafs.FileSystem, str]:
    """Any fsspec URL (``memory://``, ``az://``, ...) behind pyarrow's filesystem interface."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(target)
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), str(root)


def _fsync(path: str, *, directory: bool = False) -> None:
    """Data (or a directory entry) on disk before we count on it: rename alone survives a crash
    of this process, not of the machine."""
    fd = os.open(path, os.O_RDONLY | (os.O_DIRECTORY if directory else 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

"""A real InfluxDB 1.x server for tests: Debian's ``influxdb`` package, one private instance per use.

A helper module, not a conftest (import it by name). :class:`InfluxServer` writes its own config
(data, meta and WAL directories under one temporary root; HTTP and RPC bound to 127.0.0.1 on free
ports; usage reporting and the ``_internal`` monitor database off), starts ``influxd``, waits for
``/ping`` to answer 204, and terminates it afterwards. ``stop()`` then ``start()`` brings the same
server back on the same port and data, so tests can take InfluxDB away for a few windows.

``influxd`` is looked up on ``PATH`` and in ``/usr/bin``; when it is missing and we are root it is
installed with ``apt-get install -y influxdb`` (after ``apt-get update`` if apt has no package
list), as on a fresh CI machine. Anything else is an :class:`InfluxUnavailable` naming the command.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

__all__ = ["InfluxServer", "InfluxUnavailable", "find_influxd", "influx_server"]

INSTALL = ["apt-get", "install", "-y", "influxdb"]
UPDATE = ["apt-get", "update"]


class InfluxUnavailable(RuntimeError):
    """No ``influxd`` and no way to install it, or the server would not start."""


def find_influxd(*, install: bool = True) -> str:
    """Path of ``influxd``; installs Debian's package when missing and allowed (root only)."""
    found = shutil.which("influxd") or ("/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None)
    if found:
        return found
    command = " ".join(INSTALL)
    if not install:
        raise InfluxUnavailable(f"influxd not found on PATH or in /usr/bin; install it with `{command}`")
    if os.geteuid() != 0:
        raise InfluxUnavailable(f"influxd not found and not running as root; install it with `sudo {command}`")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    first = subprocess.run(INSTALL, env=env, capture_output=True, text=True, check=False)
    if first.returncode != 0:
        # A fresh machine has no package lists yet ("Unable to locate package influxdb").
        update = subprocess.run(UPDATE, env=env, capture_output=True, text=True, check=False)
        second = subprocess.run(INSTALL, env=env, capture_output=True, text=True, check=False)
        if second.returncode != 0:
            tail = (second.stderr or second.stdout or update.stderr).strip().splitlines()[-3:]
            raise InfluxUnavailable(f"`{command}` failed (exit {second.returncode}): {' | '.join(tail)}")
    found = shutil.which("influxd") or ("/usr/bin/influxd" if os.access("/usr/bin/influxd", os.X_OK) else None)
    if not found:
        raise InfluxUnavailable(f"`{command}` succeeded but no influxd binary appeared")
    return found


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class InfluxServer:
    """One ``influxd`` with its own directories and ports; restartable on the same data and port.

    ``auth`` = (user, password) turns on HTTP authentication and creates that admin user on first
    start (InfluxDB allows creating the first admin without credentials). ``max_series`` is the
    server's ``max-series-per-database`` (0 = unlimited).
    """

    def __init__(
        self,
        root: Path | None = None,
        *,
        auth: tuple[str, str] | None = None,
        max_series: int = 1_000_000,
        max_body_size: int = 25_000_000,
        startup_timeout: float = 30.0,
    ) -> None:
        self.binary = find_influxd()
        self._own_root = root is None
        self.root = Path(tempfile.mkdtemp(prefix="influxd-")) if root is None else root
        self.auth = auth
        self.port, self.rpc_port = _free_port(), _free_port()
        while self.rpc_port == self.port:
            self.rpc_port = _free_port()
        self.startup_timeout = startup_timeout
        self.config = self.root / "influxdb.conf"
        self.log = self.root / "influxd.log"
        self.config.write_text(self._config_text(max_series, max_body_size))
        self._process: subprocess.Popen[bytes] | None = None
        self._user_created = False
        atexit.register(self.close)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def _config_text(self, max_series: int, max_body_size: int) -> str:
        r = self.root
        return f"""\
reporting-disabled = true
bind-address = "127.0.0.1:{self.rpc_port}"

[meta]
  dir = "{r / "meta"}"
  logging-enabled = false

[data]
  dir = "{r / "data"}"
  wal-dir = "{r / "wal"}"
  query-log-enabled = false
  max-series-per-database = {max_series}
  max-values-per-tag = 0

[monitor]
  store-enabled = false

[http]
  enabled = true
  bind-address = "127.0.0.1:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  max-body-size = {max_body_size}

[continuous_queries]
  enabled = false

[logging]
  level = "warn"
  suppress-logo = true
"""

    def start(self) -> InfluxServer:
        """Start ``influxd`` (no-op when running) and wait until ``/ping`` answers 204."""
        if self.running:
            return self
        with self.log.open("ab") as log:
            self._process = subprocess.Popen(
                [self.binary, "-config", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, "INFLUXDB_REPORTING_DISABLED": "true"},
            )
        deadline = time.monotonic() + self.startup_timeout
        with httpx.Client(timeout=1.0) as client:
            while True:
                if self._process.poll() is not None:
                    code = self._process.returncode
                    self._process = None
                    raise InfluxUnavailable(f"influxd exited with status {code} on start: {self._log_tail()}")
                try:
                    if client.get(f"{self.url}/ping").status_code == 204:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise InfluxUnavailable(f"influxd did not answer /ping within {self.startup_timeout} s")
                time.sleep(0.05)
        if self.auth and not self._user_created:
            user, password = self.auth
            self.query(f"CREATE USER \"{user}\" WITH PASSWORD '{password}' WITH ALL PRIVILEGES")
            self._user_created = True
        return self

    def stop(self) -> None:
        """Terminate and wait (kill after 20 s); the data directory stays for a restart."""
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def restart(self) -> InfluxServer:
        self.stop()
        return self.start()

    def close(self) -> None:
        """Stop and remove the temporary root (if we made it). Safe to call twice."""
        self.stop()
        if self._own_root:
            shutil.rmtree(self.root, ignore_errors=True)
        atexit.unregister(self.close)

    def __enter__(self) -> InfluxServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _log_tail(self) -> str:
        try:
            return " | ".join(self.log.read_text(errors="replace").strip().splitlines()[-5:])
        except OSError:
            return "(no log)"

    # -- the HTTP API, for tests ------------------------------------------------------------

    def query(self, q: str, db: str | None = None, *, epoch: str | None = "ms") -> list[dict[str, Any]]:
        """Run InfluxQL; returns the ``results`` list and raises on any statement error."""
        params = {"q": q, **({"db": db} if db else {}), **({"epoch": epoch} if epoch else {})}
        if self.auth:
            params |= {"u": self.auth[0], "p": self.auth[1]}
        response = httpx.post(f"{self.url}/query", params=params, timeout=30)
        body = response.json()
        if response.status_code != 200 or "error" in body:
            raise AssertionError(f"{q!r}: HTTP {response.status_code} {body}")
        results: list[dict[str, Any]] = body["results"]
        for result in results:
            if "error" in result:
                raise AssertionError(f"{q!r}: {result['error']}")
        return results

    def rows(self, q: str, db: str) -> list[dict[str, Any]]:
        """Rows of a one-statement query as dicts (``time`` in epoch ms), across all series."""
        out: list[dict[str, Any]] = []
        for series in self.query(q, db)[0].get("series", []):
            tags = series.get("tags", {})
            for values in series["values"]:
                out.append({**tags, **dict(zip(series["columns"], values, strict=True))})
        return out

    def write(self, db: str, body: bytes, *, precision: str = "ms") -> httpx.Response:
        params = {"db": db, "precision": precision}
        if self.auth:
            params |= {"u": self.auth[0], "p": self.auth[1]}
        return httpx.post(f"{self.url}/write", params=params, content=body, timeout=30)


@contextmanager
def influx_server(**kwargs: Any) -> Iterator[InfluxServer]:
    """``with influx_server() as server:`` a started server, stopped and removed on exit."""
    server = InfluxServer(**kwargs)
    try:
        yield server.start()
    finally:
        server.close()

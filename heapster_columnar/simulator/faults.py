"""What faulty or busy kubelets do to their Summary documents (the HTTP-level faults live in kubelet.py).

Time-structured faults are pure functions of the clock: ``restart`` restarts every pod's first
container at each multiple of its period; ``churn`` replaces one pod per node each period (slot
``g mod pods`` at generation ``g``), with a new name, UID and start time. Counters of a container or
pod that (re)started are scaled to the time since that start, so they fall back as in reality.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from typing import Any

from heapster_columnar.simulator.spec import Fault

UINT64_MAX = 2**64 - 1
PERIODIC = (Fault.RESTART, Fault.CHURN)
_COUNTERS = {
    "cpu": ("usageCoreNanoSeconds",),
    "memory": ("pageFaults", "majorPageFaults"),
    "network": ("rxBytes", "rxErrors", "txBytes", "txErrors"),
}
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def _seconds(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _stamp(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _scale(stats: dict[str, Any], scale: float) -> None:
    """Scale an entity's cumulative counters (cpu, memory faults, network incl. interfaces)."""
    for block, keys in _COUNTERS.items():
        blocks = [stats.get(block) or {}]
        blocks += blocks[0].get("interfaces") or [] if block == "network" else []
        for values in blocks:
            for key in keys:
                if key in values:
                    values[key] = int(values[key] * scale)


def restarts_between(start: float, period: float, now: float) -> int:
    """How many times a container started at ``start`` has restarted by ``now`` under ``restart``."""
    return max(0, int(now // period) - int(start // period))


def period_key(faults: dict[Fault, float], second: int) -> tuple[int, ...]:
    """Changes exactly when a periodic fault changes a document (templates are rebuilt then)."""
    return tuple(int(second // faults[f]) for f in PERIODIC if f in faults)


def apply_faults(document: dict[str, Any], faults: dict[Fault, float], now: float, *, seed: int = 0) -> dict[str, Any]:
    """Change a Summary document the way a broken, unusual or busy kubelet would (in place)."""
    if Fault.UINT64_MAX in faults:
        document["node"]["fs"]["inodesFree"] = UINT64_MAX
        for pod in document["pods"][:1]:
            for container in pod["containers"]:
                container["rootfs"]["inodesFree"] = UINT64_MAX
    if Fault.MISSING_BLOCKS in faults:
        for pod in document["pods"][::2]:
            pod.pop("network", None)
            for container in pod["containers"]:
                container.pop("memory", None)
    if Fault.CHURN in faults:
        _churn(document, faults[Fault.CHURN], now, seed)
    if Fault.RESTART in faults:
        _restart_first_containers(document, faults[Fault.RESTART], now)
    return document


def _restart_first_containers(document: dict[str, Any], period: float, now: float) -> None:
    restart_at = int(now // period * period)
    for pod in document["pods"]:
        container = pod["containers"][0]
        old, sample = _seconds(container["startTime"]), _seconds(container["cpu"]["time"])
        if old < restart_at < sample:
            container["startTime"] = _stamp(restart_at)
            _scale(container, (sample - restart_at) / (sample - old))


def _churn(document: dict[str, Any], period: float, now: float, seed: int) -> None:
    pods = document["pods"]
    generation = int(now // period)
    node = document["node"]["nodeName"]
    for slot, pod in enumerate(pods):
        replaced = generation - (generation - slot) % len(pods)  # last generation that hit this slot
        born, old = replaced * period, _seconds(pod["startTime"])
        sample = _seconds((pod.get("cpu") or pod["containers"][0]["cpu"])["time"])
        if not old < born < sample:
            continue
        digest = hashlib.blake2b(f"{seed}/{node}/{slot}/{replaced}".encode(), digest_size=8).digest()
        number = int.from_bytes(digest, "big")
        suffix = "".join(_ALPHABET[number // len(_ALPHABET) ** k % len(_ALPHABET)] for k in range(5))
        ref = pod["podRef"]
        ref["name"] = f"{ref['name'].rsplit('-', 1)[0]}-{suffix}"
        ref["uid"] = str(uuid.UUID(bytes=hashlib.blake2b(digest, digest_size=16).digest(), version=4))
        pod["startTime"] = _stamp(born)
        _scale(pod, (sample - born) / (sample - old))
        for container in pod["containers"]:
            c_old = _seconds(container["startTime"])
            container["startTime"] = _stamp(born)
            _scale(container, (sample - born) / max(sample - c_old, 1.0))

"""What faulty or busy kubelets do to their Summary documents (the HTTP-level faults live in kubelet.py).

Time-structured faults are pure functions of the clock: ``restart`` restarts every pod's first
container at each multiple of its period; ``churn`` replaces one pod per node each period (slot
``g mod pods`` at generation ``g``), with a new name, UID and start time. Counters of a container or
pod that (re)started are scaled to the time since that start, so they fall back as in reality.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import datetime
from typing import Any

import numpy as np

from heapster_columnar.simulator.payloads import name_codes, rfc3339
from heapster_columnar.simulator.spec import Fault

UINT64_MAX = 2**64 - 1
PERIODIC = (Fault.RESTART, Fault.CHURN)
_COUNTERS = {
    "cpu": ("usageCoreNanoSeconds",),
    "memory": ("pageFaults", "majorPageFaults"),
    "network": ("rxBytes", "rxErrors", "txBytes", "txErrors"),
}


def seconds_of(stamp: str) -> float:
    """Epoch seconds of an RFC 3339 time as kubelets write it."""
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


def _scale(stats: dict[str, Any], scale: float) -> None:
    """Scale an entity's cumulative counters (cpu, memory faults, network incl. interfaces)."""
    for block, keys in _COUNTERS.items():
        values_of_block = stats.get(block) or {}
        interfaces = values_of_block.get("interfaces") or [] if block == "network" else []
        for values in (values_of_block, *interfaces):
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
    for pod in document["pods"]:
        container = pod["containers"][0]
        old, sample = seconds_of(container["startTime"]), seconds_of(container["cpu"]["time"])
        # the latest restart the kubelet's (lagging) sample has seen, not the latest on the clock:
        # with a period shorter than the lag the latter would never show up
        restart_at = int(sample // period * period)
        if old < restart_at < sample:
            container["startTime"] = rfc3339(restart_at)
            _scale(container, (sample - restart_at) / (sample - old))


def _churn(document: dict[str, Any], period: float, now: float, seed: int) -> None:
    pods = document["pods"]
    generation = int(now // period)
    node = document["node"]["nodeName"]
    for slot, pod in enumerate(pods):
        replaced = generation - (generation - slot) % len(pods)  # last generation that hit this slot
        old = seconds_of(pod["startTime"])
        sample = seconds_of((pod.get("cpu") or pod["containers"][0]["cpu"])["time"])
        while replaced * period >= sample and replaced > 0:  # the kubelet's sample lags the clock:
            replaced -= len(pods)  # it still shows the pod of the slot's previous replacement
        born = replaced * period
        if not old < born < sample:
            continue
        digest = hashlib.blake2b(f"{seed}/{node}/{slot}/{replaced}".encode(), digest_size=8).digest()
        suffix = name_codes(np.array([int.from_bytes(digest, "big") % 2**62]), 5)[0]
        ref = pod["podRef"]
        ref["name"] = f"{ref['name'].rsplit('-', 1)[0]}-{suffix}"
        ref["uid"] = str(uuid.UUID(bytes=hashlib.blake2b(digest, digest_size=16).digest(), version=4))
        pod["startTime"] = rfc3339(int(born))
        _scale(pod, (sample - born) / (sample - old))
        for container in pod["containers"]:
            c_old = seconds_of(container["startTime"])
            container["startTime"] = rfc3339(int(born))
            _scale(container, (sample - born) / max(sample - c_old, 1.0))

"""Arrow schema of the kubelet Summary API (stats/v1alpha1) as the decoder reads it.

Only the fields some metric needs are listed: pyarrow's JSON reader skips everything else without
building it, which is both faster and what keeps unknown newer fields (``rlimit``, ``containerFs``,
per-interface network, PSI averages, ...) from ever breaking a decode. Counters are ``uint64`` as on
the wire, so 2^64-1 ("unknown") parses and is dealt with explicitly afterwards. Times are RFC 3339
strings on the wire; the reader converts them (fractions and offsets included).
"""

from __future__ import annotations

import pyarrow as pa

U64 = pa.uint64()
# Nanoseconds so any RFC 3339 fraction parses (Go accepts up to 9 digits); the decoder truncates to ms.
TIME = pa.timestamp("ns", tz="UTC")
STR = pa.string()

_PSI_DATA = pa.struct([("total", U64)])
PSI = pa.struct([("some", _PSI_DATA), ("full", _PSI_DATA)])

CPU = pa.struct([("time", TIME), ("usageCoreNanoSeconds", U64), ("psi", PSI)])
MEMORY = pa.struct(
    [
        ("time", TIME),
        ("usageBytes", U64),
        ("workingSetBytes", U64),
        ("rssBytes", U64),
        ("pageFaults", U64),
        ("majorPageFaults", U64),
        ("psi", PSI),
    ]
)
NETWORK = pa.struct([("time", TIME), ("rxBytes", U64), ("rxErrors", U64), ("txBytes", U64), ("txErrors", U64)])
_FS_FIELDS = [
    ("availableBytes", U64),
    ("capacityBytes", U64),
    ("usedBytes", U64),
    ("inodesFree", U64),
    ("inodes", U64),
]
FS = pa.struct(_FS_FIELDS)
VOLUME = pa.struct([("name", STR), *_FS_FIELDS])
SWAP = pa.struct([("swapAvailableBytes", U64), ("swapUsageBytes", U64)])
IO = pa.struct([("psi", PSI)])
PROCESS = pa.struct([("process_count", U64)])
ACCELERATOR = pa.struct(
    [("make", STR), ("model", STR), ("id", STR), ("memoryTotal", U64), ("memoryUsed", U64), ("dutyCycle", U64)]
)
USER_METRIC = pa.struct([("name", STR), ("type", STR), ("value", pa.float64())])

CONTAINER = pa.struct(
    [
        ("name", STR),
        ("startTime", TIME),
        ("cpu", CPU),
        ("memory", MEMORY),
        ("swap", SWAP),
        ("io", IO),
        ("rootfs", FS),
        ("logs", FS),
        ("accelerators", pa.list_(ACCELERATOR)),
        ("userDefinedMetrics", pa.list_(USER_METRIC)),
    ]
)
POD = pa.struct(
    [
        ("podRef", pa.struct([("name", STR), ("namespace", STR), ("uid", STR)])),
        ("startTime", TIME),
        ("containers", pa.list_(CONTAINER)),
        ("cpu", CPU),
        ("memory", MEMORY),
        ("network", NETWORK),
        ("swap", SWAP),
        ("io", IO),
        ("process_stats", PROCESS),
        ("volume", pa.list_(VOLUME)),
        ("ephemeral-storage", FS),
    ]
)
NODE = pa.struct(
    [
        ("nodeName", STR),
        ("startTime", TIME),
        ("systemContainers", pa.list_(CONTAINER)),
        ("cpu", CPU),
        ("memory", MEMORY),
        ("network", NETWORK),
        ("swap", SWAP),
        ("io", IO),
        ("fs", FS),
    ]
)
SUMMARY = pa.schema([("node", NODE), ("pods", pa.list_(POD))])

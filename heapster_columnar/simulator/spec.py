"""ClusterSpec and FaultSpec: the shape of a simulated cluster and what goes wrong in it.

Faults are chosen per node, deterministically from the seed, so a test can ask "which nodes hang?"
and get the same answer the kubelets act on. A fault is given as a count of nodes (``hang=2``) or a
fraction (``http500=0.05``), with an optional parameter after a colon (``slow=0.1:3`` = 10 % of
nodes answer after 3 s).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np

from heapster_columnar.errors import ConfigError


class Fault(enum.StrEnum):
    """What one node's kubelet does wrong."""

    SLOW = "slow"  # answers after `param` seconds (default 3)
    HANG = "hang"  # accepts the request and never answers
    HTTP500 = "http500"  # 500 Internal Server Error
    TRUNCATED = "truncated"  # the body stops half way
    GARBAGE = "garbage"  # an HTML error page instead of JSON
    UINT64_MAX = "uint64max"  # some counters are 18446744073709551615 ("unknown")
    MISSING_BLOCKS = "missing"  # optional blocks (pod network, container memory) left out
    NOT_READY = "notready"  # the Node's Ready condition is False
    RESTART = "restart"  # one container per pod restarts every `param` seconds (default 300)
    CHURN = "churn"  # one pod per node is replaced by a new one every `param` seconds (default 120)


DEFAULT_PARAM = {Fault.SLOW: 3.0, Fault.RESTART: 300.0, Fault.CHURN: 120.0}


@dataclass(frozen=True, slots=True)
class FaultRule:
    fault: Fault
    amount: float  # >= 1: that many nodes; < 1: that fraction of nodes
    param: float | None = None


@dataclass(frozen=True, slots=True)
class FaultSpec:
    rules: tuple[FaultRule, ...] = ()

    @classmethod
    def parse(cls, text: str | None) -> FaultSpec:
        """``"slow=0.1:3,hang=2"`` → FaultSpec; ConfigError names the bad part."""
        rules = []
        for part in filter(None, (p.strip() for p in (text or "").split(","))):
            name, sep, rest = part.partition("=")
            try:
                fault = Fault(name.strip())
            except ValueError:
                known = ", ".join(f.value for f in Fault)
                raise ConfigError(f"--faults: unknown fault {name!r} (known: {known})") from None
            amount_text, _, param_text = (rest if sep else "1").partition(":")
            try:
                amount = float(amount_text)
                param = float(param_text) if param_text else None
            except ValueError:
                raise ConfigError(f"--faults: {part!r} is not <fault>=<count or fraction>[:<param>]") from None
            if amount < 0 or (param is not None and param < 0):
                raise ConfigError(f"--faults: {part!r} has a negative value")
            rules.append(FaultRule(fault, amount, param))
        return cls(tuple(rules))

    def assign(self, nodes: int, seed: int) -> dict[int, dict[Fault, float]]:
        """node index → {fault: parameter}; the same nodes for the same seed, every time.

        Rules take consecutive runs of one seeded permutation of the nodes, so different faults land
        on different nodes while there are nodes enough (then they wrap around and stack).
        """
        out: dict[int, dict[Fault, float]] = {}
        order = np.random.default_rng([seed, 7919]).permutation(nodes).tolist()
        taken = 0
        for rule in self.rules:
            count = min(nodes, int(rule.amount) if rule.amount >= 1 else round(rule.amount * nodes))
            param = rule.param if rule.param is not None else DEFAULT_PARAM.get(rule.fault, 0.0)
            for k in range(taken, taken + count):
                out.setdefault(order[k % nodes], {})[rule.fault] = param
            taken += count
        return out


@dataclass(frozen=True, slots=True, kw_only=True)
class ClusterSpec:
    """A simulated cluster: how big, which seed, how it is secured and what fails."""

    nodes: int = 3
    pods_per_node: int = 30
    seed: int = 0
    https: bool = False
    token: str | None = None
    kubelet_port: int = 0  # 0 = an ephemeral port per kubelet address; 10250 like real clusters
    apiserver_port: int = 0
    faults: FaultSpec = field(default_factory=FaultSpec)

    def __post_init__(self) -> None:
        if self.nodes < 1 or self.nodes > 60_000:
            raise ConfigError(f"--nodes must be between 1 and 60000, not {self.nodes}")
        if self.pods_per_node < 0 or self.pods_per_node > 500:
            raise ConfigError(f"--pods-per-node must be between 0 and 500, not {self.pods_per_node}")


def kubelet_ip(node_index: int) -> str:
    """Each node's own loopback address, 127.1.0.1 upwards (never outside 127/8)."""
    n = node_index + 1
    return f"127.{1 + (n >> 16)}.{(n >> 8) & 255}.{n & 255}"


def node_name(node_index: int) -> str:
    return f"node-{node_index:05d}"

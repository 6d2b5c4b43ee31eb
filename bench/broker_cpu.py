"""The broker's side of a measurement: which local processes serve a bootstrap address, and
the CPU seconds they use.

A benchmark that divides the runtime's CPU by the workflows it ran says nothing of what the
broker paid for them. When the brokers run on this machine (``kwf broker start``, a local
cluster) their JVMs are found by the ports of the bootstrap address, from ``/proc``: no
broker folder or PID file needs to be named. A remote broker has no local PIDs, and the
broker's figures are then left out.
"""

from __future__ import annotations

import time
from pathlib import Path

from bench.common import cpu_seconds

# /proc/net/tcp's state column for a listening socket.
LISTEN = "0A"
# Long enough to see a shared broker's background CPU through its 10 ms clock ticks.
IDLE_S = 5.0


def bootstrap_ports(bootstrap: str) -> set[int]:
    """The ports of a ``host:port,host:port`` list."""
    return {int(address.rsplit(":", 1)[1]) for address in bootstrap.split(",") if ":" in address}


def listening_inodes_in(table: str, ports: set[int]) -> set[int]:
    """Socket inodes listening on any of ``ports`` in the text of ``/proc/net/tcp`` (or ``tcp6``)."""
    inodes: set[int] = set()
    for line in table.splitlines()[1:]:
        fields = line.split()
        port = int(fields[1].rsplit(":", 1)[1], 16)
        if fields[3] == LISTEN and port in ports:
            inodes.add(int(fields[9]))
    return inodes


def listening_inodes(ports: set[int]) -> set[int]:
    """Socket inodes of the TCP sockets (IPv4 or IPv6) listening on any of ``ports``."""
    inodes: set[int] = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            inodes |= listening_inodes_in(Path(table).read_text(), ports)
        except OSError:
            continue
    return inodes


def broker_pids(bootstrap: str) -> list[int]:
    """The local processes listening on the bootstrap address's ports (empty for a remote broker)."""
    wanted = {f"socket:[{inode}]" for inode in listening_inodes(bootstrap_ports(bootstrap))}
    pids: list[int] = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if any(str(fd.readlink()) in wanted for fd in (proc / "fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue  # gone meanwhile, or not ours to read
    return sorted(pids)


def total_cpu_seconds(pids: list[int]) -> float:
    """User plus system CPU seconds all of ``pids`` have used so far."""
    return sum(cpu_seconds(pid) for pid in pids)


def background_cores(pid_groups: list[list[int]], seconds: float = IDLE_S) -> list[float]:
    """The cores each group of processes uses over ``seconds`` while the caller sends them
    nothing: what a shared broker spends on other work, what an idle runtime spends polling.
    """
    if not any(pid_groups):
        return [0.0 for _ in pid_groups]
    began, cpu = time.perf_counter(), [total_cpu_seconds(pids) for pids in pid_groups]
    time.sleep(seconds)
    elapsed = time.perf_counter() - began
    return [(total_cpu_seconds(pids) - before) / elapsed for pids, before in zip(pid_groups, cpu, strict=True)]

"""The broker's side of the scale-out figures: finding local broker processes, counting transactions."""

from __future__ import annotations

import os
import socket

from bench.broker_cpu import bootstrap_ports, broker_pids, listening_inodes_in
from bench.scaleout import transactions_in

TCP_TABLE = """\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:7304 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4242 1
   1: 0100007F:7304 0100007F:D2C4 01 00000000:00000000 00:00000000 00000000     0        0 4343 1
   2: 0100007F:7306 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 4444 1
"""


def test_bootstrap_ports_are_every_address_port() -> None:
    assert bootstrap_ports("127.0.0.1:29092,127.0.0.1:29094,[::1]:29096") == {29092, 29094, 29096}


def test_only_listening_sockets_on_the_ports_count() -> None:
    # 0x7304 = 29444: the listener counts, the connection on the same port does not.
    assert listening_inodes_in(TCP_TABLE, {29444}) == {4242}
    assert listening_inodes_in(TCP_TABLE, {29446, 1}) == {4444}
    assert listening_inodes_in(TCP_TABLE, {9092}) == set()


def test_the_process_listening_on_a_port_is_found() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        assert broker_pids(f"127.0.0.1:{port}") == [os.getpid()]
    assert broker_pids(f"127.0.0.1:{port}") == []


def test_committed_transactions_are_summed_over_groups() -> None:
    metrics = """\
# HELP streams_transactions_total Kafka transactions of a processor, by outcome (committed or aborted).
streams_transactions_total{group="a.orchestrator",outcome="committed"} 120.0
streams_transactions_total{group="a.orchestrator",outcome="aborted"} 3.0
streams_transactions_total{group="a.worker",outcome="committed"} 30.0
streams_transaction_commit_seconds_sum{group="a.orchestrator"} 1.5
streams_transaction_commit_seconds_sum{group="a.worker"} 0.5
streams_transaction_commit_seconds_count{group="a.worker"} 30.0
"""
    assert transactions_in(metrics) == (150.0, 2.0)

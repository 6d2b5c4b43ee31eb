"""Replay: the pure workflow engine.

A workflow function is re-run against its history (``workflow_run``) to decide the next
actions; ``executor`` wraps one execution step in a contract that never raises. The
context, tasks, retry policies and registry are the authoring API it drives. No I/O: may
import ``engine.core`` only, never ``streams``, Kafka, RocksDB or sockets. See
ARCHITECTURE.md, "Layers".
"""

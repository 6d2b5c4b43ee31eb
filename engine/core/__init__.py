"""Core: the history model and the values every other layer shares.

History events, failures, JSON payload rules, named errors, the Java-compatible
partitioner and the wall clock. Pure data and functions: imports nothing from the rest of
``engine``, nor ``streams``, Kafka or RocksDB. See ARCHITECTURE.md, "Layers".
"""

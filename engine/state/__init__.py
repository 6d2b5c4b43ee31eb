"""State: how the engine's values live on Kafka and in RocksDB.

Settings (``config``), the topics, the Avro codecs of the records, an instance's derived
state (``instance_state``: a pure fold over history) and its per-partition RocksDB layout
(``instance_store``). May import ``engine.core`` and ``streams``; nothing above it. See
ARCHITECTURE.md, "Layers".
"""

"""Orchestration: the exactly-once processor that owns every instance's history.

Inbox events in; accepted history, activity tasks, statuses out, in one Kafka transaction
per batch. May import ``core``, ``replay``, ``state`` and ``streams``; never ``edges`` or
``api``, and nothing but the host imports it. See ARCHITECTURE.md, "Layers".
"""

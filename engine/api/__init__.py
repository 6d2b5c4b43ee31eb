"""API: what clients use to start, query and manage instances.

The Python client and its status view, the history reader, the Dapr-compatible HTTP API,
the web page and its timeline, and ``DaprClient``. May import ``core``, ``replay`` (for
names), ``state`` and ``streams``; never ``orchestration`` or ``edges``: a client talks to
the runtime through topics only. See ARCHITECTURE.md, "Layers".
"""

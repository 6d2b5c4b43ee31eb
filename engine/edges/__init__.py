"""Edges: the processes at the runtime's boundary that feed the inbox.

The activity worker (runs ``kwf.activities`` tasks, sends results to the inbox), the
pub/sub bridge (external topics become events) and the JSON commands door. May import
``core``, ``replay``, ``state`` and ``streams``; never ``orchestration`` or ``api``: they
speak to the orchestrator through topics only. See ARCHITECTURE.md, "Layers".
"""

"""Where Prometheus scrapes: ``GET /metrics`` on the HTTP API, or a port of its own.

The text format of every metric registered in the process: the workflow metrics
(``engine.observability.metrics``), the processors' (``streams.metrics``) and
``prometheus_client``'s process and Python collectors.
"""

from __future__ import annotations

from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest, start_http_server

# Importing them registers the metrics, so a scrape lists them before their first sample.
from engine.observability import metrics as _workflow_metrics  # noqa: F401


def mount_metrics(app: Any) -> None:
    """Add ``GET /metrics`` to a FastAPI app (behind the app's token check like every route)."""
    from fastapi import Response

    @app.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def serve_metrics(port: int, host: str = "127.0.0.1") -> Any:
    """Serve ``/metrics`` on ``host:port`` from a daemon thread (``kwf run --metrics-port``)."""
    server, _thread = start_http_server(port, addr=host)
    return server

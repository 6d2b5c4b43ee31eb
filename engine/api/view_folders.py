"""Where a client keeps its persistent copy of a topic (``streams.mirror``)."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

from engine.state.config import Settings


def views_folder(settings: Settings, topic: str) -> Path:
    """The folder of this cluster's copies of ``topic`` under ``settings.view_dir``: readable,
    and unique per cluster (a digest of the bootstrap servers) and topic."""
    cluster = hashlib.sha1(settings.bootstrap_servers.encode()).hexdigest()[:10]
    readable = re.sub(r"[^A-Za-z0-9._-]", "_", topic)
    return settings.view_dir / f"{readable}-{cluster}"

"""librdkafka settings shared by every client: bootstrap servers plus ``KWF_KAFKA_*``."""

from __future__ import annotations

import os
from collections.abc import Mapping

DEFAULT_BOOTSTRAP = "127.0.0.1:9092"
PASS_THROUGH_PREFIX = "KWF_KAFKA_"


def client_settings(bootstrap: str | None = None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """Base settings for any Kafka client.

    ``KWF_KAFKA_SECURITY_PROTOCOL=SASL_SSL`` becomes ``security.protocol=SASL_SSL``: any
    librdkafka property passes through this way (SASL, SSL, timeouts).
    """
    env = os.environ if environ is None else environ
    settings = {"bootstrap.servers": bootstrap or env.get("KWF_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP)}
    for key, value in env.items():
        if key.startswith(PASS_THROUGH_PREFIX) and len(key) > len(PASS_THROUGH_PREFIX):
            settings[key[len(PASS_THROUGH_PREFIX):].lower().replace("_", ".")] = value
    return settings

"""Runtime configuration: every ``KWF_*`` variable, each also a constructor argument."""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from engine.core.history import validate_app_id
from engine.state.retention import RetentionPolicy
from streams.kafka_config import client_settings

MIB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    """Where the runtime finds Kafka, names its topics and keeps its state.

    Attributes:
        bootstrap_servers: ``KWF_BOOTSTRAP_SERVERS``.
        topic_prefix: ``KWF_TOPIC_PREFIX``; topics are ``{prefix}.inbox`` and so on.
        app_id: ``KWF_APP_ID``, the application this process belongs to; "" (unset) is the
            default application. A named application's topics and consumer groups are
            those of the prefix ``{prefix}.{app_id}`` (``app_prefix``).
        partitions: ``KWF_PARTITIONS``, for topics this runtime creates.
        state_dir: ``KWF_STATE_DIR``, the RocksDB stores.
        per_process_state: Whether each runtime process takes a folder of its own under
            ``state_dir`` (``engine.state.state_slot``): true when ``KWF_STATE_DIR`` is not set.
        process_id: ``KWF_PROCESS_ID``, the stable identity behind transactional IDs; empty:
            derived from the (process's) state folder when the runtime starts.
        api_token: ``KWF_API_TOKEN``; when set the HTTP API wants it in ``dapr-api-token``.
        max_payload_bytes: ``KWF_MAX_PAYLOAD_BYTES``, the largest input, output or event payload.
        step_time_limit_s: ``KWF_STEP_TIME_LIMIT_S``, the longest one replay step of workflow
            code may run before its instance fails; 0 turns the limit off.
        activity_timeout_s: ``KWF_ACTIVITY_TIMEOUT_S``, the longest an activity may run before
            its task fails with ``ActivityTimeout``; unset (None) means no limit.
        retention: ``KWF_RETENTION_*``, how long ended instances are kept before the
            runtime purges them (``engine.state.retention``); by default forever.
        kafka: Extra librdkafka settings from ``KWF_KAFKA_*``.
        replication_factor: ``KWF_REPLICATION_FACTOR``, replicas of the topics this runtime
            creates; unset (None): three where three or more brokers answer, else one.
        local_activity_budget_ms: ``KWF_LOCAL_ACTIVITY_BUDGET_MS``, how long a workflow step
            waits for the activities it hands to this process's own worker before it commits
            them as ordinary tasks; 0 turns local activities off.
        session_timeout_ms: ``KWF_SESSION_TIMEOUT_MS``, how long a killed orchestrator keeps its
            partitions before the others take them.
        standby_replicas: ``KWF_STANDBY_REPLICAS``, warm copies of each orchestrator partition
            kept by other processes (``streams.standby``); none while a process runs alone.
        view_dir: ``KWF_VIEW_DIR``, where clients keep their persistent copies of the status
            and history topics (default: ``$XDG_CACHE_HOME/kwf/views`` or ``~/.cache/kwf/views``).
        runtime_urls: ``KWF_RUNTIME_URL`` (comma-separated), the HTTP APIs a client asks while
            its own status view is not caught up; empty: those runtimes announce themselves.
        advertised_url: ``KWF_ADVERTISED_URL``, the base URL clients reach this process's
            HTTP API at; unset: from the address it listens on.

    The API token and the Kafka settings (SASL passwords) are left out of ``repr``, so a
    logged ``Settings`` shows no secret.
    """

    bootstrap_servers: str = "127.0.0.1:9092"
    topic_prefix: str = "kwf"
    app_id: str = ""
    partitions: int = 8
    state_dir: Path = Path(".kwf/state")
    per_process_state: bool = False
    process_id: str = ""
    api_token: str | None = field(default=None, repr=False)
    max_payload_bytes: int = MIB
    # Below the orchestrator's 10 s transaction timeout: a batch's transaction stays open
    # while its steps run, and a longer step would let the broker abort it.
    step_time_limit_s: float = 5.0
    activity_timeout_s: float | None = None
    retention: RetentionPolicy = field(default_factory=RetentionPolicy)
    kafka: dict[str, str] = field(default_factory=dict, repr=False)
    replication_factor: int | None = None
    # Long enough for trivial activities (well under a millisecond each), short enough that
    # a slow one delays its step's transaction, and the other instances in it, very little.
    local_activity_budget_ms: float = 20.0
    # One warm copy: a takeover after one process's loss reads only the tail of the history,
    # for one more fold of every history event somewhere in the cluster.
    standby_replicas: int = 1
    # Three heartbeats (from librdkafka's own thread) per session; shorter risks a member
    # of a starved machine being dropped, whose producer its partitions' taker then fences.
    session_timeout_ms: int = 3000
    view_dir: Path = field(default_factory=lambda: default_view_dir(os.environ))
    runtime_urls: tuple[str, ...] = ()
    advertised_url: str | None = None

    @classmethod
    def from_env(cls, **overrides: Any) -> Settings:
        """Read ``KWF_*`` from the environment; keyword arguments that are not None win."""
        env = os.environ
        base = client_settings()
        kafka = {k: v for k, v in base.items() if k != "bootstrap.servers"}
        settings = cls(
            bootstrap_servers=base["bootstrap.servers"],
            topic_prefix=env.get("KWF_TOPIC_PREFIX", "kwf"),
            app_id=env.get("KWF_APP_ID", ""),
            partitions=int(env.get("KWF_PARTITIONS", "8")),
            state_dir=Path(env.get("KWF_STATE_DIR", ".kwf/state")),
            process_id=env.get("KWF_PROCESS_ID", ""),
            api_token=env.get("KWF_API_TOKEN") or None,
            max_payload_bytes=int(env.get("KWF_MAX_PAYLOAD_BYTES", str(MIB))),
            step_time_limit_s=float(env.get("KWF_STEP_TIME_LIMIT_S", "5")),
            activity_timeout_s=float(env["KWF_ACTIVITY_TIMEOUT_S"]) if env.get("KWF_ACTIVITY_TIMEOUT_S") else None,
            retention=RetentionPolicy.from_env(env),
            kafka=kafka,
            replication_factor=int(env["KWF_REPLICATION_FACTOR"]) if env.get("KWF_REPLICATION_FACTOR") else None,
            local_activity_budget_ms=float(env.get("KWF_LOCAL_ACTIVITY_BUDGET_MS", "20")),
            standby_replicas=int(env.get("KWF_STANDBY_REPLICAS", "1")),
            session_timeout_ms=int(env.get("KWF_SESSION_TIMEOUT_MS", "3000")),
            view_dir=default_view_dir(env),
            runtime_urls=tuple(url.strip() for url in env.get("KWF_RUNTIME_URL", "").split(",") if url.strip()),
            advertised_url=env.get("KWF_ADVERTISED_URL") or None,
        )
        settings = replace(settings, **{k: v for k, v in overrides.items() if v is not None})
        if settings.app_id:
            validate_app_id(settings.app_id)
        # Without a state folder of its own, each process takes a slot of the default one
        # when its runtime starts, and derives its process ID from that.
        if "KWF_STATE_DIR" not in env and overrides.get("state_dir") is None:
            settings = replace(settings, per_process_state=True)
        elif not settings.process_id:
            settings = replace(settings, process_id=default_process_id(settings.state_dir))
        return settings

    def client(self) -> dict[str, str]:
        """Base librdkafka settings for every client of this runtime."""
        return {"bootstrap.servers": self.bootstrap_servers, **self.kafka}

    def producer(self) -> dict[str, str]:
        """Settings for a plain (non-transactional) producer: idempotent, Java-compatible partitioning."""
        return {
            **self.client(),
            "enable.idempotence": "true",
            # Acknowledged once every in-sync replica has the record (librdkafka's default too,
            # and what idempotence requires): an acknowledged start survives a broker's loss.
            "acks": "all",
            # Same partition as Kafka's Java producer for the same key (murmur2).
            "partitioner": "murmur2_random",
            # Small batches: workflow steps are latency-bound, not throughput-bound.
            "linger.ms": "2",
            # The codec of the topics the runtime creates (engine.state.topics).
            "compression.type": "zstd",
            # KWF_KAFKA_* settings win over the defaults above.
            **self.kafka,
        }

    @property
    def app_prefix(self) -> str:
        """The prefix of this application's topics and consumer groups."""
        return app_prefix(self.topic_prefix, self.app_id)

    def topic(self, name: str) -> str:
        """This application's topic ``name`` (``inbox``, ``history``, ...)."""
        return f"{self.app_prefix}.{name}"

    def app_topic(self, app_id: str, name: str) -> str:
        """Topic ``name`` of application ``app_id`` ("" is the default application)."""
        return f"{app_prefix(self.topic_prefix, app_id)}.{name}"


def app_prefix(topic_prefix: str, app_id: str) -> str:
    """The default application keeps ``KWF_TOPIC_PREFIX`` itself, so none of its names change;
    a named one nests under it, so one prefix's applications are found (and deleted) together."""
    return f"{topic_prefix}.{app_id}" if app_id else topic_prefix


def default_view_dir(env: Any) -> Path:
    """``KWF_VIEW_DIR``, else the user's cache folder: the copies are rebuilt if lost."""
    if env.get("KWF_VIEW_DIR"):
        return Path(env["KWF_VIEW_DIR"])
    cache = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return cache / "kwf" / "views"


def default_process_id(state_dir: Path) -> str:
    """Host name plus a short hash of the state folder: stable across restarts of one process."""
    digest = hashlib.sha1(str(state_dir.resolve()).encode()).hexdigest()[:8]
    return f"{socket.gethostname()}-{digest}"

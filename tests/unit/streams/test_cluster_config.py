"""The local cluster and docker-compose.yml agree; replication is planned from the cluster's size."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.state.config import Settings
from engine.state.topics import workflow_topics
from streams.broker import LocalCluster, broker_properties
from streams.processor import ProcessorConfig
from streams.topics import TopicError, replication_plan

REPO = Path(__file__).resolve().parents[3]


def compose_services(text: str) -> dict[str, dict[str, str]]:
    """``environment`` of each service in docker-compose.yml (the subset of YAML it uses)."""
    services: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    in_env = False
    for line in text.splitlines():
        service = re.match(r"^  ([\w-]+):", line)
        if service:
            current = services.setdefault(service.group(1), {})
            in_env = False
            continue
        if re.match(r"^    environment:\s*$", line):
            in_env = True
            continue
        if re.match(r"^    \S", line):
            in_env = False
            continue
        setting = re.match(r"^      (\w+): (.*)$", line)
        if in_env and current is not None and setting:
            current[setting.group(1)] = setting.group(2).strip().strip('"')
    return services


def as_env_name(broker_property: str) -> str:
    """The apache/kafka image's spelling of a broker property: KAFKA_ and upper snake case."""
    return "KAFKA_" + broker_property.upper().replace(".", "_")


SERVICES = compose_services((REPO / "docker-compose.yml").read_text())
KAFKA_NODES = sorted(name for name in SERVICES if name.startswith("kafka-"))


def test_compose_has_three_kafka_nodes_two_runtimes_and_a_worker() -> None:
    assert KAFKA_NODES == ["kafka-1", "kafka-2", "kafka-3"]
    assert {"runtime-1", "runtime-2", "worker"} <= set(SERVICES)
    process_ids = {SERVICES[name]["KWF_PROCESS_ID"] for name in ("runtime-1", "runtime-2", "worker")}
    assert len(process_ids) == 3


@pytest.mark.parametrize("node", KAFKA_NODES)
def test_compose_brokers_carry_the_local_clusters_settings(node: str) -> None:
    env = SERVICES[node]
    for key, value in broker_properties(3).items():
        assert env.get(as_env_name(key)) == value, f"{node}: {as_env_name(key)} should be {value}"


def test_compose_quorum_lists_every_node_and_runtimes_bootstrap_from_all() -> None:
    voters = {SERVICES[node]["KAFKA_CONTROLLER_QUORUM_VOTERS"] for node in KAFKA_NODES}
    assert voters == {"1@kafka-1:9093,2@kafka-2:9093,3@kafka-3:9093"}
    assert {SERVICES[node]["KAFKA_NODE_ID"] for node in KAFKA_NODES} == {"1", "2", "3"}
    assert len({SERVICES[node]["CLUSTER_ID"] for node in KAFKA_NODES}) == 1
    for service in ("runtime-1", "runtime-2", "worker"):
        assert SERVICES[service]["KWF_BOOTSTRAP_SERVERS"] == "kafka-1:19092,kafka-2:19092,kafka-3:19092"


def test_internal_topics_are_replicated_on_a_cluster_and_not_on_one_node() -> None:
    three, one = broker_properties(3), broker_properties(1)
    assert three["transaction.state.log.replication.factor"] == "3"
    assert three["transaction.state.log.min.isr"] == "2"
    assert three["offsets.topic.replication.factor"] == "3"
    assert three["min.insync.replicas"] == "2"
    assert one["transaction.state.log.replication.factor"] == "1"
    assert one["min.insync.replicas"] == "1"


def test_cluster_nodes_have_their_own_folders_and_ports(tmp_path: Path) -> None:
    cluster = LocalCluster(home=tmp_path, size=3, port=29092)
    nodes = cluster.nodes
    assert [n.port for n in nodes] == [29092, 29094, 29096]
    assert [n.ctrl_port for n in nodes] == [29093, 29095, 29097]
    assert len({n.folder for n in nodes}) == 3
    assert {n.cluster_id for n in nodes} == {cluster.node(1).cluster_id}
    assert cluster.voters == "1@127.0.0.1:29093,2@127.0.0.1:29095,3@127.0.0.1:29097"
    assert cluster.by_port(29094).node_id == 2
    assert LocalCluster.existing(tmp_path) is None


@pytest.mark.parametrize(("requested", "brokers", "plan"), [
    (None, 1, (1, 1)), (None, 2, (1, 1)), (None, 3, (3, 2)), (None, 5, (3, 2)), (2, 3, (2, 1)), (1, 3, (1, 1)),
])
def test_replication_plan(requested: int | None, brokers: int, plan: tuple[int, int]) -> None:
    assert replication_plan(requested, brokers) == plan


def test_a_replication_factor_the_cluster_cannot_give_is_refused_with_what_to_do() -> None:
    with pytest.raises(TopicError, match=r"needs 3 brokers, but the cluster has 1.*KWF_REPLICATION_FACTOR"):
        replication_plan(3, 1)
    with pytest.raises(TopicError, match="1 or more"):
        replication_plan(0, 3)


def test_replication_factor_setting_reaches_every_topic(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KWF_REPLICATION_FACTOR", "2")
    assert {spec.replication_factor for spec in workflow_topics(Settings.from_env())} == {2}
    monkeypatch.delenv("KWF_REPLICATION_FACTOR")
    assert {spec.replication_factor for spec in workflow_topics(Settings.from_env())} == {None}


def test_every_producer_waits_for_all_in_sync_replicas() -> None:
    assert Settings().producer()["acks"] == "all"
    processor = ProcessorConfig(group_id="g", input_topic="in", changelog_topic=None, dlq_topic="dlq",
                                state_dir=Path("/s"), process_id="p", client={"bootstrap.servers": "b:9092"})
    assert processor.producer_settings()["acks"] == "all"


def test_stop_and_status_find_a_cluster_started_on_another_port(tmp_path: Path) -> None:
    cluster = LocalCluster(home=tmp_path, size=3, port=29092)
    for node in cluster.nodes:
        node.folder.mkdir(parents=True)
    (cluster.folder / "cluster.port").write_text("29092")
    found = LocalCluster.existing(tmp_path, port=9092)
    assert found is not None and (found.size, found.port) == (3, 29092)

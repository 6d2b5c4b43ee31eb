"""Security settings reach every Kafka client; secrets and payloads stay out of logs; names are checked."""

from __future__ import annotations

import ast
import asyncio
import json
import logging
import time
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.api.client import WorkflowClient
from engine.core.history import EventRaised, HistoryEvent, validate_event_name
from engine.edges.bridge import BridgeRoute, PubSubBridge
from engine.edges.commands import CommandsDoor, MalformedCommand, parse_command
from engine.edges.worker import ActivityWorker
from engine.orchestration.orchestrator import Orchestrator
from engine.replay.registry import Registry
from engine.runtime import WorkflowRuntime
from engine.state.codec import ActivityTask, encode_event
from engine.state.config import Settings
from streams.kafka_config import client_settings
from streams.processor import Processor

REPO = Path(__file__).resolve().parents[3]
SECRET = "s3cret-pa55word"
SASL = {
    "security.protocol": "SASL_SSL",
    "sasl.mechanism": "SCRAM-SHA-512",
    "sasl.username": "kwf",
    "sasl.password": SECRET,
    "ssl.ca.location": "/etc/kafka/ca.pem",
}


def secure_settings(**extra: Any) -> Settings:
    return Settings(bootstrap_servers="kafka-1:9093", topic_prefix="sec", partitions=4, state_dir=Path("/tmp/sec"),
                    process_id="p1", api_token="token-" + SECRET, kafka=dict(SASL), **extra)


def assert_secure(config: dict[str, Any], where: str) -> None:
    for key, value in SASL.items():
        assert config.get(key) == value, f"{where}: {key} is {config.get(key)!r}, want {value!r}"
    assert config["bootstrap.servers"] == "kafka-1:9093", where


def test_kwf_kafka_variables_become_librdkafka_properties() -> None:
    env = {"KWF_BOOTSTRAP_SERVERS": "kafka-1:9093", "KWF_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KWF_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KWF_KAFKA_SASL_USERNAME": "kwf",
           "KWF_KAFKA_SASL_PASSWORD": SECRET, "KWF_KAFKA_SSL_CA_LOCATION": "/etc/kafka/ca.pem"}
    assert_secure(client_settings(environ=env), "client_settings")


def test_every_client_config_the_runtime_builds_carries_the_security_settings() -> None:
    settings = secure_settings()
    registry = Registry()
    orchestrator = Orchestrator(settings, registry, 4).processor_config()
    commands = CommandsDoor(settings, inbox_partitions=4).processor_config()
    bridge = PubSubBridge(settings, BridgeRoute("payments", "paid"), 4).processor_config()
    worker = ActivityWorker(settings, registry)
    configs = {
        "settings.client (admin clients, history reader, status view)": settings.client(),
        "settings.producer (client, worker results)": settings.producer(),
        "worker consumer": worker.consumer_settings(),
    }
    for name, config in [("orchestrator", orchestrator), ("commands door", commands), ("bridge", bridge)]:
        configs[f"{name} consumer"] = config.consumer_settings()
        configs[f"{name} transactional producer"] = config.producer_settings()
        configs[f"{name} restore consumer and admin"] = dict(config.client)
    for where, config in configs.items():
        assert_secure(config, where)


class Recorder:
    """Stands in for a confluent_kafka client class and keeps the configs it was given."""

    def __init__(self) -> None:
        self.configs: list[dict[str, Any]] = []

    def __call__(self, config: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        self.configs.append(dict(config))
        raise RuntimeError("recorded")


def test_the_workflow_client_producer_gets_the_security_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    recorder = Recorder()
    monkeypatch.setattr("engine.api.client.Producer", recorder)
    with pytest.raises(RuntimeError, match="recorded"):
        WorkflowClient(settings=secure_settings())
    assert_secure(recorder.configs[0], "WorkflowClient producer")


# Arguments that come from the runtime's settings: Settings.client()/producer(), a
# ProcessorConfig's client/consumer/producer settings, or a variable holding one of them.
_FROM_SETTINGS = ("client()", "producer()", "consumer_settings()", "producer_settings()")
_SETTINGS_NAMES = {"client", "settings"}
# The local broker's and cluster's own probes talk to brokers this project started, in plain text.
_EXEMPT = {("streams/broker.py", "broker_answers"), ("streams/broker.py", "count_brokers")}


def test_every_kafka_client_in_engine_and_streams_is_built_from_the_settings() -> None:
    found = []
    for folder in ("engine", "streams"):
        for path in sorted((REPO / folder).rglob("*.py")):
            tree = ast.parse(path.read_text())
            for function in [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)]:
                for call in [n for n in ast.walk(function) if isinstance(n, ast.Call)]:
                    name = call.func.id if isinstance(call.func, ast.Name) else getattr(call.func, "attr", "")
                    if name not in ("Consumer", "Producer", "AdminClient"):
                        continue
                    where = (str(path.relative_to(REPO)), function.name)
                    if where in _EXEMPT:
                        continue
                    source = ast.unparse(call.args[0]) if call.args else ""
                    names = {n.id for n in ast.walk(call.args[0]) if isinstance(n, ast.Name)} if call.args else set()
                    found.append(where)
                    assert any(s in source for s in _FROM_SETTINGS) or names & _SETTINGS_NAMES, (
                        f"{where[0]}:{call.lineno} builds a {name} from {source!r}, not from the runtime's "
                        "settings: KWF_KAFKA_* (SASL/SSL) would not reach it")
    assert len(found) >= 10, found


def test_settings_repr_shows_no_secret() -> None:
    text = repr(secure_settings())
    assert SECRET not in text and "token-" not in text
    assert "kafka-1:9093" in text


def test_no_processor_config_shows_a_secret() -> None:
    settings = secure_settings()
    configs = {
        "orchestrator": Orchestrator(settings, Registry(), 4).processor_config(),
        "commands door": CommandsDoor(settings, inbox_partitions=4).processor_config(),
        "bridge": PubSubBridge(settings, BridgeRoute("payments", "paid"), 4).processor_config(),
    }
    for where, config in configs.items():
        assert config.client["sasl.password"] == SECRET, where  # there to hide
        for text in (repr(config), str(config), f"{config}"):
            assert SECRET not in text, f"{where}: {text}"
        assert config.group_id in repr(config), where


_SECRET_FIELDS = ("client", "kafka", "token", "password", "secret", "config")


def test_every_settings_dataclass_leaves_its_secret_fields_out_of_repr() -> None:
    """Any dataclass in engine/ or streams/ with a field that can hold Kafka settings or a token."""
    import dataclasses
    import importlib
    import inspect

    checked = []
    for folder in ("engine", "streams"):
        for path in sorted((REPO / folder).rglob("*.py")):
            name = ".".join(path.relative_to(REPO).with_suffix("").parts).removesuffix(".__init__")
            module = importlib.import_module(name)
            for cls in vars(module).values():
                if not (inspect.isclass(cls) and dataclasses.is_dataclass(cls) and cls.__module__ == module.__name__):
                    continue
                for f in dataclasses.fields(cls):
                    holds_settings = "dict[str, str]" in str(f.type) or any(w in f.name for w in _SECRET_FIELDS)
                    if holds_settings:
                        checked.append(f"{cls.__name__}.{f.name}")
                        where = f"{module.__name__}.{cls.__name__}.{f.name}"
                        assert not f.repr or _harmless(cls, f.name), f"{where} is in repr"
    assert {"Settings.kafka", "Settings.api_token", "ProcessorConfig.client"} <= set(checked), checked


def _harmless(cls: type, name: str) -> bool:
    # Topic-level configuration (retention, compaction) holds no credentials.
    # A propagated failure is workflow data (type, message), not configuration.
    # A list page's continuation token is a position in the list, not a credential.
    return (cls.__name__, name) in {("TopicSpec", "config"), ("ActivityResult", "error"),
                                     ("ChildWorkflowResult", "error"), ("WorkflowResult", "error"),
                                     ("WorkflowPage", "continuation_token"), ("StatusPage", "continuation_token")}


def test_an_undecodable_task_is_logged_without_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    class Message:
        def topic(self) -> str:
            return "sec.activities"

        def partition(self) -> int:
            return 1

        def offset(self) -> int:
            return 7

        def key(self) -> bytes:
            return b"order-1/3"

        def value(self) -> bytes:
            return f'{{"card": "{SECRET}"}}'.encode()

        def headers(self) -> None:
            return None

    class Producer:
        def produce(self, *args: Any, **kwargs: Any) -> None:
            self.sent = kwargs

    worker = ActivityWorker(secure_settings(), Registry())
    caplog.set_level(logging.DEBUG)
    message = Message()
    try:
        from engine.state.codec import decode_task

        decode_task(message.value())
    except Exception as err:
        worker._to_dead_letters(Producer(), message, err)  # type: ignore[arg-type]
    assert caplog.records, "nothing logged"
    assert all(SECRET not in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]


def test_a_dead_lettered_record_is_logged_without_its_bytes(caplog: pytest.LogCaptureFixture) -> None:
    settings = secure_settings()
    orchestrator = Orchestrator(settings, Registry(), 4)
    processor = Processor(orchestrator.processor_config(), orchestrator)
    value = f'{{"card": "{SECRET}"}}'.encode()

    class Message:
        def topic(self) -> str:
            return "sec.inbox"

        def partition(self) -> int:
            return 0

        def offset(self) -> int:
            return 3

        def key(self) -> bytes:
            return b"order-1"

        def value(self) -> bytes:
            return value

        def headers(self) -> None:
            return None

    class Writer:
        def produce(self, *args: Any) -> None:
            self.sent = args

    with pytest.raises(Exception) as refused:
        orchestrator.decode("sec.inbox", b"order-1", value)
    caplog.set_level(logging.DEBUG)
    writer = Writer()
    processor._dead_letter(writer, Message(), refused.value)  # type: ignore[arg-type]
    assert writer.sent[2] == value  # the bytes go to the dead-letter topic ...
    assert caplog.records and all(SECRET not in r.getMessage() for r in caplog.records)  # ... not to the log


def test_a_refused_command_names_the_problem_not_the_payload() -> None:
    with pytest.raises(MalformedCommand) as refused:
        parse_command(f'{{"type": "raise", "instanceID": "bad id!", "event": "go", "data": "{SECRET}"}}'.encode(),
                      None, max_payload_bytes=1024)
    assert "instance ID" in str(refused.value) and SECRET not in str(refused.value)


def plain_settings() -> Settings:
    """No TLS files to load: clients can be built (they connect only when used, and quietly)."""
    return Settings(bootstrap_servers="127.0.0.1:1", topic_prefix="sec", partitions=4, state_dir=Path("/tmp/sec"),
                    process_id="p1", kafka={"log_level": "0"})


def event(instance_id: str, name: str) -> bytes:
    return encode_event(HistoryEvent(instance_id, "", -1, datetime.now(UTC), EventRaised(name, '"x"')))


@pytest.mark.parametrize("bad", ["", "with space", "a/b", "x" * 129, "naïve", "new\nline"])
def test_bad_instance_ids_are_refused_at_every_door(bad: str) -> None:
    settings = plain_settings()
    client = WorkflowClient(settings=settings)
    with pytest.raises(ValueError, match="instance ID"):
        client.raise_workflow_event(bad, "go")
    with pytest.raises(ValueError, match="instance ID"):
        client.terminate_workflow(bad)
    with pytest.raises(MalformedCommand, match="instance ID"):
        parse_command(json.dumps({"type": "raise", "event": "go", "instanceID": bad}).encode(), None,
                      max_payload_bytes=1024)
    bridge = PubSubBridge(settings, BridgeRoute("payments", "paid", instance_id_field="order"), 4)
    with pytest.raises(ValueError, match="instance ID"):
        bridge.decode("payments", None, json.dumps({"order": bad}).encode())
    orchestrator = Orchestrator(settings, Registry(), 4)
    with pytest.raises(ValueError, match="instance ID"):
        orchestrator.decode("sec.inbox", None, event(bad, "go"))


@pytest.mark.parametrize("bad", ["", "x" * 257, "bell\x07", "new\nline"])
def test_bad_event_names_are_refused_at_every_door(bad: str) -> None:
    settings = plain_settings()
    with pytest.raises(ValueError, match="event name"):
        validate_event_name(bad)
    with pytest.raises(ValueError, match="event name"):
        WorkflowClient(settings=settings).raise_workflow_event("order-1", bad)
    with pytest.raises(MalformedCommand, match="event name"):
        parse_command(json.dumps({"type": "raise", "instanceID": "order-1", "event": bad}).encode(), None,
                      max_payload_bytes=1024)
    with pytest.raises(ValueError, match="event name"):
        Orchestrator(settings, Registry(), 4).decode("sec.inbox", b"order-1", event("order-1", bad))
    with pytest.raises(ValueError, match="event name"):
        WorkflowRuntime(settings=settings).add_bridge(BridgeRoute("payments", bad))


def test_a_stuck_activity_fails_with_activity_timeout_naming_it() -> None:
    registry = Registry()

    async def waits_forever(ctx: Any, value: Any) -> None:
        await asyncio.Event().wait()

    def blocks(ctx: Any, value: Any) -> str:
        time.sleep(0.6)
        return "too late"

    def quick(ctx: Any, value: Any) -> str:
        return "on time"

    for fn in (waits_forever, blocks, quick):
        registry.register_activity(fn)
    worker = ActivityWorker(Settings(activity_timeout_s=0.2), registry)

    def run(name: str) -> Any:
        task = ActivityTask("order-1", "e1", 3, name, None, "wf", datetime.now(UTC))
        return asyncio.run(worker._run_activity(task))

    for name in ("waits_forever", "blocks"):
        outcome = run(name)
        assert outcome.failure is not None and outcome.failure.type == "ActivityTimeout", outcome
        assert name in outcome.failure.message and "KWF_ACTIVITY_TIMEOUT_S" in outcome.failure.message
    assert run("quick").result == '"on time"'
    assert ActivityWorker(Settings(), registry).settings.activity_timeout_s is None


def test_an_oversized_payload_is_refused_at_the_client_with_the_limit_named() -> None:
    from engine import PayloadTooLarge

    client = WorkflowClient(settings=replace(plain_settings(), max_payload_bytes=100))
    with pytest.raises(PayloadTooLarge, match=r"event data is 1\d\d bytes of JSON; the limit is 100 .*KWF_MAX_PAYLOAD"):
        client.raise_workflow_event("order-1", "go", data="x" * 120)
    with pytest.raises(PayloadTooLarge, match="output"):
        client.terminate_workflow("order-1", output=["y" * 200])
    # A start is refused before the client reads anything from the broker (there is none here).
    with pytest.raises(PayloadTooLarge, match="input"):
        client.schedule_new_workflow("doubler", input={"lines": "z" * 200}, instance_id="order-2")


def test_an_oversized_body_is_refused_by_the_api_with_413() -> None:
    from fastapi.testclient import TestClient

    from engine.api.http_api import create_app

    api = TestClient(create_app(WorkflowClient(settings=replace(plain_settings(), max_payload_bytes=100))))
    base = "/v1.0-beta1/workflows/dapr"
    for path in (f"{base}/wf/start?instanceID=order-1", f"{base}/order-1/raiseEvent/go", f"{base}/order-1/terminate"):
        response = api.post(path, content=b'"' + b"x" * 200 + b'"')
        assert response.status_code == 413, (path, response.text)
        assert response.json()["errorCode"] == "ERR_PAYLOAD_TOO_LARGE"
        assert "the limit is 100 bytes (KWF_MAX_PAYLOAD_BYTES)" in response.json()["message"]

    def chunks() -> Any:  # no Content-Length: the body's real size decides
        yield b'"' + b"x" * 150 + b'"'

    response = api.post(f"{base}/wf/start", content=chunks())
    assert response.status_code == 413, response.text

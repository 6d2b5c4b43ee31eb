"""One runtime for the whole compat package, configured only through ``KWF_*`` as a Dapr program would be.

``WorkflowRuntime()`` and ``WorkflowClient()`` are built with no arguments while the
environment names the broker, a fresh topic prefix, a state folder and two partitions
(few partitions: topic creation and rebalances stay cheap on a shared machine).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from confluent_kafka.admin import AdminClient

import engine as wf
from streams.topics import delete_topics_with_prefix
from tests.integration.compat import app

PARTITIONS = 2


@pytest.fixture(scope="package")
def compat_env(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """The ``KWF_*`` environment of the package's runtime and clients."""
    env = {
        "KWF_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KWF_TOPIC_PREFIX": f"compat{uuid.uuid4().hex[:8]}",
        "KWF_STATE_DIR": str(tmp_path_factory.mktemp("compat") / "state"),
        "KWF_PARTITIONS": str(PARTITIONS),
    }
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("KWF_PROCESS_ID", raising=False)
        for key, value in env.items():
            mp.setenv(key, value)
        yield env
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    for prefix in (env["KWF_TOPIC_PREFIX"], env["KWF_TOPIC_PREFIX"] + "-idle"):  # the idle test's own
        delete_topics_with_prefix(admin, prefix)


@pytest.fixture(scope="package")
def wfr(compat_env: dict[str, str]) -> Iterator[wf.WorkflowRuntime]:
    """The program's runtime, started once for the package."""
    runtime = wf.WorkflowRuntime()
    app.register(runtime)
    runtime.start()
    yield runtime
    runtime.shutdown()


@pytest.fixture(scope="package")
def wfc(wfr: wf.WorkflowRuntime) -> Iterator[wf.WorkflowClient]:
    """A client built with no arguments, as ``DaprWorkflowClient()`` is."""
    client = wf.WorkflowClient()
    yield client
    client.close()

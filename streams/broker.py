"""A local Apache Kafka broker (KRaft), or a local cluster of them, for machines without Docker.

The official broker jars come from Maven Central through Maven (the pom beside this
module), are copied once into a cache folder and reused after. A broker runs as one
combined broker+controller on 127.0.0.1 with its data, configuration, log and PID file
under ``<home>/broker`` (``home`` defaults to ``$KWF_HOME`` or ``./.kwf``).

``LocalCluster`` runs N such combined nodes (``kwf broker start --nodes 3``) under
``<home>/cluster/node-<i>``, node i on port ``base + 2(i-1)`` and its controller on the
next port. Three combined nodes rather than three controllers and three brokers: on one
machine six JVMs would cost twice the memory and start-up time for no extra fault to test
(a killed node loses a broker and a controller at once, the harder case), and three voters
still survive the loss of any one node.
"""

from __future__ import annotations

import base64
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from streams.topics import replication_plan

KAFKA_VERSION = "4.1.1"
POM = Path(__file__).with_name("broker_jars") / "pom.xml"
# One broker on a 2-core machine: a bounded heap keeps room for the runtime and tests.
DEFAULT_HEAP = "768m"
# Three nodes share the same machine: a smaller heap each.
CLUSTER_HEAP = "512m"
# Cold JVM start plus KRaft election takes ~5-10 s here; a minute means something is wrong.
START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 30.0


class BrokerError(RuntimeError):
    """The local broker could not be set up, started or stopped; the message says why."""


def cluster_id() -> str:
    """A KRaft cluster ID: 16 random bytes in URL-safe base64 without padding.

    Never one starting with "-": the storage tool would read it as an option (Kafka's own
    ``Uuid.randomUuid`` skips those for the same reason).
    """
    while True:
        cid = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not cid.startswith("-"):
            return cid


@dataclass(frozen=True)
class LocalBroker:
    """Where one local broker keeps its files and which ports it listens on."""

    home: Path
    port: int = 9092
    controller_port: int | None = None
    heap: str = DEFAULT_HEAP
    # Tests run their own broker beside a developer's, in a folder of its own.
    folder_name: str = "broker"
    # In a cluster: this node's ID, the controller quorum ("1@127.0.0.1:9093,...") and the
    # cluster ID every node is formatted with; alone, node 1 is its own quorum.
    node_id: int = 1
    voters: str | None = None
    cluster_id: str | None = None
    cluster_size: int = 1

    @classmethod
    def from_env(cls, port: int | None = None, home: Path | None = None) -> LocalBroker:
        """Build from ``KWF_HOME`` / ``KWF_BROKER_PORT``, overridden by the arguments."""
        base = home or Path(os.environ.get("KWF_HOME", ".kwf"))
        chosen = port or int(os.environ.get("KWF_BROKER_PORT", "9092"))
        return cls(home=base.resolve(), port=chosen)

    @property
    def folder(self) -> Path:
        return self.home / self.folder_name

    @property
    def data_dir(self) -> Path:
        return self.folder / "data"

    @property
    def log_file(self) -> Path:
        return self.folder / "broker.log"

    @property
    def pid_file(self) -> Path:
        return self.folder / "broker.pid"

    @property
    def jars_dir(self) -> Path:
        return jars_dir(self.home)

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def ctrl_port(self) -> int:
        return self.controller_port or self.port + 1

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the broker unless it already answers; return the bootstrap address."""
        if self.answers():
            return self.bootstrap
        proc = self.launch()
        self.wait_answering(proc, timeout)
        return self.bootstrap

    def launch(self) -> subprocess.Popen[bytes]:
        """Start the broker's JVM and return at once (``wait_answering`` waits for it)."""
        java = find_java()
        jars = resolve_jars(self.home)
        for port in (self.port, self.ctrl_port):
            if not port_is_free(port):
                raise BrokerError(
                    f"port {port} on 127.0.0.1 is taken by another process; stop it or pick "
                    f"another port (kwf broker start --port N, or KWF_BROKER_PORT)"
                )
        self.folder.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        self._format_storage(java, jars, config)
        log = open(self.log_file, "ab")
        cmd = [
            java,
            f"-Xmx{self.heap}",
            "-Xms128m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            f"-Dlog4j2.configurationFile={self._write_log_config()}",
            "-cp",
            str(jars / "*"),
            "kafka.Kafka",
            str(config),
        ]
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True
        )
        self.pid_file.write_text(str(proc.pid))
        return proc

    def wait_answering(self, proc: subprocess.Popen[bytes], timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the launched broker answers; kill it and raise if it exits or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise BrokerError(
                    f"the broker exited with code {proc.returncode} during start-up.\n"
                    f"{self._diagnosis()}\nLast lines of {self.log_file}:\n{self.log_tail()}"
                )
            if self.answers(timeout=1.0):
                return
            time.sleep(0.3)
        proc.kill()
        raise BrokerError(
            f"the broker did not answer on {self.bootstrap} within {timeout:.0f} s.\n"
            f"Last lines of {self.log_file}:\n{self.log_tail()}"
        )

    def kill(self) -> bool:
        """SIGKILL the broker (a crash, for fault tests); False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        os.kill(pid, signal.SIGKILL)
        while pid_alive(pid):
            time.sleep(0.05)
        return True

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop the broker by its recorded PID and wait for it; False if none was running."""
        pid = self.pid()
        if pid is None:
            return False
        try:
            os.kill(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid_file.unlink(missing_ok=True)
            return False
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and pid_alive(pid):
            time.sleep(0.2)
        if pid_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while pid_alive(pid):
                time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)
        return True

    def pid(self) -> int | None:
        """The PID of a running broker started from this folder, if any."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if pid_alive(pid) else None

    def answers(self, timeout: float = 2.0) -> bool:
        """True when a broker answers a metadata request on this port."""
        return broker_answers(self.bootstrap, timeout)

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log yet)"

    def _diagnosis(self) -> str:
        tail = self.log_tail(200)
        if "Address already in use" in tail:
            return "A port is taken: stop the other process or choose another port."
        if "meta.properties" in tail or "cluster.id" in tail or "Invalid cluster" in tail:
            return (
                f"The storage under {self.data_dir} looks corrupt or from another cluster: "
                f"delete {self.folder} (kwf broker start --reset) and start again."
            )
        return "See the log below."

    def _write_config(self) -> Path:
        config = self.folder / "server.properties"
        node = [
            "process.roles=broker,controller",
            f"node.id={self.node_id}",
            f"controller.quorum.voters={self.voters or f'{self.node_id}@127.0.0.1:{self.ctrl_port}'}",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{self.ctrl_port}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            f"log.dirs={self.data_dir}",
        ]
        shared = [f"{key}={value}" for key, value in broker_properties(self.cluster_size).items()]
        config.write_text("\n".join([*node, *shared, ""]))
        return config

    def _write_log_config(self) -> Path:
        path = self.folder / "log4j2.properties"
        path.write_text(
            "\n".join(
                [
                    "appender.out.type=Console",
                    "appender.out.name=STDOUT",
                    "appender.out.layout.type=PatternLayout",
                    "appender.out.layout.pattern=[%d] %p %m (%c)%n",
                    "rootLogger.level=INFO",
                    "rootLogger.appenderRef.out.ref=STDOUT",
                    # The request and state-change loggers are very chatty at INFO.
                    "logger.kafka.name=kafka",
                    "logger.kafka.level=WARN",
                    "logger.apache.name=org.apache.kafka",
                    "logger.apache.level=WARN",
                    "logger.server.name=kafka.server.KafkaRaftServer",
                    "logger.server.level=INFO",
                    "",
                ]
            )
        )
        return path

    def _format_storage(self, java: str, jars: Path, config: Path) -> None:
        if (self.data_dir / "meta.properties").exists():
            return
        cid = self.cluster_id or cluster_id()
        result = subprocess.run(
            [java, "-cp", str(jars / "*"), "kafka.tools.StorageTool", "format", "-t", cid, "-c", str(config)],
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BrokerError(
                f"formatting KRaft storage under {self.data_dir} failed:\n{result.stdout}{result.stderr}\n"
                f"Delete {self.folder} (kwf broker start --reset) and try again."
            )


def broker_properties(nodes: int) -> dict[str, str]:
    """Broker settings that depend on nothing but the cluster's size.

    docker-compose.yml carries the same values (tests/unit/streams/test_cluster_config.py
    reads both).
    """
    replicas, min_insync = replication_plan(None, nodes)
    min_isr = str(min_insync)
    return {
        # The consumer offsets and the transaction state log are as replicated as the
        # workflow topics: losing either loses the exactly-once bookkeeping.
        "offsets.topic.replication.factor": str(replicas),
        "offsets.topic.num.partitions": "8",
        "transaction.state.log.replication.factor": str(replicas),
        "transaction.state.log.min.isr": min_isr,
        "transaction.state.log.num.partitions": "8",
        "default.replication.factor": str(replicas),
        "min.insync.replicas": min_isr,
        # Tests and first runs should not wait 3 s for the first rebalance.
        "group.initial.rebalance.delay.ms": "0",
        # Lets processors use short session timeouts so a killed one is noticed fast.
        "group.min.session.timeout.ms": "1000",
        # Abort a dead producer's timed-out transaction within a second, not ten.
        "transaction.abort.timed.out.transaction.cleanup.interval.ms": "1000",
        # Topics are created on purpose, with their configs, never by a typo.
        "auto.create.topics.enable": "false",
        "num.partitions": "8",
        "log.retention.check.interval.ms": "60000",
    }


@dataclass(frozen=True)
class LocalCluster:
    """N combined broker+controller nodes on 127.0.0.1, each with its own folder, ports and log.

    Node i (from 1) listens on ``port + 2(i-1)`` and its controller on the port after.
    """

    home: Path
    size: int = 3
    port: int = 9092
    heap: str = CLUSTER_HEAP
    folder_name: str = "cluster"

    @property
    def folder(self) -> Path:
        return self.home / self.folder_name

    @property
    def voters(self) -> str:
        return ",".join(f"{i}@127.0.0.1:{self.port + 2 * (i - 1) + 1}" for i in range(1, self.size + 1))

    @property
    def nodes(self) -> list[LocalBroker]:
        return [self.node(i) for i in range(1, self.size + 1)]

    def node(self, node_id: int) -> LocalBroker:
        """Node ``node_id`` (its ID in Kafka too)."""
        return LocalBroker(
            home=self.home, port=self.port + 2 * (node_id - 1), heap=self.heap,
            folder_name=f"{self.folder_name}/node-{node_id}", node_id=node_id, voters=self.voters,
            cluster_id=self._cluster_id(), cluster_size=self.size,
        )

    def by_port(self, port: int) -> LocalBroker:
        """The node listening on ``port``."""
        return self.node((port - self.port) // 2 + 1)

    @property
    def bootstrap(self) -> str:
        return ",".join(node.bootstrap for node in self.nodes)

    def start(self, timeout: float = START_TIMEOUT_S) -> str:
        """Start the nodes that are not running, all at once (a quorum needs two of three
        voters before any answers); return once every broker is in the cluster's metadata.
        """
        self.folder.mkdir(parents=True, exist_ok=True)
        # So that stop and status find the nodes without being told the port again.
        (self.folder / "cluster.port").write_text(str(self.port))
        stopped = [node for node in self.nodes if node.pid() is None]
        # In parallel: each launch formats its storage first, a JVM run of its own.
        with ThreadPoolExecutor(max_workers=max(1, len(stopped))) as pool:
            launched = list(zip(stopped, pool.map(LocalBroker.launch, stopped), strict=True))
        for node, proc in launched:
            node.wait_answering(proc, timeout)
        self.wait_for_brokers(self.size, timeout)
        return self.bootstrap

    def wait_for_brokers(self, count: int, timeout: float = START_TIMEOUT_S) -> None:
        """Wait until the metadata lists ``count`` brokers (a restarted node has rejoined)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.brokers_answering() >= count:
                return
            time.sleep(0.3)
        raise BrokerError(f"fewer than {count} brokers of {self.bootstrap} answered within {timeout:.0f} s")

    def brokers_answering(self) -> int:
        """How many brokers the cluster's metadata lists (0 when none answers)."""
        return count_brokers(self.bootstrap)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> bool:
        """Stop every node; False if none was running."""
        return any([node.stop(timeout) for node in self.nodes])

    def kill(self) -> bool:
        """SIGKILL every node (a throwaway cluster: a clean shutdown takes each node half a
        minute of moving leaderships); False if none was running."""
        return any([node.kill() for node in self.nodes])

    def active_controller(self) -> int | None:
        """The node ID of the quorum's leader, from the newest KRaft quorum state on disk."""
        best: tuple[int, int] | None = None
        for node in self.nodes:
            state = node.data_dir / "__cluster_metadata-0" / "quorum-state"
            try:
                data = json.loads(state.read_text())
            except (FileNotFoundError, ValueError):
                continue
            leader, epoch = data.get("leaderId", -1), data.get("leaderEpoch", -1)
            if leader >= 0 and (best is None or epoch > best[1]):
                best = (leader, epoch)
        return None if best is None else best[0]

    def _cluster_id(self) -> str:
        path = self.folder / "cluster.id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(cluster_id())
            return path.read_text().strip()

    @staticmethod
    def existing(home: Path, folder_name: str = "cluster", port: int = 9092) -> LocalCluster | None:
        """The cluster set up under ``home`` before, if any (its size is its node folders, its
        port the one it was started on, else ``port``).
        """
        folder = home / folder_name
        size = len(list(folder.glob("node-*")))
        try:
            port = int((folder / "cluster.port").read_text())
        except (FileNotFoundError, ValueError):
            pass
        return LocalCluster(home=home, size=size, port=port, folder_name=folder_name) if size else None


def jars_dir(home: Path) -> Path:
    return home / "jars" / f"kafka-{KAFKA_VERSION}"


def resolve_jars(home: Path) -> Path:
    """Copy the broker jars and their runtime dependencies into the cache once."""
    target = jars_dir(home)
    done = target / ".complete"
    if done.exists():
        return target
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError("Maven (mvn) is not on PATH; install it (apt-get install maven) to fetch the broker jars")
    target.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies",
         f"-DoutputDirectory={target}", "-DincludeScope=runtime"],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        tail = "\n".join((result.stdout + result.stderr).splitlines()[-25:])
        raise BrokerError(
            f"Maven could not resolve org.apache.kafka:kafka_2.13:{KAFKA_VERSION} from {POM}.\n{tail}\n"
            "Check that Maven reaches its repository (proxy settings in ~/.m2/settings.xml)."
        )
    done.write_text(KAFKA_VERSION)
    return target


def find_java() -> str:
    """A Java 17+ executable: $JAVA_HOME/bin/java first, then PATH."""
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(str(Path(os.environ["JAVA_HOME"]) / "bin" / "java"))
    found = shutil.which("java")
    if found:
        candidates.append(found)
    for java in candidates:
        try:
            out = subprocess.run([java, "-version"], capture_output=True, text=True).stderr
        except OSError:
            continue
        match = re.search(r'version "(\d+)', out)
        if match and int(match.group(1)) >= 17:
            return java
    raise BrokerError(
        "no Java 17 or newer found (JAVA_HOME or PATH); Kafka 4 needs it: apt-get install openjdk-17-jre-headless"
    )


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port_pair() -> int:
    """A port p such that p and p+1 are both free (broker and controller)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        if port < 65000 and port_is_free(port + 1):
            return port
    raise BrokerError("found no two free adjacent ports on 127.0.0.1")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); look at its state where /proc exists.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except (FileNotFoundError, IndexError):
        return True


def free_port_block(count: int) -> int:
    """A port p such that p .. p+count-1 are all free (a cluster's brokers and controllers).

    Chosen outside the kernel's ephemeral range: a port inside it is handed to some
    client's outgoing connection as soon as a killed node lets go of it, and the node
    cannot start again on its own port.
    """
    candidates = ports_outside(ephemeral_port_range(), count)
    for port in random.sample(candidates, min(50, len(candidates))):
        if all(port_is_free(port + i) for i in range(count)):
            return port
    raise BrokerError(f"found no {count} free adjacent ports on 127.0.0.1 outside the ephemeral range")


def ephemeral_port_range() -> tuple[int, int]:
    """The ports the kernel gives outgoing connections (Linux's setting; IANA's range elsewhere)."""
    try:
        low, high = (int(n) for n in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
    except (OSError, ValueError):
        return 49152, 65535
    return low, high


# Below this, ports belong to well-known services more often than not.
LOWEST_PORT = 10000


def ports_outside(ephemeral: tuple[int, int], count: int) -> list[int]:
    """Starts of blocks of ``count`` ports that lie wholly outside the ``ephemeral`` range."""
    low, high = ephemeral
    return [p for p in range(LOWEST_PORT, 65536 - count) if p + count <= low or p > high]


def count_brokers(bootstrap: str, timeout: float = 2.0) -> int:
    """How many brokers the metadata of the cluster at ``bootstrap`` lists; 0 when none answers."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000,
                         "log_level": 0})
    try:
        return len(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return 0


def broker_answers(bootstrap: str, timeout: float = 2.0) -> bool:
    """True when a broker at ``bootstrap`` answers a metadata request within ``timeout``."""
    admin = AdminClient({"bootstrap.servers": bootstrap, "socket.connection.setup.timeout.ms": 1000,
                         "log_level": 0})
    try:
        return bool(admin.list_topics(timeout=timeout).brokers)
    except Exception:
        return False


@contextmanager
def fresh_local_broker(home: Path, folder_name: str) -> Iterator[str]:
    """A local broker in a new folder ``home/folder_name`` on free ports, for one test or
    benchmark run: yields its bootstrap address, and stops it afterwards.
    """
    broker = LocalBroker(home=home, port=free_port_pair(), folder_name=folder_name)
    broker.stop()  # one a killed run left behind
    shutil.rmtree(broker.folder, ignore_errors=True)
    address = broker.start()
    try:
        yield address
    finally:
        broker.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m streams.broker start|stop|status`` (also ``kwf broker``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="kwf broker", description="Run a local Apache Kafka broker (KRaft).")
    parser.add_argument("action", choices=["start", "stop", "status"])
    parser.add_argument("--port", type=int, default=None, help="listener port (default 9092 or KWF_BROKER_PORT)")
    parser.add_argument("--home", type=Path, default=None, help="folder for jars and data (default .kwf)")
    parser.add_argument("--reset", action="store_true", help="delete the broker's data before starting")
    parser.add_argument("--nodes", type=int, default=1,
                        help="start: 1 (default) for one broker, 3 for a replicated local cluster")
    args = parser.parse_args(argv)
    broker = LocalBroker.from_env(port=args.port, home=args.home)
    cluster = LocalCluster.existing(broker.home, port=broker.port)
    try:
        if args.action == "start":
            if args.nodes < 1:
                raise BrokerError("--nodes must be 1 or more")
            target: LocalBroker | LocalCluster = broker
            if args.nodes > 1:
                if cluster is not None and cluster.size != args.nodes and not args.reset:
                    raise BrokerError(f"a cluster of {cluster.size} nodes is set up under {cluster.folder}; "
                                      f"start it with --nodes {cluster.size}, or add --reset to replace it")
                target = LocalCluster(home=broker.home, size=args.nodes, port=broker.port)
            if args.reset:
                for old in (broker, cluster, target):
                    if old is not None:
                        old.stop()
                        shutil.rmtree(old.folder, ignore_errors=True)
            began = time.monotonic()
            address = target.start()
            print(address)
            print(f"{'broker' if args.nodes == 1 else f'{args.nodes}-node cluster'} ready in "
                  f"{time.monotonic() - began:.1f} s", file=sys.stderr)
            return 0
        if args.action == "stop":
            stopped = [broker.stop()] + ([cluster.stop()] if cluster is not None else [])
            print("stopped" if any(stopped) else "no broker was running")
            return 0
        running = False
        if broker.pid() is not None or cluster is None:
            running = broker.answers()
            print(f"running on {broker.bootstrap} (pid {broker.pid()})" if running
                  else f"no broker answers on {broker.bootstrap}")
        if cluster is not None:
            listed = cluster.brokers_answering()
            for node in cluster.nodes:
                pid = node.pid()
                state = f"pid {pid}" if pid is not None else "stopped"
                print(f"node {node.node_id} on {node.bootstrap} (controller {node.ctrl_port}): {state}")
            print(f"cluster {cluster.bootstrap}: {listed} of {cluster.size} brokers in the metadata")
            running = running or listed > 0
        return 0 if running else 1
    except BrokerError as err:
        print(f"kwf broker {args.action}: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())

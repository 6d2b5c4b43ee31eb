"""``kwf``: the local broker, the runtime, and commands on instances."""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import logging
import os
import signal
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from engine.state.config import Settings


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kwf`` console script."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["broker"]:
        from streams.broker import main as broker_main

        return broker_main(args[1:])
    parser = build_parser()
    ns = parser.parse_args(args)
    if not getattr(ns, "command", None):
        parser.print_help()
        return 2
    from engine.observability.logs import configure_logging

    try:
        configure_logging(getattr(logging, ns.log_level))
    except ValueError as err:  # a KWF_LOG_FORMAT nobody knows
        print(f"kwf: {err}", file=sys.stderr)
        return 2
    from engine.api.client import InstanceExists

    try:
        return int(ns.handler(ns) or 0)
    except (ValueError, TimeoutError, RuntimeError, InstanceExists) as err:
        print(f"kwf {ns.command}: {err}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="kwf", description="Durable workflows on Apache Kafka.")
    parser.add_argument("--log-level", default="WARNING", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("broker", help="start|stop|status a local Kafka broker (kwf broker --help)")

    run = sub.add_parser("run", help="run a WorkflowRuntime's processes (and the HTTP API)")
    run.add_argument("--app", required=True, help="MODULE:ATTR naming a WorkflowRuntime")
    run.add_argument("--role", default="all", choices=["all", "orchestrator", "worker"])
    run.add_argument("--app-id", default=None, help="the application this process belongs to (KWF_APP_ID)")
    http = run.add_mutually_exclusive_group()
    http.add_argument("--http-port", type=int, default=3500)
    http.add_argument("--no-http", action="store_true")
    run.add_argument("--http-host", default="127.0.0.1")
    run.add_argument("--metrics-port", type=int, default=None,
                     help="serve Prometheus /metrics on this port too (for --no-http processes and workers)")
    run.set_defaults(handler=cmd_run)

    start = sub.add_parser("start", help="start a workflow instance")
    start.add_argument("name")
    start.add_argument("--input", default=None, help="JSON input")
    start.add_argument("--id", default=None, help="instance ID (generated if absent)")
    start.set_defaults(handler=cmd_start)

    status = sub.add_parser("status", help="show an instance's status")
    status.add_argument("id")
    status.set_defaults(handler=cmd_status)

    raise_ = sub.add_parser("raise", help="raise an external event to an instance")
    raise_.add_argument("id")
    raise_.add_argument("event")
    raise_.add_argument("--data", default=None, help="JSON event data")
    raise_.set_defaults(handler=cmd_raise)

    for verb, help_text in [("terminate", "terminate an instance"), ("suspend", "suspend an instance"),
                            ("resume", "resume a suspended instance"), ("purge", "remove an ended instance")]:
        cmd = sub.add_parser(verb, help=help_text)
        if verb in ("terminate", "purge"):
            cmd.add_argument("id", nargs="?", help="one instance; or leave it out and give a filter")
            add_bulk_filter(cmd)
        else:
            cmd.add_argument("id")
        if verb == "terminate":
            cmd.add_argument("--output", default=None, help="JSON output to record")
        cmd.set_defaults(handler=cmd_manage)

    list_ = sub.add_parser("list", help="list instances")
    list_.add_argument("--status", default=None, help="e.g. RUNNING, COMPLETED, FAILED")
    list_.add_argument("--name", default=None, help="workflow name")
    list_.add_argument("--created-after", default=None, help="RFC 3339 time, inclusive")
    list_.add_argument("--created-before", default=None, help="RFC 3339 time, exclusive")
    list_.add_argument("--page-size", type=int, default=100, help="instances per page (1-1000)")
    list_.add_argument("--continuation-token", default=None, help="the token a previous page printed")
    list_.set_defaults(handler=cmd_list)

    history = sub.add_parser("history", help="show an instance's history as a timeline")
    history.add_argument("id")
    history.add_argument("--all", action="store_true", help="every execution, not only the latest")
    history.set_defaults(handler=cmd_history)
    return parser


def load_app(spec: str) -> Any:
    module_name, _, attr = spec.partition(":")
    if not attr:
        raise ValueError(f"--app wants MODULE:ATTR, got {spec!r}")
    # Like other app runners, find the module from the current folder first.
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    return getattr(importlib.import_module(module_name), attr)


def cmd_run(ns: argparse.Namespace) -> int:
    if ns.app_id is not None:
        # Read by what the application builds at import (its runtime, its clients) ...
        os.environ["KWF_APP_ID"] = ns.app_id
    runtime = load_app(ns.app)
    runtime.role = ns.role
    if ns.app_id is not None:
        runtime.set_app_id(ns.app_id)  # ... and applied to a runtime built with settings of its own
    from engine.observability.exposition import serve_metrics
    from engine.observability.tracing import configure_tracing

    configure_tracing()
    if ns.metrics_port is not None:
        serve_metrics(ns.metrics_port, ns.http_host)
        print(f"metrics on http://{ns.http_host}:{ns.metrics_port}/metrics", file=sys.stderr)
    stop = {"now": False}

    def on_signal(signum: int, _: Any) -> None:
        stop["now"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    runtime.start()
    # A running runtime keeps a large, long-lived working set (cached runs, tasks in flight)
    # that the collector's default pace (every 700 allocations) re-scans hundreds of times a
    # second under load: a fan-out of 10,000 spent ~320 ms of its 1.8 s in it. Objects of the
    # start-up are frozen out of the scans, and collections run every 50,000 allocations.
    gc.freeze()
    gc.set_threshold(50_000, 20, 20)
    server = None
    if not ns.no_http:
        from engine.api.http_api import serve_in_thread

        server = serve_in_thread(runtime, ns.http_host, ns.http_port)
        print(f"HTTP API on http://{ns.http_host}:{ns.http_port} (web page: /ui)", file=sys.stderr)
    print(f"runtime ready ({ns.role}, process {runtime.settings.process_id or '-'}, state "
          f"{runtime.settings.state_dir}); workflows: {', '.join(runtime.registry.workflow_names) or 'none'}",
          file=sys.stderr)
    try:
        import time

        while not stop["now"] and runtime.failure is None:
            time.sleep(0.2)
    finally:
        if server is not None:
            server.stop()
        runtime.shutdown()
    return 1 if runtime.failure is not None else 0


def _client() -> Any:
    from engine.api.client import WorkflowClient

    return WorkflowClient(settings=Settings.from_env())


def _json_arg(text: str | None, what: str) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} is not valid JSON: {err}") from err


# How long `kwf start` waits for a runtime to run what it started.
START_WAIT_S = 30.0


def cmd_start(ns: argparse.Namespace) -> int:
    client = _client()
    instance_id = client.schedule_new_workflow(ns.name, input=_json_arg(ns.input, "--input"), instance_id=ns.id)
    print(instance_id)
    # The start is durable; wait (bounded) until a runtime runs it, so a `kwf status` from
    # another process right after this one sees the instance.
    try:
        client.wait_for_workflow_start(instance_id, timeout_in_seconds=START_WAIT_S)
    except TimeoutError:
        print(f"the start is on the inbox, but no runtime ran it within {START_WAIT_S:.0f} s; is `kwf run` up?",
              file=sys.stderr)
    return 0


def _state_json(state: Any) -> dict[str, Any]:
    return {
        "instanceID": state.instance_id, "workflowName": state.name, "runtimeStatus": state.runtime_status.name,
        "createdAt": state.created_at.isoformat(), "lastUpdatedAt": state.last_updated_at.isoformat(),
        "input": state.serialized_input, "output": state.serialized_output,
        "customStatus": state.serialized_custom_status,
        "failure": None if state.failure_details is None else {
            "type": state.failure_details.error_type, "message": state.failure_details.message},
    }


def cmd_status(ns: argparse.Namespace) -> int:
    state = _client().get_workflow_state(ns.id)
    if state is None:
        print(f"no instance {ns.id}", file=sys.stderr)
        return 1
    print(json.dumps(_state_json(state), indent=2))
    return 0


def cmd_raise(ns: argparse.Namespace) -> int:
    _client().raise_workflow_event(ns.id, ns.event, data=_json_arg(ns.data, "--data"))
    return 0


def add_bulk_filter(cmd: argparse.ArgumentParser) -> None:
    """The filter of ``kwf purge`` and ``kwf terminate`` without an ID: one command for all matches."""
    cmd.add_argument("--status", action="append", default=None,
                     help="match this status (repeat, or separate with commas); default: all it applies to")
    cmd.add_argument("--name", default=None, help="match this workflow name")
    cmd.add_argument("--created-before", default=None, help="match instances created before this time (ISO 8601)")
    cmd.add_argument("--created-after", default=None, help="match instances created at or after this time")
    cmd.add_argument("--no-wait", action="store_true", help="return once the command is accepted")


def _time_arg(text: str | None, what: str) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as err:
        raise ValueError(f"{what} is not an ISO 8601 time such as 2026-11-01T00:00:00Z: {text!r}") from err
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def cmd_bulk(ns: argparse.Namespace) -> int:
    statuses = None if ns.status is None else [s for part in ns.status for s in part.split(",") if s]
    filters = {"status": statuses, "name": ns.name,
               "created_before": _time_arg(ns.created_before, "--created-before"),
               "created_after": _time_arg(ns.created_after, "--created-after")}
    client = _client()
    if ns.command == "purge":
        operation = client.purge_workflows(**filters)
    else:
        operation = client.terminate_workflows(**filters, output=_json_arg(ns.output, "--output"))
    print(f"{ns.command} {operation.command_id} accepted on {operation.partitions} partitions; "
          f"{len(operation.matched)} instances match")
    if not ns.no_wait:
        done = operation.wait(timeout=None)
        print(f"{ns.command} {operation.command_id} done: {done} instances")
    return 0


def cmd_manage(ns: argparse.Namespace) -> int:
    if ns.command in ("terminate", "purge"):
        bulk = ns.status or ns.name or ns.created_before or ns.created_after
        if ns.id is None and not bulk:
            raise ValueError(f"kwf {ns.command} wants an instance ID or a filter (--status, --name, --created-...)")
        if ns.id is not None and bulk:
            raise ValueError(f"kwf {ns.command} takes an instance ID or a filter, not both")
        if bulk:
            return cmd_bulk(ns)
    client = _client()
    if ns.command == "terminate":
        client.terminate_workflow(ns.id, output=_json_arg(ns.output, "--output"))
    elif ns.command == "suspend":
        client.pause_workflow(ns.id)
    elif ns.command == "resume":
        client.resume_workflow(ns.id)
    else:
        client.purge_workflow(ns.id)
    state = client.get_workflow_state(ns.id)
    print(f"{ns.id}: {state.runtime_status.name if state else 'purged'}")
    return 0


def cmd_list(ns: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from rich.console import Console
    from rich.table import Table

    from engine.core.history import WorkflowStatus

    def moment(text: str | None) -> datetime | None:
        if text is None:
            return None
        parsed = datetime.fromisoformat(text)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)

    status = None if ns.status is None else WorkflowStatus[ns.status.upper()]
    page = _client().list_workflows_page(status=status, name=ns.name, created_after=moment(ns.created_after),
                                         created_before=moment(ns.created_before), page_size=ns.page_size,
                                         continuation_token=ns.continuation_token)
    table = Table("instance", "workflow", "status", "created", "updated")
    for state in page.workflows:
        table.add_row(state.instance_id, state.name, state.runtime_status.name,
                      state.created_at.isoformat(timespec="seconds"),
                      state.last_updated_at.isoformat(timespec="seconds"))
    Console().print(table)
    if page.continuation_token is not None:
        print(f"more: kwf list ... --continuation-token {page.continuation_token}", file=sys.stderr)
    return 0


def cmd_history(ns: argparse.Namespace) -> int:
    from rich.console import Console

    from engine.api.history_reader import read_history
    from engine.api.timeline import bar_width_for, render_timeline

    events = read_history(Settings.from_env(), ns.id, all_executions=ns.all)
    if not events:
        print(f"no history for {ns.id}", file=sys.stderr)
        return 1
    console = Console()
    console.print(render_timeline(events, bar_width=bar_width_for(console.width)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

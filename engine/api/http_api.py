"""The Dapr-compatible workflow HTTP API (FastAPI), under ``/v1.0-beta1`` and ``/v1.0``.

Every route answers JSON; errors are ``{"errorCode": "ERR_...", "message": ...}`` with
400 for bad input, 401 for a missing or wrong ``dapr-api-token``, 404 for an unknown
instance, 409 for a start of a running ID, 413 for an oversized payload. ``/kwf/v1/status``
answers other clients whose own status view is still catching up (``engine.api.runtime_reads``);
once this process's view is current the API announces itself in ``{prefix}.runtimes``.
"""

from __future__ import annotations

import hmac
import json
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from engine.api.client import InstanceExists, PayloadTooLarge, WorkflowClient, WorkflowState
from engine.api.history_reader import read_history
from engine.api.runtime_directory import Announcement, advertised_url
from engine.api.runtime_reads import ROUTE, UNTIL, record_to_wire
from engine.api.status_index import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, BadContinuationToken, ListFilter
from engine.api.status_view import StatusView
from engine.api.timeline import timeline_rows
from engine.api.web_ui import mount_ui
from engine.core.history import WorkflowStatus, validate_event_name, validate_instance_id
from engine.observability.exposition import mount_metrics
from engine.state.codec import StatusRecord

log = logging.getLogger("engine.api.http_api")

PREFIXES = ("/v1.0-beta1", "/v1.0")
COMPONENT = "dapr"
# The most instances one list page returns.
MAX_PAGE = MAX_PAGE_SIZE
# uvicorn finishes open requests before it stops; one still running past this is cut off.
STOP_TIMEOUT_S = 10.0
# The longest one status wait another client may hold open here; it asks again after.
MAX_REMOTE_WAIT_S = 60.0


class ApiError(Exception):
    """An error answered as ``{"errorCode", "message"}`` with an HTTP status."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def state_json(state: WorkflowState) -> dict[str, Any]:
    """A WorkflowState as Dapr's HTTP API shows it."""
    properties: dict[str, Any] = {
        "dapr.workflow.input": state.serialized_input,
        "dapr.workflow.custom_status": state.serialized_custom_status or "",
    }
    if state.stalled_reason is not None and state.failure_details is not None:
        # STALLED: the reason (VERSION_NOT_AVAILABLE, PATCH_MISMATCH) and what to deploy.
        properties["dapr.workflow.stalled.reason"] = state.stalled_reason
        properties["dapr.workflow.stalled.message"] = state.failure_details.message
    elif state.failure_details is not None:
        properties["dapr.workflow.failure.error_type"] = state.failure_details.error_type
        properties["dapr.workflow.failure.error_message"] = state.failure_details.message
        properties["dapr.workflow.failure.stack_trace"] = state.failure_details.stack_trace or ""
    elif state.serialized_output is not None:
        properties["dapr.workflow.output"] = state.serialized_output
    return {
        "instanceID": state.instance_id,
        "workflowName": state.name,
        "createdAt": rfc3339(state.created_at),
        "lastUpdatedAt": rfc3339(state.last_updated_at),
        "runtimeStatus": state.runtime_status.name,
        "properties": properties,
    }


def create_app(client: WorkflowClient) -> FastAPI:
    """The API over one client (its settings carry the optional token and payload limit)."""
    app = FastAPI(title="kafka-workflows", version="0.1.0",
                  description="Dapr-compatible workflow API over an event-sourced Kafka runtime.")
    token = client.settings.api_token
    limit = client.settings.max_payload_bytes
    app.state.max_payload_bytes = limit

    @app.middleware("http")
    async def check_token(request: Request, call_next: Any) -> Any:
        if token and request.url.path not in ("/healthz",):
            given = request.headers.get("dapr-api-token", "")
            if not hmac.compare_digest(given.encode(), token.encode()):
                return _error(401, "ERR_UNAUTHORIZED", "missing or wrong dapr-api-token header")
        return await call_next(request)

    @app.middleware("http")
    async def limit_body(request: Request, call_next: Any) -> Any:
        # Refused before the body is read: an oversized body never sits in memory.
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            return _too_large(int(declared), limit)
        return await call_next(request)

    @app.exception_handler(ApiError)
    async def api_error(_: Request, err: ApiError) -> JSONResponse:
        return _error(err.status, err.code, err.message)

    @app.exception_handler(PayloadTooLarge)
    async def payload_too_large(_: Request, err: PayloadTooLarge) -> JSONResponse:
        return _error(413, "ERR_PAYLOAD_TOO_LARGE", str(err))

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        # Unknown paths and methods answer in the API's shape too, not FastAPI's {"detail"}.
        code = {404: "ERR_NOT_FOUND", 405: "ERR_METHOD_NOT_ALLOWED"}.get(err.status_code, "ERR_BAD_REQUEST")
        response = _error(err.status_code, code, f"{request.method} {request.url.path}: {err.detail}")
        if err.headers:
            response.headers.update(err.headers)
        return response

    @app.exception_handler(RequestValidationError)
    async def bad_request(_: Request, err: RequestValidationError) -> JSONResponse:
        first = err.errors()[0] if err.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", ()))
        return _error(400, "ERR_BAD_REQUEST", f"{where}: {first.get('msg', 'invalid request')}")

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for prefix in PREFIXES:
        app.include_router(_routes(client), prefix=prefix)
        app.include_router(_bulk_routes(client), prefix=prefix)
    app.include_router(_status_routes(client))
    mount_ui(app)
    mount_metrics(app)
    return app


def _routes(client: WorkflowClient) -> APIRouter:
    router = APIRouter()
    base = "/workflows/{component}"

    @router.post(base + "/{name}/start", status_code=202)
    async def start(component: str, name: str, request: Request,
                    instanceID: str | None = Query(default=None)) -> dict[str, str]:  # noqa: N803 (Dapr's name)
        _component(component)
        if not name or len(name) > 256:
            raise ApiError(400, "ERR_BAD_REQUEST", "workflow name must be 1 to 256 characters")
        if instanceID is not None:
            _instance_id(instanceID)
        value = await _json_body(request)
        try:
            instance_id = await _blocking(client.schedule_new_workflow, name, input=value, instance_id=instanceID,
                                          traceparent=request.headers.get("traceparent"))
        except InstanceExists as err:
            raise ApiError(409, "ERR_INSTANCE_EXISTS", str(err)) from err
        except PayloadTooLarge as err:
            raise ApiError(413, "ERR_PAYLOAD_TOO_LARGE", str(err)) from err
        except TimeoutError as err:
            raise ApiError(503, "ERR_RUNTIME_UNAVAILABLE", str(err)) from err
        return {"instanceID": instance_id}

    @router.get(base)
    def list_instances(component: str, status: str | None = None, name: str | None = None,
                       created_after: str | None = None, created_before: str | None = None,
                       page_size: int = Query(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE),
                       continuation_token: str | None = None,
                       offset: int | None = Query(default=None, ge=0),
                       limit: int | None = Query(default=None, ge=1, le=MAX_PAGE)) -> dict[str, Any]:
        _component(component)
        wanted = None
        if status is not None:
            try:
                wanted = WorkflowStatus[status.upper()]
            except KeyError as err:
                raise ApiError(400, "ERR_BAD_REQUEST", f"unknown status {status!r}; one of "
                               f"{', '.join(s.name for s in WorkflowStatus)}") from err
        try:
            after, before = _moment(created_after, "created_after"), _moment(created_before, "created_before")
        except ValueError as err:
            raise ApiError(400, "ERR_BAD_REQUEST", str(err)) from err
        if offset is not None or limit is not None:
            # Offset paging with a total (the web page's): it reads every match; the
            # continuation token does not.
            states = client.list_workflows(status=wanted, name=name, created_after=after, created_before=before)
            first, size = offset or 0, limit or DEFAULT_PAGE_SIZE
            more = first + size < len(states)
            return {"workflows": [state_json(s) for s in states[first:first + size]], "total": len(states),
                    "nextOffset": first + size if more else None}
        try:
            page = client.list_workflows_page(status=wanted, name=name, created_after=after, created_before=before,
                                              page_size=page_size, continuation_token=continuation_token or None)
        except ValueError as err:
            raise ApiError(400, "ERR_BAD_REQUEST", str(err)) from err
        return {"workflows": [state_json(s) for s in page.workflows], "continuationToken": page.continuation_token}

    @router.get(base + "/{instance_id}")
    def get_instance(component: str, instance_id: str) -> dict[str, Any]:
        _component(component)
        return state_json(_existing(client, instance_id))

    @router.get(base + "/{instance_id}/history")
    def history(component: str, instance_id: str) -> dict[str, Any]:
        _component(component)
        state = _existing(client, instance_id)
        events = read_history(client.settings, instance_id)
        return {
            "instanceID": instance_id,
            "workflowName": state.name,
            "runtimeStatus": state.runtime_status.name,
            "events": [{"sequence": e.sequence, "timestamp": rfc3339(e.timestamp), "type": type(e.event).__name__,
                        "executionID": e.execution_id, "event": _event_fields(e.event)} for e in events],
            "timeline": [row.to_json() for row in timeline_rows(events)],
        }

    @router.post(base + "/{instance_id}/raiseEvent/{event_name}", status_code=202)
    async def raise_event(component: str, instance_id: str, event_name: str, request: Request) -> None:
        _component(component)
        try:
            validate_event_name(event_name)
        except ValueError as err:
            raise ApiError(400, "ERR_BAD_REQUEST", str(err)) from err
        value = await _json_body(request)
        _existing(client, instance_id)
        try:
            await _blocking(client.raise_workflow_event, instance_id, event_name, data=value)
        except PayloadTooLarge as err:
            raise ApiError(413, "ERR_PAYLOAD_TOO_LARGE", str(err)) from err

    @router.post(base + "/{instance_id}/terminate", status_code=202)
    async def terminate(component: str, instance_id: str, request: Request) -> None:
        _component(component)
        value = await _json_body(request)
        _existing(client, instance_id)
        await _blocking(client.terminate_workflow, instance_id, output=value)

    @router.post(base + "/{instance_id}/pause", status_code=202)
    async def pause(component: str, instance_id: str) -> None:
        _component(component)
        _existing(client, instance_id)
        await _blocking(client.pause_workflow, instance_id)

    @router.post(base + "/{instance_id}/resume", status_code=202)
    async def resume(component: str, instance_id: str) -> None:
        _component(component)
        _existing(client, instance_id)
        await _blocking(client.resume_workflow, instance_id)

    @router.post(base + "/{instance_id}/purge", status_code=202)
    async def purge(component: str, instance_id: str) -> None:
        _component(component)
        _existing(client, instance_id)
        try:
            await _blocking(client.purge_workflow, instance_id)
        except ValueError as err:
            raise ApiError(409, "ERR_INSTANCE_NOT_ENDED", str(err)) from err

    return router


def _bulk_routes(client: WorkflowClient) -> APIRouter:
    """``POST /workflows/dapr/purge`` and ``/terminate``: one durable command for every match.

    The body is a filter, every field optional: ``{"status": ["COMPLETED"], "name": "...",
    "createdBefore": "2026-11-01T00:00:00Z", "createdAfter": "..."}`` (and ``"output"`` for
    terminate). The answer, 202 once the command is accepted: ``{"commandID", "partitions",
    "matched"}``; with ``?wait=S`` it also waits up to S seconds and adds ``"done"``.
    """
    router = APIRouter()

    async def bulk(action: str, component: str, request: Request, wait: float) -> dict[str, Any]:
        _component(component)
        body = await _json_body(request)
        if body is None:
            body = {}
        if not isinstance(body, dict):
            raise ApiError(400, "ERR_BAD_REQUEST", "the body is a JSON object: the filter")
        unknown = set(body) - {"status", "name", "createdBefore", "createdAfter", "output"}
        if unknown or (action == "purge" and "output" in body):
            raise ApiError(400, "ERR_BAD_REQUEST", f"unknown filter fields: {', '.join(sorted(unknown or {'output'}))}")
        status = body.get("status")
        if isinstance(status, str):
            status = [status]
        if status is not None and not (isinstance(status, list) and all(isinstance(x, str) for x in status)):
            raise ApiError(400, "ERR_BAD_REQUEST", "status is a list of status names")
        name = body.get("name")
        if name is not None and not isinstance(name, str):
            raise ApiError(400, "ERR_BAD_REQUEST", "name is a string")
        try:
            filters = {"status": status, "name": name,
                       "created_before": _moment(body.get("createdBefore"), "createdBefore"),
                       "created_after": _moment(body.get("createdAfter"), "createdAfter")}
            if action == "purge":
                operation = await _blocking(client.purge_workflows, **filters)
            else:
                operation = await _blocking(client.terminate_workflows, **filters, output=body.get("output"))
        except PayloadTooLarge as err:
            raise ApiError(413, "ERR_PAYLOAD_TOO_LARGE", str(err)) from err
        except ValueError as err:
            raise ApiError(400, "ERR_BAD_REQUEST", str(err)) from err
        except (TimeoutError, RuntimeError) as err:
            raise ApiError(503, "ERR_RUNTIME_UNAVAILABLE", str(err)) from err
        answer: dict[str, Any] = {"commandID": operation.command_id, "partitions": operation.partitions,
                                  "matched": len(operation.matched)}
        if wait > 0:
            try:
                await _blocking(operation.wait, timeout=wait)
                answer["done"] = True
            except TimeoutError:
                answer["done"] = False
        return answer

    @router.post("/workflows/{component}/purge", status_code=202)
    async def purge_many(component: str, request: Request,
                         wait: float = Query(default=0, ge=0, le=300)) -> dict[str, Any]:
        return await bulk("purge", component, request, wait)

    @router.post("/workflows/{component}/terminate", status_code=202)
    async def terminate_many(component: str, request: Request,
                             wait: float = Query(default=0, ge=0, le=300)) -> dict[str, Any]:
        return await bulk("terminate", component, request, wait)

    return router


def _status_routes(client: WorkflowClient) -> APIRouter:
    """The status reads other clients ask while their own view catches up (``engine.api.runtime_reads``).

    Records go out as the status topic holds them (Avro, base64), so the asking client
    decodes the same record its own view would hold. 503 while this process's view has not
    read the topic to its end: the asker tries another runtime or waits for its own view.
    """
    router = APIRouter()

    def caught_up_view() -> StatusView:
        view = StatusView.shared(client.settings, wait=False)
        if not view.caught_up:
            raise ApiError(503, "ERR_VIEW_NOT_READY", "this runtime's status view is still catching up")
        return view

    @router.get(ROUTE + "/{instance_id}")
    def status(instance_id: str, until: str | None = None, replaced: str | None = None,
               timeout: float = Query(default=0, ge=0, le=MAX_REMOTE_WAIT_S)) -> dict[str, Any]:
        view = caught_up_view()
        _instance_id(instance_id)
        if until is None:
            return {"record": record_to_wire(view.get(instance_id))}
        if until not in UNTIL:
            raise ApiError(400, "ERR_BAD_REQUEST", f"until is one of {', '.join(UNTIL)}, not {until!r}")
        reached = UNTIL[until]

        def accept(s: StatusRecord | None) -> bool:
            return s is not None and s.execution_id != replaced and reached(s)

        try:
            return {"record": record_to_wire(view.wait_for(instance_id, accept, timeout)), "reached": True}
        except TimeoutError:
            return {"record": record_to_wire(view.get(instance_id)), "reached": False}

    @router.get(ROUTE)
    def page(status: str | None = None, name: str | None = None, created_after_ms: int | None = None,
             created_before_ms: int | None = None,
             page_size: int = Query(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE),
             continuation_token: str | None = None) -> dict[str, Any]:
        view = caught_up_view()
        try:
            wanted = None if status is None else WorkflowStatus[status]
        except KeyError as err:
            raise ApiError(400, "ERR_BAD_REQUEST", f"unknown status {status!r}") from err
        try:
            found = view.list_page(ListFilter(wanted, name, created_after_ms, created_before_ms), page_size,
                                   continuation_token)
        except BadContinuationToken as err:
            raise ApiError(400, "ERR_BAD_REQUEST", str(err)) from err
        return {"records": [record_to_wire(r) for r in found.records], "continuationToken": found.continuation_token}

    return router


def _moment(value: Any, what: str) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(f"{what} is an RFC 3339 time such as 2026-11-01T00:00:00Z")
    try:
        moment = datetime.fromisoformat(value)
    except ValueError as err:
        raise ValueError(f"{what} is an RFC 3339 time such as 2026-11-01T00:00:00Z, not {value!r}") from err
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _component(component: str) -> None:
    if component != COMPONENT:
        raise ApiError(400, "ERR_BAD_REQUEST", f"unknown workflow component {component!r}; use {COMPONENT!r}")


def _instance_id(instance_id: str) -> str:
    try:
        return validate_instance_id(instance_id)
    except ValueError as err:
        raise ApiError(400, "ERR_INSTANCE_ID_INVALID", str(err)) from err


def _existing(client: WorkflowClient, instance_id: str) -> WorkflowState:
    state = client.get_workflow_state(_instance_id(instance_id))
    if state is None:
        raise ApiError(404, "ERR_INSTANCE_ID_NOT_FOUND", f"no workflow instance with ID {instance_id!r}")
    return state


async def _json_body(request: Request) -> Any:
    body = await _read_body(request, request.app.state.max_payload_bytes)
    if not body.strip():
        return None
    try:
        return json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ApiError(400, "ERR_MALFORMED_REQUEST", f"the request body is not valid JSON: {err}") from err


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, read chunk by chunk and refused (413) as soon as it passes ``limit``.

    ``limit_body`` refuses a declared ``Content-Length`` over the limit; a chunked body
    declares none, so its size is checked while it arrives and it never sits whole in memory.
    """
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise ApiError(413, "ERR_PAYLOAD_TOO_LARGE", _too_large_message(len(body), limit, so_far=True))
    return bytes(body)


async def _blocking(fn: Any, *args: Any, **kwargs: Any) -> Any:
    # Client calls wait for the runtime to acknowledge; keep them off the event loop.
    import anyio

    return await anyio.to_thread.run_sync(lambda: fn(*args, **kwargs))


def _event_fields(event: Any) -> dict[str, Any]:
    from dataclasses import fields

    out = {}
    for f in fields(event):
        value = getattr(event, f.name)
        if isinstance(value, datetime):
            value = rfc3339(value)
        elif hasattr(value, "__dataclass_fields__"):
            value = {k: getattr(value, k) for k in value.__dataclass_fields__}
        elif isinstance(value, WorkflowStatus):
            value = value.name
        out[f.name] = value
    return out


def _too_large_message(size: int, limit: int, so_far: bool = False) -> str:
    return (f"the request body is {'at least ' if so_far else ''}{size} bytes; "
            f"the limit is {limit} bytes (KWF_MAX_PAYLOAD_BYTES)")


def _too_large(size: int, limit: int) -> JSONResponse:
    return _error(413, "ERR_PAYLOAD_TOO_LARGE", _too_large_message(size, limit))


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"errorCode": code, "message": message})


@dataclass
class ApiServer:
    """The HTTP API on a thread of its own (``serve_in_thread``); ``stop()`` ends it."""

    server: Any  # uvicorn.Server
    thread: threading.Thread
    client: WorkflowClient = field(repr=False)  # its settings hold Kafka credentials
    url: str = ""
    announcement: Announcement | None = None

    def announce_when_ready(self) -> None:
        """Warm this process's status view, then announce the API in ``{prefix}.runtimes``
        (on a thread of its own: the runtime is ready before its view has read the topic)."""
        threading.Thread(target=self._announce, name="kwf-http-announce", daemon=True).start()

    def _announce(self) -> None:
        view = StatusView.shared(self.client.settings, wait=False)
        while not self.server.should_exit:
            try:
                view.wait_caught_up(1.0)
                break
            except TimeoutError:
                continue
        if self.server.should_exit:
            return
        try:
            self.announcement = Announcement(self.client.settings, self.url)
        except Exception as err:  # the API still serves; clients configured with its URL reach it
            log.warning("could not announce the HTTP API at %s: %s", self.url, err)

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Withdraw the announcement, stop serving, wait for the thread, close the API's Kafka client."""
        self.server.should_exit = True
        if self.announcement is not None:
            self.announcement.withdraw()
        self.thread.join(timeout)
        # The app's routes (and FastAPI's caches of them) keep the client referenced: its
        # producer is closed here, not when the last reference goes.
        self.client.close()


def serve_in_thread(runtime: Any, host: str, port: int) -> ApiServer:
    """Serve the API for ``runtime``'s settings on a daemon thread; ``stop()`` the result."""
    import uvicorn

    # Its reads come from this process's own view: it is what others ask.
    client = WorkflowClient(settings=runtime.settings, ask_runtimes=False)
    server = uvicorn.Server(uvicorn.Config(create_app(client), host=host, port=port, log_level="warning",
                                           access_log=False))
    thread = threading.Thread(target=server.run, name="kwf-http", daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    if not server.started:
        server.should_exit = True
        client.close()
        raise RuntimeError(f"the HTTP API could not listen on {host}:{port} (port taken?)")
    api = ApiServer(server, thread, client, advertised_url(runtime.settings, host, port))
    api.announce_when_ready()
    return api

"""Asking a running runtime for statuses while this process's own status view catches up.

A client with no view folder (a new machine, a container) would otherwise read the whole
status topic before its first answer. A runtime serving the HTTP API holds a caught-up
view; it answers ``/kwf/v1/status`` routes with records exactly as the topic holds them
(Avro, base64), so an answer from it decodes to the same ``StatusRecord`` the client's own
view would give:

    GET /kwf/v1/status/{id}                       {"record": b64 | null}
    GET /kwf/v1/status/{id}?until=started|ended&replaced=EXEC&timeout=S
                                                  {"record": b64 | null, "reached": bool}
    GET /kwf/v1/status?status=&name=&created_after_ms=&created_before_ms=&page_size=&continuation_token=
                                                  {"records": [b64, ...], "continuationToken": str | null}

A runtime whose own view is not caught up answers 503. Addresses come from
``KWF_RUNTIME_URL`` or, unset, from the runtimes' announcements (``runtime_directory``);
one that does not answer is skipped, and when none does the client stops asking and
waits for its own view.
"""

from __future__ import annotations

import base64
import http.client
import json
import logging
import threading
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.api.runtime_directory import find_runtimes
from engine.api.status_index import BadContinuationToken, ListFilter
from engine.api.status_view import StatusPage
from engine.core.history import WorkflowStatus
from engine.state.codec import StatusRecord, decode_status, encode_status
from engine.state.config import Settings
from engine.state.instance_state import ENDED

log = logging.getLogger("engine.api.runtime_reads")

ROUTE = "/kwf/v1/status"
# A runtime on a reachable host accepts in milliseconds; a dead host must not eat the
# half second a first answer is allowed.
CONNECT_TIMEOUT_S = 0.3
# A caught-up view answers a read in milliseconds; past this the runtime is in trouble.
READ_TIMEOUT_S = 2.0
# Announced runtimes tried per question: entries of killed processes stay until a process
# with their ID announces again, and each costs a connect attempt.
MAX_ADDRESSES = 5
# What a wait may ask a runtime to wait for.
UNTIL: dict[str, Callable[[StatusRecord], bool]] = {
    "started": lambda s: s.runtime_status is not WorkflowStatus.PENDING,
    "ended": lambda s: s.runtime_status in ENDED,
}


def record_to_wire(record: StatusRecord | None) -> str | None:
    return None if record is None else base64.b64encode(encode_status(record)).decode()


def record_from_wire(text: str | None) -> StatusRecord | None:
    return None if text is None else decode_status(base64.b64decode(text))


@dataclass(frozen=True)
class RemoteStatus:
    """A runtime's answer for one instance (``reached``: the awaited state, for a wait)."""

    record: StatusRecord | None
    reached: bool = True


class RuntimeUnavailable(Exception):
    """This address did not answer (refused, timed out, 503, or an unexpected answer)."""


class RuntimeReads:
    """Status reads answered by a runtime's HTTP API; None from a read: no runtime answered."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._urls: list[str] | None = list(settings.runtime_urls) or None
        self._given_up = False
        self._lock = threading.Lock()
        self.answers = 0
        """Questions a runtime answered (how often the client's own view was not used)."""

    def status(self, instance_id: str) -> RemoteStatus | None:
        body = self._ask(f"{ROUTE}/{_quote(instance_id)}", READ_TIMEOUT_S)
        return None if body is None else RemoteStatus(record_from_wire(body.get("record")))

    def wait(self, instance_id: str, until: str, replaced: str | None, timeout: float) -> RemoteStatus | None:
        """Wait up to ``timeout`` on the runtime for ``until`` (``started``/``ended``) in an
        execution other than ``replaced``."""
        query = {"until": until, "timeout": f"{timeout:.3f}", **({"replaced": replaced} if replaced else {})}
        body = self._ask(f"{ROUTE}/{_quote(instance_id)}?{urllib.parse.urlencode(query)}", timeout + READ_TIMEOUT_S)
        return None if body is None else RemoteStatus(record_from_wire(body.get("record")), bool(body.get("reached")))

    def page(self, query: ListFilter, page_size: int, continuation_token: str | None) -> StatusPage | None:
        """One list page from a runtime.

        Raises:
            BadContinuationToken: the runtime refused the token.
        """
        params: dict[str, Any] = {"page_size": page_size}
        for field, value in (("status", query.status.name if query.status else None), ("name", query.name),
                             ("created_after_ms", query.created_after_ms),
                             ("created_before_ms", query.created_before_ms),
                             ("continuation_token", continuation_token)):
            if value is not None:
                params[field] = value
        body = self._ask(f"{ROUTE}?{urllib.parse.urlencode(params)}", READ_TIMEOUT_S)
        if body is None:
            return None
        return StatusPage([r for r in map(record_from_wire, body.get("records", [])) if r is not None],
                          body.get("continuationToken"))

    def _ask(self, path: str, read_timeout: float) -> dict[str, Any] | None:
        if self._given_up:
            return None
        for url in self._addresses():
            try:
                body = _get(url, path, self.settings.api_token, read_timeout)
            except RuntimeUnavailable as err:
                log.info("runtime %s did not answer: %s", url, err)
                continue
            with self._lock:
                self.answers += 1
                if self._urls and self._urls[0] != url and url in self._urls:
                    self._urls.remove(url)
                    self._urls.insert(0, url)  # asked first next time
            return body
        # Asked again only by a new client: this one's own view is catching up meanwhile.
        self._given_up = True
        return None

    def _addresses(self) -> list[str]:
        with self._lock:
            if self._urls is None:
                self._urls = [entry.url for entry in find_runtimes(self.settings)][:MAX_ADDRESSES]
            return list(self._urls)


def _quote(instance_id: str) -> str:
    return urllib.parse.quote(instance_id, safe="")


def _get(url: str, path: str, token: str | None, read_timeout: float) -> dict[str, Any]:
    """GET ``path`` of the API at ``url``: its JSON body.

    Raises:
        RuntimeUnavailable: no answer, or not a 200 with JSON.
        BadContinuationToken: a 400 (the only bad input a client's read can send is a token).
    """
    parts = urllib.parse.urlsplit(url)
    connection_type = http.client.HTTPSConnection if parts.scheme == "https" else http.client.HTTPConnection
    connection = connection_type(parts.hostname or "127.0.0.1", parts.port, timeout=CONNECT_TIMEOUT_S)
    try:
        connection.connect()
        if connection.sock is not None:
            connection.sock.settimeout(read_timeout)
        connection.request("GET", parts.path.rstrip("/") + path, headers={"dapr-api-token": token} if token else {})
        response = connection.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as err:  # refused, unreachable, timed out, cut off
        raise RuntimeUnavailable(str(err) or type(err).__name__) from err
    finally:
        connection.close()
    if response.status == 400:
        raise BadContinuationToken(_message(data))
    if response.status != 200:
        raise RuntimeUnavailable(f"HTTP {response.status}: {_message(data)}")
    try:
        body = json.loads(data)
    except ValueError as err:
        raise RuntimeUnavailable(f"not JSON: {err}") from err
    if not isinstance(body, dict):
        raise RuntimeUnavailable("not a JSON object")
    return body


def _message(data: bytes) -> str:
    try:
        return str(json.loads(data).get("message", ""))
    except (ValueError, AttributeError):
        return data[:200].decode(errors="replace")

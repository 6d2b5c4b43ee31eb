"""Property-based fuzzing of every path the HTTP app mounts: no answer is a 5xx.

The paths come from the app itself (its routes, the OpenAPI document's included) plus the
web page's files under ``/ui``, which a middleware serves outside the routes; each is tried
with its own method and with any other.
"""

from __future__ import annotations

import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.api.http_api import create_app
from engine.api.web_ui import UI_PATH
from engine.state.config import Settings
from tests.integration.engine.test_http_api import api, waiting_workflow  # noqa: F401 (fixtures)

SEGMENT = st.one_of(
    st.text(min_size=0, max_size=40),
    st.from_regex(r"[A-Za-z0-9_.:-]{1,20}", fullmatch=True),
    st.sampled_from(["dapr", "waiting_workflow", "OrderProcessingWorkflow", "12345678", "..", "%00", "a" * 200]),
)
BODY = st.one_of(
    st.none(),
    st.binary(max_size=200),
    st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
                 lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                 max_leaves=10).map(lambda v: __import__("json").dumps(v).encode()),
)


METHODS = ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]


def routes(http: httpx.Client) -> list[tuple[str, str]]:
    """Every (method, path template) the app mounts: the OpenAPI ones, its other routes and /ui."""
    spec = http.get("/openapi.json").json()
    found = {(method.upper(), path) for path, item in spec["paths"].items() for method in item}
    app = create_app(SimpleNamespace(settings=Settings()))  # type: ignore[arg-type] (only its routes are read)
    for route in app.routes:
        path = getattr(route, "path", None)  # included routers' routes are in the OpenAPI document
        for method in (getattr(route, "methods", None) or {"GET"}) if path else ():
            found.add((method, path))  # /openapi.json, /docs, /redoc, /healthz
    found |= {("GET", UI_PATH), ("GET", UI_PATH + "/"), ("GET", UI_PATH + "/{file}"),
              ("GET", UI_PATH + "/{folder}/{file}"), ("GET", "/{anywhere}")}
    return sorted(found)


def test_no_request_gets_a_5xx(api: httpx.Client) -> None:  # noqa: F811 (the fixture)
    known = routes(api)
    assert len(known) >= 20, known
    assert {("GET", "/healthz"), ("GET", "/docs"), ("GET", UI_PATH + "/{file}")} <= set(known), known

    def answer(method: str, path: str, query: dict[str, Any], body: bytes | None) -> None:
        response = api.request(method, path, params=query, content=body)
        assert response.status_code < 500, (method, path, query, body, response.status_code, response.text)
        if response.status_code >= 400 and method != "HEAD":
            assert set(response.json()) == {"errorCode", "message"}, (method, path, response.text)

    # Every mounted path with every method once, whatever the random search below draws.
    for method in METHODS:
        for _, template in known:
            answer(method, re.sub(r"\{[^}]+\}", "nope", template), {}, None)

    @settings(max_examples=250, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(known), other_method=st.none() | st.sampled_from(METHODS),
           params=st.lists(SEGMENT, min_size=4, max_size=4),
           query=st.dictionaries(st.sampled_from(["instanceID", "status", "name", "offset", "limit", "token"]),
                                 st.text(max_size=20), max_size=3),
           body=BODY)
    def check(route: tuple[str, str], other_method: str | None, params: list[str], query: dict[str, Any],
              body: bytes | None) -> None:
        method, template = route
        method = other_method or method
        values = iter(params)
        path = re.sub(r"\{[^}]+\}", lambda _: quote(next(values), safe="") or "x", template)
        answer(method, path, query, body)

    check()

"""Property-based fuzzing of the HTTP API from its own /openapi.json: no answer is a 5xx."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import quote

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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


def routes(http: httpx.Client) -> list[tuple[str, str]]:
    spec = http.get("/openapi.json").json()
    return [(method.upper(), path) for path, item in spec["paths"].items() for method in item]


def test_no_request_gets_a_5xx(api: httpx.Client) -> None:  # noqa: F811 (the fixture)
    known = routes(api)
    assert len(known) >= 10, known

    @settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
    @given(route=st.sampled_from(known), params=st.lists(SEGMENT, min_size=4, max_size=4),
           query=st.dictionaries(st.sampled_from(["instanceID", "status", "name", "offset", "limit"]),
                                 st.text(max_size=20), max_size=3),
           body=BODY)
    def check(route: tuple[str, str], params: list[str], query: dict[str, Any], body: bytes | None) -> None:
        method, template = route
        values = iter(params)
        path = re.sub(r"\{[^}]+\}", lambda _: quote(next(values), safe="") or "x", template)
        response = api.request(method, path, params=query, content=body)
        assert response.status_code < 500, (method, path, query, body, response.status_code, response.text)

    check()

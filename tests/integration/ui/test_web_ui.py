"""The page at /ui in a real headless Chromium, over the HTTP API of a runtime on the real broker."""

from __future__ import annotations

from dataclasses import replace
from types import SimpleNamespace
from typing import Any

import httpx

from engine import WorkflowStatus
from engine.api.http_api import serve_in_thread
from tests.integration.ui.conftest import Site, free_port, screenshot
from tests.integration.ui.workflows import fan_out

FAN_OUT = 6


def finished(site: Site, instance_id: str, status: WorkflowStatus) -> None:
    state = site.client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
    assert state is not None and state.runtime_status is status, state


def bar_boxes(page: Any, selector: str) -> list[dict[str, float]]:
    return [bar.bounding_box() for bar in page.locator(selector).all()]


def test_the_list_shows_a_completed_fan_out_and_filters_it(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow(fan_out, input=FAN_OUT, instance_id="fan-out-1")
    site.client.schedule_new_workflow("charge_order", input={"amount": 25}, instance_id="order-1")
    finished(site, "fan-out-1", WorkflowStatus.COMPLETED)
    finished(site, "order-1", WorkflowStatus.FAILED)

    page.goto(site.url())
    row = page.locator('tr[data-instance-id="fan-out-1"]')
    row.wait_for()
    assert row.locator(".badge").inner_text().lower() == "completed"
    assert row.locator("td").nth(1).inner_text() == "fan_out"
    page.locator('tr[data-instance-id="order-1"]').wait_for()
    screenshot(page, "list")

    page.select_option("select[name=status]", "FAILED")
    page.locator('tr[data-instance-id="fan-out-1"]').wait_for(state="detached")
    assert page.locator("tr[data-instance-id]").count() == 1
    page.select_option("select[name=status]", "")
    page.fill("input[name=q]", "fan-out")
    page.locator('tr[data-instance-id="order-1"]').wait_for(state="detached")
    page.locator('tr[data-instance-id="fan-out-1"]').wait_for()
    page.press("input[name=q]", "Enter")  # a single match opens
    page.locator(".gantt").wait_for()
    assert page.url.endswith("#/instance/fan-out-1")


def test_a_fan_out_page_shows_one_parallel_bar_per_activity(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow(fan_out, input=FAN_OUT, instance_id="fan-out-2")
    finished(site, "fan-out-2", WorkflowStatus.COMPLETED)
    history = httpx.get(f"{site.base}/v1.0-beta1/workflows/dapr/fan-out-2/history", timeout=30).json()
    activities = [r for r in history["timeline"] if r["kind"] == "activity"]
    assert len(activities) == FAN_OUT + 1

    page.goto(site.url("#/instance/fan-out-2"))
    page.locator(".gantt").wait_for()
    screenshot(page, "fan-out")
    assert page.locator(".title-row .badge").inner_text().lower() == "completed"
    assert page.locator(".bar[data-kind=activity]").count() == len(activities)
    assert '"total": 55' in page.locator(".value", has_text="Output").inner_text()
    assert '"stage": "done"' in page.locator(".value", has_text="Custom status").inner_text()
    assert page.locator(".value", has_text="Input").locator("pre").inner_text() == str(FAN_OUT)
    # The squares run side by side: every bar overlaps every other; the sum starts after them.
    squares = bar_boxes(page, ".gantt-row[data-name=square] .bar")
    total = bar_boxes(page, ".gantt-row[data-name=add_up] .bar")[0]
    assert len(squares) == FAN_OUT
    assert max(b["x"] for b in squares) < min(b["x"] + b["width"] for b in squares)
    assert total["x"] >= max(b["x"] + b["width"] for b in squares) - 2


def test_a_failed_instance_shows_its_error_and_its_failed_attempts(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow("charge_order", input={"amount": 25}, instance_id="order-2")
    finished(site, "order-2", WorkflowStatus.FAILED)

    page.goto(site.url("#/instance/order-2"))
    error = page.locator(".error-panel")
    error.wait_for()
    screenshot(page, "failed")
    assert "card declined for 25 EUR" in error.inner_text()
    assert "after 2 attempts" in error.inner_text()
    assert page.locator(".bar.outcome-failed[data-kind=activity]").count() == 2
    assert page.locator(".gantt .attempt").inner_text() == "try 2"
    messages = page.locator(".gantt-row[data-kind=activity] .detail.error-text").all_inner_texts()
    assert messages == ["ValueError: card declined for 25 EUR"] * 2
    assert page.locator(".gantt-row[data-kind=timer] .name").inner_text() == "retry pause: charge"


def test_children_link_to_their_own_page_and_events_show(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow("tour", instance_id="tour-1")
    site.client.wait_for_workflow_start("tour-1", timeout_in_seconds=30)
    page.goto(site.url("#/instance/tour-1"))
    page.locator(".gantt-row[data-kind=child] a").wait_for()  # auto-refresh shows the steps as they come
    page.locator(".gantt-row[data-kind=child] .bar.outcome-completed").wait_for()
    screenshot(page, "tour-waiting")
    site.client.raise_workflow_event("tour-1", "approval", data={"by": "Jane"})
    finished(site, "tour-1", WorkflowStatus.COMPLETED)
    page.locator(".title-row .badge", has_text="completed").wait_for()
    assert page.locator(".marker[data-kind=event]").count() == 1
    assert page.locator(".bar[data-kind=timer]").count() == 1
    screenshot(page, "tour")

    page.click(".gantt-row[data-kind=child] a")
    page.locator(".crumbs", has_text="tour-1-child").wait_for()
    page.locator(".gantt").wait_for()
    assert page.locator(".bar[data-kind=activity]").count() == 4
    assert page.locator(".facts a", has_text="tour-1").count() == 1  # back to the parent


def test_with_an_api_token_the_page_asks_for_it_and_sends_it(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow(fan_out, input=1, instance_id="fan-out-3")
    finished(site, "fan-out-3", WorkflowStatus.COMPLETED)
    guarded = SimpleNamespace(settings=replace(site.client.settings, api_token="s3cret"))
    port = free_port()
    server = serve_in_thread(guarded, "127.0.0.1", port)
    try:
        base = f"http://127.0.0.1:{port}"
        page.goto(f"{base}/ui")  # the page itself loads without the token
        page.locator(".token-form").wait_for()
        screenshot(page, "token")
        page.fill(".token-form input", "wrong")
        page.click(".token-form button")
        page.locator(".token-form").wait_for()  # asked again
        page.fill(".token-form input", "s3cret")
        page.click(".token-form button")
        page.locator('tr[data-instance-id="fan-out-3"]').wait_for()
        assert "s3cret" not in page.url  # kept out of the address (and so of history and proxy logs)
        assert page.evaluate("sessionStorage.getItem('kwf.apiToken')") == "s3cret"
        page.goto(f"{base}/ui/#/instance/fan-out-3")  # the tab keeps it across page loads
        page.locator(".gantt").wait_for()

        page.evaluate("sessionStorage.clear()")
        page.goto(f"{base}/ui/?token=s3cret#/instance/fan-out-3")
        page.locator(".token-form").wait_for()  # a token in the URL is not taken: the form asks
    finally:
        server.stop()

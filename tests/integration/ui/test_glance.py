"""The page's glance at the runtime's figures, read from the same /metrics Prometheus scrapes."""

from __future__ import annotations

from typing import Any

from engine import WorkflowStatus
from tests.integration.ui.conftest import Site, screenshot
from tests.integration.ui.workflows import fan_out


def figure(page: Any, label: str) -> int:
    return int(page.locator(f'#glance [data-metric="{label}"] strong').inner_text().replace(",", ""))


def test_the_glance_shows_the_runtimes_own_counts(site: Site, page: Any) -> None:
    site.client.schedule_new_workflow(fan_out, input=3, instance_id="glance-ok")
    site.client.schedule_new_workflow("charge_order", input={"amount": 25}, instance_id="glance-failed")
    for instance_id, status in (("glance-ok", WorkflowStatus.COMPLETED), ("glance-failed", WorkflowStatus.FAILED)):
        state = site.client.wait_for_workflow_completion(instance_id, timeout_in_seconds=60)
        assert state is not None and state.runtime_status is status, state

    page.goto(site.url())
    page.locator("#glance:not([hidden])").wait_for()
    # The runtime shares this test process: its counters include earlier tests' instances too.
    assert figure(page, "started") >= 2
    assert figure(page, "completed") >= 1
    assert figure(page, "failed") >= 1
    assert figure(page, "activities running") >= 0
    labels = page.locator("#glance .figure span").all_inner_texts()
    assert labels[:3] == ["started", "completed", "failed"]
    screenshot(page, "glance")

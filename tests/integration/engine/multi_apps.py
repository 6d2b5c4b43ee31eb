"""Three applications for the multi-app tests, each a runtime of its own with its own code.

``kwf run --app tests.integration.engine.multi_apps:app1 --app-id app1`` (and ``app2``,
``app3``): app1's workflow calls a child workflow in app2, which calls an activity in app3.
"""

from __future__ import annotations

from datetime import timedelta

import engine as wf

app1 = wf.WorkflowRuntime()
app2 = wf.WorkflowRuntime()
app3 = wf.WorkflowRuntime()


@app1.workflow(name="order")
def order(ctx: wf.DaprWorkflowContext, qty: int):
    priced = yield ctx.call_child_workflow("price_order", input=qty, app_id="app2",
                                           propagation=wf.PropagationScope.LINEAGE)
    return {"priced": priced, "by": "app1"}


@app1.workflow(name="call_missing")
def call_missing(ctx: wf.DaprWorkflowContext, _: object):
    retry = wf.RetryPolicy(first_retry_interval=timedelta(milliseconds=200), max_number_of_attempts=2)
    try:
        yield ctx.call_activity("not_in_app3", input=1, app_id="app3", retry_policy=retry)
    except wf.TaskFailedError as err:
        return f"failed: {err}"
    return "ran"


@app1.workflow(name="square_in_app3")
def square_in_app3(ctx: wf.DaprWorkflowContext, n: int):
    return (yield ctx.call_activity("square", input=n, app_id="app3"))


@app2.workflow(name="price_order")
def price_order(ctx: wf.DaprWorkflowContext, qty: int):
    squared = yield ctx.call_activity("square", input=qty, app_id="app3")
    apps = yield ctx.call_activity("callers", app_id="app3", propagation=wf.PropagationScope.LINEAGE)
    return {"price": squared + 1, "callers": apps}


@app3.activity(name="callers")
def callers(ctx: wf.WorkflowActivityContext, _: object) -> list[str]:
    """The applications of the workflows that called this one, oldest first."""
    history = ctx.get_propagated_history()
    return [] if history is None else history.get_app_ids()


@app3.activity(name="square")
def square(ctx: wf.WorkflowActivityContext, n: int) -> int:
    return n * n

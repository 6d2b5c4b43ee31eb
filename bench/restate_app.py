"""The service ``bench.peer_restate`` registers with Restate: ``Chain3/run``, three durable
steps (``ctx.run``) in sequence. Served by hypercorn (``bench.restate_app:app``) in its own
process, where ``restate-sdk`` is installed."""

from __future__ import annotations

import restate
from restate import Context


async def step(value: int) -> int:
    return value + 1


chain3 = restate.Service("Chain3")


@chain3.handler()
async def run(ctx: Context, value: int) -> int:
    for name in ("step1", "step2", "step3"):
        value = await ctx.run_typed(name, step, restate.RunOptions(), value)
    return value


app = restate.app(services=[chain3])

"""cocotb module behind :func:`npugen.sim.run.softmax`: run rows through the softmax top, write back the
probabilities.

The runner passes two files in the run folder: ``NPUGEN_SOFTMAX_IN`` (an ``.npz`` written by
:mod:`npugen.sim.run`: ``scores`` int8 (rows, N), ``mask`` bool (rows, N), ``scale``) and
``NPUGEN_OUT`` (an ``.npz`` this module writes: ``probs`` int8 (rows, N), ``cycles`` from the
cycle the first score beat is accepted to the cycle the last probability beat is accepted, both
counted — what :func:`npugen.sim.perfmodel.softmax_cycles` predicts —, ``lut_cycles`` of the LUT load as
the bench waits for it).
No backpressure, rows back to back; the output framing (beats, ``tkeep``, ``tlast``) is checked,
the values are not (the tests compare them with the golden model).
"""

from __future__ import annotations

import os

import numpy as np

import cocotb

from npugen.sim.benches.softmax_bench import SoftmaxTB


@cocotb.test()
async def run_softmax(dut):
    """Load the LUT of ``scale``, stream every row twice, save the probabilities."""
    tb = SoftmaxTB(dut)
    with np.load(os.environ["NPUGEN_SOFTMAX_IN"]) as data:
        scores, mask, scale = data["scores"], data["mask"], float(data["scale"])
    await tb.start(x_check=False)
    t0 = tb.cycle
    await tb.load_lut(scale)
    lut_cycles = tb.cycle - t0 if tb.lut is not None else 0
    n = scores.shape[1]
    first = cocotb.start_soon(tb.first_accept())

    # Queue the rows from a coroutine, so the sink is read while the source still has rows.
    async def feed():
        for row, m in zip(scores, mask):
            await tb.send_row(row, m)
    cocotb.start_soon(feed())
    budget = tb.budget(n) * len(scores)
    probs = np.empty(scores.shape, dtype=np.int8)
    for i in range(len(scores)):
        probs[i] = await tb.recv_row(n, budget)
    cycles = tb.span(await first, tb.last_prob_time)
    np.savez(os.environ["NPUGEN_OUT"], probs=probs, cycles=np.int64(cycles),
             lut_cycles=np.int64(lut_cycles))

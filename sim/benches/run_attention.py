"""cocotb entry of :func:`npugen.sim.run.attention`: run attention jobs through the attention top and
save the output rows and statuses.

The runner passes two files in the run folder: ``NPUGEN_ATTENTION_IN`` (a pickle written by
:mod:`npugen.sim.run`: a list of :class:`npugen.sim.driver.AttentionJob`, ``load_lut`` already planned by the
host) and ``NPUGEN_OUT`` (an ``.npz`` this module writes: ``o<i>`` int8 (M, d) per job,
``cycles`` and ``errors``, int64 per job, from the status beats). The jobs are queued back to
back with no backpressure; the output framing (M rows up to ``tlast``) and the status tags are
checked, the values are not (the tests compare them with the golden model).
"""

from __future__ import annotations

import os
import pickle

import numpy as np

import cocotb

from npugen.sim.benches.attention_bench import AttentionTB
from npugen.sim.driver import encode_attention


@cocotb.test()
async def run_attention(dut):
    """Stream every job, save its output rows, status error code and cycle count."""
    tb = AttentionTB(dut)
    with open(os.environ["NPUGEN_ATTENTION_IN"], "rb") as f:
        jobs = pickle.load(f)
    await tb.start(x_check=False)
    streams = [encode_attention(j, tb.cfg) for j in jobs]
    for s in streams:
        await tb.submit(s)
    budget = sum(tb.budget(s) for s in streams)
    outs, cycles, errors = {}, [], []
    for i, s in enumerate(streams):
        outs[f"o{i}"] = await tb.recv_out(s, budget)
        st = await tb.recv_status(budget)
        assert st.tag == s.job.tag, f"job {i}: status tag {st.tag}, expected {s.job.tag}"
        cycles.append(st.cycles)
        errors.append(int(st.error))
    np.savez(os.environ["NPUGEN_OUT"], cycles=np.array(cycles, dtype=np.int64),
             errors=np.array(errors, dtype=np.int64), **outs)

"""cocotb module behind :func:`npugen.sim.run.gemm_many`: run a list of jobs, write back the results.

The runner passes two files in the run folder: ``NPUGEN_JOBS`` (a pickle of a list of
:class:`npugen.sim.driver.GemmJob`, written by :mod:`npugen.sim.run`) and ``NPUGEN_OUT`` (an ``.npz`` this
module writes: ``c<i>`` the decoded result of job ``i`` — absent for ``acc_out`` jobs —,
``cycles`` and ``errors`` per job). No backpressure; the cycle counts are the hardware's own
(status beats). A job that gets an error status fails the run.
"""

from __future__ import annotations

import os
import pickle

import numpy as np

import cocotb

from npugen.sim.benches.tb import TB
from npugen.sim.driver import decode_results, encode_many


@cocotb.test()
async def run_jobs(dut):
    """Run every job of ``NPUGEN_JOBS`` in order and save what came back to ``NPUGEN_OUT``."""
    tb = TB(dut)
    with open(os.environ["NPUGEN_JOBS"], "rb") as f:
        jobs = pickle.load(f)
    streams = encode_many(jobs, tb.cfg)
    await tb.start(x_check=False)
    out: dict[str, np.ndarray] = {}
    cycles, errors = [], []
    for i, s in enumerate(streams):
        budget = tb._budget(s)
        await tb.submit(s)
        beats = await tb.recv_results(len(s.res), budget) if len(s.res) else []
        st = await tb.recv_status(budget)
        cycles.append(st.cycles)
        errors.append(int(st.error))
        assert st.ok, f"job {i}: status {st}"
        if len(s.res):
            out[f"c{i}"] = decode_results(beats, s.job, tb.cfg)
    out["cycles"] = np.array(cycles, dtype=np.int64)
    out["errors"] = np.array(errors, dtype=np.int64)
    np.savez(os.environ["NPUGEN_OUT"], **out)

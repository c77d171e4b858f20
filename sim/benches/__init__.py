"""cocotb testbenches of the generated designs, run through :mod:`sim.runner`.

- :mod:`sim.benches.tb`: the :class:`~sim.benches.tb.TB` class (clock, reset, stream BFMs,
  backpressure patterns, reference model, checker) shared by the benches.
- :mod:`sim.benches.gemm_bench`: the regression bench of the GEMM engine.
- :mod:`sim.benches.run_jobs`: runs the jobs of :func:`sim.run.gemm_many` and writes back their
  results (no checking; used as the "simulated hardware" behind the Python API).
"""

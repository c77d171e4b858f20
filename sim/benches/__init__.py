"""cocotb testbenches of the generated designs, run through :mod:`npugen.sim.runner`.

- :mod:`npugen.sim.benches.tb`: the :class:`~npugen.sim.benches.tb.TB` class (clock, reset, stream BFMs,
  backpressure patterns, reference model, checker) shared by the benches.
- :mod:`npugen.sim.benches.gemm_bench`: the regression bench of the GEMM engine.
- :mod:`npugen.sim.benches.run_jobs`: runs the jobs of :func:`npugen.sim.run.gemm_many` and writes back their
  results (no checking; used as the "simulated hardware" behind the Python API).
"""

"""Run GEMM jobs through the simulated generated design: the Python API behind ``npugen run``.

:func:`gemm` runs one job, :func:`gemm_many` several in one simulation (the demo's Q, K and V
projections). Each call generates and compiles the configuration once (cached by
:func:`npugen.sim.runner.build`), encodes the jobs with :mod:`npugen.sim.driver` (so invalid jobs fail here,
before any simulation, with the driver's one-line :class:`ValueError`), runs them through the RTL
with :mod:`npugen.sim.benches.run_jobs` — no backpressure, jobs back to back — and returns the results
decoded from the result stream together with the hardware's own cycle counts (status beats).

The results are whatever the RTL computed: this module does not compare them with the golden
model (``npugen verify`` and the tests do).
"""

from __future__ import annotations

import contextlib
import pickle
import shutil
import tempfile
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from npugen.sim import golden, perfmodel
from npugen.hw.errors import CheckFailed, InputError, MissingSectionError
from npugen.sim.driver import GemmJob, encode_many

__all__ = ["gemm", "gemm_many", "make_job", "softmax", "attention", "plan_attention",
           "SimulationError"]


@contextlib.contextmanager
def _user_input():
    """Where a golden model checks the caller's arrays or scales, its ``ValueError`` is bad
    input (:class:`InputError`); the golden models import nothing from ``hw``, so they raise
    plain ``ValueError``."""
    try:
        yield
    except InputError:
        raise
    except ValueError as e:
        raise InputError(str(e)) from e


class SimulationError(CheckFailed, RuntimeError):
    """The simulation of a job failed (error status, crash, timeout); names the log file."""


def _config(config):
    from npugen.hw.config import GemmConfig, load_config
    if config is None:
        return load_config()
    if isinstance(config, GemmConfig):
        return config
    return load_config(config)


def _per_channel(value, name: str, n: int) -> np.ndarray:
    """``value`` (one integer, or ``n`` of them) as an int64 array of shape ``(n,)``.

    Raises
    ------
    ValueError
        For a non-integer dtype, or a shape other than ``()``, ``(1,)`` or ``(n,)``.
    """
    arr = np.asarray(value)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must be integers, not dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise InputError(f"{name} = {int(arr.max())} is out of range")
    if arr.shape not in ((), (1,), (n,)):
        raise InputError(f"{name} must be one value or N = {n} values (one per output "
                         f"channel), not shape {arr.shape}")
    return np.broadcast_to(arr.astype(np.int64), (n,)).copy()


def make_job(a, b, *, bias=None, zp_a: int = 0, scale_a=None, scale_b=None, scale_out=None,
             multiplier=None, shift=None, zp_out: int = 0, act_min: int = -128,
             act_max: int = 127, acc_in: bool = False, acc_out: bool = False,
             tag: int = 0) -> GemmJob:
    """Build a :class:`npugen.sim.driver.GemmJob`, deriving the requantization from scales if given.

    Parameters
    ----------
    a : array_like, shape (M, K), int8
        Activations.
    b : array_like, shape (K, N), int8
        Symmetric weights.
    bias : array_like, shape (N,), int32, or None
        Bias at scale ``scale_a * scale_b``.
    zp_a : int
        Activation zero point, folded into the bias by the driver.
    scale_a, scale_out : float, or None
        Activation and output scales (float32 values are promoted exactly).
    scale_b : float or array_like of float, shape (N,), or None
        Weight scale, per tensor or per output channel.
    multiplier, shift : array_like of int, shape (N,) (or scalars), or None
        Fixed-point requantization ``(M0, sh)``; exclusive with the scales.
    zp_out, act_min, act_max : int
        Output zero point and clamp (requant jobs).
    acc_in, acc_out : bool
        Accumulate across jobs (``docs/isa.md``).
    tag : int
        Status tag, 0 to 255.

    Returns
    -------
    GemmJob
        A requant job when scales or ``(multiplier, shift)`` are given, a raw one otherwise.

    Raises
    ------
    ValueError
        When only some of the three scales are given, when scales and ``(multiplier, shift)``
        are both given, or for scales that :func:`npugen.sim.golden.quantize_multiplier` rejects
        (:func:`npugen.sim.golden.effective_scale`: a shift outside [-31, 30]), or for a
        ``multiplier``/``shift`` that is not integer or not one value or ``N`` values.
    TypeError
        For scales that are not real numbers.
    """
    a = np.asarray(a)
    b = np.asarray(b)
    scales = (scale_a, scale_b, scale_out)
    given = [s is not None for s in scales]
    if any(given) and not all(given):
        raise InputError("scale_a, scale_b and scale_out must be given together")
    if all(given):
        if multiplier is not None or shift is not None:
            raise InputError("give either scales or multiplier/shift, not both")
        n = b.shape[1] if b.ndim == 2 else 0
        if np.ndim(scale_b) and np.shape(scale_b) not in ((1,), (n,)):
            raise InputError(f"scale_b must be one value or N = {n} values (one per output "
                             f"channel), not shape {np.shape(scale_b)}")
        with _user_input():
            multiplier, shift = golden.effective_scale(scale_a, scale_b, scale_out)
    n = b.shape[1] if b.ndim == 2 else 0
    if multiplier is not None and shift is not None:
        multiplier = _per_channel(multiplier, "multiplier", n)
        shift = _per_channel(shift, "shift", n)
    return GemmJob(a=a, b=b, bias=bias, zp_a=zp_a, multiplier=multiplier, shift=shift,
                   zp_out=zp_out, act_min=act_min, act_max=act_max, acc_in=acc_in,
                   acc_out=acc_out, tag=tag)


def gemm_many(jobs: Sequence[GemmJob | Mapping[str, Any]], *, config=None,
              sim: str = "verilator", waves: bool = False,
              build_dir=None) -> list[tuple[np.ndarray | None, dict]]:
    """Run several jobs back to back in one simulation of the generated design.

    Parameters
    ----------
    jobs : sequence of GemmJob or of dict
        The jobs in order; a dict holds the keyword arguments of :func:`make_job`
        (``a``, ``b``, ``bias``, scales or ``multiplier``/``shift``, ...).
    config : hw.config.GemmConfig, path-like or None
        The design; a TOML path, or None for the embedded default.
    sim : {"verilator", "icarus"}
        The simulator.
    waves : bool
        Record a waveform; its path is in each job's statistics.
    build_dir : path-like or None
        The build root (default ``./build``).

    Returns
    -------
    list of (numpy.ndarray or None, dict)
        Per job: ``C`` of shape (M, N) — int8 for a requant job, int32 (``W`` = 32) or int64
        raw accumulators otherwise, None for an ``acc_out`` job — and its statistics:
        ``cycles`` (from the status beat), ``model_cycles`` (:func:`npugen.sim.perfmodel.gemm_cycles`,
        the cycle-exact model), ``macs`` (M·K·N), ``utilization`` (a fraction,
        ``macs / (cycles * rows * cols)``; the command line prints it as a percentage),
        ``sim``, ``config`` (the design's name) and ``waves`` (path or None).

    Raises
    ------
    ValueError
        For a job the hardware cannot run (the driver's message, prefixed with the job index).
    sim.runner.SimError
        If the simulator is missing or the build fails.
    SimulationError
        If the simulation fails (an error status, a crash or a timeout).
    """
    from npugen.sim import runner

    cfg = _config(config)
    jobs = [j if isinstance(j, GemmJob) else make_job(**j) for j in jobs]
    if not jobs:
        return []
    encode_many(jobs, cfg)                      # validate before building anything
    runner.build(cfg, sim, build_dir, waves)
    ddir = runner.design_dir(cfg, build_dir)
    (ddir / "runs").mkdir(parents=True, exist_ok=True)
    tdir = Path(tempfile.mkdtemp(prefix=f"{sim}-run-", dir=ddir / "runs"))
    jobs_file = tdir / "jobs.pkl"
    out_file = tdir / "out.npz"
    with open(jobs_file, "wb") as f:
        pickle.dump(jobs, f)
    run = runner.test(cfg, "npugen.sim.benches.run_jobs", sim=sim, seed=0, waves=waves,
                      build_dir=build_dir, test_dir=tdir,
                      extra_env={"NPUGEN_JOBS": str(jobs_file), "NPUGEN_OUT": str(out_file)})
    if not run.ok or not out_file.is_file():
        raise SimulationError(f"simulation of {len(jobs)} job(s) on {cfg.name} with {sim} "
                              f"failed; log: {run.log}")
    with np.load(out_file) as data:
        cycles = data["cycles"].tolist()
        results = [data[f"c{i}"] if f"c{i}" in data.files else None for i in range(len(jobs))]
    out = []
    for job, c, cyc in zip(jobs, results, cycles):
        m, k, n = job.shape
        if c is not None and not job.requant and cfg.acc_bits <= 32:
            c = c.astype(np.int32)
        macs = m * k * n
        model_cycles = perfmodel.gemm_cycles(cfg, m, k, n, requant=job.requant,
                                             acc_in=bool(job.acc_in), acc_out=bool(job.acc_out))
        out.append((c, {
            "cycles": int(cyc),
            "model_cycles": model_cycles,
            "macs": macs,
            "utilization": macs / (int(cyc) * cfg.rows * cfg.cols) if cyc else 0.0,
            "sim": sim,
            "config": cfg.name,
            "waves": str(run.waves) if run.waves is not None else None,
        }))
    if not waves:
        shutil.rmtree(tdir, ignore_errors=True)
    return out


def gemm(a, b, *, bias=None, zp_a: int = 0, scale_a=None, scale_b=None, scale_out=None,
         multiplier=None, shift=None, zp_out: int = 0, act_min: int = -128, act_max: int = 127,
         config=None, sim: str = "verilator", waves: bool = False,
         build_dir=None) -> tuple[np.ndarray, dict]:
    """Run one GEMM job through the simulated generated design.

    ``C = A·B + bias - zp_a·colsum(B)``, requantized to int8 when scales (``scale_a``,
    ``scale_b``, ``scale_out``, turned into ``(M0, sh)`` by :func:`npugen.sim.golden.effective_scale`,
    i.e. TFLite's ``QuantizeMultiplier``) or ``multiplier``/``shift`` are given.

    Parameters
    ----------
    a : array_like, shape (M, K), int8
        Activations.
    b : array_like, shape (K, N), int8
        Symmetric weights.
    bias, zp_a, scale_a, scale_b, scale_out, multiplier, shift, zp_out, act_min, act_max
        As :func:`make_job`.
    config : hw.config.GemmConfig, path-like or None
        The design; None for the embedded default.
    sim : {"verilator", "icarus"}
        The simulator.
    waves : bool
        Record a waveform (path in the statistics).
    build_dir : path-like or None
        The build root (default ``./build``).

    Returns
    -------
    (numpy.ndarray, dict)
        ``C``, shape (M, N): int8 when requantized, else raw accumulators (int32 when the
        design's ``W`` is 32, int64 when wider); and the statistics of :func:`gemm_many`.

    Raises
    ------
    ValueError, TypeError, sim.runner.SimError, SimulationError
        As :func:`make_job` and :func:`gemm_many`.
    """
    job = make_job(a, b, bias=bias, zp_a=zp_a, scale_a=scale_a, scale_b=scale_b,
                   scale_out=scale_out, multiplier=multiplier, shift=shift, zp_out=zp_out,
                   act_min=act_min, act_max=act_max)
    (c, stats), = gemm_many([job], config=config, sim=sim, waves=waves, build_dir=build_dir)
    return c, stats


# --------------------------------------------------------------------------------------------
# softmax (OSI8, docs/softmax.md)

def _softmax_config(config):
    """The configuration of :func:`softmax`: None is the embedded default with a default
    ``[softmax]`` section added (when it has none)."""
    import dataclasses

    from npugen.hw.config import SoftmaxConfig
    cfg = _config(config)
    if config is None and cfg.softmax is None:
        cfg = dataclasses.replace(cfg, softmax=SoftmaxConfig())
    if cfg.softmax is None:
        raise MissingSectionError(cfg, "softmax")
    return cfg


def softmax(scores, scale, *, mask=None, config=None, sim: str = "verilator",
            waves: bool = False, build_dir=None) -> tuple[np.ndarray, dict]:
    """Run rows of int8 scores through the simulated OSI8 softmax unit (``npugen.hw.top.SoftmaxTop``).

    The standalone softmax top of the configuration is generated and compiled once (cached by
    :func:`npugen.sim.runner.build` with ``top="softmax"``); the LUT of ``scale`` is streamed in
    (or, with ``softmax.lut_rom_scale``, must be the baked one); then every row is streamed
    twice (the unit's two passes), back to back with no backpressure, by
    :mod:`npugen.sim.benches.run_softmax`. The result is whatever the RTL computed: this function does
    not compare it with :func:`npugen.sim.golden.softmax_int8` (the tests do).

    Parameters
    ----------
    scores : array_like of int, shape (N,) or (rows, N)
        int8 scores (any integer dtype with values in [-128, 127]); 1 <= N <= ``softmax.N_max``.
    scale : float
        Score scale ``c`` (``S_s``, 1/sqrt(d) and temperature folded in), positive and finite;
        float32 values are promoted exactly.
    mask : array_like of bool, same shape as ``scores``, or None
        True = attend; None attends every key.
    config : hw.config.GemmConfig, path-like or None
        The design; a TOML path; None for the embedded default with a default ``[softmax]``
        section (F = 24, B = 16, N_max = 32768, one lane). A given configuration needs a
        ``[softmax]`` section.
    sim : {"verilator", "icarus"}
        The simulator.
    waves : bool
        Record a waveform (path in the statistics).
    build_dir : path-like or None
        The build root (default ``./build``).

    Returns
    -------
    (numpy.ndarray, dict)
        The probabilities, int8 of the shape of ``scores`` (scale 1/256, zero point -128), and
        the statistics: ``cycles`` (clock cycles from the one in which the first score beat is
        accepted to the one in which the last probability beat is accepted, both counted; the
        LUT load not included), ``model_cycles`` (:func:`npugen.sim.perfmodel.softmax_cycles`, the
        cycle-exact model of the same count), ``utilization`` (the fraction of the score port's
        lane slots that carried a key, ``2·rows·N / (cycles·lanes)``: each key crosses twice),
        ``lut_cycles`` (the LUT load as the bench waits for it, 0 with a ROM), ``rows``,
        ``keys`` (N), ``lanes``, ``sim``, ``config`` (the design's name) and ``waves`` (path or
        None).

    Raises
    ------
    ValueError, TypeError
        For scores, mask or scale that :func:`npugen.sim.golden.softmax_int8` rejects (its one-line
        messages), a row longer than ``N_max`` or without keys, a configuration without a
        ``[softmax]`` section, or a scale whose LUT differs from the baked ROM's; all before
        anything is built.
    sim.runner.SimError
        If the simulator is missing or the build fails.
    SimulationError
        If the simulation fails (a crash, a timeout, malformed output framing).
    """
    from npugen.sim import runner
    from npugen.sim.golden.softmax import _check_scale, _check_scores   # the golden model's checks

    with _user_input():
        c = _check_scale(scale)
        rows, mrows = _check_scores(scores, mask)
    shape = np.shape(scores)
    cfg = _softmax_config(config)
    sm = cfg.softmax
    n = rows.shape[1]
    if n < 1:
        raise InputError(f"scores must hold at least one key per row, not shape {shape}")
    if n > sm.N_max:
        raise InputError(f"rows of {n} keys exceed this design's softmax.N_max = {sm.N_max}")
    if sm.lut_rom_scale is not None and golden.make_lut(c, sm.F) != golden.make_lut(
            sm.lut_rom_scale, sm.F):
        raise InputError(f"this design bakes the LUT of softmax.lut_rom_scale = "
                         f"{sm.lut_rom_scale!r}; scale {c!r} gives another table")
    if mrows is None:
        mrows = np.ones(rows.shape, dtype=bool)
    stats = {"cycles": 0, "model_cycles": 0, "utilization": 0.0, "lut_cycles": 0,
             "rows": int(rows.shape[0]), "keys": int(n), "lanes": sm.lanes, "sim": sim,
             "config": f"{cfg.name}_softmax", "waves": None}
    if rows.shape[0] == 0:
        return np.zeros(shape, dtype=np.int8), stats

    runner.build(cfg, sim, build_dir, waves, top="softmax")
    ddir = runner.design_dir(cfg, build_dir, top="softmax")
    (ddir / "runs").mkdir(parents=True, exist_ok=True)
    tdir = Path(tempfile.mkdtemp(prefix=f"{sim}-run-", dir=ddir / "runs"))
    in_file = tdir / "scores.npz"
    out_file = tdir / "out.npz"
    np.savez(in_file, scores=rows.astype(np.int8), mask=mrows, scale=np.float64(c))
    run = runner.test(cfg, "npugen.sim.benches.run_softmax", sim=sim, seed=0, waves=waves,
                      build_dir=build_dir, test_dir=tdir, top="softmax",
                      extra_env={"NPUGEN_SOFTMAX_IN": str(in_file),
                                 "NPUGEN_OUT": str(out_file)})
    if not run.ok or not out_file.is_file():
        raise SimulationError(f"softmax of {rows.shape[0]} row(s) of {n} keys on "
                              f"{cfg.name}_softmax with {sim} failed; log: {run.log}")
    with np.load(out_file) as data:
        probs = data["probs"].astype(np.int8)
        stats["cycles"] = int(data["cycles"])
        stats["lut_cycles"] = int(data["lut_cycles"])
    stats["model_cycles"] = perfmodel.softmax_cycles(cfg, int(n), int(rows.shape[0]))
    stats["utilization"] = perfmodel.softmax_utilization(cfg, int(n), int(rows.shape[0]),
                                                         cycles=stats["cycles"])
    stats["waves"] = str(run.waves) if run.waves is not None else None
    if not waves:
        shutil.rmtree(tdir, ignore_errors=True)
    return probs.reshape(shape), stats


# --------------------------------------------------------------------------------------------
# attention (the fused OSI8 attention unit, docs/attention.md)

def _attention_config(config, d: int, heads: int):
    """The configuration of :func:`attention`: None is the embedded default plus an
    ``[attention]`` section with ``d`` and ``heads`` (``q_block`` and the OSI8 parameters at
    their defaults)."""
    import dataclasses

    from npugen.hw.config import AttentionConfig
    cfg = _config(config)
    if config is None:
        cfg = dataclasses.replace(cfg, attention=AttentionConfig(d=d, heads=heads))
    if getattr(cfg, "attention", None) is None:
        raise MissingSectionError(cfg, "attention")
    return cfg


def _heads_of(name: str, x, ndim: int) -> np.ndarray:
    """``x`` as an int8 (H, rows, d) array, with ``ndim`` 2 (one head) or 3."""
    arr = np.asarray(x)
    if arr.dtype != np.int8:
        raise InputError(f"{name} must have dtype int8, not {arr.dtype.name}")
    if arr.ndim != ndim:
        raise InputError(f"{name} must be {ndim}-D like q, not shape {arr.shape}")
    return arr if ndim == 3 else arr[None]


def plan_attention(q, k, v, *, scale_q, scale_k, scale_v, scale_out, scale_s=None,
                   zp_v: int = 0, zp_out: int = 0, mask=None, causal: bool = False, config=None,
                   loaded: dict | None = None, tag0: int = 0):
    """The attention jobs of :func:`attention` (its arguments and rules), validated.

    ``loaded`` (a dict, LUT slot -> the score scale constant ``c`` it holds) carries the LUT
    slots' contents from one call to the next when several calls share one simulation; head
    ``h`` of the call loads its table only when its slot holds another. ``tag0``: the first
    job's status tag (then one more per head, modulo 256).

    Returns
    -------
    (hw.config.GemmConfig, list of npugen.sim.driver.AttentionJob, int)
        The configuration, one job per head, and ``ndim`` of ``q`` (2 or 3).

    Raises
    ------
    ValueError, TypeError
        As :func:`attention`.
    """
    import numbers

    from npugen.sim.driver import AttentionJob, encode_attention

    q_arr = np.asarray(q)
    if q_arr.ndim not in (2, 3):
        raise InputError(f"q must be a 2-D (M, d) or 3-D (H, M, d) array, not shape "
                         f"{q_arr.shape}")
    ndim = q_arr.ndim
    qs = _heads_of("q", q, ndim)
    ks = _heads_of("k", k, ndim)
    vs = _heads_of("v", v, ndim)
    H = qs.shape[0]
    if ks.shape[0] != H or vs.shape[0] != H:
        raise InputError(f"q, k and v must hold the same number of heads, not {H}, "
                         f"{ks.shape[0]} and {vs.shape[0]}")
    if H < 1:
        raise InputError("q must hold at least one head")
    m, n = qs.shape[1], ks.shape[1]
    masks = [None] * H
    if mask is not None:
        mk = np.asarray(mask)
        if mk.dtype != np.bool_:
            raise InputError(f"mask must be a bool array (True = attend), not an array of dtype "
                             f"{mk.dtype}")
        if ndim == 3 and mk.shape == (H, m, n):
            masks = list(mk)
        elif mk.shape in ((n,), (m, n)):
            masks = [mk] * H
        else:
            shapes = "(N,) or (M, N)" + (" or (H, M, N)" if ndim == 3 else "")
            raise InputError(f"mask must have shape {shapes}, not {mk.shape}")
    if scale_s is None:
        from npugen.sim.golden import calibrate_score_scale
        with _user_input():
            ss = [calibrate_score_scale(qs[h], ks[h], scale_q, scale_k) for h in range(H)]
    elif isinstance(scale_s, numbers.Real) and not isinstance(scale_s, bool):
        ss = [scale_s] * H
    else:
        ss = list(scale_s)
        if len(ss) != H:
            raise InputError(f"scale_s must be one number or a sequence of {H} (one per head), "
                             f"not {len(ss)}")
    d = qs.shape[2]
    cfg = _attention_config(config, d, min(H, 256))
    heads = cfg.attention.heads
    jobs = []
    loaded = {} if loaded is None else loaded
    for h in range(H):
        with _user_input():
            params = golden.attention_params(scale_q, scale_k, scale_v, ss[h], scale_out, d,
                                             zp_v=zp_v, zp_o=zp_out)
        slot = h % heads
        load = loaded.get(slot) != params.c
        loaded[slot] = params.c
        job = AttentionJob(qs[h], ks[h], vs[h], params, mask=masks[h], causal=causal,
                           head=slot, load_lut=load, tag=(tag0 + h) % 256)
        encode_attention(job, cfg)              # validate before building anything
        jobs.append(job)
    return cfg, jobs, ndim


def attention(q, k, v, *, scale_q, scale_k, scale_v, scale_out, scale_s=None, zp_v: int = 0,
              zp_out: int = 0, mask=None, causal: bool = False, config=None,
              sim: str = "verilator", waves: bool = False,
              build_dir=None) -> tuple[np.ndarray, dict]:
    """Run ``softmax(Q·Kᵀ / sqrt(d))·V`` of one or more heads through the simulated OSI8
    attention unit (``npugen.hw.top.AttentionTop``).

    The standalone attention top of the configuration is generated and compiled once (cached by
    :func:`npugen.sim.runner.build` with ``top="attention"``). Each head becomes one job
    (:class:`npugen.sim.driver.AttentionJob`) with the parameters of
    :func:`npugen.sim.golden.attention_params`; head ``h`` uses the LUT slot ``h % attention.heads``
    and loads its table (``load_lut``) unless the slot already holds it. The jobs run back to
    back in one simulation, no backpressure, by :mod:`npugen.sim.benches.run_attention`. The result
    is whatever the RTL computed: this function does not compare it with
    :func:`npugen.sim.golden.attention_int8` (the tests do).

    Parameters
    ----------
    q : array_like of int8, shape (M, d) or (H, M, d)
        Queries (zero point 0); 3-D for H heads.
    k : array_like of int8, shape (N, d) or (H, N, d)
        Keys (zero point 0), 2-D or 3-D like ``q``.
    v : array_like of int8, shape (N, d) or (H, N, d)
        Values, zero point ``zp_v``.
    scale_q, scale_k, scale_v, scale_out : float
        Scales of Q, K, V and the output, positive and finite (float32 values are promoted
        exactly).
    scale_s : float, sequence of H floats, or None
        Score scale ``S_s`` (the real value of one int8 score step, 1/sqrt(d) included); None
        calibrates it per head with :func:`npugen.sim.golden.calibrate_score_scale` (the largest
        ``|Q·Kᵀ|`` of the head maps to 127).
    zp_v, zp_out : int
        Zero points of V and of the output, int8.
    mask : array_like of bool, shape (N,), (M, N) or (H, M, N), or None
        True = attend; (N,) and (M, N) apply to every head; None attends every key.
    causal : bool
        Query ``i`` attends key ``j`` only if ``j <= i`` (ANDed with ``mask``).
    config : hw.config.GemmConfig, path-like or None
        The design; a TOML path; None for the embedded default plus an ``[attention]``
        section with ``d = q.shape[-1]`` and ``heads = H`` (1 for 2-D input; at most 256), the
        other parameters at their defaults (``q_block = 4``; ``F = 24``, ``B = 16``,
        ``N_max = 32768``, ``G = 16``). A given configuration needs an ``[attention]`` section
        whose ``d`` equals ``q.shape[-1]``.
    sim : {"verilator", "icarus"}
        The simulator.
    waves : bool
        Record a waveform (path in the statistics).
    build_dir : path-like or None
        The build root (default ``./build``).

    Returns
    -------
    (numpy.ndarray, dict)
        The output, int8 of shape (M, d) (or (H, M, d) for 3-D input), at scale ``scale_out``
        with zero point ``zp_out``; and the statistics: ``cycles`` (the sum of the status beats'
        cycle counts: command accepted to status, per head), ``cycles_per_head`` (list of int),
        ``model_cycles`` and ``model_cycles_per_head`` (:func:`npugen.sim.perfmodel.attention_cycles`,
        which the RTL meets exactly: the jobs run back to back without backpressure),
        ``ideal_cycles`` (``H·M·N / q_block``: MACs over MACs per cycle), ``utilization``
        (ideal over measured),
        ``scale_s`` (the score scale used: a float, or a list of H floats for 3-D input;
        calibrated when none was given), ``heads`` (H), ``sim``, ``config`` (the design's
        name) and ``waves`` (path or None).

    Raises
    ------
    ValueError, TypeError
        For operands, scales, zero points or a mask that the driver
        (:func:`npugen.sim.driver.encode_attention`) or :func:`npugen.sim.golden.attention_params` rejects
        (one-line messages: dtypes, shapes, ``d`` other than the design's, ``N > N_max``, a
        scale that gives no representable multiplier), or a configuration without an
        ``[attention]`` section; all before anything is built.
    sim.runner.SimError
        If the simulator is missing or the build fails.
    SimulationError
        If the simulation fails (an error status, a crash, a timeout, malformed framing).
    """
    from npugen.sim import runner

    cfg, jobs, ndim = plan_attention(q, k, v, scale_q=scale_q, scale_k=scale_k, scale_v=scale_v,
                                     scale_out=scale_out, scale_s=scale_s, zp_v=zp_v,
                                     zp_out=zp_out, mask=mask, causal=causal, config=config)
    H = len(jobs)
    m, n, d = jobs[0].shape
    scale_rep = [float(j.params.c) for j in jobs]
    name = f"{cfg.name}_attention"

    runner.build(cfg, sim, build_dir, waves, top="attention")
    ddir = runner.design_dir(cfg, build_dir, top="attention")
    (ddir / "runs").mkdir(parents=True, exist_ok=True)
    tdir = Path(tempfile.mkdtemp(prefix=f"{sim}-run-", dir=ddir / "runs"))
    in_file = tdir / "jobs.pkl"
    out_file = tdir / "out.npz"
    with open(in_file, "wb") as f:
        pickle.dump(jobs, f)
    run = runner.test(cfg, "npugen.sim.benches.run_attention", sim=sim, seed=0, waves=waves,
                      build_dir=build_dir, test_dir=tdir, top="attention",
                      extra_env={"NPUGEN_ATTENTION_IN": str(in_file),
                                 "NPUGEN_OUT": str(out_file)})
    if not run.ok or not out_file.is_file():
        raise SimulationError(f"attention of {H} head(s) (M={m}, N={n}, d={d}) on {name} with "
                              f"{sim} failed; log: {run.log}")
    with np.load(out_file) as data:
        outs = np.stack([data[f"o{h}"] for h in range(H)]).astype(np.int8)
        cycles = [int(c) for c in data["cycles"]]
        errors = [int(e) for e in data["errors"]]
    bad = [h for h, e in enumerate(errors) if e]
    if bad:
        from npugen.hw.isa import Error
        h = bad[0]
        raise SimulationError(f"head {h} of {name} ended with status {Error(errors[h]).name}; "
                              f"log: {run.log}")
    model = []
    for job in jobs:
        scores = golden.attention_scores(job.q, job.k, job.params, rounding=cfg.rounding)
        on = golden.attention_mask(m, n, job.mask, job.causal)
        needs = perfmodel.attention_tile_needs(scores, on, cfg.osi8.B, cfg.attention.q_block)
        model.append(perfmodel.attention_cycles(cfg, m, n, needs, load_lut=job.load_lut))
    ideal = H * perfmodel.attention_ideal_cycles(cfg, m, n)
    stats = {"cycles": sum(cycles), "cycles_per_head": cycles,
             "model_cycles": sum(model), "model_cycles_per_head": model,
             "ideal_cycles": ideal, "utilization": ideal / sum(cycles),
             "scale_s": scale_rep if ndim == 3 else scale_rep[0], "heads": H, "sim": sim,
             "config": name, "waves": str(run.waves) if run.waves is not None else None}
    if not waves:
        shutil.rmtree(tdir, ignore_errors=True)
    return (outs if ndim == 3 else outs[0]), stats

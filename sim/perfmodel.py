"""Cycle-exact performance model of the GEMM engine (``hw/gemm.py``), the softmax unit and the
attention unit.

:func:`gemm_cycles` returns the ``cycles`` field of a GEMM job's status beat (``docs/isa.md``:
from the cycle the command beat is accepted to the cycle the status beat is offered) when the
input streams always hold a valid beat and the result consumer is always ready. It is derived
from the sequencers of ``hw/gemm.py``, not fitted: every term below names the RTL it comes from,
and ``tests/test_perfmodel.py`` checks it against the Amaranth simulation of the engine and
against the Verilator build of the emitted Verilog. ``docs/perf.md`` has the derivation and the
closed forms of the common cases.

Time is counted in cycles from the command's acceptance (cycle 0). The model is a recurrence
over *passes* (ws: one K tile of one row chunk of one column tile, i.e. ``mc`` rows of A through
one weight set) or *row tiles* (os), with ``max()`` terms where the double-buffered weight sets,
the two parameter slots, the os drain spacing and the result credits make one side wait for the
other. Only when the result FIFO is shallower than the result pipeline (``res_depth`` at most
``rows + cols + 3`` plus the requantizer latency) do rows wait for credits; the model then
follows the credit rule row by row.

With ``bandwidth=B`` (bytes per cycle on each input stream, or ``(act, wgt)``) the input
streams' sources are throttled token buckets (:class:`StreamSource`, ``docs/perf.md``, "Stream
bandwidth") and the same recurrences are followed beat by beat; ``tests/test_perfmodel.py``
holds that exact too, against the Amaranth simulation with the testbench throttling both
streams by the same rule. :func:`stream_beats` and :func:`stream_bound` give each stream's
beats and the bandwidth's ideal bound.

The job itself must be one the engine accepts (``docs/isa.md``); a rejected command's status has
``cycles == 1`` (:data:`REJECT_CYCLES`).

:func:`softmax_cycles` does the same for the OSI8 softmax unit (``hw/softmax.py``): the cycles from
the first score beat accepted to the last probability beat accepted, a closed form per row
(``2·nb + min(nb, B/P) + 1``) plus the pass-2 latency, with the output FIFO's credits followed
beat by beat when they bind (``docs/perf.md``, Softmax). :func:`attention_cycles` gives an
attention job's status cycles (``hw/attention.py``) from a recurrence over key tiles, given which
tiles make a query block rescale (:func:`attention_tile_needs`; ``docs/attention.md``).
"""

from __future__ import annotations

from collections import deque
from fractions import Fraction
from math import ceil

from npugen.hw.config import Dataflow, GemmConfig
from npugen.hw.errors import InputError, MissingSectionError
from npugen.hw.gemm import ResultQueue
from npugen.hw.requant import ROUNDING_MODES, Requantizer

__all__ = ["gemm_cycles", "stream_rate", "stream_rates", "stream_sources", "stream_beats",
           "stream_bound", "StreamSource", "closed_form", "ideal_cycles", "utilization",
           "latencies", "requant_latency",
           "scalesim_formula", "scalesim_config_text", "scalesim_topology_text", "write_scalesim",
           "REQUANT_LATENCY", "DRAIN_LATENCY", "PARAM_BEATS", "FIFO_LATENCY", "RESULT_LATENCY", "REJECT_CYCLES",
           "softmax_cycles", "softmax_closed_form", "softmax_row_cycles", "softmax_utilization",
           "softmax_params", "SOFTMAX_DIV_STAGES", "SOFTMAX_PASS2_LATENCY",
           "SOFTMAX_OUT_DEPTH", "SOFTMAX_LUT_BEATS",
           "attention_cycles", "attention_ideal_cycles", "attention_tile_needs",
           "attention_params", "ATTENTION_TILE_SLOTS", "ATTENTION_PARAM_BEATS",
           "ATTENTION_LUT_BEATS"]

#: ``Requantizer.latency`` per rounding mode with 16-bit partial products (the attention
#: unit's score requantizer), read from the hardware (``hw/requant.py``), where it is defined;
#: a GEMM engine's is :func:`requant_latency`.
REQUANT_LATENCY = {r: Requantizer.latency_for(r) for r in ROUNDING_MODES}


def requant_latency(cfg) -> int:
    """Cycles of a GEMM engine's requantizer (without its input register, :data:`DRAIN_LATENCY`)
    for ``cfg``'s ``rounding`` and ``requant_pp_bits`` (absent: the default's), read from the
    hardware (``Requantizer.latency_for``).

    Raises
    ------
    ValueError
        For a rounding mode or partial-product width the requantizer does not have.
    """
    return Requantizer.latency_for(cfg.rounding,
                                   getattr(cfg, "requant_pp_bits", GemmConfig.requant_pp_bits))


#: ``ResultQueue.drain_latency``: the register between a slice's issue at the result FIFO's
#: head and the requantizer (hw/gemm.py).
DRAIN_LATENCY = ResultQueue.drain_latency
#: Beats of a column tile's parameter block on ``s_axis_wgt`` (hw/isa.py ``PARAM_BEATS``).
PARAM_BEATS = 9
#: ``SyncFIFOBuffered`` (amaranth.lib.fifo): an entry written at cycle ``w`` into the empty
#: FIFO is offered (``r_rdy``) at ``w + 2`` (inner FIFO level at ``w + 1``, output register
#: loaded from its synchronous read port at ``w + 2``).
FIFO_LATENCY = 2
#: ``ResultQueue.latency`` (hw/gemm.py): a finished row written into the empty result FIFO at
#: cycle ``w`` is at the queue's head at ``w + 3`` (:data:`FIFO_LATENCY`, then the head
#: register), where a raw row's beat is offered and a requant row's first slice issued.
RESULT_LATENCY = ResultQueue.latency
#: Status ``cycles`` of a rejected command (the job FSM's IDLE -> STATUS, hw/gemm.py).
REJECT_CYCLES = 1

_NEG = -(1 << 62)   # "long ago"


def latencies(cfg, *, requant: bool = True) -> dict[str, int]:
    """Pipeline latencies of the engine that the model uses, cycles.

    Parameters
    ----------
    cfg : hw.config.GemmConfig or namespace
        The design (``rows``, ``cols``, ``dataflow``, ``rounding``).
    requant : bool
        Requantized (int8) results, or raw accumulators.

    Returns
    -------
    dict
        ``array`` (``WeightStationaryArray.latency = R + C + 1``: the input register, the
        skew and the PE's product and sum registers; one less without ``pe_product_reg``, one
        less without ``array_input_reg``; ``requant``: the drain's
        slice register and the requantizer, :data:`DRAIN_LATENCY` + :func:`requant_latency`;
        ``OutputStationaryArray.latency = R + C + 1``, ``R + C`` without
        ``array_input_reg``); ``t1``: a ws row
        injected at ``t`` (or an os tile's last K step) to its back-end stage s1 (``t1``, the
        cycle its sum is written back or sent on: ``R + C + 1``, for os the tile's first row); ``requant`` (0 for raw results); ``fifo``
        (:data:`RESULT_LATENCY`: the result FIFO and its head register); ``result``: injection (ws) / last step (os, first row) to the
        result beat on ``m_axis_res`` with a consumer that is always ready.
    """
    R, C = cfg.rows, cfg.cols
    rq = DRAIN_LATENCY + requant_latency(cfg) if requant else 0
    # ws: tag_pre = tags[latency - 1]; t0 <= tag_pre; t1 <= t0.
    # os: the tile tag expanded at tags[latency - 2]; tag_pre, t0, t1. The same count for both.
    # A ws PE without its product register (pe_product_reg false) is a cycle shorter.
    # The array's input register (array_input_reg, default true) is a cycle longer.
    array = (R + C - (0 if getattr(cfg, "pe_product_reg", True) else 1)
             + bool(getattr(cfg, "array_input_reg", True)))
    t1 = array + 1
    return {"array": array, "t1": t1, "requant": rq, "fifo": RESULT_LATENCY,
            "result": t1 + rq + RESULT_LATENCY}


def _check(cfg, m, k, n, requant, acc_in, acc_out):
    if cfg.dataflow not in {d.value for d in Dataflow}:
        raise InputError(f"dataflow must be 'ws' or 'os', not {cfg.dataflow!r}")
    for name, v in (("m", m), ("k", k), ("n", n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{name} must be a positive integer, not {v!r}")
    k_max = getattr(cfg, "k_max", None)
    if k_max is not None and k > k_max:
        raise InputError(f"K = {k} exceeds this design's k_max = {k_max} (config key k_max; the engine "
                         f"rejects the job: BAD_SHAPE)")
    if (acc_in or acc_out) and (m > cfg.acc_depth or n > cfg.cols):
        raise InputError(f"an acc_in/acc_out job needs m <= acc_depth ({cfg.acc_depth}) and "
                         f"n <= cols ({cfg.cols}), not m = {m}, n = {n} (BAD_ACC)")
    if acc_out and requant:
        raise InputError("an acc_out job cannot be a requant job (BAD_ACC)")


def gemm_cycles(cfg, m: int, k: int, n: int, *, requant: bool = True, acc_in: bool = False,
                acc_out: bool = False, bandwidth=None) -> int:
    """Status ``cycles`` of one GEMM job, exactly as the RTL counts them.

    With ``bandwidth`` None, assumes ``s_axis_act`` and ``s_axis_wgt`` offer a beat in every
    cycle the engine is ready for one; with a ``bandwidth``, each input stream's source is
    throttled to that many bytes per cycle (:class:`StreamSource`, ``docs/perf.md``, "Stream
    bandwidth"). ``m_axis_res`` is always ready (``tready`` high). The job's status ``cycles``
    does not depend on the jobs before it.

    Parameters
    ----------
    cfg : hw.config.GemmConfig or namespace
        The design: ``rows``, ``cols``, ``dataflow``, ``rounding``, ``acc_depth``,
        ``res_depth`` (and ``k_max`` when present, to reject ``k > k_max``).
    m, k, n : int
        The job's shape: ``C[m, n] = A[m, k] · B[k, n]``.
    requant : bool
        Requantized int8 results (the requantizer adds its latency) or raw accumulators.
    acc_in : bool
        Start from the held accumulator: no timing effect (same back end, same stages).
    acc_out : bool
        Keep the result in the accumulator memory: no result beats, no credits; the status
        follows the last row's write-back.
    bandwidth : None, number or (number, number)
        Bytes per cycle of the input streams' sources: None (always valid, the default), one
        rate for both streams, or ``(act, wgt)``. A rate is a positive int, float (read as
        its decimal ``repr``, so 0.1 is 1/10), ``fractions.Fraction`` or a string such as
        ``"3/2"``; a rate of at least a beat's bytes (``rows`` on ``s_axis_act``, ``cols`` on
        ``s_axis_wgt``) does not throttle.

    Returns
    -------
    int
        The status beat's ``cycles`` field (saturating at 2**32 - 1 like the RTL's counter).

    Raises
    ------
    ValueError
        For a shape or flag combination the engine rejects (its status would have
        ``cycles == 1`` and an error code), an unknown dataflow, or a rate that is not a
        positive number.
    """
    _check(cfg, m, k, n, requant, acc_in, acc_out)
    act, wgt = stream_sources(cfg, bandwidth)
    t = Dataflow(cfg.dataflow).pick(ws=_ws, os=_os)(cfg, m, k, n, requant and not acc_out,
                                                     acc_out, act, wgt)
    return min(t, (1 << 32) - 1)


# -- stream bandwidth ----------------------------------------------------------------------------

def stream_rate(rate) -> Fraction:
    """A stream rate in bytes per cycle as an exact ``Fraction``.

    ``rate`` is a positive int, ``Fraction``, float (read through its decimal ``repr``: 0.1
    is 1/10, 7.5 is 15/2) or string (``"7.5"``, ``"3/2"``).

    Raises
    ------
    ValueError
        If ``rate`` is not a positive finite number.
    """
    if isinstance(rate, bool):
        raise InputError(f"a stream bandwidth must be a positive number, not {rate!r}")
    try:
        r = Fraction(repr(rate)) if isinstance(rate, float) else Fraction(rate)
    except (TypeError, ValueError, ZeroDivisionError, OverflowError):
        raise InputError(f"a stream bandwidth must be a positive number, not {rate!r}") \
            from None
    if r <= 0:
        raise InputError(f"a stream bandwidth must be a positive number, not {rate!r}")
    return r


def stream_rates(bandwidth) -> tuple[Fraction, Fraction] | None:
    """``bandwidth`` as ``(act, wgt)`` Fractions (:func:`stream_rate`), or None for None."""
    if bandwidth is None:
        return None
    if isinstance(bandwidth, (tuple, list)):
        if len(bandwidth) != 2:
            raise InputError(f"bandwidth must be one rate or (act, wgt), not {bandwidth!r}")
        return stream_rate(bandwidth[0]), stream_rate(bandwidth[1])
    r = stream_rate(bandwidth)
    return r, r


class StreamSource:
    """An input stream's source throttled to ``rate`` bytes per cycle (a token bucket).

    The rule (``docs/perf.md``, "Stream bandwidth"): the source holds ``level`` bytes, 0 at
    cycle 0 (the cycle the job's command is accepted). It offers a beat (``tvalid``) in a cycle
    whose ``level`` is at least a beat's bytes ``b``; at the end of every cycle ``level``
    loses ``b`` if a beat was transferred, gains ``rate``, and is capped at two beats
    (``2 b``): ``level' = min(level - b·taken + rate, 2 b)``. So a steady stream delivers
    exactly ``rate`` bytes a cycle on average (no byte is lost while the consumer keeps up),
    a source the consumer left waiting holds at most two beats, and ``rate >= b`` offers a beat
    in every cycle from cycle 1 (no throttle: the engine is never ready for a beat before
    cycle 2).

    The model only ever asks for the next beat at a cycle ``t`` from which the consumer is
    ready and stays ready until it gets it (the sequencers' ``ready`` never falls while they
    wait), so the beat is transferred at the first cycle ``>= t`` that offers it.

    Parameters
    ----------
    beat_bytes : int
        ``b``: ``rows`` for ``s_axis_act``, ``cols`` for ``s_axis_wgt`` (the whole beat, kept
        lanes or not; parameter beats too).
    rate : Fraction
        Bytes per cycle.
    """

    def __init__(self, beat_bytes: int, rate: Fraction):
        q = rate.denominator
        self._gain = rate.numerator           # all levels in units of 1/q byte
        self._beat = beat_bytes * q
        self._cap = 2 * beat_bytes * q
        self._t = 0                           # the level below is the one at cycle _t
        self._level = 0

    def peek(self, t: int) -> int:
        """The first cycle ``>= t`` that offers the next beat (it offers it from then on)."""
        short = self._beat - self._level
        if short > 0:
            t = max(t, self._t - (-short // self._gain))
        return t

    def take(self, t: int) -> int:
        """Transfer the next beat at the first cycle ``>= t`` that offers it; return it."""
        t = self.peek(t)
        level = min(self._level + self._gain * (t - self._t), self._cap)
        self._level = min(level - self._beat + self._gain, self._cap)
        self._t = t + 1
        return t

    def take_run(self, t: int, beats: int) -> int:
        """Transfer ``beats`` beats, the first at :meth:`take` ``(t)``, each next one from the
        cycle after the previous; return the last one's cycle."""
        t = self.take(t)
        for _ in range(beats - 1):
            t = self.take(t + 1)
        return t


class _Always:
    """A source that offers a beat in every cycle (``bandwidth`` None)."""

    @staticmethod
    def take(t: int) -> int:
        return t

    peek = take

    @staticmethod
    def take_run(t: int, beats: int) -> int:
        return t + beats - 1


def stream_sources(cfg, bandwidth):
    """The ``(act, wgt)`` sources of a job (:class:`StreamSource`, or always valid), fresh at
    cycle 0. A rate of at least a beat's bytes gives an always-valid source (the same cycles:
    see :class:`StreamSource`)."""
    rates = stream_rates(bandwidth)
    if rates is None:
        return _Always(), _Always()
    return tuple(_Always() if r >= b else StreamSource(b, r)
                 for b, r in ((cfg.rows, rates[0]), (cfg.cols, rates[1])))


def stream_beats(cfg, m: int, k: int, n: int) -> tuple[int, int]:
    """Beats of a job on ``s_axis_act`` and ``s_axis_wgt`` (docs/isa.md, stream order).

    ws: every row chunk of A once per K tile and column tile (``m·kt·nt`` beats); per column
    tile a parameter block (:data:`PARAM_BEATS`) and the column tile's ``k`` weight rows once
    per row chunk. os: per column tile and row tile ``k`` beats of each stream, and the
    parameter block on the weight stream.
    """
    R, C = cfg.rows, cfg.cols
    kt, nt = ceil(k / R), ceil(n / C)
    return Dataflow(cfg.dataflow).pick(
        ws=lambda: (m * kt * nt, nt * (PARAM_BEATS + len(_chunks(cfg, m)) * k)),
        os=lambda: (nt * ceil(m / R) * k, nt * (PARAM_BEATS + ceil(m / R) * k)))()


def stream_bound(cfg, m: int, k: int, n: int, bandwidth) -> float:
    """The input streams' lower bound on a job's cycles at ``bandwidth``: the larger of the
    two streams' bytes (:func:`stream_beats` × beat width ``b``) over ``min(rate, b)`` (the
    engine takes at most one beat a cycle, so a rate above a beat's bytes counts as ``b``)."""
    ra, rw = stream_rates(bandwidth)
    act, wgt = stream_beats(cfg, m, k, n)
    R, C = cfg.rows, cfg.cols
    return float(max(act * R / min(ra, R), wgt * C / min(rw, C)))


def ideal_cycles(cfg, m: int, k: int, n: int) -> float:
    """Cycles of a job at one MAC per PE per cycle: ``m·k·n / (rows·cols)`` (a float)."""
    return m * k * n / (cfg.rows * cfg.cols)


def utilization(cfg, m: int, k: int, n: int, cycles: int | None = None, **flags) -> float:
    """Useful-MAC utilization of the array: ``m·k·n / (cycles · rows · cols)``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig or namespace
        The design.
    m, k, n : int
        The job's shape.
    cycles : int or None
        Cycles of the job (for example measured); None uses :func:`gemm_cycles` with ``flags``
        (``requant``, ``acc_in``, ``acc_out``).

    Returns
    -------
    float
        A fraction in (0, 1].
    """
    if cycles is None:
        cycles = gemm_cycles(cfg, m, k, n, **flags)
    return ideal_cycles(cfg, m, k, n) / cycles


def closed_form(cfg, m: int, k: int, n: int, *, requant: bool = True) -> int | None:
    """The steady-state closed form of :func:`gemm_cycles`, where it applies (else None).

    Only for jobs whose rows leave the result FIFO in one cycle each: raw jobs, and requant
    jobs whose column tiles are at most ``requant_lanes`` wide (``min(cols, n) <=
    requant_lanes``).

    With ``kt = ceil(k / R)``, ``nt = ceil(n / C)``, ``rq`` the requantizer latency (0 raw),
    ``A`` the array's latency (``latencies(cfg)["array"]``: ``R + C + 1`` by default), for a
    job with results (not ``acc_out``):

    - ws: ``m·kt·nt + min(k, R) + A + 17 + rq`` — every row of A streams once per K tile
      and column tile, back to back; the rest is paid once: 1 cycle to ``PARAM_WAIT``, the 9
      parameter beats, ``BUF_WAIT``, the first weight tile (``min(k, R)`` beats), the issuer's
      ``WAIT``, the array (``A``), s0/s1, the result FIFO and its head register (3,
      :data:`RESULT_LATENCY`), the status (1). It holds when
      the result credits never bind (``res_depth >= A + 5 + rq``), every K-tile switch is
      hidden (passes of ``mc >= kc + 2`` rows, when there is more than one pass) and every
      column-tile switch too (``m·kt >= A + kc0 + g``, and ``mc >= kc0 + g`` with one
      pass per column tile, ``2·mc >= kc_max + kc0 + g`` with more; ``g`` = 13, or 16 for a
      requant job, whose parameter slot is freed three cycles after s1, by the drain).
    - os: with ``T = ceil(m / R)`` row tiles per column tile, ``S = max(k, R)`` cycles per row
      tile and ``mr`` rows in the last one, the last step of the job is at ``X = 10 + k +
      (T - 1)·S + (nt - 1)·(max(k + 10, R) + (T - 1)·S)`` and the status ``X + A + 4 + rq +
      mr``. It holds when the credits never bind (``res_depth >= R + A + 4 + rq``) and, for
      ``nt >= 3``, the parameter slot of column tile ``j - 2`` is free in time
      (``max(k + 10, R) + (T - 1)·S >= A + mr``, ``+ 3`` for a requant job).

    Parameters
    ----------
    cfg : hw.config.GemmConfig or namespace
        The design.
    m, k, n : int
        The job.
    requant : bool
        Requantized results or raw accumulators.

    Returns
    -------
    int or None
        The cycles (equal to :func:`gemm_cycles` then), or None outside the conditions.
    """
    _check(cfg, m, k, n, requant, False, False)
    R, C, D = cfg.rows, cfg.cols, cfg.acc_depth
    if requant and min(C, n) > _rq_lanes(cfg):
        return None         # rows drained in several slices: no closed form
    rq = DRAIN_LATENCY + requant_latency(cfg) if requant else 0
    kt, nt = ceil(k / R), ceil(n / C)
    closed = Dataflow(cfg.dataflow).pick(ws=_closed_ws, os=_closed_os)
    # a requant job's parameter slot is freed RESULT_LATENCY cycles after s1 (by the drain)
    slot = RESULT_LATENCY if requant else 0
    return closed(cfg, m, k, n, R, C, D, rq, kt, nt, slot)


def _closed_ws(cfg, m, k, n, R, C, D, rq, kt, nt, slot):
    """:func:`closed_form_cycles` of a weight-stationary design (arguments as computed there)."""
    mcs = [min(D, m - m0) for m0 in range(0, m, D)]
    kcs = [min(R, k - t * R) for t in range(kt)]
    F, A = RESULT_LATENCY, latencies(cfg)["array"]
    ok = cfg.res_depth >= A + 2 + F + rq
    passes = len(mcs) * kt
    if passes > 1:
        ok = ok and min(mcs) >= max(kcs) + 2
    if nt > 1:
        g = 13 + slot
        ok = ok and m * kt >= A + kcs[0] + g and (
            min(mcs) >= kcs[0] + g if passes == 1 else 2 * min(mcs) >= max(kcs) + kcs[0] + g)
    return m * kt * nt + kcs[0] + A + 14 + F + rq if ok else None


def _closed_os(cfg, m, k, n, R, C, D, rq, kt, nt, slot):
    """:func:`closed_form_cycles` of an output-stationary design (arguments as there)."""
    T = ceil(m / R)
    mr = m - (T - 1) * R
    S = max(k, R)
    F, A = RESULT_LATENCY, latencies(cfg)["array"]
    ok = cfg.res_depth >= R + A + 1 + F + rq
    if nt >= 3:
        ok = ok and max(k + 10, R) + (T - 1) * S >= A + mr + slot
    X = 10 + k + (T - 1) * S + (nt - 1) * (max(k + 10, R) + (T - 1) * S)
    return X + A + 1 + F + rq + mr if ok else None


# -- weight-stationary ----------------------------------------------------------------------------

class _Results:
    """The result FIFO's read side (hw/gemm.py ``ResultQueue``): when each finished row's result
    beat is read, with a consumer that is always ready.

    A finished row is written into the FIFO at its s1 cycle ``w`` and reaches the FIFO's head
    at ``max(w + RESULT_LATENCY, d_prev + P_prev)``: the FIFO's and its head register's latency,
    or the cycle after the previous row left the head. A raw row leaves the head in the cycle it gets there
    (its beat is read then, ``P = 1``). A requant row's ``P = ceil(nc / requant_lanes)`` slices
    enter the requantizer in ``P`` consecutive cycles ``d … d + P - 1`` (the row leaves the head
    with the last one), and its beat is read when the last slice leaves the requantizer:
    ``d + P - 1 + rq``. :attr:`reads` holds every producing row's read cycle, in order (the
    credits: a row holds its result FIFO entry from its injection until its read).
    """

    def __init__(self, cfg, requant: bool):
        self.lanes = _rq_lanes(cfg) if requant else None
        self.rq = DRAIN_LATENCY + requant_latency(cfg) if requant else 0
        self.reads: list[int] = []
        self._next = _NEG        # the cycle the head can take the next row

    def slices(self, nc: int) -> int:
        """Cycles a row of ``nc`` valid columns spends at the FIFO's head."""
        return 1 if self.lanes is None else ceil(nc / self.lanes)

    def add(self, s1: int, nc: int) -> int:
        """Queue a finished row written at cycle ``s1``; return the cycle of its last slice's
        issue (a requant row's parameter slot may be freed then)."""
        P = self.slices(nc)
        d = max(s1 + RESULT_LATENCY, self._next)
        self._next = d + P
        self.reads.append(d + P - 1 + self.rq)
        return d + P - 1

    def room_from(self, t: int, rows: int, depth: int) -> int:
        """Earliest cycle ``>= t`` at which ``rows`` more rows may reserve result FIFO entries:
        ``reserved + rows <= depth``, ``reserved`` counting the rows queued so far whose beat is
        read at that cycle or later (the credit register lowers the cycle after a read)."""
        free_after = len(self.reads) - (depth - rows)     # this many must be read before t
        if free_after > 0:
            t = max(t, self.reads[free_after - 1] + 1)
        return t


def _rq_lanes(cfg) -> int:
    """The design's requantizer lanes: ``requant_lanes``, derived as ``ceil(cols / 4)`` when it
    is None or absent (a namespace), as ``GemmConfig.rq_lanes`` does."""
    lanes = getattr(cfg, "requant_lanes", None)
    return -(-cfg.cols // 4) if lanes is None else lanes


def _ws(cfg, m, k, n, requant, acc_out, act=_Always(), wgt=_Always()):
    """Weight-stationary job: recurrence over passes (hw/gemm.py ``WeightStationarySequencer``).

    Pass ``p`` runs the ``mc`` rows of one row chunk through one K tile (``kc`` rows of B) of one
    column tile, in stream order (column tile, row chunk, K tile). For each pass:

    - ``B[p]``: the cycle the loader enters ``BUF_WAIT`` for it. Inside a column tile the loader
      goes there the cycle after the previous tile's last ``LOAD`` beat: ``L[p-1] + 1``. The first
      pass of column tile ``j`` follows ``PARAM_WAIT`` (entered at ``L[p-1] + 1``, or cycle 1 after
      ``start``), which waits until parameter slot ``j % 2`` is free: its ``busy`` bit clears
      the cycle after column tile ``j - 2`` frees it (``Tfree[j-2]``: the s1 cycle of its last
      row, or for a requant job the cycle that row's last slice enters the requantizer); then
      ``PARAM`` takes 9 beats and ``BUF_WAIT`` follows: ``B = max(P, Tfree[j-2] + 1) + 10``.
    - ``L[p]``: the cycle of the last ``LOAD`` beat (``wbuf_set``). ``BUF_WAIT`` waits for the
      weight set ``p % 2`` to be free; the issuer's ``wbuf_clr`` at the last row ``E[p-2]`` of the
      pass that used it frees it at ``E[p-2] + 1``: ``L = max(B, E[p-2] + 1) + kc``.
    - ``F[p]``: the issuer's first row. At its last row ``E[p-1]`` the issuer goes straight on
      (``ROWS``) if ``wbuf_full`` of the next set is already set (``L[p] + 1 <= E[p-1]``), else
      through ``WAIT`` (sees ``wbuf_full`` from ``L[p] + 1``, ``ROWS`` the cycle after):
      ``F = max(E[p-1] + 1, L[p] + 2)``; the first pass ``F = L + 2``.
    - ``E[p] = F[p] + mc - 1``, one row per cycle; a producing pass's row waits for a result
      credit (``room``: fewer than ``res_depth`` rows reserved, :class:`_Results`).

    The status is offered one cycle after ``done``: the last result beat's read
    (:class:`_Results`), or for ``acc_out`` the last row's s1 (``E + R + C + 1``).

    With throttled sources (``act``, ``wgt``: :class:`StreamSource`) the same recurrence is
    followed beat by beat: ``PARAM`` and ``LOAD`` take a weight beat from the cycle they
    enter and from the cycle after each beat, the issuer a row from ``F`` and from the cycle
    after each row (and a credit, for a producing row); each beat goes in the first cycle its
    source offers it (the RTL's ``ready`` never waits for ``valid``), a cycle without one is a
    bubble. The terms above then hold with ``L``, ``E`` and the parameter block's last beat
    read as those cycles; an always-valid source gives back the expressions above.
    """
    R, C = cfg.rows, cfg.cols
    lat = latencies(cfg, requant=requant)
    t1_lat = lat["t1"]
    res = _Results(cfg, requant)
    kt = ceil(k / R)
    chunks = _chunks(cfg, m)
    nt = ceil(n / C)
    L_prev = None            # L[p-1]
    E_hist = [_NEG, _NEG]    # E[p-2], E[p-1]
    Tfree = [_NEG, _NEG]     # parameter slot freed by column tiles j-2, j-1
    for j in range(nt):
        nc = min(C, n - j * C)
        # loader: PARAM_WAIT at cycle 1 (job start) or the cycle after the previous LOAD
        P = 1 if L_prev is None else L_prev + 1
        # PARAM from the cycle after PARAM_WAIT sees the slot free; BUF_WAIT after its last beat
        B = wgt.take_run(max(P, Tfree[0] + 1) + 1, PARAM_BEATS) + 1
        free = _NEG
        for mc in chunks:
            for t in range(kt):
                kc = min(R, k - t * R)
                L = wgt.take_run(max(B, E_hist[0] + 1) + 1, kc)
                F = max(E_hist[1] + 1, L + 2)
                if t == kt - 1 and not acc_out:
                    E = F - 1
                    for _ in range(mc):
                        E = act.take(res.room_from(E + 1, 1, cfg.res_depth))
                        free = res.add(E + t1_lat, nc)
                    if not requant:
                        free = E + t1_lat
                else:
                    E = act.take_run(F, mc)
                    free = E + t1_lat
                E_hist = [E_hist[1], E]
                L_prev = L
                B = L + 1
        Tfree = [Tfree[1], free]
    E = E_hist[1]
    done = E + t1_lat if acc_out else res.reads[-1]
    return done + 1


def _chunks(cfg, m: int) -> list[int]:
    """Rows of each row chunk of a ws job: ``m`` cut into chunks of at most ``acc_depth``."""
    D = cfg.acc_depth
    return [min(D, m - m0) for m0 in range(0, m, D)]


# -- output-stationary ----------------------------------------------------------------------------

def _os(cfg, m, k, n, requant, acc_out, act=_Always(), wgt=_Always()):
    """Output-stationary job: recurrence over row tiles (hw/gemm.py ``OutputStationarySequencer``).

    Row tile ``i`` (``mr`` rows of one column tile) takes ``k`` K steps, one per cycle, the first
    ``k - 1`` unconditionally. Its last step ``X[i]`` (``issued_last``) waits for ``room``:

    - ``since == R``: at least ``R`` cycles after the previous tile's last step (the drain);
    - result credits: ``reserved + mr <= res_depth`` (producing jobs only, :class:`_Results`).

    Inside a column tile the next tile's steps follow at once: ``X = max(X[i-1] + k, X[i-1] + R,
    credit)``. A new column tile ``j`` first goes through ``PARAM_WAIT`` (the cycle after
    ``X[i-1]``, or cycle 1), which waits for parameter slot ``j % 2`` (freed by column tile
    ``j - 2``: the s1 cycle of its last row, or for a requant job the cycle that row's last
    slice enters the requantizer), and 9 ``PARAM`` beats: ``TILE`` starts at
    ``S = max(P, Tfree[j-2] + 1) + 10`` and ``X = max(S + k - 1, X[i-1] + R, credit)``.

    Row ``r`` of a tile reaches s1 at ``X + R + C + 1 + r`` (tag delay line of ``R + C - 2``,
    then one row per cycle out of the expander, then tag_pre, t0, t1). The status follows the
    last row's read (or s1, for ``acc_out``).

    With throttled sources (:class:`StreamSource`) the steps are followed one by one: a K step
    takes a beat of each stream in the same cycle, so it goes in the first cycle from the
    cycle after the previous step (from ``S`` for a column tile's first) in which both
    sources offer one and, for a last step, ``room`` holds; the parameter block's 9 weight
    beats likewise, from the cycle after ``PARAM_WAIT`` sees its slot free, and ``S`` is the
    cycle after the last.
    """
    R, C = cfg.rows, cfg.cols
    lat = latencies(cfg, requant=requant)
    t1_lat = lat["t1"]
    res = _Results(cfg, requant)
    tiles = [min(R, m - m0) for m0 in range(0, m, R)]
    nt = ceil(n / C)
    throttled = not (isinstance(act, _Always) and isinstance(wgt, _Always))
    X = None
    Tfree = [_NEG, _NEG]
    for j in range(nt):
        nc = min(C, n - j * C)
        P = 1 if X is None else X + 1
        S = wgt.take_run(max(P, Tfree[0] + 1) + 1, PARAM_BEATS) + 1
        free = _NEG
        for i, mr in enumerate(tiles):
            x = S if i == 0 else X + 1        # the tile's first step may go from here
            if throttled:
                for _ in range(k - 1):        # steps that only wait for both beats
                    x = _both(act, wgt, x) + 1
            else:
                x += k - 1
            if X is not None:
                x = max(x, X + R)             # since == R
            if not acc_out:
                x = res.room_from(x, mr, cfg.res_depth)
            if throttled:
                x = _both(act, wgt, x)
            if not acc_out:
                for r in range(mr):
                    free = res.add(x + t1_lat + r, nc)
            X = x
        if acc_out or not requant:
            free = X + t1_lat + tiles[-1] - 1
        Tfree = [Tfree[1], free]
    last_row = X + tiles[-1] - 1
    done = last_row + t1_lat if acc_out else res.reads[-1]
    return done + 1


def _both(act, wgt, t: int) -> int:
    """An os K step from cycle ``t``: the first cycle both sources offer a beat (each offers
    its beat from some cycle on, until taken); both beats are transferred then."""
    t = max(act.peek(t), wgt.peek(t))
    act.take(t)
    wgt.take(t)
    return t


# -- softmax ----------------------------------------------------------------------------------

#: ``SoftmaxUnit.DIV_STAGES`` (hw/softmax.py): stages of the exact divider.
SOFTMAX_DIV_STAGES = 9
#: A pass-2 beat accepted at ``u`` has its probability offered (and, the consumer always ready,
#: read) at ``u + SOFTMAX_PASS2_LATENCY``: stage A' (``c1``, the LUT read), the 9 divider stages
#: (``SoftmaxUnit.latency = 10`` cycles to the FIFO write) and the output FIFO's 2.
SOFTMAX_PASS2_LATENCY = 1 + SOFTMAX_DIV_STAGES + FIFO_LATENCY
#: ``SoftmaxUnit(out_depth=16)``, the depth hw/top.py ``softmax_unit`` builds (not configurable).
SOFTMAX_OUT_DEPTH = 16
#: Beats of a run-time LUT load on ``s_axis_lut`` (always ready: one entry per cycle).
SOFTMAX_LUT_BEATS = 256


def softmax_params(cfg) -> tuple[int, int, int]:
    """``(lanes, B, out_depth)`` of a softmax design.

    ``cfg`` is a :class:`npugen.hw.config.GemmConfig` with a ``[softmax]`` section, a
    :class:`npugen.hw.config.SoftmaxConfig`, a :class:`npugen.hw.softmax.SoftmaxUnit` or any namespace with
    ``lanes`` and ``B`` (and optionally ``out_depth``, default :data:`SOFTMAX_OUT_DEPTH`).
    """
    sm = getattr(cfg, "softmax", cfg)
    if sm is None:
        raise MissingSectionError(cfg, "softmax")
    P, B = sm.lanes, sm.B
    D = getattr(sm, "out_depth", SOFTMAX_OUT_DEPTH)
    for name, v in (("lanes", P), ("B", B), ("out_depth", D)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"softmax {name} must be a positive integer, not {v!r}")
    if B % P:
        raise InputError(f"softmax B must be a multiple of lanes ({P}), not {B!r}")
    return P, B, D


def _lengths(n, rows) -> list[int]:
    if isinstance(n, int) and not isinstance(n, bool):
        rows = 1 if rows is None else rows
        if not isinstance(rows, int) or isinstance(rows, bool) or rows < 1:
            raise InputError(f"rows must be a positive integer, not {rows!r}")
        lengths = [n] * rows
    else:
        lengths = list(n)
        if rows is not None and rows != len(lengths):
            raise InputError(f"rows = {rows!r} but {len(lengths)} row lengths given")
        if not lengths:
            raise InputError("at least one row is needed")
    for v in lengths:
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"a row must hold a positive number of keys, not {v!r}")
    return lengths


def softmax_row_cycles(cfg, n: int) -> int:
    """Cycles one row of ``n`` keys holds ``s_axis_score`` when the output FIFO's credits do not
    bind: ``2·nb + min(nb, B/P) + 1`` with ``nb = ceil(n / lanes)`` beats per pass.

    Pass 1 takes ``nb`` cycles; pass 2 may start ``min(nb, B/P) + 1`` cycles after its last beat
    (its last tile is accumulated one beat per cycle, then the denominator register); pass 2
    takes ``nb`` cycles; the next row's pass 1 follows at once.
    """
    P, B, _ = softmax_params(cfg)
    nb = -(-n // P)
    return 2 * nb + min(nb, B // P) + 1


def softmax_cycles(cfg, n, rows: int | None = None) -> int:
    """Cycles of a softmax job on the OSI8 unit, exactly as the RTL takes them.

    Counted: the clock cycles from the one in which the first score beat is accepted on
    ``s_axis_score`` to the one in which the last probability beat is accepted on
    ``m_axis_prob``, both included (``last − first + 1``). Assumes the rows are streamed back to
    back, each twice (pass 1, then pass 2 with the same beats), by a source that offers a beat in
    every cycle, and a consumer that is always ready, starting from an idle unit (after reset or
    after the previous job's last probability). The run-time LUT load is not counted (it is
    :data:`SOFTMAX_LUT_BEATS` cycles of its own, on its own port, always ready). Scores, masks and
    ``tkeep`` do not change the timing; only the number of beats per pass does.

    Micro-architecture (hw/softmax.py ``SoftmaxUnit``), ``P`` lanes, ``bpt = B / P`` beats per
    tile, ``nb = ceil(n / P)`` beats per pass, ``T = ceil(nb / bpt)`` tiles, ``D`` = out_depth:

    - pass 1: ``s_axis_score`` is ready while the tile buffer being written is free
      (``SoftmaxTileBuffer``: ``~t_full[w_slot]``). A tile is accumulated one beat per cycle starting the cycle after its
      last beat (``t_full`` set) and frees its buffer as it ends, so the two buffers never make
      the input wait: pass 1 accepts one beat per cycle, cycles ``0 … nb − 1``.
    - between the passes: the last tile (``k = nb − (T − 1)·bpt`` beats) is accumulated at
      ``max(nb, T·bpt) … + k − 1`` (after the previous tile's ``bpt`` cycles), stage B updates
      ``L`` the cycle after and ``done`` (``SoftmaxRowState``) is seen one later; pass 2 starts at
      ``nb + min(nb, bpt) + 1`` (``T = 1``: ``2·nb + 1``; else ``nb + bpt + 1``).
    - pass 2: one beat per cycle while ``outstanding < D``; a beat holds its credit from the
      cycle after its acceptance until its probability is read :data:`SOFTMAX_PASS2_LATENCY`
      (12) cycles after it: at most 12 beats are outstanding, so with ``D > 12`` (the built unit
      has 16) a beat never waits; with ``D <= 12`` the model follows the credit rule beat by
      beat (a beat may go at ``u`` only if the ``D``-th previous pass-2 beat went before
      ``u − 12``).
    - the next row's pass 1 starts the cycle after the last pass-2 beat (``row_reset``).

    So, when the credits do not bind, ``cycles = Σ_rows (2·nb + min(nb, bpt) + 1) + 12``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig, hw.config.SoftmaxConfig, SoftmaxUnit or namespace
        The design (``lanes``, ``B``; see :func:`softmax_params`).
    n : int or sequence of int
        Keys per row; a sequence gives one length per row (rows of different lengths).
    rows : int or None
        Rows of ``n`` keys (default 1); with a sequence ``n``, None or its length.

    Returns
    -------
    int
        Cycles.

    Raises
    ------
    ValueError
        For a row without keys, no rows, or a design that is not one.
    """
    P, B, D = softmax_params(cfg)
    lengths = _lengths(n, rows)
    bpt = B // P
    credits = deque(maxlen=D) if D <= SOFTMAX_PASS2_LATENCY else None
    t = 0                          # the cycle the row's first pass-1 beat is accepted
    last = None
    for length in lengths:
        nb = -(-length // P)
        u = t + nb + min(nb, bpt) + 1 - 1
        for _ in range(nb):
            u += 1
            if credits is not None:
                if len(credits) == D:
                    u = max(u, credits[0] + SOFTMAX_PASS2_LATENCY + 1)
                credits.append(u)
        last = u
        t = u + 1
    return last + SOFTMAX_PASS2_LATENCY + 1


def softmax_closed_form(cfg, n, rows: int | None = None) -> int | None:
    """``rows · (2·nb + min(nb, B/P) + 1) + 12``, ``nb = ceil(n / lanes)`` (for a sequence of
    lengths the sum of the rows' terms, + 12): equal to :func:`softmax_cycles` when the output
    FIFO holds more than 12 beats (it holds 16), else None. Arguments as :func:`softmax_cycles`.
    """
    P, B, D = softmax_params(cfg)
    lengths = _lengths(n, rows)
    if D <= SOFTMAX_PASS2_LATENCY:
        return None
    return sum(softmax_row_cycles(cfg, v) for v in lengths) + SOFTMAX_PASS2_LATENCY


def softmax_utilization(cfg, n, rows: int | None = None, cycles: int | None = None) -> float:
    """Fraction of ``s_axis_score``'s lane slots that carried a key: ``2·Σn / (cycles · lanes)``
    (every key crosses twice). ``cycles`` defaults to :func:`softmax_cycles`."""
    P, _, _ = softmax_params(cfg)
    lengths = _lengths(n, rows)
    if cycles is None:
        cycles = softmax_cycles(cfg, lengths)
    return 2 * sum(lengths) / (cycles * P)


# -- SCALE-Sim side by side -----------------------------------------------------------------------

#: What SCALE-Sim's GEMM mode is given for our engine. A and B are streamed, so its SRAMs are made
#: large enough never to stall it (its "Total Cycles" is then compute only, the figure compared).
SCALESIM_SRAM_KB = 4096


def scalesim_formula(cfg, m: int, k: int, n: int) -> int:
    """SCALE-Sim's documented cycle count of a GEMM on the same array and dataflow.

    ``folds = ceil(Sr / R) · ceil(Sc / C)`` and ``total = folds · per_fold − 1`` with, for
    weight-stationary, ``Sr = K, Sc = N, T = M, per_fold = 2R + C + T − 2`` and, for
    output-stationary, ``Sr = M, Sc = N, T = K, per_fold = R + C + T − 2``
    (``docs/anchors.md``; what ``scalesim`` 3.0 reports as "Total Cycles").

    Parameters
    ----------
    cfg : hw.config.GemmConfig or namespace
        The design (``rows``, ``cols``, ``dataflow``).
    m, k, n : int
        The GEMM: ``C[m, n] = A[m, k] · B[k, n]``.

    Returns
    -------
    int
        Cycles.
    """
    R, C = cfg.rows, cfg.cols
    sr, sc, t, fill = Dataflow(cfg.dataflow).pick(ws=(k, n, m, 2 * R + C - 2),
                                                   os=(m, n, k, R + C - 2))
    per_fold = fill + t
    return ceil(sr / R) * ceil(sc / C) * per_fold - 1


def scalesim_config_text(cfg, *, run_name: str | None = None) -> str:
    """A SCALE-Sim (``scalesim`` 3.x) configuration file for the design's array and dataflow.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The design.
    run_name : str or None
        ``[general] run_name`` (the results folder SCALE-Sim writes); default the design name.

    Returns
    -------
    str
        The ``.cfg`` text: array ``rows`` × ``cols``, the dataflow, SRAMs of
        :data:`SCALESIM_SRAM_KB` kB (never a stall: the engine streams A and B) and the
        bandwidth estimated by SCALE-Sim (``CALC``), no custom layout, no sparsity.
    """
    name = run_name or getattr(cfg, "name", "npu")
    kb = SCALESIM_SRAM_KB
    return "\n".join([
        f"# SCALE-Sim configuration of npugen design {name}: {cfg.rows} x {cfg.cols} "
        f"{cfg.dataflow}",
        "# (npugen perf --scalesim). SRAMs large enough that SCALE-Sim never stalls: npugen",
        "# streams A and B; compare its 'Total Cycles' (COMPUTE_REPORT.csv).",
        "[general]",
        f"run_name = {name}",
        "",
        "[architecture_presets]",
        f"ArrayHeight = {cfg.rows}",
        f"ArrayWidth = {cfg.cols}",
        f"IfmapSramSzkB = {kb}",
        f"FilterSramSzkB = {kb}",
        f"OfmapSramSzkB = {kb}",
        "IfmapOffset = 0",
        "FilterOffset = 10000000",
        "OfmapOffset = 20000000",
        "Bandwidth = 10",
        f"Dataflow = {cfg.dataflow}",
        "ReadRequestBuffer = 32",
        "WriteRequestBuffer = 32",
        "",
        "[layout]",
        "IfmapCustomLayout = False",
        "IfmapSRAMBankBandwidth = 10",
        "IfmapSRAMBankNum = 10",
        "IfmapSRAMBankPort = 2",
        "FilterCustomLayout = False",
        "FilterSRAMBankBandwidth = 10",
        "FilterSRAMBankNum = 10",
        "FilterSRAMBankPort = 2",
        "",
        "[sparsity]",
        "SparsitySupport = false",
        "SparseRep = ellpack_block",
        "OptimizedMapping = false",
        "BlockSize = 8",
        "RandomNumberGeneratorSeed = 40",
        "",
        "[run_presets]",
        "InterfaceBandwidth = CALC",
        "UseRamulatorTrace = False",
        "",
    ])


def scalesim_topology_text(m: int, k: int, n: int, *, layer: str = "gemm") -> str:
    """A SCALE-Sim GEMM topology: a header, then ``layer, M, N, K,`` (M, N, K in that order; every
    line ends with a comma, which SCALE-Sim's reader drops)."""
    return f"Layer, M, N, K,\n{layer}, {m}, {n}, {k},\n"


#: SCALE-Sim 3 reads a layout file even with custom layouts off; a header alone is enough.
SCALESIM_LAYOUT_TEXT = "Layer name, IFMAP Height Intraline Factor,\n"


def write_scalesim(cfg, m: int, k: int, n: int, out) -> dict:
    """Write SCALE-Sim's inputs for one job: ``scalesim.cfg``, ``gemm.csv`` and ``layout.csv``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The design.
    m, k, n : int
        The job.
    out : path-like
        Folder to write into (created).

    Returns
    -------
    dict
        ``config``, ``topology``, ``layout`` (paths) and ``command``: the ``scalesim`` command line
        that runs them (from ``out``), for a Python where ``pip install scalesim`` was done.
    """
    from pathlib import Path
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    files = {"config": out / "scalesim.cfg", "topology": out / "gemm.csv",
             "layout": out / "layout.csv"}
    run_name = f"{getattr(cfg, 'name', 'npu')}_{cfg.dataflow}_{m}x{k}x{n}"
    files["config"].write_text(scalesim_config_text(cfg, run_name=run_name))
    files["topology"].write_text(scalesim_topology_text(m, k, n))
    files["layout"].write_text(SCALESIM_LAYOUT_TEXT)
    files["command"] = ("python -m scalesim.scale -c scalesim.cfg -t gemm.csv -l layout.csv "
                        "-i gemm -p results")
    return files


# -- attention (hw/attention.py) ----------------------------------------------------------------

#: Tile slots of the attention unit's tile buffer (``AttentionUnit.TILE_SLOTS``).
ATTENTION_TILE_SLOTS = 4
#: Beats of an attention job's parameter block without and with the LUT (docs/attention.md).
ATTENTION_PARAM_BEATS = 4
ATTENTION_LUT_BEATS = 256


def attention_params(cfg) -> dict[str, int]:
    """The timing parameters of a configuration's attention unit: ``d``, ``P`` (``q_block``),
    ``B``, ``QB`` (quotient bits of the output divider), ``Lr`` (score requantizer stages) and
    ``RL`` (numerators rescaled per cycle, ``AttentionConfig.rescale_width``).

    ``QB`` is the bit length of ``(255·2^F + 128·255)·2^G // 2^F + 2`` (the largest quotient
    ``|A_c / L|·2^G`` plus margin, ``hw/attention.py`` ``attention_widths``).

    Raises
    ------
    ValueError
        If ``cfg`` has no ``[attention]`` section.
    """
    att = getattr(cfg, "attention", None)
    if att is None:
        raise MissingSectionError(cfg, "attention")
    sm = cfg.osi8
    q_max = (255 * 2 ** sm.F + 128 * 255) * 2 ** sm.G // 2 ** sm.F + 2
    return {"d": att.d, "P": att.q_block, "B": sm.B, "QB": q_max.bit_length(),
            "Lr": REQUANT_LATENCY[cfg.rounding], "RL": att.rescale_width}


def attention_tile_needs(scores, mask, B: int, q_block: int) -> list[list[bool]]:
    """Which tiles make the attention unit rescale: per query block, per key tile, True when at
    least one query of the block has an attended key in the tile whose score exceeds its
    running max (osi8.md step 2: ``t > m`` with ``m`` valid).

    Parameters
    ----------
    scores : array_like, shape (M, N), int8
        The requantized scores (``npugen.sim.golden.attention_scores``).
    mask : array_like, shape (M, N), bool
        True = attend, with any causal mask already applied (``npugen.sim.golden.attention_mask``).
    B, q_block : int
        Key tile width and queries per block.

    Returns
    -------
    list of list of bool
        ``ceil(M / q_block)`` lists of ``ceil(N / B)`` flags.
    """
    import numpy as np
    s = np.asarray(scores, dtype=np.int64)
    on = np.asarray(mask, dtype=bool)
    if s.ndim != 2 or on.shape != s.shape:
        raise InputError(f"scores and mask must be 2-D arrays of one shape, not {s.shape} and "
                         f"{on.shape}")
    M, N = s.shape
    out = []
    for m0 in range(0, M, q_block):
        rows = range(m0, min(M, m0 + q_block))
        run = {i: None for i in rows}
        flags = []
        for t0 in range(0, N, B):
            grow = False
            for i in rows:
                sel = s[i, t0:t0 + B][on[i, t0:t0 + B]]
                if sel.size == 0:
                    continue
                t = int(sel.max())
                if run[i] is None:
                    run[i] = t
                elif t > run[i]:
                    grow, run[i] = True, t
            flags.append(grow)
        out.append(flags)
    return out


def attention_cycles(cfg, m: int, n: int, tile_needs=None, *, load_lut: bool = True) -> int:
    """Cycles of an attention job (``cycles`` of its status beat), exactly as the RTL takes them.

    Counted from the cycle the command beat is accepted to the cycle the status beat is offered
    (docs/isa.md), with every input stream always valid and the output always ready.

    Micro-architecture (hw/attention.py ``AttentionUnit``), ``P`` = ``q_block``, per query block
    ``b`` of ``mq`` queries, ``T = ceil(n / B)`` tiles of ``cnt`` keys, ``Lr`` requantizer stages,
    ``QB`` divider stages:

    - parameter block: beats at cycles ``1 … Pn`` (``Pn`` = 4, or 260 with the LUT);
    - front end: the block's ``mq`` query rows, one per cycle, then its keys one per cycle; the
      first key of tile ``i`` waits for its slot, freed the cycle after tile ``i − 4``'s last
      read-back (four tile slots); a tile is ready ``3 + Lr`` cycles after its last key
      (products, adder tree, requantizer, tile-buffer write);
    - back end: a tile starts the cycle after it is ready and the back end is idle, or, with no
      rescale, straight after the previous tile's last read-back when already ready (no bubble);
      a tile with a rescale waits for the accumulate pipeline to drain (2 cycles), spends one
      cycle on the LUT and ``d / RL`` on the numerators; read-back takes ``cnt`` cycles;
    - epilogue, after the block's last tile: waits for the pipeline to drain and for its bank
      (two banks, alternating; both when ``P > d``), then feeds ``d`` channels (the back end is
      held), whose last output byte comes ``QB + 3`` cycles later; the ``mq`` rows enter the
      output FIFO one per cycle after that, and leave it :data:`FIFO_LATENCY` cycles after
      entering; the status is offered the cycle after the last row leaves.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        A configuration with an ``[attention]`` section.
    m, n : int
        Queries and keys, ``m >= 1``, ``n >= 1``.
    tile_needs : list of list of bool, or None
        :func:`attention_tile_needs` of the job's scores; None means no rescale anywhere (the
        fastest case, exact for example when every query's first tile holds its max).
    load_lut : bool
        The command's ``load_lut`` flag.

    Raises
    ------
    ValueError
        For ``m`` or ``n`` below 1, or ``tile_needs`` of the wrong shape.
    """
    p = attention_params(cfg)
    d, P, B, QB, Lr, RL = p["d"], p["P"], p["B"], p["QB"], p["Lr"], p["RL"]
    for name, v in (("m", m), ("n", n)):
        if not isinstance(v, int) or isinstance(v, bool) or v < 1:
            raise InputError(f"{name} must be a positive integer, not {v!r}")
    T = -(-n // B)
    blocks = [min(P, m - m0) for m0 in range(0, m, P)]
    if tile_needs is None:
        tile_needs = [[False] * T for _ in blocks]
    if len(tile_needs) != len(blocks) or any(len(f) != T for f in tile_needs):
        raise InputError(f"tile_needs must hold {len(blocks)} lists of {T} flags")
    NS = ATTENTION_TILE_SLOTS
    a_next = ATTENTION_PARAM_BEATS + (ATTENTION_LUT_BEATS if load_lut else 0) + 1
    R: list[int] = []                 # last read-back cycle of each tile
    prev_R = None
    prev_end = True                   # the previous tile ended a block (or there is none)
    back_free = 0                     # the back end is idle from this cycle (after an epilogue)
    bank_free = [None, None]
    pushes = []                       # (first push cycle, rows) per block
    i = 0
    for b, mq in enumerate(blocks):
        a_next += mq                  # the block's query rows
        for t in range(T):
            cnt = min(B, n - t * B)
            start = a_next if i < NS else max(a_next, R[i - NS] + 1)
            a_next = start + cnt
            ready = start + cnt - 1 + 3 + Lr
            idle = back_free if prev_end else prev_R + 1
            need = tile_needs[b][t]
            if not need and not prev_end and ready <= prev_R:
                first = prev_R + 1                                   # no bubble
            elif not need:
                first = max(ready, idle) + 1
            else:
                first = max(ready, idle, prev_R + 3 if prev_R is not None else 0) + 2 + d // RL
            prev_R = first + cnt - 1
            R.append(prev_R)
            prev_end = t == T - 1
            i += 1
        g = b % 2
        e = max([prev_R + 3] + [bank_free[x] for x in ((0, 1) if P > d else (g,))
                                if bank_free[x] is not None])
        y_last = e + d + QB + 3
        pushes.append((y_last + 1, mq))
        bank_free[g] = y_last + mq + 1
        back_free = e + d + 1
    out = 0
    for first, rows in pushes:
        for r in range(rows):
            out = max(out + 1, first + r + FIFO_LATENCY)
    return out + 1


def attention_ideal_cycles(cfg, m: int, n: int) -> float:
    """The ideal bound: MACs ÷ MACs per cycle = ``2·m·n·d / (2·q_block·d) = m·n / q_block``
    (``Q·Kᵀ`` and ``P·V`` both count; the unit does ``q_block·d`` of each per cycle)."""
    return m * n / attention_params(cfg)["P"]

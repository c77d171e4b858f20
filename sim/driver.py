"""Host-side driver of the npugen GEMM engine: jobs in, command and data beats out.

The driver is the host's half of the stream contract in ``docs/isa.md`` (format version 2,
field positions in :mod:`npugen.hw.isa`). :func:`encode` turns one :class:`GemmJob` into the beats a
host sends — one command beat, the activation beats and the weight beats (with the per-tile
parameter block) — and the plan of the result beats it must receive; :func:`decode_results`
reassembles ``C`` from those result beats and :func:`decode_status` splits a status beat.
:func:`encode_attention` does the same for one :class:`AttentionJob` of the attention unit
(``docs/attention.md``): the command beat, the parameter block (and LUT) and the Q, K (with the
mask bits in ``tuser``) and V beats; :func:`decode_rows` reads its output rows.

Everything the hardware cannot do is rejected here with one :class:`ValueError` whose message
names the offending argument (and, for the accumulator bound, the output column), so a job the
driver accepts never overflows the accumulator and never gets an error status other than
``FRAME`` caused by a broken transport.

The driver needs only these attributes of a configuration (:class:`npugen.hw.config.GemmConfig`):
``rows``, ``cols``, ``dataflow``, ``k_max``, ``acc_bits`` (the accumulator width ``W``),
``lane_bits`` (the raw result lane ``L``) and ``acc_depth``.

Examples
--------
>>> streams = encode(GemmJob(a, b, bias=bias), cfg)           # doctest: +SKIP
>>> c = decode_results(received_beats, streams.job, cfg)      # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterable, NamedTuple, Sequence

import numpy as np

from npugen.hw import isa
from npugen.hw.config import Dataflow
from npugen.hw.errors import InputError, MissingSectionError

__all__ = [
    "GemmJob", "Beat", "BeatStream", "ResultPlan", "Streams", "Status",
    "encode", "encode_many", "decode_results", "decode_status", "column_bounds",
    "result_plan", "cycles_lower_bound",
    "AttentionJob", "RowStream", "AttentionStreams", "attention_geometry", "encode_attention",
    "decode_rows",
]

_INT8 = (-128, 127)
_INT32 = (-(1 << 31), (1 << 31) - 1)
_MULT_MIN = 1 << 30
_MULT_MAX = (1 << 31) - 1
_SHIFT = (-31, 30)
_DIM_MAX = (1 << 24) - 1   # m, k, n are 24-bit command fields


@dataclass
class GemmJob:
    """One GEMM job: ``C = A·B + bias`` with the zero point of ``A`` folded into the bias.

    Parameters
    ----------
    a : numpy.ndarray, shape (M, K), dtype int8
        Activations (real value ``S_a * (a - zp_a)``).
    b : numpy.ndarray, shape (K, N), dtype int8
        Weights, symmetric (zero point 0).
    bias : numpy.ndarray, shape (N,), integer dtype with int32 values, or None
        Bias at scale ``S_a * S_w``; None means zeros.
    zp_a : int
        Zero point of ``a``, in [-128, 127]. The driver folds it into the bias:
        ``bias'[n] = bias[n] - zp_a * sum_k b[k, n]``.
    multiplier : numpy.ndarray, shape (N,), integer dtype, or None
        Per-column requantization multiplier ``M0`` in [2**30, 2**31) or 0. None (together
        with ``shift``) makes a raw job: ``W``-bit accumulators come back.
    shift : numpy.ndarray, shape (N,), integer dtype, or None
        Per-column shift in [-31, 30]; given exactly when ``multiplier`` is.
    zp_out : int
        Output zero point, int8 (requant jobs).
    act_min, act_max : int
        Fused clamp bounds, int8, ``act_min <= act_max`` (requant jobs).
    acc_in : bool
        Start from the accumulator held by the previous ``acc_out`` job (same M and N).
    acc_out : bool
        Keep ``C`` (raw, exact) in the accumulator memory and return no result beats.
    tag : int
        0 to 255, echoed in the status beat.
    zp_b : int
        Zero point of ``b``. Only 0 is supported (symmetric weights, numerics.md); any other
        value is rejected by :func:`encode`.
    """

    a: Any
    b: Any
    bias: Any = None
    zp_a: int = 0
    multiplier: Any = None
    shift: Any = None
    zp_out: int = 0
    act_min: int = -128
    act_max: int = 127
    acc_in: bool = False
    acc_out: bool = False
    tag: int = 0
    zp_b: int = 0

    @property
    def requant(self) -> bool:
        """True when the job returns int8 through the requantizer."""
        return self.multiplier is not None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, K, N)`` as given (not validated)."""
        a, b = np.asarray(self.a), np.asarray(self.b)
        return int(a.shape[0]), int(a.shape[1]), int(b.shape[1])


class Beat(NamedTuple):
    """One stream beat as it travels on the wires.

    Attributes
    ----------
    data : bytes
        ``tdata``, byte 0 = bits 7:0 (little-endian), the full width of the port.
    keep : int
        ``tkeep`` as an integer, bit ``i`` for byte ``i``.
    last : bool
        ``tlast``.
    """

    data: bytes
    keep: int
    last: bool


@dataclass(frozen=True)
class BeatStream:
    """The beats of one int8 data stream (``s_axis_act`` or ``s_axis_wgt``) of one job.

    Attributes
    ----------
    data : numpy.ndarray, shape (beats, lanes), dtype uint8
        ``tdata`` bytes of each beat, lane 0 first; lanes past ``keep`` are 0.
    keep : numpy.ndarray, shape (beats, lanes), dtype bool
        ``tkeep`` of each beat.
    last : numpy.ndarray, shape (beats,), dtype bool
        ``tlast`` of each beat.
    """

    data: np.ndarray
    keep: np.ndarray
    last: np.ndarray

    def __len__(self) -> int:
        return int(self.data.shape[0])

    @property
    def lanes(self) -> int:
        """Byte lanes of the port."""
        return int(self.data.shape[1])

    def beats(self) -> list[Beat]:
        """The stream as a list of :class:`Beat`."""
        weights = (1 << np.arange(self.lanes, dtype=np.uint64))
        keeps = (self.keep.astype(np.uint64) * weights).sum(axis=1) if self.lanes else []
        return [Beat(bytes(d), int(k), bool(l))
                for d, k, l in zip(self.data, keeps, self.last)]

    def frames(self) -> list[tuple[bytes, list[int]]]:
        """The stream cut into ``tlast``-delimited frames.

        Returns
        -------
        list of (bytes, list of int)
            Per frame: its ``tdata`` bytes (whole beats, in order) and one ``tkeep`` bit per byte,
            the form ``cocotbext.axi.AxiStreamFrame(tdata, tkeep)`` sends beat for beat. Beats
            after the last ``tlast`` form a final frame (whose last beat then carries ``tlast``).
        """
        ends = np.flatnonzero(self.last) + 1
        if len(ends) == 0 or ends[-1] != len(self):
            ends = np.append(ends, len(self))
        out, start = [], 0
        for end in ends:
            if end > start:
                out.append((self.data[start:end].tobytes(),
                            self.keep[start:end].astype(np.uint8).ravel().tolist()))
            start = end
        return out


@dataclass(frozen=True)
class ResultPlan:
    """Where each result beat of a job belongs in ``C``.

    Attributes
    ----------
    row : numpy.ndarray, shape (beats,), dtype int64
        Row ``m`` of ``C`` carried by each beat.
    col0 : numpy.ndarray, shape (beats,), dtype int64
        First column ``n0`` of the beat's tile.
    ncols : numpy.ndarray, shape (beats,), dtype int64
        Valid lanes ``nc`` of the beat (``tkeep`` covers ``nc * L / 8`` bytes).
    """

    row: np.ndarray
    col0: np.ndarray
    ncols: np.ndarray

    def __len__(self) -> int:
        return int(self.row.shape[0])

    @property
    def last(self) -> np.ndarray:
        """``tlast`` of each beat: only the job's final beat, shape (beats,), bool."""
        out = np.zeros(len(self), dtype=bool)
        if len(self):
            out[-1] = True
        return out


@dataclass(frozen=True)
class Streams:
    """Everything a host sends for one job and what it must receive back.

    Attributes
    ----------
    cmd : int
        The 128-bit command beat (:data:`npugen.hw.isa.CMD_FIELDS`).
    act : BeatStream
        Beats for ``s_axis_act`` (``rows`` lanes).
    wgt : BeatStream
        Beats for ``s_axis_wgt`` (``cols`` lanes), parameter blocks included.
    res : ResultPlan
        The expected result beats in order (empty for an ``acc_out`` job).
    bias : numpy.ndarray, shape (N,), dtype int64
        The folded bias ``bias'`` sent in the parameter blocks.
    bound : list of int
        Per column, the largest possible ``|C[m, n]|`` of this job (held accumulator included),
        used to check a following ``acc_in`` job.
    job : GemmJob
        The job (with arrays normalised to their dtypes).
    """

    cmd: int
    act: BeatStream
    wgt: BeatStream
    res: ResultPlan
    bias: np.ndarray
    bound: list[int]
    job: GemmJob


class Status(NamedTuple):
    """A decoded status beat.

    Attributes
    ----------
    error : hw.isa.Error or int
        The error code (an :class:`npugen.hw.isa.Error` when it is a known one).
    version : int
        Format version reported by the hardware.
    tag : int
        The command's tag.
    cycles : int
        ``aclk`` cycles from command acceptance to the status beat, saturating at 2**32 - 1.
    reserved : int
        Bits 31:24, zero on a conforming design.
    """

    error: Any
    version: int
    tag: int
    cycles: int
    reserved: int

    @property
    def ok(self) -> bool:
        """True for error code 0."""
        return int(self.error) == 0


# --------------------------------------------------------------------------------------------
# validation

def _cfg_int(cfg, name: str) -> int:
    try:
        return int(getattr(cfg, name))
    except AttributeError:
        raise TypeError(f"Configuration {cfg!r} has no attribute {name!r}") from None


def _check_scalar(name: str, value, lo: int, hi: int) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise InputError(f"{name} must be an integer in [{lo}, {hi}], not {value!r}")
    if not lo <= int(value) <= hi:
        raise InputError(f"{name} must be in [{lo}, {hi}], not {int(value)!r}")
    return int(value)


def _check_int_array(name: str, value, shape: tuple[int, ...], lo: int, hi: int,
                     dtype=None) -> np.ndarray:
    arr = np.asarray(value)
    if dtype is not None and arr.dtype != dtype:
        raise InputError(f"{name} must have dtype {np.dtype(dtype).name}, not {arr.dtype.name}")
    if not np.issubdtype(arr.dtype, np.integer):
        raise InputError(f"{name} must have an integer dtype, not {arr.dtype.name}")
    if arr.shape != shape:
        raise InputError(f"{name} must have shape {shape}, not {arr.shape}")
    if arr.size:
        amin, amax = int(arr.min()), int(arr.max())
        if amin < lo or amax > hi:
            bad = amin if amin < lo else amax
            idx = tuple(int(i) for i in np.argwhere(arr == bad)[0])
            raise InputError(f"{name}{list(idx)} = {bad} is outside [{lo}, {hi}]")
    return arr.astype(np.int64)


def column_bounds(b: np.ndarray, bias: np.ndarray) -> list[int]:
    """Per column, the largest ``|A·B + bias|`` any int8 ``A`` can produce.

    Parameters
    ----------
    b : numpy.ndarray, shape (K, N), integer dtype
        Weights.
    bias : numpy.ndarray, shape (N,), integer dtype
        Folded bias ``bias'``.

    Returns
    -------
    list of int
        ``|bias[n]| + 128 * sum_k |b[k, n]|`` as Python integers (numerics.md).
    """
    col = np.abs(np.asarray(b, dtype=np.int64)).sum(axis=0)   # <= 128 * (2**24 - 1): exact
    return [abs(int(x)) + 128 * int(s) for x, s in zip(np.asarray(bias).tolist(), col.tolist())]


def _validate(job: GemmJob, cfg, held: Sequence[int] | None) -> tuple[GemmJob, np.ndarray,
                                                                       list[int]]:
    """Check ``job`` against the hardware limits; return the normalised job, bias', bound."""
    rows, cols = _cfg_int(cfg, "rows"), _cfg_int(cfg, "cols")
    k_max, w = _cfg_int(cfg, "k_max"), _cfg_int(cfg, "acc_bits")
    acc_depth = _cfg_int(cfg, "acc_depth")
    if getattr(cfg, "dataflow", None) not in ("ws", "os"):
        raise InputError(f"Dataflow must be 'ws' or 'os', not {getattr(cfg, 'dataflow', None)!r}")
    del rows, cols

    a, b = np.asarray(job.a), np.asarray(job.b)
    for name, arr in (("A", a), ("B", b)):
        if arr.dtype != np.int8:
            raise InputError(f"{name} must have dtype int8, not {arr.dtype.name}")
        if arr.ndim != 2:
            raise InputError(f"{name} must be 2-D, not {arr.ndim}-D with shape {arr.shape}")
    m, k = a.shape
    k_b, n = b.shape
    if k != k_b:
        raise InputError(f"A is {m}x{k} but B is {k_b}x{n}: the inner dimensions differ")
    if m < 1 or k < 1 or n < 1:
        raise InputError(f"M, K and N must be at least 1, not M={m}, K={k}, N={n}")
    if k > k_max:
        raise InputError(f"K = {k} exceeds this design's k_max = {k_max} (config key k_max; the engine "
                         f"rejects the job: BAD_SHAPE)")
    if m > _DIM_MAX or n > _DIM_MAX:
        raise InputError(f"M and N must be at most {_DIM_MAX}, not M={m}, N={n}")

    zp_a = _check_scalar("zp_a", job.zp_a, *_INT8)
    zp_b = _check_scalar("zp_b", job.zp_b, *_INT8)
    if zp_b != 0:
        raise InputError(f"zp_b must be 0: asymmetric weights are not supported, not {zp_b}")
    zp_out = _check_scalar("zp_out", job.zp_out, *_INT8)
    act_min = _check_scalar("act_min", job.act_min, *_INT8)
    act_max = _check_scalar("act_max", job.act_max, *_INT8)
    tag = _check_scalar("tag", job.tag, 0, 255)

    if job.bias is None:
        bias = np.zeros(n, dtype=np.int64)
    else:
        bias = _check_int_array("bias", job.bias, (n,), *_INT32)

    if (job.multiplier is None) != (job.shift is None):
        raise InputError("multiplier and shift must be given together (requant job) or both "
                         "be None (raw job)")
    requant = job.multiplier is not None
    multiplier = shift = None
    if requant:
        multiplier = _check_int_array("multiplier", job.multiplier, (n,), 0, _MULT_MAX)
        low = (multiplier != 0) & (multiplier < _MULT_MIN)
        if low.any():
            i = int(np.flatnonzero(low)[0])
            raise InputError(f"multiplier[{i}] = {int(multiplier[i])} must be 0 or in "
                             f"[2**30, 2**31)")
        shift = _check_int_array("shift", job.shift, (n,), *_SHIFT)
        if act_min > act_max:
            raise InputError(f"act_min={act_min} must not exceed act_max={act_max}")

    acc_in, acc_out = bool(job.acc_in), bool(job.acc_out)
    if acc_in or acc_out:
        flag = "acc_in" if acc_in else "acc_out"
        if m > acc_depth:
            raise InputError(f"{flag} needs M <= acc_depth={acc_depth}, not M={m}")
        if n > _cfg_int(cfg, "cols"):
            raise InputError(f"{flag} needs N <= cols={_cfg_int(cfg, 'cols')}, not N={n}")
    if acc_out and requant:
        raise InputError("acc_out keeps raw accumulators: it cannot be a requant job "
                         "(give no multiplier/shift)")
    if acc_in and held is None:
        raise InputError("acc_in needs a held accumulator: encode the job after an acc_out job "
                         "of the same M and N (encode_many, or held=previous.bound)")
    if not acc_in and held is not None:
        held = None

    # zero-point folding with exact integers (numerics.md)
    colsum = b.astype(np.int64).sum(axis=0)
    folded = bias - zp_a * colsum
    lo, hi = _INT32
    out = (folded < lo) | (folded > hi)
    if out.any():
        i = int(np.flatnonzero(out)[0])
        raise InputError(f"bias'[{i}] = bias - zp_a * sum_k B[k, {i}] = {int(folded[i])} does not "
                         f"fit the int32 parameter block")

    bound = column_bounds(b, folded)
    if held is not None:
        if len(held) != n:
            raise InputError(f"acc_in job has N={n} but the held accumulator has {len(held)} "
                             f"columns")
        bound = [x + int(h) for x, h in zip(bound, held)]
    limit = (1 << (w - 1)) - 1
    for i, x in enumerate(bound):
        if x > limit:
            extra = " including the held accumulator" if held is not None else ""
            raise InputError(
                f"Accumulator overflow possible in column n={i}: |bias'| + 128*sum|B[:, {i}]|"
                f"{extra} = {x} > 2**{w - 1} - 1 = {limit} (acc_bits={w})")

    norm = GemmJob(a=a, b=b, bias=None if job.bias is None else bias.astype(np.int32),
                   zp_a=zp_a, multiplier=None if multiplier is None else multiplier,
                   shift=None if shift is None else shift, zp_out=zp_out, act_min=act_min,
                   act_max=act_max, acc_in=acc_in, acc_out=acc_out, tag=tag, zp_b=0)
    return norm, folded, bound


# --------------------------------------------------------------------------------------------
# encoding

def _spans(total: int, step: int) -> list[tuple[int, int]]:
    """``[(start, size), ...]`` cutting ``total`` into pieces of at most ``step``."""
    return [(s, min(step, total - s)) for s in range(0, total, step)]


def _row_groups(m: int, cfg) -> list[tuple[int, int]]:
    """Row chunks (ws, at most ``acc_depth``) or row tiles (os, at most ``rows``)."""
    return _spans(m, _cfg_int(cfg, Dataflow(cfg.dataflow).pick(ws="acc_depth", os="rows")))


def result_plan(m: int, n: int, cfg, acc_out: bool = False) -> ResultPlan:
    """The order of a job's result beats (``docs/isa.md``, *Stream order*).

    Parameters
    ----------
    m, n : int
        Rows and columns of ``C``.
    cfg : GemmConfig
        The design.
    acc_out : bool
        An ``acc_out`` job returns no beats.

    Returns
    -------
    ResultPlan
        One entry per beat: for each column tile, for each row group, one beat per row.
    """
    if acc_out:
        e = np.zeros(0, dtype=np.int64)
        return ResultPlan(e, e.copy(), e.copy())
    rows, c0, nc = [], [], []
    for n0, ncols in _spans(n, _cfg_int(cfg, "cols")):
        for m0, mc in _row_groups(m, cfg):
            r = np.arange(m0, m0 + mc, dtype=np.int64)
            rows.append(r)
            c0.append(np.full(mc, n0, dtype=np.int64))
            nc.append(np.full(mc, ncols, dtype=np.int64))
    return ResultPlan(np.concatenate(rows), np.concatenate(c0), np.concatenate(nc))


def _param_block(bias: np.ndarray, mult: np.ndarray, shift: np.ndarray, cols: int) -> np.ndarray:
    """The 9 lane-sliced parameter beats of one column tile, shape (9, cols), uint8."""
    nc = bias.shape[0]
    out = np.zeros((isa.PARAM_BEATS, cols), dtype=np.uint8)
    out[0:4, :nc] = bias.astype("<i4").view(np.uint8).reshape(nc, 4).T
    out[4:8, :nc] = mult.astype("<u4").view(np.uint8).reshape(nc, 4).T
    out[8, :nc] = shift.astype(np.int8).view(np.uint8)
    return out


def encode(job: GemmJob, cfg, *, held: Sequence[int] | None = None) -> Streams:
    """Encode one job into its command beat, data beats and result plan.

    Parameters
    ----------
    job : GemmJob
        The job.
    cfg : GemmConfig
        The design the beats are for (``rows``, ``cols``, ``dataflow``, ``k_max``,
        ``acc_bits``, ``lane_bits``, ``acc_depth``).
    held : sequence of int, optional
        For an ``acc_in`` job: the per-column bound of the held accumulator
        (``Streams.bound`` of the ``acc_out`` job before it), so that the overflow check covers
        ``held + A·B + bias'``. :func:`encode_many` threads it automatically.

    Returns
    -------
    Streams
        The command, the ``s_axis_act`` and ``s_axis_wgt`` beats in order, and the result plan.

    Raises
    ------
    ValueError
        For anything the hardware cannot do, one message each: dtypes other than int8 for A and
        B, shapes that do not chain, a zero dimension, ``K > k_max``, out-of-range zero points,
        clamp bounds, tag, bias, multiplier or shift, ``act_min > act_max`` on a requant job,
        ``acc_in``/``acc_out`` with ``M > acc_depth`` or ``N > cols`` or with requant,
        ``acc_in`` without a held accumulator, a folded bias outside int32, and a job whose
        accumulator could overflow (the message names the column).
    """
    job, folded, bound = _validate(job, cfg, held)
    rows, cols = _cfg_int(cfg, "rows"), _cfg_int(cfg, "cols")
    a = job.a.view(np.uint8)
    b = job.b.view(np.uint8)
    m, k = a.shape
    n = b.shape[1]
    col_tiles = _spans(n, cols)
    groups = _row_groups(m, cfg)
    if job.requant:
        mult, shift = job.multiplier, job.shift
    else:
        mult = np.zeros(n, dtype=np.int64)
        shift = np.zeros(n, dtype=np.int64)

    dataflow = Dataflow(cfg.dataflow)
    k_tiles = _spans(k, rows)
    n_act = len(col_tiles) * dataflow.pick(ws=len(k_tiles) * m, os=len(groups) * k)
    n_wgt = len(col_tiles) * (isa.PARAM_BEATS + len(groups) * k)
    act = np.zeros((n_act, rows), dtype=np.uint8)
    act_keep = np.zeros((n_act, rows), dtype=bool)
    act_last = np.zeros(n_act, dtype=bool)
    wgt = np.zeros((n_wgt, cols), dtype=np.uint8)
    wgt_keep = np.zeros((n_wgt, cols), dtype=bool)
    wgt_last = np.zeros(n_wgt, dtype=bool)

    pa = pw = 0
    for n0, nc in col_tiles:
        wgt[pw:pw + isa.PARAM_BEATS] = _param_block(folded[n0:n0 + nc], mult[n0:n0 + nc],
                                                    shift[n0:n0 + nc], cols)
        wgt_keep[pw:pw + isa.PARAM_BEATS, :nc] = True
        pw += isa.PARAM_BEATS
        wgt_last[pw - 1] = True
        for m0, mc in groups:
            # ws: per K tile, its weight rows, then the chunk's rows of A (a K tile wide);
            # os: all K weight rows, then the tile's A transposed (one K step a beat)
            for k0, kc in dataflow.pick(ws=k_tiles, os=[(0, k)]):
                wgt[pw:pw + kc, :nc] = b[k0:k0 + kc, n0:n0 + nc]
                wgt_keep[pw:pw + kc, :nc] = True
                pw += kc
                wgt_last[pw - 1] = True
                beats = dataflow.pick(ws=a[m0:m0 + mc, k0:k0 + kc], os=a[m0:m0 + mc, :].T)
                nb, width = beats.shape
                act[pa:pa + nb, :width] = beats
                act_keep[pa:pa + nb, :width] = True
                pa += nb
                act_last[pa - 1] = True
    assert pa == n_act and pw == n_wgt

    cmd = isa.pack(isa.CMD_FIELDS, opcode=isa.Opcode.GEMM, version=isa.ISA_VERSION,
                   requant=int(job.requant), acc_in=int(job.acc_in), acc_out=int(job.acc_out),
                   tag=job.tag, m=m, k=k, n=n, zp_out=job.zp_out, act_min=job.act_min,
                   act_max=job.act_max)
    return Streams(cmd=cmd, act=BeatStream(act, act_keep, act_last),
                   wgt=BeatStream(wgt, wgt_keep, wgt_last),
                   res=result_plan(m, n, cfg, job.acc_out), bias=folded, bound=bound, job=job)


def encode_many(jobs: Iterable[GemmJob], cfg) -> list[Streams]:
    """Encode a sequence of jobs that run back to back, checking accumulator chains.

    Parameters
    ----------
    jobs : iterable of GemmJob
        Jobs in the order they are sent.
    cfg : GemmConfig
        The design.

    Returns
    -------
    list of Streams
        One per job.

    Raises
    ------
    ValueError
        As :func:`encode`; also for an ``acc_in`` job not directly after an ``acc_out`` job of
        the same M and N, and for a chain whose summed accumulator could overflow. The message
        starts with the job's index.
    """
    out: list[Streams] = []
    prev: Streams | None = None
    for i, job in enumerate(jobs):
        held = None
        if job.acc_in:
            if prev is None or not prev.job.acc_out:
                raise InputError(f"job {i}: acc_in must follow an acc_out job")
            m, _, n = job.shape
            pm, _, pn = prev.job.shape
            if (m, n) != (pm, pn):
                raise InputError(f"job {i}: acc_in job is {m}x{n} but the held accumulator is "
                                 f"{pm}x{pn}")
            held = prev.bound
        try:
            s = encode(job, cfg, held=held)
        except InputError as e:
            raise InputError(f"job {i}: {e}") from e
        out.append(s)
        prev = s
    return out


# --------------------------------------------------------------------------------------------
# decoding

def _as_byte_rows(beats, width: int) -> tuple[np.ndarray, list | None, list | None]:
    """Normalise result beats to a (beats, width) uint8 array, keeping tkeep/tlast if known."""
    if isinstance(beats, np.ndarray):
        arr = np.asarray(beats, dtype=np.uint8)
        if arr.ndim != 2 or arr.shape[1] != width:
            raise InputError(f"Result beats must have shape (beats, {width}), not {arr.shape}")
        return arr, None, None
    datas, keeps, lasts = [], [], []
    for i, beat in enumerate(beats):
        if isinstance(beat, Beat):
            data, keep, last = beat.data, beat.keep, beat.last
        elif isinstance(beat, (bytes, bytearray)):
            data, keep, last = bytes(beat), None, None
        else:
            data, keep, last = beat
        if len(data) != width:
            raise InputError(f"Result beat {i} has {len(data)} bytes, not {width}")
        datas.append(data)
        keeps.append(keep)
        lasts.append(last)
    arr = np.frombuffer(b"".join(datas), dtype=np.uint8).reshape(len(datas), width)
    return arr, keeps, lasts


def decode_results(beats, job: GemmJob, cfg) -> np.ndarray:
    """Reassemble ``C`` from a job's result beats.

    Parameters
    ----------
    beats : sequence of Beat, bytes or (bytes, keep, last); or numpy.ndarray (beats, L*C/8)
        The ``m_axis_res`` beats of the job in arrival order, each the full port width
        (``lane_bits * cols / 8`` bytes, lane 0 in the low bytes). When ``keep`` and ``last``
        are given they are checked against the documented order.
    job : GemmJob
        The job the beats answer.
    cfg : GemmConfig
        The design.

    Returns
    -------
    numpy.ndarray, shape (M, N)
        int8 for a requant job (byte ``c`` of a beat is column ``c``'s result); int64 for a raw
        job (each ``L``-bit lane sign-extended).

    Raises
    ------
    ValueError
        When the number of beats, a beat's width, a ``tkeep`` or a ``tlast`` differs from the
        documented order, or (requant) a byte past the row's ``nc`` results is not 0.
    """
    m, _, n = job.shape
    cols, lane = _cfg_int(cfg, "cols"), _cfg_int(cfg, "lane_bits")
    if lane % 8:
        raise InputError(f"lane_bits must be a multiple of 8, not {lane}")
    lb = lane // 8
    plan = result_plan(m, n, cfg, bool(job.acc_out))
    arr, keeps, lasts = _as_byte_rows(beats, cols * lb)
    if arr.shape[0] != len(plan):
        raise InputError(f"Expected {len(plan)} result beats for a {m}x{n} job, got "
                         f"{arr.shape[0]}")
    if len(plan) == 0:
        return np.zeros((m, n), dtype=np.int8 if job.requant else np.int64)
    # tkeep: an int8 row (requant) is nc packed bytes; a raw row nc lanes of L/8 bytes.
    per_col = 1 if job.requant else lb
    for i in range(len(plan)):
        if keeps is not None and keeps[i] is not None:
            want = (1 << int(plan.ncols[i]) * per_col) - 1
            if int(keeps[i]) != want:
                raise InputError(f"Result beat {i}: tkeep {int(keeps[i]):#x}, expected {want:#x}")
        if lasts is not None and lasts[i] is not None and bool(lasts[i]) != (i == len(plan) - 1):
            raise InputError(f"Result beat {i}: tlast {int(bool(lasts[i]))}, expected "
                             f"{int(i == len(plan) - 1)}")
    if job.requant:
        # bytes 0 .. nc - 1: the int8 results; every other byte of the beat must be 0
        vals = arr[:, :cols].view(np.int8).astype(np.int64)
        valid = np.arange(arr.shape[1])[None, :] < plan.ncols[:, None]
        stray = (arr != 0) & ~valid
        if stray.any():
            i, b = (int(x) for x in np.argwhere(stray)[0])
            raise InputError(f"Result beat {i} byte {b}: {int(arr[i, b])}, expected 0 past the "
                             f"row's {int(plan.ncols[i])} int8 results")
    else:
        lanes = arr.reshape(len(plan), cols, lb).astype(np.int64)
        # little-endian bytes → unsigned lane value (L <= 64 keeps this exact), then sign-extend
        vals = np.zeros((len(plan), cols), dtype=np.uint64)
        for i in range(lb):
            vals |= lanes[:, :, i].astype(np.uint64) << np.uint64(8 * i)
        if lane < 64:
            sign = np.uint64(1 << (lane - 1))
            vals = ((vals ^ sign).astype(np.int64) - np.int64(1 << (lane - 1)))
        else:
            vals = vals.view(np.int64)
    out = np.zeros((m, n), dtype=np.int64)
    filled = np.zeros((m, n), dtype=bool)
    for c in range(cols):
        sel = plan.ncols > c
        out[plan.row[sel], plan.col0[sel] + c] = vals[sel, c]
        filled[plan.row[sel], plan.col0[sel] + c] = True
    assert filled.all()
    return out.astype(np.int8) if job.requant else out


def decode_status(word: int) -> Status:
    """Split a 64-bit status beat into its fields (:data:`npugen.hw.isa.STATUS_FIELDS`).

    Parameters
    ----------
    word : int
        ``m_axis_status_tdata``.

    Returns
    -------
    Status
        ``error`` is an :class:`npugen.hw.isa.Error` when the code is known, else the raw int.
    """
    f = isa.unpack(isa.STATUS_FIELDS, int(word))
    try:
        err = isa.Error(f["error"])
    except ValueError:
        err = f["error"]
    reserved = (int(word) >> 24) & 0xFF
    return Status(error=err, version=f["version"], tag=f["tag"], cycles=f["cycles"],
                  reserved=reserved)


# --------------------------------------------------------------------------------------------
# timing

def cycles_lower_bound(job: GemmJob, cfg) -> int:
    """Beats on the busiest input stream: no implementation can finish a job in fewer cycles.

    Parameters
    ----------
    job : GemmJob
        The job.
    cfg : GemmConfig
        The design.

    Returns
    -------
    int
        ``max(act beats, wgt beats, result beats)`` from the stream order; a status ``cycles``
        below this value means beats were lost. Pipeline fill and drain come on top.
    """
    s = encode(job, cfg, held=[0] * job.shape[2] if job.acc_in else None)
    return max(len(s.act), len(s.wgt), len(s.res))


# --------------------------------------------------------------------------------------------
# attention (docs/attention.md)

@dataclass
class AttentionJob:
    """One attention job of one head: ``O = softmax(Q·Kᵀ)·V`` on the attention unit.

    Parameters
    ----------
    q : numpy.ndarray, shape (M, d), dtype int8
        Queries, symmetric (zero point 0).
    k : numpy.ndarray, shape (N, d), dtype int8
        Keys, symmetric.
    v : numpy.ndarray, shape (N, d), dtype int8
        Values, zero point ``params.zp_v``.
    params : sim.golden.attention.AttentionParams
        ``M0_s``, ``sh_s``, the LUT scale ``c``, ``zp_v``, ``M0_o``, ``sh_o``, ``zp_o``
        (:func:`npugen.sim.golden.attention.attention_params`).
    mask : numpy.ndarray of bool, shape (M, N) or (N,), or None
        True = attend; (N,) applies to every query (a padding mask); None attends every key.
        Sent as ``tuser`` of the key beats.
    causal : bool
        Query ``i`` attends key ``j`` only if ``j <= i`` (the command's ``causal`` bit, ANDed
        with the mask by the hardware).
    head : int
        LUT slot to use (and load), 0 to ``heads - 1``.
    load_lut : bool
        Send the 256 entries of ``make_lut(params.c, F)`` after the parameters (into ``head``).
        False reuses the table a previous job loaded into ``head``.
    tag : int
        0 to 255, echoed in the status beat.
    F : int or None
        LUT fraction bits of the table; None takes the design's. When given it must equal it.
    """

    q: Any
    k: Any
    v: Any
    params: Any
    mask: Any = None
    causal: bool = False
    head: int = 0
    load_lut: bool = True
    tag: int = 0
    F: int | None = None

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(M, N, d)`` as given (not validated)."""
        q, k = np.asarray(self.q), np.asarray(self.k)
        return int(q.shape[0]), int(k.shape[0]), int(q.shape[-1])


@dataclass(frozen=True)
class RowStream:
    """The beats of one row stream (``s_axis_q``, ``s_axis_k``, ``s_axis_v``, ``m_axis_o``).

    Attributes
    ----------
    data : numpy.ndarray, shape (beats, d), dtype uint8
        ``tdata`` bytes of each beat, lane 0 first (an int8 row viewed as bytes).
    last : numpy.ndarray, shape (beats,), dtype bool
        ``tlast`` of each beat.
    user : numpy.ndarray, shape (beats,), dtype int64, or None
        ``tuser`` of each beat (the key stream's per-query mask bits); None for no ``tuser``.
    """

    data: np.ndarray
    last: np.ndarray
    user: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.data.shape[0])

    def frames(self, last: np.ndarray | None = None) -> list[tuple[bytes, list[int] | None]]:
        """The stream cut into ``tlast``-delimited frames.

        Parameters
        ----------
        last : numpy.ndarray of bool, optional
            ``tlast`` flags to cut at instead of :attr:`last` (to misplace one).

        Returns
        -------
        list of (bytes, list of int or None)
            Per frame: its ``tdata`` bytes and, with ``tuser``, one ``tuser`` value per byte
            (each byte of a beat carries the beat's value: cocotbext-axi drives a beat's
            ``tuser`` from its bytes), the form ``AxiStreamFrame(tdata, tuser=...)`` takes.
            Beats after the last ``tlast`` form a final frame.
        """
        flags = self.last if last is None else np.asarray(last, dtype=bool)
        ends = list(np.flatnonzero(flags) + 1)
        if not ends or ends[-1] != len(self):
            ends.append(len(self))
        d = int(self.data.shape[1])
        out, start = [], 0
        for end in ends:
            if end > start:
                user = None
                if self.user is not None:
                    user = np.repeat(self.user[start:end], d).tolist()
                out.append((self.data[start:end].tobytes(), user))
            start = end
        return out


@dataclass(frozen=True)
class AttentionStreams:
    """Everything a host sends for one attention job, in the order of ``docs/attention.md``.

    Attributes
    ----------
    cmd : int
        The 128-bit command beat (:data:`npugen.hw.isa.ATT_CMD_FIELDS`).
    param : numpy.ndarray, shape (4,) or (260,), dtype int64
        ``s_axis_param`` beats as unsigned 32-bit words: ``M0_s``, ``sh_s & 0xff``, ``M0_o``,
        ``sh_o & 0xff``, then (``load_lut``) ``E[0] … E[255]``; ``tlast`` on the last one.
    q, k, v : RowStream
        The query, key (``tuser`` = mask bits of the block's queries) and value beats, block
        after block: per block of ``q_block`` queries, its ``mq`` query beats, then all ``N``
        keys and values.
    m : int
        Output rows (``m_axis_o`` beats) the job returns: M, ``tlast`` on the last.
    d : int
        Bytes of a row beat.
    mask : numpy.ndarray of bool, shape (M, N)
        The mask as sent (without the causal part).
    job : AttentionJob
        The job with its arrays normalised (``mask`` None or as given).
    """

    cmd: int
    param: np.ndarray
    q: RowStream
    k: RowStream
    v: RowStream
    m: int
    d: int
    mask: np.ndarray
    job: AttentionJob

    @property
    def param_last(self) -> np.ndarray:
        """``tlast`` of each parameter beat: only the block's last, shape (beats,), bool."""
        out = np.zeros(len(self.param), dtype=bool)
        out[-1] = True
        return out

    def param_bytes(self) -> bytes:
        """The parameter beats as little-endian 32-bit words (one ``AxiStreamFrame``)."""
        return self.param.astype("<u4").tobytes()


def attention_geometry(cfg) -> dict[str, int]:
    """The attention unit's parameters a host needs: ``d``, ``heads``, ``q_block`` (the
    ``[attention]`` section) and ``F``, ``B``, ``N_max``, ``G`` (``cfg.osi8``).

    Raises
    ------
    ValueError
        If the configuration has no ``[attention]`` section.
    """
    MissingSectionError.check(cfg, "attention")
    att = cfg.attention
    sm = cfg.osi8
    return {"d": int(att.d), "heads": int(att.heads), "q_block": int(att.q_block),
            "F": int(sm.F), "B": int(sm.B), "N_max": int(sm.N_max), "G": int(sm.G)}


_LUTS: dict[tuple[float, int], tuple[int, ...]] = {}


def _lut_cached(c: float, F: int) -> tuple[int, ...]:
    """``make_lut(c, F)`` of the golden side (osi8.md), memoised: it is slow to evaluate."""
    key = (float(c), int(F))
    if key not in _LUTS:
        from npugen.sim.golden import make_lut
        _LUTS[key] = tuple(make_lut(*key))
    return _LUTS[key]


def _int8_2d(name: str, value, shape_doc: str) -> np.ndarray:
    arr = np.asarray(value)
    if arr.dtype != np.int8:
        raise InputError(f"{name} must have dtype int8, not {arr.dtype.name}")
    if arr.ndim != 2:
        raise InputError(f"{name} must be a 2-D {shape_doc} array, not shape {arr.shape}")
    return arr


def encode_attention(job: AttentionJob, cfg) -> AttentionStreams:
    """Encode one attention job into its command beat, parameter block and row beats.

    Parameters
    ----------
    job : AttentionJob
        The job.
    cfg : GemmConfig
        The design (its ``[attention]`` section and ``osi8`` parameters; see
        :func:`attention_geometry`).

    Returns
    -------
    AttentionStreams
        The beats of ``s_axis_cmd``, ``s_axis_param``, ``s_axis_q``, ``s_axis_k`` and
        ``s_axis_v`` in the documented order, and the number of output rows.

    Raises
    ------
    ValueError
        One line naming the argument, for: Q, K or V not 2-D int8, shapes that do not match,
        ``d`` other than the design's, M = 0, N = 0 or N > ``N_max``, M above 2^24 - 1, a mask
        that is not a bool array of shape (M, N) or (N,), ``head`` outside [0, heads),
        ``tag`` outside [0, 255], an ``F`` other than the design's, params that are not an
        ``AttentionParams``, and an output shift ``31 + G - sh_o`` outside [1, 62].
    """
    g = attention_geometry(cfg)
    d, P = g["d"], g["q_block"]
    from npugen.sim.golden.attention import AttentionParams
    params = job.params
    if not isinstance(params, AttentionParams):
        raise InputError(f"params must be an AttentionParams, not {type(params).__name__}")
    q = _int8_2d("q", job.q, "(M, d)")
    k = _int8_2d("k", job.k, "(N, d)")
    v = _int8_2d("v", job.v, "(N, d)")
    m, n = q.shape[0], k.shape[0]
    if q.shape[1] != d:
        raise InputError(f"q must have d = {d} columns (the design's attention.d), not shape "
                         f"{q.shape}")
    if k.shape[1] != d:
        raise InputError(f"k must have d = {d} columns like q, not shape {k.shape}")
    if v.shape != k.shape:
        raise InputError(f"v must have the shape (N, d) = {k.shape} of k, not {v.shape}")
    if m < 1:
        raise InputError(f"q must hold at least one query (M >= 1), not shape {q.shape}")
    if m > _DIM_MAX:
        raise InputError(f"M must be at most {_DIM_MAX}, not {m}")
    if n < 1:
        raise InputError(f"k must hold at least one key (N >= 1), not shape {k.shape}")
    if n > g["N_max"]:
        raise InputError(f"N = {n} keys exceed this design's N_max = {g['N_max']}")
    head = _check_scalar("head", job.head, 0, g["heads"] - 1)
    tag = _check_scalar("tag", job.tag, 0, 255)
    F = g["F"] if job.F is None else _check_scalar("F", job.F, 8, 30)
    if F != g["F"]:
        raise InputError(f"F = {F} differs from this design's F = {g['F']}")
    try:
        params.output_shift(g["G"])
    except ValueError as e:
        raise InputError(f"params: {e}") from None
    if job.mask is None:
        mask = np.ones((m, n), dtype=bool)
    else:
        arr = np.asarray(job.mask)
        if arr.dtype != np.bool_:
            raise InputError(f"mask must be a bool array (True = attend), not an array of dtype "
                             f"{arr.dtype}")
        if arr.shape not in ((m, n), (n,)):
            raise InputError(f"mask must have shape (M, N) = {(m, n)} or (N,) = {(n,)}, not "
                             f"{arr.shape}")
        mask = np.broadcast_to(arr, (m, n)).copy()

    words = [params.score_multiplier & 0xFFFFFFFF, params.score_shift & 0xFF,
             params.out_multiplier & 0xFFFFFFFF, params.out_shift & 0xFF]
    if job.load_lut:
        words += list(_lut_cached(params.c, F))
    param = np.array(words, dtype=np.int64)

    blocks = [(m0, min(P, m - m0)) for m0 in range(0, m, P)]
    qb, kb = q.view(np.uint8), k.view(np.uint8)
    vb = v.view(np.uint8)
    q_last = np.zeros(m, dtype=bool)
    kv_data = np.empty((len(blocks) * n, d), dtype=np.uint8)
    v_data = np.empty((len(blocks) * n, d), dtype=np.uint8)
    kv_last = np.zeros(len(blocks) * n, dtype=bool)
    k_user = np.zeros(len(blocks) * n, dtype=np.int64)
    weights = (1 << np.arange(P, dtype=np.int64))
    for b, (m0, mq) in enumerate(blocks):
        q_last[m0 + mq - 1] = True
        sl = slice(b * n, (b + 1) * n)
        kv_data[sl] = kb
        v_data[sl] = vb
        kv_last[(b + 1) * n - 1] = True
        k_user[sl] = (mask[m0:m0 + mq].T.astype(np.int64) * weights[:mq]).sum(axis=1)

    cmd = isa.pack(isa.ATT_CMD_FIELDS, opcode=isa.Opcode.ATTENTION, version=isa.ISA_VERSION,
                   causal=int(bool(job.causal)), load_lut=int(bool(job.load_lut)), tag=tag,
                   m=m, n=n, head=head, zp_v=params.zp_v, zp_o=params.zp_o)
    norm = AttentionJob(q=q, k=k, v=v, params=params, mask=job.mask, causal=bool(job.causal),
                        head=head, load_lut=bool(job.load_lut), tag=tag, F=F)
    return AttentionStreams(cmd=cmd, param=param,
                            q=RowStream(qb.copy(), q_last),
                            k=RowStream(kv_data, kv_last.copy(), k_user),
                            v=RowStream(v_data, kv_last), m=m, d=d, mask=mask, job=norm)


def decode_rows(data: bytes, m: int, d: int) -> np.ndarray:
    """The int8 (M, d) output of a job from its ``m_axis_o`` bytes (M beats of d bytes).

    Raises
    ------
    ValueError
        If the byte count is not ``m * d``.
    """
    if len(data) != m * d:
        raise InputError(f"Expected {m} output rows of {d} bytes ({m * d} bytes), got "
                         f"{len(data)} bytes")
    return np.frombuffer(bytes(data), dtype=np.int8).reshape(m, d).copy()

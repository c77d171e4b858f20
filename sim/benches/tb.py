"""Testbench plumbing for the generated GEMM engine: clock, reset, stream BFMs, model, checker.

:class:`TB` drives the five AXI4-Stream ports of the exported top (``docs/isa.md``) with
cocotbext-axi: :class:`~cocotbext.axi.AxiStreamSource` on ``s_axis_cmd``, ``s_axis_act`` and
``s_axis_wgt``, :class:`~cocotbext.axi.AxiStreamSink` on ``m_axis_res`` and ``m_axis_status``,
with byte-level ``tkeep``. Beats are built by :mod:`npugen.sim.driver` with NumPy and moved as whole
frames (one ``tlast``-delimited group of beats per frame); the expected results come from
:mod:`npugen.sim.golden` through :class:`Model`, which also tracks the accumulator held between an
``acc_out`` and an ``acc_in`` job.

Backpressure comes from pause generators advanced once per clock by cocotbext-axi
(:func:`pause_pattern`), seeded from the runner's seed. The configuration and the seed reach the
bench through ``NPUGEN_CONFIG`` (a TOML file) and ``NPUGEN_SEED``, never from the design.
"""

from __future__ import annotations

import itertools
import logging
import os
import random
from dataclasses import dataclass
from typing import Iterator

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from npugen.hw import isa
from npugen.hw.config import GemmConfig, load_config
from npugen.sim import golden
from npugen.sim.driver import Beat, GemmJob, Status, decode_results, decode_status, encode

__all__ = ["ClockedTB", "TB", "Model", "JobResult", "PATTERNS", "pause_pattern", "bench_config",
           "bench_seed", "bench_full", "random_job", "requant_params", "wait_high"]

#: Backpressure pattern names understood by :func:`pause_pattern` / :meth:`TB.backpressure`.
PATTERNS = ("none", "periodic", "random", "stall_on_last", "after_reset")

#: Clock period of ``aclk`` in the benches, ns.
PERIOD_NS = 10


def bench_config() -> GemmConfig:
    """The configuration under test, from ``NPUGEN_CONFIG`` (the embedded default if unset)."""
    path = os.environ.get("NPUGEN_CONFIG")
    return load_config(path) if path else load_config()


def bench_seed() -> int:
    """The run's seed, from ``NPUGEN_SEED`` (falls back to cocotb's random seed)."""
    s = os.environ.get("NPUGEN_SEED")
    return int(s) if s else int(cocotb.RANDOM_SEED)


def bench_full() -> bool:
    """True when the runner asked for the long variants (``NPUGEN_FULL=1``)."""
    return os.environ.get("NPUGEN_FULL", "0") == "1"


def _high(sig) -> bool:
    """A 1-bit signal is a resolvable 1 (X/Z read as 0)."""
    v = sig.value
    return v.is_resolvable and bool(v)


async def wait_high(clk, sig, budget: int) -> int:
    """Wait (at most ``budget`` clocks) until ``sig`` is 1 at a rising edge; return the clocks."""
    edge = RisingEdge(clk)
    for i in range(budget):
        await edge
        if _high(sig):
            return i
    raise AssertionError(f"{sig._name} did not rise within {budget} cycles")


def pause_pattern(name: str, rng: random.Random, bus=None, *, role: str = "sink") -> Iterator[bool] | None:
    """A pause generator for a cocotbext-axi source or sink, advanced once per clock.

    Parameters
    ----------
    name : str
        ``"none"`` (no pause), ``"periodic"`` (``cycle([0, 0, 0, 1])``: one paused cycle in four),
        ``"random"`` (random bursts of 1 to 8 cycles, paused with probability 0.4),
        ``"stall_on_last"`` (3 paused cycles starting on each ``tlast`` beat; every beat of a
        stream without ``tlast``), ``"after_reset"`` (paused for the first 20 cycles, then never;
        meant for sinks: ``tready`` low for 20 cycles after reset).
    rng : random.Random
        Seeded generator for ``"random"``.
    bus : cocotbext.axi.AxiStreamBus, optional
        The stream's signals, needed by ``"stall_on_last"``.
    role : {"sink", "source"}
        Unused by the patterns themselves; kept for log messages.

    Returns
    -------
    iterator of bool or None
        True pauses the stream for that cycle; None for ``"none"``.
    """
    if name == "none":
        return None
    if name == "periodic":
        return itertools.cycle([False, False, False, True])
    if name == "random":
        def bursts():
            while True:
                val = rng.random() < 0.4
                for _ in range(rng.randint(1, 8)):
                    yield val
        return bursts()
    if name == "after_reset":
        return itertools.chain(itertools.repeat(True, 20), itertools.repeat(False))
    if name == "stall_on_last":
        if bus is None:
            raise ValueError("stall_on_last needs the bus")
        has_last = hasattr(bus, "tlast")

        def stall():
            armed = True
            while True:
                at_last = _high(bus.tvalid) and (not has_last or _high(bus.tlast))
                if armed and at_last:
                    for _ in range(3):
                        yield True
                    armed = False
                else:
                    if not at_last:
                        armed = True
                    yield False
        return stall()
    raise ValueError(f"Unknown backpressure pattern {name!r}; known: {', '.join(PATTERNS)}")


class Model:
    """Reference model of a sequence of jobs: :mod:`npugen.sim.golden` plus the held accumulator."""

    def __init__(self, cfg: GemmConfig):
        self.cfg = cfg
        self.held: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the held accumulator (reset, or a job without ``acc_in``)."""
        self.held = None

    def run(self, job: GemmJob) -> np.ndarray | None:
        """Expected ``C`` of ``job`` (None for ``acc_out``); updates the held accumulator."""
        raw = golden.gemm_int8(job.a, job.b, bias=job.bias, zp_a=job.zp_a).astype(np.int64)
        if job.acc_in:
            assert self.held is not None and self.held.shape == raw.shape, "no held accumulator"
            raw = raw + self.held
        self.held = raw if job.acc_out else None
        if job.acc_out:
            return None
        if job.requant:
            return golden.requantize(raw, job.multiplier, job.shift, zp_out=job.zp_out,
                                     act_min=job.act_min, act_max=job.act_max,
                                     rounding=self.cfg.rounding)
        return raw


@dataclass
class JobResult:
    """What came back for one job.

    Attributes
    ----------
    status : Status
        The decoded status beat.
    c : numpy.ndarray or None
        The decoded result (None when the job returned no beats or was not decoded).
    beats : list of Beat
        The raw result beats.
    """

    status: Status
    c: np.ndarray | None
    beats: list[Beat]


def requant_params(rng: np.random.Generator, k: int, n: int, *, extreme: bool = False):
    """Random per-column ``(multiplier, shift)`` that map a typical K-term sum into int8.

    Parameters
    ----------
    rng : numpy.random.Generator
        Seeded generator.
    k, n : int
        Reduction length and columns.
    extreme : bool
        Also use the ends of the ranges (multiplier 0 and 2**31 - 1, shifts -31 and 30).

    Returns
    -------
    (numpy.ndarray of int64, numpy.ndarray of int64), shapes (N,)
    """
    spread = 74.0 * 74.0 * np.sqrt(k)                 # std of a K-term int8 dot product
    r = 40.0 / spread * 2.0 ** rng.uniform(-2, 2, n)
    m0, sh = golden.quantize_multiplier(r)
    m0, sh = np.asarray(m0, np.int64), np.asarray(sh, np.int64)
    if extreme and n >= 4:
        m0[0], sh[0] = (1 << 31) - 1, -31
        m0[1], sh[1] = 1 << 30, 30
        m0[2], sh[2] = 0, 0
        m0[3], sh[3] = (1 << 31) - 1, 0
    return m0, sh


def random_job(rng: np.random.Generator, m: int, k: int, n: int, *, requant: bool,
               tag: int | None = None, zp_a: int | None = None, clamp: bool = True) -> GemmJob:
    """A random job of shape ``(m, k, n)`` with random bias, zero point and (requant) scales."""
    a = rng.integers(-128, 128, (m, k), dtype=np.int8)
    b = rng.integers(-128, 128, (k, n), dtype=np.int8)
    job = GemmJob(a, b, bias=rng.integers(-(1 << 16), 1 << 16, n).astype(np.int32),
                  zp_a=int(rng.integers(-128, 128)) if zp_a is None else zp_a,
                  tag=int(rng.integers(0, 256)) if tag is None else tag)
    if requant:
        job.multiplier, job.shift = requant_params(rng, k, n)
        job.zp_out = int(rng.integers(-20, 21))
        if clamp and rng.random() < 0.5:
            lo = int(rng.integers(-128, 1))
            job.act_min, job.act_max = lo, int(rng.integers(lo, 128))
    return job


class ClockedTB:
    """What every bench shares: the cycle counter, reset and the start of the X/Z monitor.

    A subclass sets ``dut``, ``sim`` and ``cycle = 0`` and provides ``bfms`` (its cocotbext-axi
    sources and sinks), ``x_monitor()`` and ``_flush()`` (its own state to drop at reset).
    """

    async def _count(self):
        edge = RisingEdge(self.dut.aclk)
        while True:
            await edge
            self.cycle += 1

    async def start(self, reset_cycles: int = 8, x_check: bool | None = None) -> None:
        """Reset the DUT and start the cycle counter (and, on Icarus, the X/Z monitor)."""
        cocotb.start_soon(self._count())
        await self.reset(reset_cycles)
        if x_check is None:
            x_check = "icarus" in self.sim.lower()
        if x_check:
            self._xmon = cocotb.start_soon(self.x_monitor())

    async def reset(self, cycles: int = 8) -> None:
        """Hold ``aresetn`` low for ``cycles`` clocks; flush the BFMs and the bench's state."""
        self.dut.aresetn.value = 0
        await ClockCycles(self.dut.aclk, cycles)
        for bfm in self.bfms:
            bfm.clear()
        self._flush()
        self.dut.aresetn.value = 1
        await RisingEdge(self.dut.aclk)


class TB(ClockedTB):
    """Clock, reset, stream BFMs, reference model and in-order checker of one DUT.

    Parameters
    ----------
    dut : cocotb handle
        The top module (ports per ``docs/isa.md``).
    cfg : GemmConfig, optional
        The configuration; read from ``NPUGEN_CONFIG`` when omitted.
    seed : int, optional
        Seed of every random choice; read from ``NPUGEN_SEED`` when omitted.
    """

    def __init__(self, dut, cfg: GemmConfig | None = None, seed: int | None = None):
        self.dut = dut
        self.cfg = bench_config() if cfg is None else cfg
        self.seed = bench_seed() if seed is None else seed
        self.sim = os.environ.get("NPUGEN_SIM", cocotb.SIM_NAME or "")
        self.log = logging.getLogger("cocotb.tb")
        self.log.info("config %s (%dx%d %s, k_max %d, W %d), seed %d", self.cfg.name,
                      self.cfg.rows, self.cfg.cols, self.cfg.dataflow, self.cfg.k_max,
                      self.cfg.acc_bits, self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.prng = random.Random(self.seed)
        self.model = Model(self.cfg)
        Clock(dut.aclk, PERIOD_NS, unit="ns").start()
        dut.aresetn.value = 0
        self.cmd = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_cmd"), dut.aclk,
                                   dut.aresetn, reset_active_level=False)
        self.act = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_act"), dut.aclk,
                                   dut.aresetn, reset_active_level=False)
        self.wgt = AxiStreamSource(AxiStreamBus.from_prefix(dut, "s_axis_wgt"), dut.aclk,
                                   dut.aresetn, reset_active_level=False)
        self.res = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_res"), dut.aclk,
                                 dut.aresetn, reset_active_level=False)
        self.status = AxiStreamSink(AxiStreamBus.from_prefix(dut, "m_axis_status"), dut.aclk,
                                    dut.aresetn, reset_active_level=False)
        for bfm in (self.cmd, self.act, self.wgt, self.res, self.status):
            bfm.log.setLevel(logging.WARNING)
        self.res_bytes = self.cfg.cols * self.cfg.lane_bits // 8
        self.cycle = 0
        self._xmon = None
        self.jobs_run = 0

    # -- clock and reset ---------------------------------------------------------------------

    @property
    def bfms(self):
        return (self.cmd, self.act, self.wgt, self.res, self.status)

    def _flush(self) -> None:
        self.model.reset()

    def backpressure(self, sources: str = "none", sinks: str | None = None) -> None:
        """Install pause patterns (:func:`pause_pattern`) on all sources and all sinks."""
        sinks = sources if sinks is None else sinks
        for bfm in (self.cmd, self.act, self.wgt):
            pat = "none" if sources == "after_reset" else sources
            bfm.set_pause_generator(pause_pattern(pat, random.Random(self.prng.random()),
                                                  bfm.bus, role="source"))
        for bfm in (self.res, self.status):
            bfm.set_pause_generator(pause_pattern(sinks, random.Random(self.prng.random()),
                                                  bfm.bus))
        if sources == "none" and sinks == "none":
            for bfm in (self.cmd, self.act, self.wgt, self.res, self.status):
                bfm.clear_pause_generator()
                bfm.pause = False

    async def x_monitor(self) -> None:
        """Fail the test when an output is X/Z after reset (valid, ready; data when valid)."""
        d = self.dut
        edge = RisingEdge(d.aclk)
        ctrl = [d.m_axis_res_tvalid, d.m_axis_status_tvalid, d.s_axis_cmd_tready,
                d.s_axis_act_tready, d.s_axis_wgt_tready]
        res_data = [d.m_axis_res_tdata, d.m_axis_res_tkeep, d.m_axis_res_tlast]
        while True:
            await edge
            if not _high(d.aresetn):
                continue
            for s in ctrl:
                assert s.value.is_resolvable, f"{s._name} is {s.value} at cycle {self.cycle}"
            if _high(d.m_axis_res_tvalid):
                for s in res_data:
                    assert s.value.is_resolvable, (f"{s._name} is {s.value} while valid at "
                                                   f"cycle {self.cycle}")
            if _high(d.m_axis_status_tvalid):
                assert d.m_axis_status_tdata.value.is_resolvable, (
                    f"m_axis_status_tdata is {d.m_axis_status_tdata.value} while valid at cycle "
                    f"{self.cycle}")

    # -- sending and receiving ---------------------------------------------------------------

    async def send_cmd(self, word: int) -> None:
        """Queue one command beat."""
        await self.cmd.send(AxiStreamFrame(int(word).to_bytes(isa.CMD_WIDTH // 8, "little")))

    async def send_frames(self, source, stream, *, garbage: bool = False,
                          last: np.ndarray | None = None) -> None:
        """Queue a :class:`npugen.sim.driver.BeatStream` on a source, one frame per ``tlast`` group.

        Parameters
        ----------
        garbage : bool
            Fill the bytes of lanes whose ``tkeep`` is 0 with random values (the hardware must
            read them as 0).
        last : numpy.ndarray of bool, optional
            ``tlast`` flags to use instead of the stream's own (to misplace ``tlast``).
        """
        data = stream.data
        if garbage:
            noise = self.rng.integers(0, 256, data.shape, dtype=np.uint8)
            data = np.where(stream.keep, data, noise)
        flags = stream.last if last is None else last
        ends = list(np.flatnonzero(flags) + 1)
        if not ends or ends[-1] != len(stream):
            ends.append(len(stream))
        start = 0
        for end in ends:
            await source.send(AxiStreamFrame(
                data[start:end].tobytes(),
                tkeep=stream.keep[start:end].astype(np.uint8).ravel().tolist()))
            start = end

    def _budget(self, streams) -> int:
        """Generous cycle budget of one job, for timeouts (not a performance check)."""
        beats = len(streams.act) + len(streams.wgt) + len(streams.res)
        return 40 * beats + 40 * (self.cfg.rows + self.cfg.cols) + 4000

    async def recv_status(self, budget: int = 20000) -> Status:
        """Wait for the next status beat."""
        frame = await with_timeout(self.status.recv(compact=False), budget * PERIOD_NS, "ns")
        return decode_status(int.from_bytes(bytes(frame.tdata), "little"))

    async def recv_results(self, n_beats: int, budget: int) -> list[Beat]:
        """Collect ``n_beats`` result beats (whatever their framing), as :class:`Beat`."""
        beats: list[Beat] = []
        w = self.res_bytes
        while len(beats) < n_beats:
            frame = await with_timeout(self.res.recv(compact=False), budget * PERIOD_NS, "ns")
            data = bytes(frame.tdata)
            keep = frame.tkeep
            nb = len(data) // w
            for i in range(nb):
                k = 0
                for j, bit in enumerate(keep[i * w:(i + 1) * w]):
                    k |= (int(bit) & 1) << j
                beats.append(Beat(data[i * w:(i + 1) * w], k, i == nb - 1))
        return beats

    def drain(self) -> tuple[int, int]:
        """Drop received but unread frames; return (result frames, status beats) dropped."""
        r, s = self.res.count(), self.status.count()
        self.res.clear()
        self.status.clear()
        return r, s

    async def submit(self, streams, *, garbage: bool = False, act_last=None,
                     wgt_last=None) -> None:
        """Queue the command and both data streams of one encoded job."""
        await self.send_cmd(streams.cmd)
        await self.send_frames(self.wgt, streams.wgt, garbage=garbage, last=wgt_last)
        await self.send_frames(self.act, streams.act, garbage=garbage, last=act_last)

    async def run_job(self, job: GemmJob, *, check: bool = True, garbage: bool = False,
                      held=None) -> JobResult:
        """Send one job, collect its results and status, and check them against the model.

        Parameters
        ----------
        job : GemmJob
            The job; encoded with :func:`npugen.sim.driver.encode`.
        check : bool
            Compare with :class:`Model` (and update it); raise AssertionError on a mismatch.
        garbage : bool
            Random bytes in the lanes whose ``tkeep`` is 0.
        held : list of int, optional
            Bound of the held accumulator for an ``acc_in`` job (defaults to a trivially
            satisfied bound from the model's held value).
        """
        if job.acc_in and held is None:
            h = self.model.held
            held = [int(np.abs(h[:, j]).max()) for j in range(h.shape[1])] if h is not None \
                else [0] * job.shape[2]
        s = encode(job, self.cfg, held=held)
        budget = self._budget(s)
        await self.submit(s, garbage=garbage)
        beats = await self.recv_results(len(s.res), budget) if len(s.res) else []
        st = await self.recv_status(budget)
        self.jobs_run += 1
        c = None
        if check:
            want = self.model.run(s.job)
            m, k, n = s.job.shape
            assert st.error == isa.Error.OK, f"job {m}x{k}x{n} tag {job.tag}: status {st}"
            assert st.tag == s.job.tag, f"status tag {st.tag}, expected {s.job.tag}"
            assert st.version == isa.ISA_VERSION and st.reserved == 0, f"status {st}"
            lb = max(len(s.act), len(s.wgt), len(s.res))
            assert st.cycles >= lb, f"status cycles {st.cycles} < {lb} beats on one stream"
            c = decode_results(beats, s.job, self.cfg)
            if want is not None:
                if not np.array_equal(c, want):
                    bad = np.argwhere(c != want)
                    i, j = (int(x) for x in bad[0])
                    raise AssertionError(
                        f"job {m}x{k}x{n} tag {job.tag} ({'requant' if job.requant else 'raw'}"
                        f"{', acc_in' if job.acc_in else ''}): {len(bad)} wrong values, first "
                        f"C[{i}, {j}] = {int(c[i, j])}, expected {int(want[i, j])} "
                        f"(seed {self.seed})")
        return JobResult(st, c, beats)

    async def run_command(self, word: int, expect: isa.Error, tag: int) -> Status:
        """Send a command that must be rejected (no data), check its status."""
        await self.send_cmd(word)
        st = await self.recv_status()
        assert st.error == expect, f"command {word:#034x}: status {st}, expected {expect!r}"
        assert st.tag == tag and st.version == isa.ISA_VERSION, f"status {st}"
        return st

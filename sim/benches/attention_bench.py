"""cocotb regression bench of the exported OSI8 attention top (``npugen.hw.top.AttentionTop``,
``docs/attention.md``).

Run through :mod:`npugen.sim.runner` with ``top="attention"`` (``tests/test_attention_rtl.py``), which
passes the configuration (``NPUGEN_CONFIG``, with its ``[attention]`` section), the seed
(``NPUGEN_SEED``) and ``NPUGEN_FULL``. Every output row is checked integer for integer against
:func:`npugen.sim.golden.attention.attention_int8` with the configuration's ``F``, ``B``, ``G`` and
``rounding``, and every status beat for its error code, tag and version. Sizes stay small
(a few queries, up to a few tiles of keys, ``d`` as configured): the full grids of osi8.md run
in the golden model.

:class:`AttentionTB` drives the five input streams with cocotbext-axi sources (``s_axis_cmd``,
``s_axis_param``, ``s_axis_q``, ``s_axis_k``, ``s_axis_v``) and reads ``m_axis_o`` and
``m_axis_status`` with sinks. The beats come from :func:`npugen.sim.driver.encode_attention`; one frame
per ``tlast`` group (the parameter block, and per query block its Q beats, its K beats and its V
beats), the output as one frame of ``M`` rows. ``s_axis_k_tuser`` carries the block's mask bits:
cocotbext-axi 0.1.28 drives ``tuser`` from the frame's per-byte list (the beat's last byte wins),
so every byte of a key beat carries its beat's bits. The bench remembers which LUT each head slot
holds (none after a reset) and sets ``load_lut`` only when a job needs a new table.
"""

from __future__ import annotations

import logging
import os
import random
from dataclasses import replace

import numpy as np

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge, with_timeout

from cocotbext.axi import AxiStreamBus, AxiStreamFrame, AxiStreamSink, AxiStreamSource

from npugen.hw import isa
from npugen.hw.config import GemmConfig
from npugen.sim.benches.tb import (PATTERNS, PERIOD_NS, ClockedTB, bench_config, bench_full, bench_seed,
                            pause_pattern)
from npugen.sim.driver import (AttentionJob, AttentionStreams, Status, attention_geometry, decode_rows,
                        decode_status, encode_attention)
from npugen.sim import perfmodel
from npugen.sim.golden.attention import (AttentionParams, attention_int8, attention_mask,
                                  attention_params, attention_scores, attention_state,
                                  calibrate_score_scale)
from npugen.sim.golden.softmax import make_lut

__all__ = ["AttentionTB", "JobOutcome"]

#: Scales of Q, K and V in the random jobs (only their ratios to S_s and S_o matter).
SCALE_Q, SCALE_K, SCALE_V = 0.02, 0.03, 0.05


def _high(sig) -> bool:
    v = sig.value
    return v.is_resolvable and bool(v)


class JobOutcome:
    """What came back for one job: ``out`` (int8 (M, d)), its ``status`` and the ``streams``."""

    __slots__ = ("out", "status", "streams")

    def __init__(self, out: np.ndarray, status: Status, streams: AttentionStreams):
        self.out, self.status, self.streams = out, status, streams


class AttentionTB(ClockedTB):
    """Clock, reset, stream BFMs, golden model and in-order checker of one AttentionTop.

    Parameters
    ----------
    dut : cocotb handle
        The top module (ports per ``docs/attention.md``).
    cfg : GemmConfig, optional
        The configuration (its ``[attention]`` section); read from ``NPUGEN_CONFIG`` when
        omitted.
    seed : int, optional
        Seed of every random choice; read from ``NPUGEN_SEED`` when omitted.
    """

    def __init__(self, dut, cfg: GemmConfig | None = None, seed: int | None = None):
        self.dut = dut
        self.cfg = bench_config() if cfg is None else cfg
        g = attention_geometry(self.cfg)
        self.d, self.P, self.heads = g["d"], g["q_block"], g["heads"]
        self.F, self.B, self.n_max, self.G = g["F"], g["B"], g["N_max"], g["G"]
        self.rounding = self.cfg.rounding
        self.seed = bench_seed() if seed is None else seed
        self.sim = os.environ.get("NPUGEN_SIM", cocotb.SIM_NAME or "")
        self.log = logging.getLogger("cocotb.tb")
        self.log.info("attention of %s: d %d, q_block %d, heads %d, F %d, B %d, N_max %d, G %d, "
                      "%s rounding; seed %d", self.cfg.name, self.d, self.P, self.heads, self.F,
                      self.B, self.n_max, self.G, self.rounding, self.seed)
        self.rng = np.random.default_rng(self.seed)
        self.prng = random.Random(self.seed)
        Clock(dut.aclk, PERIOD_NS, unit="ns").start()
        dut.aresetn.value = 0

        def source(name):
            return AxiStreamSource(AxiStreamBus.from_prefix(dut, name), dut.aclk, dut.aresetn,
                                   reset_active_level=False)

        def sink(name):
            return AxiStreamSink(AxiStreamBus.from_prefix(dut, name), dut.aclk, dut.aresetn,
                                 reset_active_level=False)

        self.cmd, self.param = source("s_axis_cmd"), source("s_axis_param")
        self.q, self.k, self.v = source("s_axis_q"), source("s_axis_k"), source("s_axis_v")
        self.o, self.status = sink("m_axis_o"), sink("m_axis_status")
        for bfm in self.bfms:
            bfm.log.setLevel(logging.WARNING)
        self.cycle = 0
        self._xmon = None
        self.luts: dict[int, float] = {}     # head slot -> LUT scale c it holds
        self.jobs_checked = 0
        self.cycles_checked = 0
        self.pattern = "none"                # backpressure pattern in force
        self._tag = 0

    # -- clock and reset ---------------------------------------------------------------------

    @property
    def sources(self):
        return (self.cmd, self.param, self.q, self.k, self.v)

    @property
    def sinks(self):
        return (self.o, self.status)

    @property
    def bfms(self):
        return self.sources + self.sinks

    def _flush(self) -> None:
        # The LUT memory is not part of the reset contract: after a reset every head reloads.
        self.luts = {}

    def backpressure(self, pattern: str) -> None:
        """Install a pause pattern (:func:`npugen.sim.benches.tb.pause_pattern`) on every source and
        both sinks, each from its own seeded generator; ``after_reset`` pauses only the sinks."""
        self.pattern = pattern
        for bfm in self.sources:
            pat = "none" if pattern == "after_reset" else pattern
            bfm.set_pause_generator(pause_pattern(pat, random.Random(self.prng.random()),
                                                  bfm.bus, role="source"))
        for bfm in self.sinks:
            bfm.set_pause_generator(pause_pattern(pattern, random.Random(self.prng.random()),
                                                  bfm.bus))
        if pattern == "none":
            for bfm in self.bfms:
                bfm.clear_pause_generator()
                bfm.pause = False

    async def x_monitor(self) -> None:
        """Fail when an output is X/Z after reset (ready and valid always; data while valid)."""
        d = self.dut
        edge = RisingEdge(d.aclk)
        ctrl = [d.s_axis_cmd_tready, d.s_axis_param_tready, d.s_axis_q_tready,
                d.s_axis_k_tready, d.s_axis_v_tready, d.m_axis_o_tvalid, d.m_axis_status_tvalid]
        while True:
            await edge
            if not _high(d.aresetn):
                continue
            for s in ctrl:
                assert s.value.is_resolvable, f"{s._name} is {s.value} at cycle {self.cycle}"
            if _high(d.m_axis_o_tvalid):
                for s in (d.m_axis_o_tdata, d.m_axis_o_tlast):
                    assert s.value.is_resolvable, (f"{s._name} is {s.value} while valid at "
                                                   f"cycle {self.cycle}")
            if _high(d.m_axis_status_tvalid):
                assert d.m_axis_status_tdata.value.is_resolvable, (
                    f"m_axis_status_tdata is {d.m_axis_status_tdata.value} while valid")

    # -- jobs --------------------------------------------------------------------------------

    def next_tag(self) -> int:
        self._tag = (self._tag + 37) % 256
        return self._tag

    def params(self, q, k, *, zp_v: int | None = None, zp_o: int | None = None,
               spread: float | None = None, ratio: float | None = None) -> AttentionParams:
        """Random parameters for Q and K: the calibrated score scale times ``spread`` (random in
        [0.4, 2.5] when None: below 1 the largest scores saturate at 127), output scale
        ``S_v / ratio`` (``ratio`` random in [0.1, 0.6] when None)."""
        r = self.rng
        spread = float(2.0 ** r.uniform(-1.3, 1.3)) if spread is None else spread
        ratio = float(r.uniform(0.1, 0.6)) if ratio is None else ratio
        ss = calibrate_score_scale(q, k, SCALE_Q, SCALE_K) * spread
        return attention_params(SCALE_Q, SCALE_K, SCALE_V, ss, SCALE_V / ratio, self.d,
                                zp_v=int(r.integers(-40, 41)) if zp_v is None else zp_v,
                                zp_o=int(r.integers(-20, 21)) if zp_o is None else zp_o)

    def random_job(self, m: int, n: int, *, mask: str = "none", causal: bool = False,
                   head: int = 0, params: AttentionParams | None = None, p_attend: float = 0.8,
                   **kw) -> AttentionJob:
        """A random job of ``m`` queries and ``n`` keys; ``mask`` is ``"none"``, ``"padding"``
        (an (N,) mask) or ``"general"`` (an (M, N) mask, each bit attended with ``p_attend``)."""
        r = self.rng
        q = r.integers(-128, 128, (m, self.d), dtype=np.int8)
        k = r.integers(-128, 128, (n, self.d), dtype=np.int8)
        v = r.integers(-128, 128, (n, self.d), dtype=np.int8)
        if mask == "none":
            mk = None
        elif mask == "padding":
            mk = r.random(n) < p_attend
        elif mask == "general":
            mk = r.random((m, n)) < p_attend
        else:
            raise ValueError(f"unknown mask kind {mask!r}")
        if params is None:
            params = self.params(q, k, **kw)
        return AttentionJob(q, k, v, params, mask=mk, causal=causal, head=head,
                            tag=self.next_tag())

    def plan(self, job: AttentionJob) -> AttentionJob:
        """The job with ``load_lut`` set exactly when its head does not hold its table yet;
        records the table as loaded."""
        need = self.luts.get(job.head) != job.params.c
        self.luts[job.head] = job.params.c
        return replace(job, load_lut=need)

    def expected(self, job: AttentionJob) -> np.ndarray:
        return attention_int8(job.q, job.k, job.v, job.params, F=self.F, B=self.B, G=self.G,
                              mask=job.mask, causal=job.causal, rounding=self.rounding)

    def model_cycles(self, job: AttentionJob) -> int:
        """The job's status cycles from :func:`npugen.sim.perfmodel.attention_cycles`, with the
        rescaling tiles taken from the golden scores (valid without backpressure)."""
        m, n, _ = job.shape
        scores = attention_scores(job.q, job.k, job.params, rounding=self.rounding)
        on = attention_mask(m, n, job.mask, job.causal)
        needs = perfmodel.attention_tile_needs(scores, on, self.B, self.P)
        return perfmodel.attention_cycles(self.cfg, m, n, needs, load_lut=job.load_lut)

    def budget(self, s: AttentionStreams) -> int:
        """Generous cycle budget of one job (for timeouts, not a performance check)."""
        blocks = -(-s.m // self.P)
        n = len(s.k) // blocks
        tiles = -(-n // self.B)
        per_block = self.P + n + tiles * (self.d + 4) + self.d + 80
        return 10 * (len(s.param) + blocks * per_block + s.m) + 4000

    async def send_cmd(self, word: int) -> None:
        await self.cmd.send(AxiStreamFrame(int(word).to_bytes(isa.CMD_WIDTH // 8, "little")))

    async def submit(self, s: AttentionStreams, *, cmd: int | None = None,
                     param: np.ndarray | None = None, lasts: dict | None = None) -> None:
        """Queue one encoded job on the five sources.

        Parameters
        ----------
        cmd : int, optional
            Command word to send instead of ``s.cmd``.
        param : numpy.ndarray, optional
            Parameter words to send instead of ``s.param``.
        lasts : dict, optional
            ``tlast`` flags to use instead of the streams' own, by stream name (``"param"``,
            ``"q"``, ``"k"``, ``"v"``): to misplace a ``tlast``.
        """
        lasts = lasts or {}
        await self.send_cmd(s.cmd if cmd is None else cmd)
        words = (s.param if param is None else param).astype("<u4")
        plast = lasts.get("param", s.param_last)
        ends = list(np.flatnonzero(plast) + 1)
        if not ends or ends[-1] != len(words):
            ends.append(len(words))
        start = 0
        for end in ends:
            await self.param.send(AxiStreamFrame(words[start:end].tobytes()))
            start = end
        for name, src, stream in (("q", self.q, s.q), ("k", self.k, s.k), ("v", self.v, s.v)):
            for data, user in stream.frames(lasts.get(name)):
                await src.send(AxiStreamFrame(data, tuser=user))

    async def recv_status(self, budget: int = 20000) -> Status:
        frame = await with_timeout(self.status.recv(compact=False), budget * PERIOD_NS, "ns")
        return decode_status(int.from_bytes(bytes(frame.tdata), "little"))

    async def recv_out(self, s: AttentionStreams, budget: int) -> np.ndarray:
        """The job's M output rows: one frame (``tlast`` only on the last row)."""
        frame = await with_timeout(self.o.recv(compact=False), budget * PERIOD_NS, "ns")
        data = bytes(frame.tdata)
        assert len(data) == s.m * s.d, (
            f"job tag {s.job.tag}: {len(data) // s.d} output rows up to tlast, expected {s.m}")
        return decode_rows(data, s.m, s.d)

    def check(self, s: AttentionStreams, out: np.ndarray, st: Status, *, expect=isa.Error.OK,
              label: str = "") -> None:
        """Check the status (error, tag, version) and, for an OK job, the rows bit for bit."""
        m, n, d = s.job.shape
        what = (f"{label or 'job'} tag {s.job.tag} (M={m}, N={n}, d={d}, head {s.job.head}, "
                f"causal {s.job.causal}, load_lut {s.job.load_lut})")
        assert st.error == expect, f"{what}: status {st}, expected {expect!r} (seed {self.seed})"
        assert st.tag == s.job.tag, f"{what}: status tag {st.tag}"
        assert st.version == isa.ISA_VERSION and st.reserved == 0, f"{what}: status {st}"
        if expect != isa.Error.OK:
            return
        low = len(s.param) + len(s.q) + len(s.k)
        assert st.cycles >= low, f"{what}: status cycles {st.cycles} < {low} input beats"
        if self.pattern == "none":
            # Streams free of backpressure: the cycle model must be exact.
            model = self.model_cycles(s.job)
            assert st.cycles == model, (
                f"{what}: status cycles {st.cycles}, model {model} (sim.perfmodel."
                f"attention_cycles; seed {self.seed})")
            self.cycles_checked += 1
        want = self.expected(s.job)
        if not np.array_equal(out, want):
            bad = np.argwhere(out != want)
            i, c = (int(x) for x in bad[0])
            raise AssertionError(
                f"{what}: {len(bad)} wrong outputs, first O[{i}, {c}] = {int(out[i, c])}, "
                f"expected {int(want[i, c])}; params {s.job.params} (seed {self.seed})")
        self.jobs_checked += 1

    async def run_jobs(self, jobs, *, label: str = "") -> list[JobOutcome]:
        """Queue every job back to back (all streams at once), then receive and check each
        job's rows and status in order. ``load_lut`` is planned per head (:meth:`plan`)."""
        streams = [encode_attention(self.plan(j), self.cfg) for j in jobs]
        for s in streams:
            await self.submit(s)
        budget = sum(self.budget(s) for s in streams)
        got = []
        for s in streams:
            out = await self.recv_out(s, budget)
            st = await self.recv_status(budget)
            self.check(s, out, st, label=label)
            got.append(JobOutcome(out, st, s))
        return got

    async def run_job(self, job: AttentionJob, *, label: str = "") -> JobOutcome:
        return (await self.run_jobs([job], label=label))[0]

    async def run_bad(self, job: AttentionJob, expect: isa.Error, *, cmd: int | None = None,
                      param: np.ndarray | None = None, lasts: dict | None = None,
                      label: str = "") -> Status:
        """Send a job that must end in error ``expect``, its ``load_lut`` as given.

        A rejected command (``cmd`` given, codes 1-6) sends only its command beat and changes
        no LUT. Otherwise the whole job is sent (``param`` and ``lasts`` as in :meth:`submit`)
        and its M rows are received, their values not checked; its head's table then counts as
        unknown."""
        s = encode_attention(job, self.cfg)
        budget = self.budget(s)
        if cmd is not None:
            await self.send_cmd(cmd)
            st = await self.recv_status(budget)
            tag = (cmd >> isa.ATT_CMD_FIELDS["tag"].lsb) & 0xFF
            assert st.error == expect and st.tag == tag, (
                f"{label}: command {cmd:#034x}: status {st}, expected {expect!r} tag {tag}")
            assert st.version == isa.ISA_VERSION and st.reserved == 0, f"{label}: status {st}"
            return st
        await self.submit(s, param=param, lasts=lasts)
        out = await self.recv_out(s, budget)
        st = await self.recv_status(budget)
        self.luts.pop(job.head, None)
        self.check(s, out, st, expect=expect, label=label)
        return st

    def check_idle(self) -> None:
        n, k = self.o.count(), self.status.count()
        assert n == 0 and k == 0, f"{n} unexpected output frames, {k} unexpected status beats"


def _small(tb: AttentionTB, n: int) -> int:
    return max(1, min(n, tb.n_max))


def _shapes(tb: AttentionTB) -> list[tuple[int, int]]:
    """(M, N): ragged query blocks (M not a multiple of q_block) and ragged tiles (N not a
    multiple of B), single query and key, one full tile."""
    P, B = tb.P, tb.B
    out = [(1, 1), (P + 1, B + 1), (2 * P - 1 if P > 1 else 2, 2 * B + 3), (P, B),
           (3, 2 * B - 1 if B > 1 else 3), (2 * P + 1, 5)]
    seen = []
    for m, n in out:
        sh = (max(1, m), _small(tb, n))
        if sh not in seen:
            seen.append(sh)
    return seen


# ---------------------------------------------------------------------------------------------
# tests


@cocotb.test()
async def test_random_jobs(dut):
    """Random jobs over ragged query blocks and tile-ragged N, with no mask, a padding mask
    (N,) and a general (M, N) mask, causal and not; bit-exact against the golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    reps = 3 if bench_full() else 1
    jobs = []
    for _ in range(reps):
        for i, (m, n) in enumerate(_shapes(tb)):
            kind = ("none", "padding", "general")[i % 3]
            jobs.append(tb.random_job(m, n, mask=kind, causal=bool(i % 2)))
    for j in jobs:
        await tb.run_job(j, label="random")
    tb.check_idle()


@cocotb.test()
async def test_masks(dut):
    """osi8.md test 9: causal with M > N and M < N, a 127 score in a masked slot (must not move
    the max), fully masked rows (every output zp_o), a single attended key, a fully masked tile."""
    tb = AttentionTB(dut)
    await tb.start()
    P, B = tb.P, tb.B
    # causal, more queries than keys and fewer
    n = _small(tb, B + 2)
    await tb.run_job(tb.random_job(n + P + 1, n, causal=True), label="causal M > N")
    await tb.run_job(tb.random_job(max(1, min(P + 1, n - 1)), n, causal=True),
                     label="causal M < N")
    # row 0: a 127 score in a masked slot (key j0 equals query 0, whose entries are all large,
    # and the score scale saturates it); row 1: a fully masked tile; row 2: a single attended
    # key; row m - 1: fully masked
    m, n = max(P + 1, 4), _small(tb, 2 * B + 1)
    job = tb.random_job(m, n)
    j0 = n // 2
    job.q[0] = tb.rng.integers(100, 128, tb.d) * tb.rng.choice([-1, 1], tb.d)
    job.k[j0] = job.q[0]
    job.params = tb.params(job.q, job.k, spread=0.5)
    s = attention_scores(job.q, job.k, job.params, tb.rounding)
    assert s[0, j0] == 127, f"score {s[0, j0]}, expected a saturated 127"
    mask = np.ones((m, n), dtype=bool)
    mask[0, j0] = False
    if n > B:
        mask[1, :B] = False
    mask[2, :] = False
    mask[2, n - 1] = True
    mask[m - 1, :] = False
    job.mask = mask
    res = await tb.run_job(job, label="masked 127")
    assert np.all(res.out[m - 1] == job.params.zp_o), (
        f"fully masked row: {res.out[m - 1].tolist()}, expected zp_o = {job.params.zp_o}")
    # every row masked, padding mask of zeros
    job = tb.random_job(P + 2, _small(tb, B + 1))
    job.mask = np.zeros(job.k.shape[0], dtype=bool)
    res = await tb.run_job(job, label="all masked")
    assert np.all(res.out == job.params.zp_o), "all-masked job: not every output is zp_o"
    # causal AND a general mask
    await tb.run_job(tb.random_job(P + 2, _small(tb, B + 3), mask="general", causal=True,
                                   p_attend=0.6), label="causal and mask")
    tb.check_idle()


@cocotb.test()
async def test_heads(dut):
    """Several heads with different LUTs in sequence: the first job of each head loads its
    table (load_lut), later jobs reuse it; interleaved heads must not disturb each other."""
    tb = AttentionTB(dut)
    await tb.start()
    heads = list(range(min(tb.heads, 3)))
    m, n = tb.P + 1, _small(tb, tb.B + 3)
    base = [tb.random_job(m, n, head=h, mask="padding") for h in heads]
    # a distinct score scale (so a distinct LUT) per head
    for i, j in enumerate(base):
        j.params = tb.params(j.q, j.k, spread=(0.6, 1.5, 3.0)[i])
    jobs = []
    for rnd in range(3):
        for h, b in zip(heads, base):
            j = tb.random_job(m, n, head=h, params=b.params)
            jobs.append(j)
    res = []
    for j in jobs:
        res.append(await tb.run_job(j, label=f"head {j.head}"))
    loads = [r.streams.job.load_lut for r in res]
    assert loads == [True] * len(heads) + [False] * (len(jobs) - len(heads)), loads
    if tb.heads > 1:
        # the last head's slot, reloaded with another table, leaves head 0's intact
        h = tb.heads - 1
        j = tb.random_job(m, n, head=h)
        await tb.run_job(j, label="reload last head")
        await tb.run_job(tb.random_job(m, n, head=0, params=base[0].params), label="head 0 again")
    tb.check_idle()


@cocotb.test()
async def test_back_to_back(dut):
    """Many small jobs queued at once on every stream (commands, parameters, rows), heads
    alternating, some reusing the head's LUT: results and statuses in order."""
    tb = AttentionTB(dut)
    await tb.start()
    count = 24 if bench_full() else 8
    shared = tb.random_job(2, 3).params
    jobs = []
    for i in range(count):
        m = int(tb.rng.integers(1, 2 * tb.P + 2))
        n = _small(tb, int(tb.rng.integers(1, 2 * tb.B + 3)))
        kind = ("none", "padding", "general")[i % 3]
        jobs.append(tb.random_job(m, n, mask=kind, causal=i % 4 == 3, head=i % tb.heads,
                                  params=shared if i % 2 else None))
    await tb.run_jobs(jobs, label="back to back")
    tb.check_idle()


@cocotb.test()
@cocotb.parametrize(pattern=[cocotb.Param(p, name=p) for p in PATTERNS])
async def test_backpressure(dut, pattern):
    """Jobs under a backpressure pattern on all five sources and both sinks (seeded)."""
    tb = AttentionTB(dut)
    await tb.start()
    tb.backpressure(pattern)
    jobs = [tb.random_job(m, n, mask=("general", "padding")[i % 2], causal=i == 1)
            for i, (m, n) in enumerate(_shapes(tb)[1:4])]
    await tb.run_jobs(jobs, label=pattern)
    for j in jobs[:2]:
        await tb.run_job(j, label=pattern + " one by one")
    tb.check_idle()


@cocotb.test()
async def test_reset_mid_job(dut):
    """aresetn low while the keys of a job stream in, and again while its rows come out; each
    time the BFMs are flushed, the LUTs forgotten, then a clean job (loading its table)."""
    tb = AttentionTB(dut)
    await tb.start()
    m, n = 2 * tb.P + 1, _small(tb, 3 * tb.B + 2)
    check = tb.random_job(tb.P + 1, _small(tb, tb.B + 1), mask="general")
    for when in ("keys", "output"):
        job = tb.random_job(m, n)
        s = encode_attention(tb.plan(job), tb.cfg)
        await tb.submit(s)
        sig = dut.s_axis_k_tvalid if when == "keys" else dut.m_axis_o_tvalid
        budget = tb.budget(s)
        for _ in range(budget):
            await RisingEdge(dut.aclk)
            if _high(sig) and (when == "output" or _high(dut.s_axis_k_tready)):
                break
        else:
            raise AssertionError(f"{sig._name} not seen within {budget} cycles")
        await ClockCycles(dut.aclk, 3)
        await tb.reset(4)
        await ClockCycles(dut.aclk, 3)
        tb.check_idle()
        res = await tb.run_job(check, label=f"after reset in the {when}")
        assert res.streams.job.load_lut, "the LUT was not reloaded after the reset"
    tb.check_idle()


def _with_fields(word: int, **fields) -> int:
    """A command word with some fields replaced (any value that fits the field's bits)."""
    for name, value in fields.items():
        f = isa.ATT_CMD_FIELDS[name]
        mask = ((1 << f.width) - 1) << f.lsb
        word = (word & ~mask) | ((value & ((1 << f.width) - 1)) << f.lsb)
    return word


@cocotb.test()
async def test_bad_commands(dut):
    """Each command error (BAD_OPCODE, BAD_VERSION, BAD_RESERVED, BAD_SHAPE for m = 0, n = 0,
    n > N_max and head >= heads): the status carries the code and the tag, no data beat is
    consumed; each is followed by a good job (no hang, no corruption)."""
    tb = AttentionTB(dut)
    await tb.start()
    E = isa.Error
    good = tb.random_job(tb.P + 1, _small(tb, tb.B + 1), mask="general")
    base = encode_attention(replace(good, tag=0x5A), tb.cfg).cmd
    cases = [
        ("opcode GEMM", E.BAD_OPCODE, _with_fields(base, opcode=isa.Opcode.GEMM)),
        ("opcode 0xff", E.BAD_OPCODE, _with_fields(base, opcode=0xFF)),
        ("another version", E.BAD_VERSION, _with_fields(base, version=isa.ISA_VERSION + 1)),
        ("reserved bit 18", E.BAD_RESERVED, base | (1 << 18)),
        ("reserved bit 127", E.BAD_RESERVED, base | (1 << 127)),
        ("m = 0", E.BAD_SHAPE, _with_fields(base, m=0)),
        ("n = 0", E.BAD_SHAPE, _with_fields(base, n=0)),
        ("n = N_max + 1", E.BAD_SHAPE, _with_fields(base, n=tb.n_max + 1)),
        ("head = heads", E.BAD_SHAPE, _with_fields(base, head=tb.heads)),
    ]
    # BAD_LUT: load_lut = 0 for a head whose table is not loaded (every head after a reset)
    await tb.reset()
    fresh = replace(good, load_lut=False, tag=tb.next_tag())
    await tb.run_bad(fresh, E.BAD_LUT, cmd=encode_attention(fresh, tb.cfg).cmd,
                     label="load_lut = 0 after reset")
    await tb.run_job(replace(good, tag=tb.next_tag()), label="after BAD_LUT")
    for label, err, word in cases:
        word = _with_fields(word, tag=tb.next_tag())
        await tb.run_bad(good, err, cmd=word, label=label)
        # no data beat was consumed: the good job's beats (its LUT reused after the first)
        # line up
        await tb.run_job(replace(good, tag=tb.next_tag()), label=f"after {label}")
    tb.check_idle()


@cocotb.test()
async def test_frame_errors(dut):
    """FRAME: a tlast out of place on the parameter block, a Q block, the keys, the values
    (an extra one, and a missing one at a block end); the job consumes exactly its beats and
    returns its M rows; a good job follows each."""
    tb = AttentionTB(dut)
    await tb.start()
    m, n = 2 * tb.P if tb.P > 1 else 2, _small(tb, tb.B + 2)
    n = max(n, 2) if tb.n_max >= 2 else n
    good = tb.random_job(tb.P + 1, _small(tb, tb.B + 1), mask="general")
    job = replace(tb.random_job(m, n, mask="general"), load_lut=True)
    s = encode_attention(job, tb.cfg)
    cases = []
    pl = s.param_last.copy()
    pl[1] = True
    cases.append(("param extra tlast", {"param": pl}))
    if tb.P > 1:
        ql = s.q.last.copy()
        ql[0] = True
        cases.append(("q extra tlast", {"q": ql}))
    ql = s.q.last.copy()
    ql[tb.P - 1] = False                         # block 0's Q beats run into block 1's
    cases.append(("q missing tlast", {"q": ql}))
    if n > 1:
        kl = s.k.last.copy()
        kl[0] = True
        cases.append(("k extra tlast", {"k": kl}))
        vl = s.v.last.copy()
        vl[n - 2] = True
        cases.append(("v extra tlast", {"v": vl}))
    kl = s.k.last.copy()
    kl[n - 1] = False                            # block 0's keys run into block 1's
    cases.append(("k missing tlast", {"k": kl}))
    for label, lasts in cases:
        await tb.run_bad(replace(job, tag=tb.next_tag()), isa.Error.FRAME, lasts=lasts,
                         label=label)
        await tb.run_job(replace(good, tag=tb.next_tag()), label=f"after {label}")
    tb.check_idle()


@cocotb.test()
async def test_bad_param(dut):
    """BAD_PARAM: sh_s outside [-31, 30], k = 31 + G - sh_o outside [1, 62], a multiplier
    outside its range (M0_s not 0 and not in [2^30, 2^31), M0_o not in [2^30, 2^31)) or a
    shift word with bits 31:8 set; the job runs, consumes its beats and returns its rows; a
    good job follows each."""
    tb = AttentionTB(dut)
    await tb.start()
    good = tb.random_job(tb.P + 1, _small(tb, tb.B + 1), mask="padding")
    job = replace(tb.random_job(tb.P + 1, _small(tb, 5)), load_lut=True)
    s = encode_attention(job, tb.cfg)
    G = tb.G
    cases = [("sh_s = 31", 1, 31), ("sh_s = -32", 1, -32), ("sh_s = 127", 1, 127),
             (f"sh_o = {31 + G} (k = 0)", 3, 31 + G)]
    if G - 32 >= -128:
        cases.append((f"sh_o = {G - 32} (k = 63)", 3, G - 32))
    raw = [("M0_s = 2^30 - 1", 0, (1 << 30) - 1), ("M0_s = 2^31", 0, 1 << 31),
           ("M0_o = 0", 2, 0), ("M0_o = 2^31 + 2^30", 2, (1 << 31) | (1 << 30)),
           ("sh_s word 0x100", 1, 0x100 | (int(s.param[1]) & 0xFF)),
           ("sh_o word 0x80000000", 3, (1 << 31) | (int(s.param[3]) & 0xFF))]
    for label, beat, value in cases + raw:
        if (label, beat, value) in cases and not -128 <= value <= 127:
            continue
        words = s.param.copy()
        words[beat] = value & 0xFF if (label, beat, value) in cases else value
        await tb.run_bad(replace(job, tag=tb.next_tag()), isa.Error.BAD_PARAM, param=words,
                         label=label)
        await tb.run_job(replace(good, tag=tb.next_tag()), label=f"after {label}")
    tb.check_idle()


@cocotb.test()
async def test_constant_v(dut):
    """osi8.md test 7: every V row equal; with F >= G + 8 every output is exactly
    ``clamp(zp_o + rshift_round((v_c - zp_v)·M0_o, 31 - sh_o))``, whatever the scores."""
    tb = AttentionTB(dut)
    await tb.start()
    for m, n in _shapes(tb)[1:4]:
        job = tb.random_job(m, n, mask="padding", p_attend=0.9)
        row = tb.rng.integers(-128, 128, tb.d, dtype=np.int8)
        job.v = np.tile(row, (n, 1))
        if job.mask is not None and not job.mask.any():
            job.mask[0] = True
        res = await tb.run_job(job, label="constant V")
        if tb.F >= tb.G + 8:
            p = job.params
            sh = 31 - p.out_shift
            x = (row.astype(np.int64) - p.zp_v) * p.out_multiplier
            y = (x + (1 << (sh - 1))) >> sh if sh > 0 else x << -sh
            want = np.clip(p.zp_o + y, -128, 127)
            assert np.array_equal(res.out, np.broadcast_to(want, res.out.shape)), (
                f"constant V: {res.out[0].tolist()}, expected {want.tolist()}")
    tb.check_idle()


@cocotb.test()
async def test_long_context(dut):
    """osi8.md test 8 through the RTL: queries over 1024 keys (4096 with ``--full``, as far as
    N_max allows) with random scores, so the max grows many times: bit-exact against the golden
    model (whose error against float attention tests/test_golden_attention.py bounds), and the
    cycle count equal to the model."""
    tb = AttentionTB(dut)
    await tb.start()
    for n in (1024, 4096) if bench_full() else (1024,):
        if n > tb.n_max:
            tb.log.info("N_max %d: no %d-key job", tb.n_max, n)
            continue
        job = tb.random_job(tb.P + 1, n, mask="none", causal=False)
        await tb.run_job(job, label=f"{n} keys")
    tb.check_idle()


@cocotb.test()
async def test_long_equal_scores(dut):
    """osi8.md test 10: N = N_max keys with equal scores (the largest denominator) and V at
    ±max (v - zp_v = ±255): no wrap; outputs ``clamp(zp_o + rshift_round(±255·M0_o, 31 - sh_o))``
    (saturating at ratio 1, exact at ratio 1/4)."""
    tb = AttentionTB(dut)
    await tb.start()
    limit = 1 << 14 if bench_full() else 512
    n = min(tb.n_max, limit)
    if n < tb.n_max:
        tb.log.info("N_max %d: the default run streams N = %d keys", tb.n_max, n)
    m = tb.P + 1
    for v_val, zp_v in ((127, -128), (-128, 127)):
        for ratio in (1.0, 0.25):
            q = tb.rng.integers(-128, 128, (m, tb.d), dtype=np.int8)
            krow = tb.rng.integers(-128, 128, tb.d, dtype=np.int8)
            k = np.tile(krow, (n, 1))
            v = np.full((n, tb.d), v_val, dtype=np.int8)
            p = tb.params(q, k, zp_v=zp_v, zp_o=0, ratio=ratio)
            job = AttentionJob(q, k, v, p, tag=tb.next_tag())
            res = await tb.run_job(job, label=f"N={n} equal, v={v_val}")
            sh = 31 - p.out_shift
            x = (v_val - zp_v) * p.out_multiplier
            want = min(max((x + (1 << (sh - 1))) >> sh, -128), 127)
            assert np.all(res.out == want), (
                f"N={n} equal scores, v - zp_v = {v_val - zp_v}, ratio {ratio}: "
                f"{np.unique(res.out).tolist()}, expected {want}")
    tb.check_idle()


@cocotb.test()
async def test_divider_bits(dut):
    """The epilogue divider's quotient bits, one output window at a time. Each channel's V
    differs from ``zp_v`` at one key only (``v - zp_v`` up to ±1, ±15 or ±255, either sign, so
    ``N' = A·2^(G+1) + L`` is negative as often as positive; channel 0 not at all when
    ``d > 1``: ``A = 0``), so ``q = round_div(A·2^G, L)`` spans every magnitude the key weights
    give, from exact quotients (one key: ``L = 2^F``) to ``N = min(N_max, 128)`` keys of equal
    scores (the largest ``L`` of that ``N``). ``M0_o`` near ``2^31`` and the output shift
    ``k = 31 + s`` make ``o ≈ q / 2^s``: per key set, ``s`` = the smallest shift at which no
    output clamps, a random one below it, 0 (every low quotient bit of a small ``q`` visible)
    and a negative one (``k`` from 1 to 30: only ``q = 0`` unclamped, its rounding constant in
    view); ``4·q_block + 1`` queries so each divider lane sees several. Bit-exact against the
    golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    r = tb.rng
    m = 4 * tb.P + 1
    jobs = []
    for i, (n, amp) in enumerate([(1, 255), (2, 15), (tb.B + 1, 1), (tb.B + 1, 255),
                                  (2 * tb.B + 3, 15), (tb.n_max, 255), (tb.n_max, 1),
                                  (tb.n_max, 15)]):
        n = _small(tb, min(n, 128))
        job = tb.random_job(m, n, mask="none", zp_o=0, zp_v=int(r.integers(-1, 2)))
        if i % 3 == 2:   # equal scores: the largest L for this n
            job.k = np.tile(job.k[0], (n, 1))
        delta = np.zeros((n, tb.d), dtype=np.int64)
        for c in range(1 if tb.d > 1 else 0, tb.d):
            delta[r.integers(0, n), c] = int(r.integers(1, amp + 1)) * int(r.choice([-1, 1]))
        job.v = np.clip(job.params.zp_v + delta, -128, 127).astype(np.int8)
        fits = []   # output scales s = 0, 1, ... up to the first with no clamped output
        for s in range(0, 31):
            fits.append(replace(job.params, out_shift=tb.G - s,
                                out_multiplier=(1 << 31) - 1 - int(r.integers(0, 1 << 20))))
            if np.all(np.abs(tb.expected(replace(job, params=fits[-1]))) < 127):
                break
        neg = replace(fits[0], out_shift=tb.G + int(r.integers(1, 31)))
        for p in (fits[-1], fits[int(r.integers(0, len(fits)))], fits[0], neg):
            jobs.append(replace(job, params=p, tag=tb.next_tag()))
    for j in jobs:
        await tb.run_job(j, label=f"divider bits, N={j.k.shape[0]}, "
                                  f"k={31 + tb.G - j.params.out_shift}")
    tb.check_idle()


@cocotb.test()
async def test_large_score_multiplier(dut):
    """Score multipliers of 128 and more (``sh_s`` from 8 to 30, legal though unusual): Q and K
    rows with one nonzero element each, so most dot products are exactly 0 (score 0, where
    the requantizer's rounding constant and low partial products are in view) and the others
    saturate at -128 or 127; bit-exact against the golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    r = tb.rng
    m = 2 * tb.P + 1
    for n in (tb.B + 1, 3 * tb.B - 1):
        n = _small(tb, n)
        job = tb.random_job(m, n, mask="none")
        for x, rows in ((job.q, m), (job.k, n)):
            x[:] = 0
            x[np.arange(rows), r.integers(0, tb.d, rows)] = r.integers(-2, 3, rows)
        p = replace(job.params, score_shift=int(r.integers(8, 31)),
                    score_multiplier=(1 << 30) + int(r.integers(0, 1 << 30)))
        await tb.run_job(replace(job, params=p), label=f"score shift {p.score_shift}")
    tb.check_idle()


def _near_exact_v(w: np.ndarray, L: int, G: int, sign: int, high: bool, rng,
                  tries: int = 1 << 15) -> np.ndarray:
    """``v - zp_v`` (one channel, zero outside the few smallest nonzero weights ``w``) whose
    quotient ``q = (A·2^(G+1) + L) // 2L`` (``A = w·dv``) has ``0 < |q| <= 120`` with the sign
    ``sign`` and the final remainder ``R = (A·2^(G+1) + L) mod 2L`` nearest 0 (``high`` False)
    or ``2L - 1`` (``high`` True) among ``tries`` random draws."""
    order = [j for j in np.argsort(w, kind="stable") if w[j] > 0]
    fit = [j for j in order if int(w[j]) * 128 << G <= 60 * L]   # one key alone: |q| <= 60
    keys = np.array((fit[-4:] if fit else order[:4]), dtype=np.int64)
    dv = np.zeros(len(w), dtype=np.int64)
    if len(keys) == 0:
        return dv
    draw = rng.integers(-128, 128, (tries, len(keys)), dtype=np.int64)
    wide = int(w.max()) * 512 << (G + 1) >= 1 << 62   # beyond int64: Python integers
    a = draw.astype(object) if wide else draw
    num = (a @ w[keys].astype(object if wide else np.int64)) * (1 << (G + 1)) + L
    q, r = np.divmod(num, 2 * L)
    miss = np.where(high, 2 * L - 1 - r, r)
    ok = (q * sign > 0) & (np.abs(q) <= 120)
    if ok.any():
        dv[keys] = draw[int(np.argmin(np.where(ok, miss, np.iinfo(np.int64).max)))]
    return dv


def _near_exact(qs, L: int, G: int, high: bool):
    """For candidate quotients ``qs`` (an array, one sign): ``(a, miss, keep)``, the numerator
    ``A`` whose division ``(A·2^(G+1) + L) // 2L`` gives each ``q`` with its final remainder
    nearest to ``2L`` (``high``) or to 0, how far it misses (``miss``), and the indices where the
    quotient is exact and the miss below 64."""
    if high:
        a = (L * (2 * qs + 1)) >> (G + 1)
    else:
        a = -((-L * (2 * qs - 1)) >> (G + 1))
    rem = a * (1 << (G + 1)) + L - 2 * L * qs
    miss = 2 * L - 1 - rem if high else rem
    keep = np.flatnonzero((rem >= 0) & (rem < 2 * L) & (miss < 64))
    return a, miss, keep


def _exact_v(w: np.ndarray, a: int) -> np.ndarray | None:
    """``dv`` in [-128, 127] with ``w·dv = a`` exactly (greedy over all but the two smallest
    nonzero weights, then every pair of values on those two), or None."""
    keys = [j for j in np.argsort(-w, kind="stable") if w[j] > 0]
    if len(keys) < 2:
        return None
    dv = np.zeros(len(w), dtype=np.int64)
    rest = a
    for j in keys[:-2]:
        dv[j] = min(max(round(rest / int(w[j])), -128), 127)
        rest -= int(dv[j]) * int(w[j])
    j1, j2 = keys[-2], keys[-1]
    x = np.arange(-128, 128, dtype=np.int64)
    left = rest - x * int(w[j1])                    # what key j2 must give, per value of j1
    hit = np.flatnonzero((left % int(w[j2]) == 0) & (np.abs(left // int(w[j2]) + 0.5) <= 128))
    if len(hit) == 0:
        return None
    dv[j1] = x[hit[0]]
    dv[j2] = left[hit[0]] // int(w[j2])
    return dv


def _wide_quotient(w: np.ndarray, L: int, G: int, sign: int, high: bool):
    """``(q, dv)``: a quotient ``2^14 <= |q| < 2^16`` of sign ``sign`` whose division
    ``(A·2^(G+1) + L) // 2L`` leaves a final remainder within 64 of 0 (``high`` False) or of
    ``2L`` (``high`` True), with ``A = w·dv`` exactly; None when no such ``A`` is reached."""
    # int64 while 2L·2^16 fits (every configuration the benches run); Python integers beyond.
    qs = sign * np.arange(1 << 14, 1 << 16, dtype=np.int64 if L < 1 << 44 else object)
    a, miss, keep = _near_exact(qs, L, G, high)
    found = [(int(miss[i]), int(qs[i]), int(a[i])) for i in keep]
    for miss, q, ai in sorted(found):
        dv = _exact_v(w, ai)
        if dv is not None:
            return q, dv
    return None


def _remainder_faults(q: int, r: int, L: int) -> set[tuple[int, int, int]]:
    """What a division's quotient shows of faults in its subtracted remainders. ``q`` and
    ``r`` are the quotient and final remainder of the magnitude (``N'`` or ``-N' - 1``) by
    ``2L``; the stage of quotient bit ``b`` (set in ``q``) leaves ``R_b = r + 2L·(q mod 2^b)``.
    Returns ``(kind, b, j)``: kind 0, bit ``j`` of ``R_b`` set and ``r < 2^j`` (losing it takes
    ``q`` down); kind 1, bit ``j`` clear and ``r + 2^j >= 2L`` (gaining it takes ``q`` up), for
    ``j`` below the width of ``2L·2^b``."""
    out = set()
    for b in range(q.bit_length()):
        if not q >> b & 1:
            continue
        rb = r + 2 * L * (q & ((1 << b) - 1))
        for j in range((2 * L << b).bit_length()):
            if rb >> j & 1:
                if r < 1 << j:
                    out.add((0, b, j))
            elif r + (1 << j) >= 2 * L:
                out.add((1, b, j))
    return out


def _covering_quotient(w: np.ndarray, L: int, G: int, sign: int, high: bool, bits: range,
                       seen: set, rng, draws: int = 1 << 17):
    """``(q, dv)`` like :func:`_wide_quotient` (final remainder within 64 of 0 or of ``2L``,
    ``A = w·dv`` exactly), with ``|q|`` drawn from ``[2^bits.start, 2^bits.stop)``, picking
    among the near-exact divisions found the one whose subtracted remainders show the most
    faults (:func:`_remainder_faults`) not in ``seen``; ``seen`` is updated. None when no
    ``A`` is reached."""
    wide = 2 * L << bits.stop >= 1 << 62                  # beyond int64: Python integers
    qs = np.unique(rng.integers(1 << bits.start, 1 << bits.stop, draws))
    qs = sign * (qs.astype(object) if wide else qs)
    a, miss, keep = _near_exact(qs, L, G, high)
    found = []
    for i in keep:
        n = int(a[i]) * (1 << (G + 1)) + L          # the division's numerator
        qm, rm = divmod(n if n >= 0 else -n - 1, 2 * L)
        faults = _remainder_faults(qm, rm, L)
        found.append((-len(faults - seen), int(miss[i]), int(qs[i]), int(a[i]), faults))
    for _, _, q, ai, faults in sorted(found, key=lambda f: f[:3]):
        dv = _exact_v(w, ai)
        if dv is not None:
            seen |= faults
            return q, dv
    return None


def _threshold_output(q: int, G: int) -> tuple[int, int]:
    """``(M0_o, sh_o)`` placing the rounding threshold of ``o = rshift_round(x·M0_o, k)``
    between ``x = q - 1`` and ``x = q``, with ``|o| < 128``: any quotient below ``q`` gives a
    smaller output, any from ``q`` up the same or larger."""
    s = max(0, abs(q).bit_length() - 6)
    k = 31 + s
    half = 1 << (k - 1)
    if q == 0:
        return (1 << 30) + 1, 31 + G - k
    j = (q * 3 << 29) + half >> k                 # near q·1.5·2^30 / 2^k
    for jj in (j, j + 1, j - 1, j + 2, j - 2):
        m0 = -((half - (jj << k)) // q) if q > 0 else ((jj << k) - half) // q
        if (1 << 30) <= m0 < (1 << 31) and (q - 1) * m0 + half < (jj << k) <= q * m0 + half:
            return m0, 31 + G - k
    raise AssertionError(f"no output multiplier for q = {q}")


def _lane_sorted_job(tb: AttentionTB, p: int) -> tuple[AttentionJob, np.ndarray, int]:
    """``(job, w, L)``: a random job of ``q_block`` queries over ``max(B + 1, 6)`` keys (score
    scale 2.5 times the calibrated one, ``zp_v = zp_o = 0``) with its keys in descending order
    of query ``p``'s scores, so that query's pass has no rescale: ``A_c = w·(v_c - zp_v)``
    exactly, with the LUT weights ``w = E[s_0 - s_j]`` and ``L = Σ w``."""
    job = tb.random_job(tb.P, _small(tb, max(tb.B + 1, 6)), mask="none", zp_v=0, zp_o=0,
                        spread=2.5)
    s = attention_scores(job.q, job.k, job.params, rounding=tb.rounding)[p]
    order = np.argsort(-s.astype(np.int64), kind="stable")
    job.k = job.k[order]
    s = s[order].astype(np.int64)
    w = np.array(make_lut(job.params.c, tb.F), dtype=np.int64)[s[0] - s]
    return job, w, int(w.sum())


def _threshold_job(tb: AttentionTB, job: AttentionJob, q: int, dv: np.ndarray,
                   high: bool) -> AttentionJob:
    """``job`` with channel 0's ``v - zp_v`` set to ``dv`` (the other channels 0) and the
    output's rounding threshold right at quotient ``q`` (:func:`_threshold_output`) on the side
    a remainder fault moves it to: between ``q - 1`` and ``q`` for a final remainder near 0,
    between ``q`` and ``q + 1`` near ``2L`` (``high``)."""
    m0, sh = _threshold_output(q + 1 if high else q, tb.G)
    v = np.zeros((job.k.shape[0], tb.d), dtype=np.int64)
    v[:, 0] = dv
    return replace(job, v=v.astype(np.int8), tag=tb.next_tag(),
                   params=replace(job.params, out_multiplier=m0, out_shift=sh))


@cocotb.test()
async def test_divider_near_exact(dut):
    """Exact and near-exact epilogue divisions with the quotient's low bits in view. Per job
    one lane ``p`` is tuned: its query's keys come in descending score order (no rescale, so
    ``A_c`` is linear in ``v - zp_v`` with the LUT weights ``E[m - s_j]``) and ``v`` is solved
    so that the final remainder of ``N' = A·2^(G+1) + L`` by ``2L`` is within 64 of 0 or of
    ``2L`` (both sides, both signs of ``N'``, every lane). Small quotients: every channel,
    ``v - zp_v`` nonzero only at a few small-weight keys, ``0 < |q| <= 120``, ``M0_o = 2^30``
    and ``k = 30`` so ``o = q`` exactly; N from one tile to ``min(N_max, 64)``. Wide quotients:
    channel 0, ``2^14 <= |q| < 2^16`` (the high quotient bits set), ``A`` hit exactly with the
    keys' weights as digits, and ``M0_o`` / ``k`` putting the output's rounding threshold right
    at ``q`` on the side a remainder fault moves it to. Bit-exact against the golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    r = tb.rng
    jobs = []
    for i, n in enumerate((tb.B + 1, 16, tb.n_max)):
        n = _small(tb, min(n, 64))
        for p in range(tb.P):
            job = tb.random_job(tb.P, n, mask="none", zp_v=0, zp_o=0,
                                spread=float(r.choice([0.3, 0.6, 1.2])))
            prm = replace(job.params, out_multiplier=1 << 30, out_shift=tb.G + 1)  # k = 30
            s = attention_scores(job.q, job.k, prm, rounding=tb.rounding)[p]
            order = np.argsort(-s.astype(np.int64), kind="stable")
            job.k = job.k[order]
            s = s[order].astype(np.int64)
            lut = np.array(make_lut(prm.c, tb.F), dtype=np.int64)
            w = lut[s[0] - s]
            L = int(w.sum())
            dv = np.zeros((n, tb.d), dtype=np.int64)
            for c in range(tb.d):
                dv[:, c] = _near_exact_v(w, L, tb.G, 1 if (c + i) % 2 == 0 else -1,
                                         bool((c // 2 + p) % 2), r)
            job.v = dv.astype(np.int8)
            jobs.append(replace(job, params=prm, tag=tb.next_tag()))
    # Wide quotients (2^14 <= |q| < 2^16, the high quotient bits set): the division of
    # channel 0 of lane p's query ends within 64 of a multiple of 2L, and M0_o / k put the
    # output's rounding threshold right at q, on the side a fault would move it to.
    for p in range(tb.P):
        for sign, high in ((1, False), (1, True), (-1, False), (-1, True)) * 2:
            for _ in range(20):
                job, w, L = _lane_sorted_job(tb, p)
                hit = _wide_quotient(w, L, tb.G, sign, high)
                if hit is not None:
                    break
            else:
                raise AssertionError(f"no wide near-exact quotient for lane {p}")
            jobs.append(_threshold_job(tb, job, *hit, high))
    for j in jobs:
        await tb.run_job(j, label=f"near-exact division, N={j.k.shape[0]}")
    tb.check_idle()


@cocotb.test()
async def test_divider_remainder_bits(dut):
    """The bits of the epilogue divider's subtracted remainders, through near-exact divisions
    of larger quotients than :func:`test_divider_near_exact`'s. Per lane ``p`` and per band
    ``2^G <= |q| < 2^(G+3)`` and ``2^(G+3) <= |q| < 2^(G+6)``, both signs of ``N'`` and a final
    remainder within 64 of 0 or of ``2L``: query ``p`` sees its keys in descending score order
    (``A = w·dv`` exactly, channel 0), and among the near-exact divisions found the one is
    taken whose subtracted remainders ``R_b`` show the most faults not yet shown on that lane
    (a set bit of ``R_b`` lost with the final remainder below it, a clear bit gained with the
    final remainder within it of ``2L``); ``M0_o`` and ``k`` put the output's rounding
    threshold right at ``q`` on the side such a fault moves it to. Bit-exact against the
    golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    r = tb.rng
    jobs = []
    for p in range(tb.P):
        seen: set = set()
        for bits in (range(tb.G, tb.G + 3), range(tb.G + 3, tb.G + 6)):
            for sign, high in ((1, False), (-1, True), (1, True), (-1, False)):
                for _ in range(20):
                    job, w, L = _lane_sorted_job(tb, p)
                    hit = _covering_quotient(w, L, tb.G, sign, high, bits, seen, r)
                    if hit is not None:
                        break
                else:
                    raise AssertionError(f"no near-exact quotient of {bits} bits for lane {p}")
                jobs.append(_threshold_job(tb, job, *hit, high))
    for j in jobs:
        await tb.run_job(j, label=f"remainder bits, k={31 + tb.G - j.params.out_shift}")
    tb.check_idle()


def _score_tie(acc: int, s: int, above: bool, rounding: str) -> tuple[int, int, int] | None:
    """``(M0_s, sh_s, eps)`` putting the score product ``P = acc·M0_s`` (``acc > 0``) right at
    the rounding threshold of score ``s`` (``s >= 1``): ``eps >= 0`` above the smallest product
    of score ``s`` (``above``), or ``eps >= 1`` below it (score ``s - 1``); ``eps < acc``. The
    threshold is ``T = (2s - 1)·2^(30 - sh)``, and ``(2s - 1)·2^(30 + e) - 2^30`` in
    ``double`` rounding with a right shift ``e = -sh >= 1`` (numerics.md). None when no shift
    gives ``M0_s`` in [2^30, 2^31)."""
    for sh in range(30, -32, -1):
        if rounding == "double" and sh < 0:
            t = ((2 * s - 1) << (30 - sh)) - (1 << 30)
        else:
            t = (2 * s - 1) << (30 - sh)
        m0 = -(-t // acc) if above else (t - 1) // acc
        if (1 << 30) <= m0 < (1 << 31):
            return m0, sh, acc * m0 - t if above else t - acc * m0
    return None


def _tie_faults(acc: int, m0: int, eps: int, above: bool) -> set[tuple[int, int, int]]:
    """The faults of the score product's two low partial products (``acc``'s low 17 bits
    times ``M0_s``'s 16-bit halves, weights 2^0 and 2^16: hw/requant.py) that move a product
    ``eps`` from the rounding threshold across it: ``(0, t, j)``, bit ``j`` of partial product
    ``t`` set and lost, its weight above ``eps`` (``above``); ``(1, t, j)``, clear and gained,
    its weight at least ``eps`` (below)."""
    out = set()
    for t, pp in enumerate(((acc & 0x1FFFF) * (m0 & 0xFFFF), (acc & 0x1FFFF) * (m0 >> 16))):
        for j in range(33):
            w = 1 << (16 * t + j)
            if above and pp >> j & 1 and w > eps:
                out.add((0, t, j))
            elif not above and not pp >> j & 1 and w >= eps:
                out.add((1, t, j))
    return out


def _tie_job(tb: AttentionTB, above: bool, seen: set, tries: int = 256) -> AttentionJob:
    """A job whose queries (all equal) see a key ``k_t`` with its score right at a rounding
    threshold (:func:`_score_tie`; ``acc = q·k_t >= s·max|q| > 0``; the score ``s`` or
    ``s - 1``) and a key of score within 2 of it, ``v - zp_v`` at +127 and -128 on channel 0;
    among ``tries`` random ``(q, k_t, s)`` the one whose partial products show the most faults
    (:func:`_tie_faults`) not in ``seen`` (updated). The output's rounding threshold sits right
    at channel 0's quotient, on the side a fault moves it to (:func:`_threshold_output`)."""
    r, d = tb.rng, tb.d
    best = None
    for _ in range(tries):
        qv = r.integers(-127, 128, d)
        kt = r.integers(-127, 128, d)
        acc = int(qv @ kt)
        if acc < 0:
            kt, acc = -kt, -acc
        s = int(r.integers(1, 128))
        # acc >= s·max|q|: a step of one in any element of a key moves its score by at most
        # about one, so keys of nearby scores exist
        fine = 0 < acc and s * int(np.abs(qv).max()) <= acc
        tie = _score_tie(acc, s, above, tb.rounding) if fine else None
        if tie is not None:
            faults = _tie_faults(acc, tie[0], tie[2], above)
            if best is None or len(faults - seen) > len(best[-1] - seen):
                best = (qv, kt, s, tie, faults)
    assert best is not None, "no score multiplier puts a score at a rounding threshold"
    qv, kt, s, (m0, sh, _), faults = best
    seen |= faults
    q = np.tile(qv, (tb.P, 1)).astype(np.int8)
    job = tb.random_job(tb.P, 2, mask="none", zp_v=0, zp_o=0)
    p = replace(job.params, score_multiplier=m0, score_shift=sh)
    want = s if above else s - 1
    for spread in (4, 16, 64, 255):            # a second key of a score within 2 of the tie's
        near = np.clip(kt + r.integers(-spread, spread + 1, (256, d)), -128, 127)
        sc = attention_scores(q[:1], near.astype(np.int8), p, rounding=tb.rounding)[0]
        ok = np.flatnonzero((np.abs(sc.astype(np.int64) - want) <= 2) & np.any(near != kt, 1))
        if len(ok):
            k = np.stack([kt, near[ok[0]]]).astype(np.int8)
            break
    else:
        raise AssertionError(f"no key of a score near {want}")
    sc = attention_scores(q, k, p, rounding=tb.rounding)
    assert np.all(sc[:, 0] == want), f"tie key's score {sc[0, 0]}, expected {want}"
    v = job.v.copy()
    v[:, 0] = (127, -128)
    st = attention_state(q, k, v, p, F=tb.F, B=tb.B, rounding=tb.rounding)[0]
    quot = (st.A[0] * (1 << (tb.G + 1)) + st.L) // (2 * st.L)
    m0_o, sh_o = _threshold_output(quot if above else quot + 1, tb.G)
    return replace(job, q=q, k=k, v=v, tag=tb.next_tag(),
                   params=replace(p, out_multiplier=m0_o, out_shift=sh_o))


@cocotb.test()
async def test_score_rounding_ties(dut):
    """Scores right at the score requantizer's rounding threshold, with the low partial
    products' bits in view. Per job every query is the same row ``q`` and one key ``k_t`` has
    ``acc = q·k_t > 0``; ``M0_s`` and ``sh_s`` put ``acc·M0_s`` less than ``acc`` above the
    threshold of a score ``s`` (six jobs) or below it (six jobs), so a fault that takes the
    product down (up) by more than that moves the score by one; among random ``(q, k_t, s)``
    each job takes the one whose two low partial products (``acc``'s low 17 bits times
    ``M0_s``'s 16-bit halves) show the most such faults not yet shown. A second key has a
    score within 2 of ``k_t``'s, channel 0's ``v - zp_v`` is +127 at ``k_t`` and -128 at the
    other, and ``M0_o`` / ``k`` put the output's rounding threshold right at the quotient on
    the side a score fault moves it to. Bit-exact against the golden model."""
    tb = AttentionTB(dut)
    await tb.start()
    seen: set = set()
    jobs = [_tie_job(tb, above, seen) for above in (True, False) for _ in range(6)]
    for j in jobs:
        await tb.run_job(j, label=f"score tie, M0_s={j.params.score_multiplier}, "
                                  f"sh_s={j.params.score_shift}")
    tb.check_idle()


@cocotb.test()
async def test_no_x_after_reset(dut):
    """After reset no output is X/Z and nothing is offered; then a job. On Icarus the X/Z
    monitor also runs during every other test."""
    tb = AttentionTB(dut)
    await tb.start(x_check=True)
    await ClockCycles(dut.aclk, 5)
    d = dut
    for s in (d.s_axis_cmd_tready, d.s_axis_param_tready, d.s_axis_q_tready, d.s_axis_k_tready,
              d.s_axis_v_tready, d.m_axis_o_tvalid, d.m_axis_status_tvalid):
        assert s.value.is_resolvable, f"{s._name} = {s.value} after reset"
    assert not _high(d.m_axis_o_tvalid) and not _high(d.m_axis_status_tvalid), "busy when idle"
    assert _high(d.s_axis_cmd_tready), "s_axis_cmd_tready low when idle"
    await tb.run_job(tb.random_job(tb.P, _small(tb, 3), mask="general"))
    tb.check_idle()

"""Energy of a GEMM job from the gate-level netlist's own switching: ``npugen power``.

:func:`measure` synthesizes the design with the ``asic`` flow (the flat OSU 0.18 µm netlist of
``npugen area --target asic``, reused while its report is current), simulates that netlist on
Icarus with the library's cell models (``osu018_stdcells.v``) on one job's real command and data
streams (:func:`npugen.sim.driver.encode`), checks the job's results against the golden model,
turns the simulation's VCD into per-pin activity for OpenSTA (:mod:`npugen.hw.synth.power`) and
reports power at the clock and energy per job, per useful MAC (M·K·N), per array slot
(cycles × rows × cols) and, for the MiniLM Q projection, per token; split by report block and by
kind (internal, switching, leakage). Memories (flip-flops here: the library has no SRAM) are
reported on their own and left out of the per-MAC figures. Two references run beside it under
the same operand statistics and clock: the bare registered int8 MAC (``y <= c + a * b``,
benchmarks/bench_area.py) and the minimal systolic PE (an active and a shadow weight register,
the activation passed right, the registered partial sum; no product register).

Units: power mW, energy pJ, clock MHz, time ns. Layout of the report: docs/power.md.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from npugen.hw.config import GemmConfig
from npugen.hw.errors import CheckFailed, InputError
from npugen.hw.files import atomic_open
from npugen.hw.synth import flow
from npugen.hw.synth import power as pw
from npugen.hw.synth import tools as stools
from npugen.hw.tools import ToolNotFound, icarus_bin

from .driver import GemmJob, Streams, decode_results, decode_status, encode

__all__ = ["measure", "random_job", "minilm_q_job", "reference", "check_tools",
           "POWER_VERSION", "DEFAULT_MKN", "DEFAULT_CLOCK_MHZ", "PowerError"]

#: Version of the layout of the power JSON report.
POWER_VERSION = 1
#: The default random job: small, so that a 4 x 4 gate-level run takes seconds.
DEFAULT_MKN = (16, 16, 8)
#: Default clock of the measurement, MHz (below the 4 x 4 and 8 x 8 designs' Fmax on OSU 0.18 µm).
DEFAULT_CLOCK_MHZ = 100.0
#: Cycles of the reference runs (at most).
REFERENCE_CYCLES = 1024
#: Icarus' Verilog models of the OSU 0.18 µm cells, beside the liberty.
CELL_MODELS = "osu018_stdcells.v"


class PowerError(CheckFailed, RuntimeError):
    """The gate-level simulation failed or disagreed with the golden model (exit 1)."""


# -- tools ------------------------------------------------------------------------------------

def cell_models() -> Path:
    """The cells' Verilog models shipped with the liberty (Debian's qflow-tech-osu018).

    Raises
    ------
    ToolNotFound
        If the package is missing.
    """
    path = stools.liberty_path().with_name(CELL_MODELS)
    if not path.is_file():
        raise ToolNotFound(f"the OSU 0.18 um cell models ({CELL_MODELS}) are missing: "
                           f"{stools.LIBERTY_HINT}")
    return path


def check_tools() -> None:
    """Fail early, one line naming the package, when Icarus, OpenSTA, Yosys or the liberty
    (and its cell models) is missing."""
    icarus_bin()
    stools.sta_bin()
    cell_models()
    stools.yowasp("yosys")


# -- jobs -------------------------------------------------------------------------------------

def random_job(m: int, k: int, n: int, seed: int) -> GemmJob:
    """A requantized job of uniform random int8 operands and bias (seeded), its output scale
    chosen so that the int8 results spread over their range."""
    from .run import make_job
    rng = np.random.default_rng(seed)
    a = rng.integers(-128, 128, size=(m, k), dtype=np.int8)
    b = rng.integers(-128, 128, size=(k, n), dtype=np.int8)
    bias = rng.integers(-1000, 1000, size=n).astype(np.int32)
    # |C| ~ 74^2 * sqrt(K); map three standard deviations to 127
    scale_out = float(np.float32(3 * 74.0 * 74.0 * math.sqrt(k) / 127))
    return make_job(a, b, bias=bias, scale_a=1.0, scale_b=1.0, scale_out=scale_out)


def minilm_q_job(kn: tuple[int, int] | None = None) -> tuple[GemmJob, int, str]:
    """The query projection of all-MiniLM-L6-v2's layer 0 on the default sentence (every
    token: M = 20, K = N = 384): the job, its tokens (M) and its label.

    Parameters
    ----------
    kn : (int, int) or None
        Only the first K input features and N output channels (every token), with the full
        job's quantization (as tests/fixtures/minilm_slice.npz): a gate-level run of the whole
        projection takes hours (docs/power.md).

    Raises
    ------
    npugen.sim.realdata.ModelUnavailableError
        If the model package is missing.
    InputError
        If the slice is larger than the projection.
    """
    from . import realdata
    from .run import make_job
    q = realdata.qkv_jobs()[0]
    args = realdata.gemm_args(q)
    what = "MiniLM-L6 layer 0 Q projection"
    if kn is not None:
        k, n = kn
        kk, nn = args["b"].shape
        if k > kk or n > nn:
            raise InputError(f"--k {k} --n {n}: the Q projection is {kk} x {nn} (K x N)")
        args["a"] = args["a"][:, :k]
        args["b"] = args["b"][:k, :n]
        args["bias"] = args["bias"][:n]
        args["scale_b"] = args["scale_b"][:n]
        what += f", first {k} inputs and {n} outputs"
    job = make_job(**args)
    return job, int(q["a"].shape[0]), what


# -- testbench --------------------------------------------------------------------------------

_TB = """`timescale 1ns/10ps
// npugen power: drives one job's streams into {module} (inputs registered inside it, so each
// port gets what the design should see one cycle later) and dumps the job's window.
module tb;
  localparam real P = {period};
  localparam real D = {tb_delay};
  localparam NA = {n_act}, NW = {n_wgt};
  reg aclk = 1'b0;
  always #(P / 2) aclk = ~aclk;
  reg [{aw}:0] act_mem [0:NA - 1];
  reg [{ww}:0] wgt_mem [0:NW - 1];
  reg rst_n = 1'b0, go = 1'b0, live = 1'b0, cmd_done = 1'b0;
  integer pa = 0, pw = 0, cycles = 0, fr;
  wire cmd_ready, st_valid, act_ready, wgt_ready, res_valid, res_last;
  wire [63:0] st_data;
  wire [{rw}:0] res_data;
  wire [{rk}:0] res_keep;
  // what the design sees this cycle (the registered inputs) and whether it takes it
  // live: the registered inputs hold the streams' values (go as of the last edge)
  wire see_c = live & ~cmd_done, see_a = live & (pa < NA), see_w = live & (pw < NW);
  wire take_c = see_c & cmd_ready, take_a = see_a & act_ready, take_w = see_w & wgt_ready;
  wire cmd_done_n = cmd_done | take_c;
  integer pa_n, pw_n;
  always @* begin pa_n = pa + take_a; pw_n = pw + take_w; end
  wire [{aw}:0] a_beat = act_mem[pa_n < NA ? pa_n : 0];
  wire [{ww}:0] w_beat = wgt_mem[pw_n < NW ? pw_n : 0];
  {module} dut (
    .aclk(aclk), .aresetn(rst_n),
    .s_axis_cmd_tdata(128'h{cmd:032x}), .s_axis_cmd_tvalid(go & ~cmd_done_n),
    .s_axis_cmd_tready(cmd_ready),
    .m_axis_status_tdata(st_data), .m_axis_status_tvalid(st_valid),
    .m_axis_status_tready(rst_n),
    .s_axis_act_tdata(a_beat[{ad}:0]), .s_axis_act_tkeep(a_beat[{ak}:{ad1}]),
    .s_axis_act_tlast(a_beat[{aw}]), .s_axis_act_tvalid(go & (pa_n < NA)),
    .s_axis_act_tready(act_ready),
    .s_axis_wgt_tdata(w_beat[{wd}:0]), .s_axis_wgt_tkeep(w_beat[{wk}:{wd1}]),
    .s_axis_wgt_tlast(w_beat[{ww}]), .s_axis_wgt_tvalid(go & (pw_n < NW)),
    .s_axis_wgt_tready(wgt_ready),
    .m_axis_res_tdata(res_data), .m_axis_res_tkeep(res_keep), .m_axis_res_tlast(res_last),
    .m_axis_res_tvalid(res_valid), .m_axis_res_tready(rst_n){others});
  initial begin
    $readmemh("act.hex", act_mem);
    $readmemh("wgt.hex", wgt_mem);
    fr = $fopen("results.txt", "w");
    repeat (4) @(posedge aclk);
    rst_n <= #D 1'b1;
    repeat (4) @(posedge aclk);
    #(D);
    $dumpfile("activity.vcd");
    $dumpvars(1, tb.dut);
    go = 1'b1;
  end
  always @(posedge aclk) begin
    live <= #D go;
    if (live) begin
      cycles <= cycles + 1;
      pa <= #D pa_n;
      pw <= #D pw_n;
      cmd_done <= #D cmd_done_n;
      if (res_valid) $fdisplay(fr, "R %h %h %b", res_data, res_keep, res_last);
      if (st_valid) begin
        $fdisplay(fr, "S %h %0d", st_data, cycles + 1);
        $fclose(fr);
        #(D);
        $dumpflush;
        $finish;
      end
      if (cycles > {limit}) begin
        $fdisplay(fr, "T %0d", cycles);
        $fclose(fr);
        $finish;
      end
    end
  end
endmodule
"""


def _hex_rows(data: np.ndarray, keep: np.ndarray, last: np.ndarray) -> str:
    """One hex line per beat: ``{last, keep, data}`` (data byte 0 in the low bits)."""
    lanes = data.shape[1]
    out = []
    for d, k, l in zip(data, keep, last):
        v = int(bool(l))
        for i in range(lanes - 1, -1, -1):
            v = (v << 1) | int(bool(k[i]))
        for i in range(lanes - 1, -1, -1):
            v = (v << 8) | int(d[i])
        out.append(f"{v:x}")
    return "\n".join(out) + "\n"


#: The GEMM engine's ports the testbench drives or reads; any other input (a softmax or
#: attention unit's) is tied to 0.
_TB_PORTS = {"aclk", "aresetn", "s_axis_cmd_tdata", "s_axis_cmd_tvalid",
             "m_axis_status_tready", "s_axis_act_tdata", "s_axis_act_tkeep", "s_axis_act_tlast",
             "s_axis_act_tvalid", "s_axis_wgt_tdata", "s_axis_wgt_tkeep", "s_axis_wgt_tlast",
             "s_axis_wgt_tvalid", "m_axis_res_tready"}


def write_testbench(work: Path, module: str, streams: Streams, cfg: GemmConfig,
                    clock_mhz: float, limit: int, ports: list | None = None) -> None:
    """Write ``tb.v``, ``act.hex`` and ``wgt.hex`` for one job (no backpressure on results).

    ``ports`` (the netlist's ``(name, direction, bits)``): inputs other than the GEMM engine's
    are tied to 0."""
    rows, cols = cfg.rows, cfg.cols
    others = "".join(f",\n    .{name}({len(bits)}'d0)" for name, d, bits in (ports or [])
                     if d == "input" and name not in _TB_PORTS)
    (work / "act.hex").write_text(_hex_rows(streams.act.data, streams.act.keep,
                                            streams.act.last), encoding="utf-8")
    (work / "wgt.hex").write_text(_hex_rows(streams.wgt.data, streams.wgt.keep,
                                            streams.wgt.last), encoding="utf-8")
    period = 1000.0 / clock_mhz
    res_bytes = cfg.lane_bits * cols // 8
    tb = _TB.format(module=module, period=f"{period:.6f}", tb_delay=f"{period / 10:.6f}",
                    n_act=len(streams.act), n_wgt=len(streams.wgt),
                    aw=rows * 9, ww=cols * 9, ad=rows * 8 - 1, ad1=rows * 8,
                    ak=rows * 9 - 1, wd=cols * 8 - 1, wd1=cols * 8, wk=cols * 9 - 1,
                    rw=res_bytes * 8 - 1, rk=res_bytes - 1, cmd=streams.cmd, limit=limit,
                    others=others)
    (work / "tb.v").write_text(tb, encoding="utf-8")


def simulate(work: Path, sources: list[str], delays: bool, what: str
             ) -> tuple[pw.Activity, float]:
    """Compile and run the testbench in ``work`` with Icarus and read the activity of its VCD
    (``activity.vcd``, scope ``tb.dut``): the activity and the seconds taken.

    The VCD goes through a named pipe straight into :func:`npugen.hw.synth.power.vcd_activity`:
    a gate-level run of a 4 x 4 design writes gigabytes. Zero delay unless ``delays``: then the
    cells' specify delays (``-gspecify``) and timing checks apply.

    Raises
    ------
    PowerError
        If Icarus fails or writes no VCD.
    """
    t0 = time.monotonic()
    cmd = [icarus_bin(), "-g2005", "-o", "sim.vvp"] + (["-gspecify"] if delays else []) + sources
    _run(cmd, work, "iverilog.log", f"Icarus ({what}, compile)")
    vvp = str(Path(icarus_bin()).with_name("vvp"))
    fifo = work / "activity.vcd"
    fifo.unlink(missing_ok=True)
    os.mkfifo(fifo)
    result: dict[str, Any] = {}

    def read() -> None:
        try:
            result["act"] = pw.vcd_activity(fifo, "tb.dut")
        except Exception as e:          # reported after the simulator has ended
            result["error"] = e
    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        with open(work / "vvp.log", "w", encoding="utf-8") as log:
            rc = subprocess.run([vvp, "-n", "sim.vvp"], cwd=work, stdout=log,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    finally:
        if reader.is_alive() and "act" not in result:
            # the simulator never opened the VCD: open the pipe's other end so the reader ends
            try:
                fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
                os.close(fd)
            except OSError:
                pass
        reader.join()
        fifo.unlink(missing_ok=True)
        (work / "sim.vvp").unlink(missing_ok=True)
    if rc != 0:
        raise PowerError(f"Icarus ({what}, run) failed: exit code {rc} (log: {work / 'vvp.log'})")
    if "error" in result:
        raise PowerError(f"the simulation's VCD could not be read: {result['error']} "
                         f"(log: {work / 'vvp.log'})")
    return result["act"], time.monotonic() - t0


def _run(cmd: list[str], cwd: Path, log: str, what: str) -> str:
    try:
        return stools.run(cmd, cwd, log, what)
    except stools.SynthError as e:
        raise PowerError(str(e)) from None


def _read_results(work: Path, streams: Streams, cfg: GemmConfig) -> tuple[int, Any, list]:
    """(cycles from the status beat, the status, result beats) of the testbench run."""
    beats, status, cycles = [], None, None
    res_bytes = cfg.lane_bits * cfg.cols // 8
    path = work / "results.txt"
    if not path.is_file():
        raise PowerError(f"the gate-level simulation wrote no results (log: {work / 'vvp.log'})")
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split()
        if parts[0] == "R":
            if "x" in parts[1].lower() or "z" in parts[1].lower():
                raise PowerError(f"the gate-level simulation gave an unknown (X) result beat "
                                 f"(results: {path})")
            data = int(parts[1], 16).to_bytes(res_bytes, "little")
            beats.append((data, int(parts[2], 16), parts[3] == "1"))
        elif parts[0] == "S":
            if "x" in parts[1].lower():
                raise PowerError(f"the gate-level simulation gave an unknown (X) status "
                                 f"(results: {path})")
            status = decode_status(int(parts[1], 16))
            cycles = int(parts[2])
        elif parts[0] == "T":
            raise PowerError(f"the gate-level simulation did not finish the job in "
                             f"{parts[1]} cycles (results: {path})")
    if status is None:
        raise PowerError(f"the gate-level simulation ended without a status beat "
                         f"(log: {work / 'vvp.log'})")
    return cycles, status, beats


# -- the design's netlist ----------------------------------------------------------------------

def asic_netlist(cfg: GemmConfig, out: Path, say: Callable[[str], None],
                 top: Callable | None) -> tuple[Path, dict]:
    """The ``asic`` flow's work folder of the design (``<out>/<name>/qor/asic/``, holding
    ``asic_flat.json`` and ``<name>.v``) and its report: reused when ``qor/asic.json`` is of
    the same configuration, generator and tools and has a flat run with timing, else made with
    :func:`npugen.hw.synth.area`."""
    design = flow.design_folder(cfg, out, top)     # regenerates (dropping qor/) when stale
    path = design / "qor" / "asic.json"
    work = design / "qor" / "asic"
    try:
        rep = json.loads(path.read_text(encoding="utf-8"))
        if (rep.get("config_digest") == cfg.digest() and rep.get("flat")
                and rep.get("sta") and rep.get("tools") == flow.tool_versions("asic")
                and (work / "asic_flat.json").is_file() and (work / f"{cfg.name}.v").is_file()):
            say(f"reusing the asic netlist of {path}")
            return work, rep
    except (OSError, ValueError):
        pass
    say("no current asic netlist: running npugen area --target asic first")
    rep = flow.area(cfg, "asic", out=out, progress=lambda m: say(f"area: {m}"), top=top,
                    command="npugen area --target asic (for npugen power)")
    return work, rep


# -- measurement ------------------------------------------------------------------------------

def _power_run(work: Path, nl: pw.Netlist, tb_sources: list[str], clock_mhz: float,
               delays: bool, what: str, say, clock: str, check: Callable[[], Any] | None = None
               ) -> tuple[dict, pw.Activity, float, Any]:
    """Simulate (testbench already written in ``work``), ``check`` the run, read the VCD, run
    OpenSTA; the VCD and the simulator's image are removed afterwards (large)."""
    say(f"simulating {what} at gate level on Icarus"
        + (" with cell delays" if delays else " (zero delay)"))
    act, sim_s = simulate(work, tb_sources, delays, what)
    checked = check() if check is not None else None
    shutil.copyfile(stools.liberty_path(), work / stools.LIBERTY_NAME)
    say(f"OpenSTA: annotating pins and reporting power ({what})")
    lib_dirs = flow._liberty_pin_directions()
    res = pw.sta_power(work, "power_top.v", "power_top", nl, act, clock_mhz, clock=clock,
                       lib_dirs=lib_dirs)
    return res, act, sim_s, checked


def _energy(power_mw: dict[str, float], ns: float) -> dict[str, float]:
    """mW over ns: pJ."""
    return {k: v * ns for k, v in power_mw.items()}


def _rnd(d: dict, nd: int = 6) -> dict:
    return {k: (float(f"{v:.{nd}g}") if isinstance(v, float) else v) for k, v in d.items()}


MAC_V = """module bare_mac(input clk, input signed [7:0] a, input signed [7:0] b,
                input signed [{w1}:0] c, output reg signed [{w1}:0] y);
  always @(posedge clk) y <= c + a * b;
endmodule
"""


_REF_TB = """`timescale 1ns/10ps
module tb;
  localparam real P = {period};
  localparam real D = {tb_delay};
  localparam N = {n};
  reg clk = 1'b0;
  always #(P / 2) clk = ~clk;
  reg [{vw}:0] vec [0:N - 1];
  integer t = 0;
  wire [{vw}:0] v = vec[t < N ? t : N - 1];
  {ports}
  power_top dut ({conns});
  initial begin
    $readmemh("ops.hex", vec);
    repeat (4) @(posedge clk);
    #(D);
    $dumpfile("activity.vcd");
    $dumpvars(1, tb.dut);
  end
  always @(posedge clk) begin
    t <= #D t + 1;
    if (t == N + 3) begin
      #(D);
      $dumpflush;
      $finish;
    end
  end
endmodule
"""


def reference_operands(job: GemmJob, cfg: GemmConfig, limit: int = REFERENCE_CYCLES
                       ) -> dict[str, np.ndarray]:
    """Per cycle, what the last row's PE of column 0 sees in a weight-stationary run of
    ``job``: its activation ``a``, its weight ``w`` (changing per tile), the partial sum from
    the rows above ``p`` (the same products the array adds), the weight load and swap
    strobes. At most ``limit`` cycles."""
    a = np.asarray(job.a, dtype=np.int64)
    b = np.asarray(job.b, dtype=np.int64)
    m, k = a.shape
    n = b.shape[1]
    r = min(cfg.rows, k) - 1
    ops: dict[str, list] = {"a": [], "w": [], "p": [], "ld": [], "swap": []}
    for n0 in range(n):
        for k0 in range(0, k, cfg.rows):
            kr = min(r, k - k0 - 1)
            for mi in range(m):
                ops["a"].append(a[mi, k0 + kr])
                ops["w"].append(b[k0 + kr, n0])
                ops["p"].append(int(a[mi, k0:k0 + kr] @ b[k0:k0 + kr, n0]))
                ops["ld"].append(mi == m - 1)       # the next tile's weight arrives
                ops["swap"].append(mi == 0)
                if len(ops["a"]) >= limit:
                    return {key: np.array(v) for key, v in ops.items()}
    return {key: np.array(v) for key, v in ops.items()}


def reference(kind: str, ops: dict[str, np.ndarray], psum_width: int, work: Path,
              clock_mhz: float, delays: bool, say) -> dict[str, Any]:
    """Energy per MAC of a reference (``"bare_mac"`` or ``"min_pe"``), one MAC a cycle on
    ``ops`` (:func:`reference_operands`), synthesized by the ``asic`` flow at ``clock_mhz``.

    Returns
    -------
    dict
        ``power_mw`` (by kind, without the input registers), ``pj_per_mac``, ``cells``,
        ``area_um2``, ``cycles``.
    """
    work.mkdir(parents=True, exist_ok=True)
    w1 = psum_width - 1
    n = len(ops["a"])
    if kind == "bare_mac":
        verilog, top = MAC_V.format(w1=w1), "bare_mac"
        fields = [("a", 8, ops["a"]), ("b", 8, ops["w"]), ("c", psum_width, ops["p"])]
        outs = [("y", psum_width)]
    else:
        verilog, top = flow.MIN_PE_V.format(w1=w1), "min_pe"
        fields = [("a_in", 8, ops["a"]), ("w_in", 8, np.roll(ops["w"], -1)),
                  ("w_ld", 1, ops["ld"]), ("w_swap", 1, ops["swap"]),
                  ("p_in", psum_width, ops["p"])]
        outs = [("a_out", 8), ("p_out", psum_width)]
    say(f"synthesizing the reference {top} (asic, {clock_mhz:g} MHz)")
    summary = flow.synth_reference(work, verilog, top, "asic", clock_mhz=clock_mhz)
    # the same synthesis, written as JSON for the power netlist
    script = (work / "reference.ys").read_text(encoding="utf-8").splitlines()
    script = [s for s in script if not s.startswith("tee ")] + ["write_json ref.json"]
    (work / "reference_json.ys").write_text("\n".join(script) + "\n", encoding="utf-8")
    stools.run(stools.yowasp("yosys") + ["-q", "-s", "reference_json.ys"], work, "ref_json.log",
               f"Yosys ({top})")
    nl = pw.load_netlist(work / "ref.json", top)
    info = pw.write_power_verilog(nl, work / "power_top.v", clock="clk")
    total = sum(w for _, w, _ in fields)
    lines = []
    for t in range(n):
        v, sh = 0, 0
        for _, w, arr in fields:
            v |= (int(arr[t]) & ((1 << w) - 1)) << sh
            sh += w
        lines.append(f"{v:x}")
    (work / "ops.hex").write_text("\n".join(lines) + "\n", encoding="utf-8")
    ports, conns, sh = [], [".clk(clk)"], 0
    for name, w, _ in fields:
        conns.append(f".{name}(v[{sh + w - 1}:{sh}])")
        sh += w
    for name, w in outs:
        ports.append(f"wire [{w - 1}:0] o_{name};")
        conns.append(f".{name}(o_{name})")
    period = 1000.0 / clock_mhz
    (work / "tb.v").write_text(_REF_TB.format(period=f"{period:.6f}",
                                              tb_delay=f"{period / 10:.6f}", n=n,
                                              vw=total - 1, ports="\n  ".join(ports),
                                              conns=", ".join(conns)), encoding="utf-8")
    res, act, _, _ = _power_run(work, nl, ["tb.v", "power_top.v", str(cell_models())],
                                clock_mhz, delays, top, say, "clk")
    own = {k: 0.0 for k in (*pw.POWER_KINDS, "total")}
    for name, p in res["instances"].items():
        if name.startswith("c"):
            for key in own:
                own[key] += p[key]
    cycles = act.span_ns / period
    return {"module": top, "psum_width": psum_width, "cycles": round(cycles, 2),
            "power_mw": _rnd(own), "pj_per_mac": round(own["total"] * period, 4),
            "pj_per_mac_by_kind": _rnd({k: own[k] * period for k in pw.POWER_KINDS}),
            "cells": summary["cells"], "ffs": summary["ffs"], "area_um2": summary["area_um2"],
            "input_registers": info["inputs"],
            "pins_annotated_share": round(res["pins_annotated"] / max(1, res["pins"]), 4)}


def measure(cfg: GemmConfig, *, mkn: tuple[int, int, int] | None = None,
            minilm_q: bool = False, seed: int = 0, clock_mhz: float = DEFAULT_CLOCK_MHZ,
            delays: bool = False, out: str | os.PathLike[str] = "build",
            references: bool = True, command: str = "", progress=None,
            top: Callable | None = None, job: GemmJob | None = None,
            label: str | None = None) -> dict[str, Any]:
    """Measure the energy of one job on the design's gate-level netlist.

    Parameters
    ----------
    cfg : GemmConfig
        The design.
    mkn : (int, int, int) or None
        M, K, N of a random job (seeded by ``seed``); default :data:`DEFAULT_MKN`.
    minilm_q : bool
        Run the MiniLM layer-0 Q projection instead; with ``mkn`` ``(None, K, N)``, its first K
        inputs and N outputs only.
    seed : int
        Seed of the random operands.
    clock_mhz : float
        Clock of the simulation and of the power figures, MHz. With ``delays`` it must be below
        the design's register-to-register Fmax (the ``asic`` report's), else the cells' timing
        checks would corrupt the run.
    delays : bool
        Simulate with the cells' delays (glitches counted) instead of zero delay.
    out : path-like
        Folder of design folders; the report goes to ``<out>/<name>/power/<label>.json``.
    references : bool
        Also measure the bare MAC and the minimal systolic PE on the job's operands.
    command : str
        The command line, recorded in the report.
    progress : callable or None
        Called with a short message before each step.
    top : callable or None
        Builds the top component (:func:`npugen.sim.design.build_npu`).
    job : GemmJob or None
        A job of the caller's own (tests); ``label`` names its report.

    Returns
    -------
    dict
        The report (docs/power.md).

    Raises
    ------
    InputError
        For a bad job size, a clock that is not positive, or ``delays`` at a clock above Fmax.
    ToolNotFound
        If Icarus, OpenSTA, Yosys or the liberty is missing.
    PowerError
        If the gate-level simulation fails or its results differ from the golden model.
    """
    say = progress or (lambda msg: None)
    if not (isinstance(clock_mhz, (int, float)) and 0 < clock_mhz < math.inf):
        raise InputError(f"--clock-mhz: {clock_mhz!r} is not allowed (a positive number)")
    if minilm_q and mkn is not None and mkn[0] is not None:
        raise InputError("--minilm-q: M is the sentence's tokens; give it without --m")
    check_tools()
    t_start = time.monotonic()
    out = Path(out)
    tokens = None
    if job is not None:
        what = label or "job"
    elif minilm_q:
        say("loading the MiniLM layer-0 Q projection")
        kn = mkn[1:] if mkn is not None else None
        job, tokens, what = minilm_q_job(kn)
        label = "minilm_q" + (f"_k{kn[0]}_n{kn[1]}" if kn else "")
    else:
        m, k, n = mkn or DEFAULT_MKN
        job = random_job(m, k, n, seed)
        what = f"random int8 GEMM {m}x{k}x{n} (seed {seed})"
        label = f"gemm_{m}x{k}x{n}_s{seed}"
    label = (label or "job") + ("_delays" if delays else "")
    streams = encode(job, cfg)
    m, k, n = job.shape

    netdir, area_rep = asic_netlist(cfg, out, say, top)
    fmax = (area_rep.get("sta") or {}).get("fmax_mhz")
    if delays and fmax is not None and clock_mhz > fmax:
        raise InputError(f"--clock-mhz {clock_mhz:g} is above the design's Fmax on OSU 0.18 um "
                         f"({fmax:g} MHz): with --delays the cells' timing checks would corrupt "
                         f"the run; give a lower --clock-mhz")
    folder = out / cfg.name / "power"
    work = folder / label
    if work.exists():
        shutil.rmtree(work)
    work.mkdir(parents=True)
    say("writing the gate-level netlist with registered inputs")
    nl = pw.load_netlist(netdir / "asic_flat.json", cfg.name)
    info = pw.write_power_verilog(nl, work / "power_top.v")
    verilog = (netdir / f"{cfg.name}.v").read_text(encoding="utf-8")
    blocks = pw.cell_blocks(nl, verilog, flow.design_blocks(out / cfg.name),
                            flow._liberty_pin_directions())
    from .perfmodel import gemm_cycles
    limit = 4 * gemm_cycles(cfg, m, k, n, requant=job.requant) + 1000
    write_testbench(work, "power_top", streams, cfg, clock_mhz, limit, nl.ports)
    def check() -> int:
        """The job's status and results against the golden model: the cycles."""
        cycles_hw, status, beats = _read_results(work, streams, cfg)
        if not status.ok:
            raise PowerError(f"the gate-level run ended with status {status}")
        from .benches.tb import Model
        want = Model(cfg).run(streams.job)
        got = decode_results(beats, streams.job, cfg) if len(streams.res) else None
        if want is not None and (got is None or not np.array_equal(got, want)):
            raise PowerError(f"the gate-level run's results differ from the golden model "
                             f"(work folder: {work})")
        say(f"the gate-level run's results match the golden model ({cycles_hw} cycles)")
        return cycles_hw
    res, act, sim_s, cycles_hw = _power_run(
        work, nl, ["tb.v", "power_top.v", str(cell_models())], clock_mhz, delays, what, say,
        pw.CLOCK_PORT, check)

    period = 1000.0 / clock_mhz
    span = act.span_ns
    cycles = span / period
    by_block = pw.group_power(res["instances"], blocks, info["inputs"])
    design_mw = {key: sum(p[key] for b, p in by_block.items() if b != pw.INPUT_BLOCK)
                 for key in (*pw.POWER_KINDS, "total")}
    mem_mw = by_block.get("memories", {key: 0.0 for key in design_mw})
    logic_mw = {key: design_mw[key] - mem_mw.get(key, 0.0) for key in design_mw}
    macs = m * k * n
    slots = cycles * cfg.rows * cfg.cols
    e_design = _energy(design_mw, span)
    e_logic = _energy(logic_mw, span)
    report: dict[str, Any] = {
        "power_version": POWER_VERSION, "name": cfg.name, "label": label, "job": what,
        "config": json.loads(json.dumps(cfg.to_dict(resolved=True), default=str)),
        "config_digest": cfg.digest(), "command": command,
        "tools": {**flow.tool_versions("asic"), "iverilog": _icarus_version()},
        "m": m, "k": k, "n": n, "macs": macs, "tokens": tokens,
        "clock_mhz": clock_mhz, "period_ns": round(period, 4), "delays": delays,
        "fmax_mhz": fmax, "cycles": round(cycles, 2), "status_cycles": cycles_hw,
        "array_slots": round(slots, 1), "utilization": round(macs / slots, 4) if slots else None,
        "netlist": {"cells": info["cells"], "input_registers": info["inputs"],
                    "area_um2": (area_rep.get("flat") or {}).get("area_um2"),
                    "from": str(netdir / "asic_flat.json")},
        "power_mw": _rnd(design_mw),
        "power_without_memories_mw": _rnd(logic_mw),
        "opensta_default_activity_mw": _rnd({k2: v for k2, v in res["default_total_mw"].items()}),
        "energy_pj": {"job": round(e_design["total"], 2),
                      "job_without_memories": round(e_logic["total"], 2),
                      "memories": round(e_design["total"] - e_logic["total"], 2),
                      "per_mac": round(e_logic["total"] / macs, 4),
                      "per_mac_with_memories": round(e_design["total"] / macs, 4),
                      "per_slot": round(e_logic["total"] / slots, 4) if slots else None,
                      "per_mac_array": round(by_block.get("array", {}).get("total", 0.0) * span
                                             / macs, 4),
                      "per_token": (round(e_design["total"] / tokens, 1) if tokens else None),
                      "per_token_without_memories": (round(e_logic["total"] / tokens, 1)
                                                     if tokens else None),
                      # a slice of the projection: the whole one's per token, at this slice's
                      # energy per MAC (K = N = 384 a token)
                      "per_token_full_projection_estimate": (
                          round(e_design["total"] / macs * 384 * 384, 1)
                          if tokens and (k, n) != (384, 384) else None),
                      "by_kind": _rnd({k2: e_design[k2] for k2 in pw.POWER_KINDS})},
        "blocks": {b: {"power_mw": _rnd(p), "energy_pj": round(p["total"] * span, 2),
                       "share": round(p["total"] / design_mw["total"], 4)
                       if b != pw.INPUT_BLOCK and design_mw["total"] else None,
                       "cells": blocks.count(b) if b != pw.INPUT_BLOCK else info["inputs"]}
                   for b, p in sorted(by_block.items())},
        "pins": res["pins"], "pins_annotated": res["pins_annotated"],
        "pins_annotated_share": round(res["pins_annotated"] / max(1, res["pins"]), 4),
        "seconds": {"simulation": round(sim_s, 1), "opensta": res["seconds"]},
    }
    if references:
        ops = reference_operands(streams.job, cfg)
        psum = 16 + max(1, math.ceil(math.log2(max(2, cfg.rows))))
        refs = {}
        for kind in ("bare_mac", "min_pe"):
            refs[kind] = reference(kind, ops, psum, folder / "references" / f"{kind}_{label}",
                                   clock_mhz, delays, say)
        per_mac = report["energy_pj"]["per_mac"]
        for r in refs.values():
            r["design_over_reference"] = round(per_mac / r["pj_per_mac"], 3) \
                if r["pj_per_mac"] else None
        report["references"] = refs
    report["seconds"]["total"] = round(time.monotonic() - t_start, 1)
    write_report(report, folder)
    return report


def _icarus_version() -> str:
    try:
        proc = subprocess.run([icarus_bin(), "-V"], capture_output=True, text=True,
                              stdin=subprocess.DEVNULL)
        return (proc.stdout.splitlines() or [""])[0].strip()
    except OSError:
        return ""


# -- report -----------------------------------------------------------------------------------

def markdown(r: dict[str, Any]) -> str:
    """The report as Markdown."""
    e = r["energy_pj"]
    lines = [f"# Power: {r['name']}, {r['job']}", ""]
    if r.get("command"):
        lines += [f"`{r['command']}`", ""]
    lines += [
             f"{r['config']['rows']}x{r['config']['cols']} {r['config']['dataflow']}, "
             f"OSU 0.18 µm typical corner (1.8 V, 25 °C), {r['clock_mhz']:g} MHz, "
             + ("cell delays (glitches counted)" if r["delays"] else "zero-delay simulation")
             + f"; job {r['m']}x{r['k']}x{r['n']} (M x K x N), {r['macs']:,} MACs in "
               f"{r['cycles']:,.0f} cycles (utilization {100 * (r['utilization'] or 0):.1f} %); "
               f"{100 * r['pins_annotated_share']:.1f} % of the cell pins annotated from the "
               f"simulation.", "",
             "| figure | value |", "|---|---|",
             f"| power (design) | {r['power_mw']['total']:.3f} mW |",
             f"| power without memories | {r['power_without_memories_mw']['total']:.3f} mW |",
             f"| energy per job | {e['job']:,.1f} pJ ({e['memories']:,.1f} pJ memories) |",
             f"| energy per useful MAC (memories excluded) | {e['per_mac']:.3f} pJ |",
             f"| energy per MAC with memories | {e['per_mac_with_memories']:.3f} pJ |",
             f"| energy per array slot (memories excluded) | {e['per_slot']:.3f} pJ |",
             f"| the array block's energy per useful MAC | {e['per_mac_array']:.3f} pJ |"]
    if r.get("tokens"):
        lines.append(f"| energy per token ({r['tokens']} tokens) | {e['per_token']:,.1f} pJ "
                     f"({e['per_token_without_memories']:,.1f} pJ without memories) |")
        if e.get("per_token_full_projection_estimate"):
            lines.append(f"| the whole projection (384 x 384) per token, at this slice's "
                         f"energy per MAC | {e['per_token_full_projection_estimate']:,.0f} pJ "
                         f"(estimate) |")
    lines.append(f"| OpenSTA's default activity (0.1), for comparison | "
                 f"{r['opensta_default_activity_mw']['total']:.3f} mW |")
    lines += ["", "| block | cells | internal mW | switching mW | leakage mW | total mW | "
                  "energy pJ | share |", "|---|---|---|---|---|---|---|---|"]
    for b, v in r["blocks"].items():
        p = v["power_mw"]
        share = f"{100 * v['share']:.1f} %" if v["share"] is not None else "(wrapper)"
        lines.append(f"| {b} | {v['cells']:,} | {p['internal']:.4f} | {p['switching']:.4f} | "
                     f"{p['leakage']:.6f} | {p['total']:.4f} | {v['energy_pj']:,.1f} | {share} |")
    if r.get("references"):
        lines += ["", "| reference (same operands and clock) | cells | pJ/MAC | design/reference |",
                  "|---|---|---|---|"]
        for kind, v in r["references"].items():
            lines.append(f"| {kind} ({v['psum_width']}-bit sum) | {v['cells']} | "
                         f"{v['pj_per_mac']:.4f} | {v['design_over_reference']:.2f}x |")
    lines += ["", "`inputs` is the wrapper registering the design's inputs for the simulation; "
                  "it is not part of the design's figures.", ""]
    return "\n".join(lines)


def write_report(r: dict[str, Any], folder: Path) -> tuple[Path, Path]:
    """Write ``<folder>/<label>.json`` and ``.md``."""
    folder.mkdir(parents=True, exist_ok=True)
    j = folder / f"{r['label']}.json"
    md = folder / f"{r['label']}.md"
    with atomic_open(j, "w") as f:
        f.write(json.dumps(r, indent=1, sort_keys=True) + "\n")
    with atomic_open(md, "w") as f:
        f.write(markdown(r))
    return j, md

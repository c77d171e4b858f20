"""Area per MAC and Fmax of generated arrays against N bare registered int8 MACs.

For each size (default 4x4, 8x8, 16x16) and target (default ecp5 and asic) this runs
``npugen.hw.synth.area`` on the design and synthesizes one registered int8 MAC
(``y <= c + a * b``, operands and sum as wide as a PE's) the same way, then prints

- area per MAC: LUT, FF, DSP (ecp5) or µm² (asic), memories excluded and reported on their own;
- the overhead of skew, control and requantization: (design without memories - N x MAC) / (N x MAC);
- Fmax: nextpnr's (ecp5, with place-and-route) or OpenSTA's register-to-register (asic);
- after each target's table, the Fmax of the bare MAC with registered inputs, in one cycle and
  with its product registered (as the PE), by the same tools: the ceiling of this flow.

Usage::

    .venv/bin/python benchmarks/bench_area.py [--sizes 4,8,16] [--targets ecp5,asic]
        [--flat-max 8] [--pnr-max 8] [--estimate] [--k-max K] [--acc-depth D] [--res-depth D]
        [--out build/bench_area] [--reuse] [--error]

``--error`` prints instead the hierarchical estimate's error against the flat run for each size
and target (flat and estimate only, no place-and-route or timing).

Sizes above ``--flat-max`` (and every size with ``--estimate``) use the hierarchical estimate
only: no flat run, so no Fmax (a flat 16 x 16 takes long; on ECP5 it also needs more
multipliers than the largest device has, so the flow would synthesize it once per device).
Rows from the estimate say so. Figures are printed, never asserted.

The bare MAC is synthesized twice on ECP5, multiplier in a MULT18X18D and in LUTs, and the
reference is as many of each as the array's PEs got under the device's DSP budget.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


from npugen.hw.config import GemmConfig  # noqa: E402
from npugen.hw.synth import area, tool_versions  # noqa: E402
from npugen.hw.synth import flow  # noqa: E402
from npugen.sim.design import build_npu  # noqa: E402

MAC_V = """// one registered int8 MAC, as wide as a PE of an R-row array
module bare_mac(input clk, input signed [7:0] a, input signed [7:0] b,
                input signed [{w1}:0] c, output reg signed [{w1}:0] y);
  always @(posedge clk) y <= c + a * b;
endmodule
"""


#: The minimal systolic PE (the lean-datapath reference, hw/synth/flow.py): an active and a
#: shadow int8 weight register, the activation register passed right, and the registered
#: partial sum of the row's width; the multiply-add in one cycle, no product register.
MIN_PE_V = flow.MIN_PE_V


def min_pe(target: str, psum_width: int, work: Path, dsp: bool = True,
           clock_mhz: float = 200.0) -> dict:
    """Figures of one minimal systolic PE (:data:`MIN_PE_V`) for ``target``, flat, synthesized
    as :func:`bare_mac`."""
    return flow.synth_reference(work, MIN_PE_V.format(w1=psum_width - 1), "min_pe", target,
                                dsp=dsp, clock_mhz=clock_mhz)


def _pnr_fmax(p: dict) -> str:
    """The Fmax cell of a place-and-route record: routed, or nextpnr's after placement."""
    if not p:
        return "–"
    if not p.get("routed", True):
        return f"not routed in {p['minutes_limit']:g} min (placed: {p.get('placed_fmax_mhz')})"
    return str(p.get("fmax_mhz"))


def bare_mac(target: str, psum_width: int, work: Path, dsp: bool = True,
             clock_mhz: float = 200.0) -> dict:
    """Figures of one registered MAC for ``target``, flat.

    On ECP5 with the multiplier in LUTs (``dsp`` false) ABC9 maps it for a delay target of one
    clock period, as the hierarchical estimate maps a PE whose multiplier is in LUTs
    (hw/synth/flow.py): alone, the soft multiplier is its module's deepest path and ABC9 maps
    it for minimum depth (about 420 LUT4s), which no PE inside a design is."""
    return flow.synth_reference(work, MAC_V.format(w1=psum_width - 1), "bare_mac", target,
                                dsp=dsp, clock_mhz=clock_mhz)


#: One int8 MAC with registered inputs, so that its multiply-add is a register-to-register path:
#: ``one-cycle`` is the bare MAC above; ``product registered`` registers ``a * b`` first, as the
#: weight-stationary PE does (hw/pe.py).
MAC_FMAX_V = """module mac_fmax(input clk, input signed [7:0] a_i, input signed [7:0] b_i,
                input signed [{w1}:0] c_i, output reg signed [{w1}:0] y);
  reg signed [7:0] a, b;
  reg signed [{w1}:0] c, c2;
  reg signed [15:0] p;
  always @(posedge clk) begin
    a <= a_i; b <= b_i; c <= c_i;
{body}
  end
endmodule
"""
MAC_FMAX_BODY = {
    "one-cycle": "    y <= c + a * b;",
    "product registered": "    p <= a * b; c2 <= c; y <= c2 + p;",
}


def bare_mac_fmax(target: str, psum_width: int, work: Path, clock_mhz: float) -> dict:
    """Fmax (MHz) of one registered MAC per :data:`MAC_FMAX_BODY` variant, by the target's
    timing: nextpnr-ecp5 out of context on the LFE5U-12F, or OpenSTA register to register on
    the OSU 0.18 µm netlist (ABC buffered and sized for ``clock_mhz``)."""
    return {kind: flow.synth_reference(work / kind.replace(" ", "_"),
                                       MAC_FMAX_V.format(w1=psum_width - 1, body=body),
                                       "mac_fmax", target, clock_mhz=clock_mhz,
                                       timing=True)["fmax_mhz"]
            for kind, body in MAC_FMAX_BODY.items()}


def pes_in_luts(cfg: GemmConfig, r: dict, out: Path) -> int:
    """PE multipliers the DSP budget of report ``r`` left in LUTs."""
    blocks = flow.design_blocks(out / cfg.name)
    lut, _ = flow.dsp_plan("ecp5", cfg, blocks, r["dsp_budget"]["applied"])
    return sum(1 for m in lut if blocks.get(m) == "array")


def reused(out: Path, cfg: GemmConfig, target: str, est_only: bool, timed: bool) -> dict | None:
    """The report of an earlier run of the same design, target and tools, if it has what this
    row needs. The design folder is checked first: one generated by other generator sources
    is written afresh, its ``qor/`` with it, so a report of stale Verilog is never reused."""
    flow.design_folder(cfg, out, build_npu)
    path = out / cfg.name / "qor" / f"{target}.json"
    try:
        r = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if r.get("config_digest") != cfg.digest() or r.get("tools") != tool_versions(target):
        return None
    if not est_only and (r.get("flat") is None
                         or (timed and not (r.get("pnr") or r.get("sta")))
                         or not (r.get("pnr") or {}).get("routed", True)):
        return None
    if est_only:
        r["flat"], r["pnr"], r["sta"] = None, None, None
    r["reused"] = True
    return r


def error_table(args, sizes: list[int], targets: list[str], extra: dict, out: Path) -> int:
    """``--error``: the hierarchical estimate against the flat run, per size, target and headline
    figure (no place-and-route or timing)."""
    from npugen.hw.synth.report import HEADLINE, LABELS
    print("\n| array | target | device | figure | flat | estimate | error | flat s | estimate s |")
    print("|---|---|---|---|---|---|---|---|---|")
    for target in targets:
        for n in sizes:
            cfg = GemmConfig(name=f"err{n}", rows=n, cols=n, **extra)
            r = reused(out, cfg, target, False, False) if args.reuse else None
            try:
                r = r or area(cfg, target, out=out, pnr=False, top=build_npu,
                              command=f"bench_area --error {n}x{n} {target}")
            except Exception as e:          # noqa: BLE001 - a row says what failed
                print(f"| {n}x{n} | {target} | failed: {type(e).__name__}: {str(e)[:300]} |")
                sys.stdout.flush()
                continue
            dev = (r.get("device") or {}).get("name", "–")
            flat, est, err = r["flat"], r["estimate"], r["estimate_error"]
            for key in HEADLINE[target]:
                print(f"| {n}x{n} | {target} | {dev} | {LABELS.get(key, key)} | "
                      f"{flat[key]:,} | {est[key]:,} | {err[key]:+.2f} % | "
                      f"{flat['seconds']:.0f} | {est['seconds']:.0f} |")
            sys.stdout.flush()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,8,16", help="array sizes N (N x N) (default: %(default)s)")
    ap.add_argument("--targets", default="ecp5,asic", help="targets (default: %(default)s)")
    ap.add_argument("--flat-max", type=int, default=8,
                    help="largest N synthesized flat (default: %(default)s)")
    ap.add_argument("--pnr-max", type=int, default=8,
                    help="largest N placed and routed (ecp5) or timed (asic) (default: "
                         "%(default)s)")
    ap.add_argument("--estimate", action="store_true", help="hierarchical estimate only")
    ap.add_argument("--error", action="store_true",
                    help="print the hierarchical estimate's error against the flat run instead "
                         "(no place-and-route or timing)")
    ap.add_argument("--k-max", type=int, default=None, help="k_max (default: the config's)")
    ap.add_argument("--acc-depth", type=int, default=None, help="acc_depth (default: the config's)")
    ap.add_argument("--res-depth", type=int, default=None, help="res_depth (default: the config's)")
    ap.add_argument("--requant-lanes", type=int, default=None,
                    help="requant_lanes (default: the config's, ceil(N / 4))")
    ap.add_argument("--pe-product-reg", choices=("true", "false"), default=None,
                    help="pe_product_reg (default: the config's, true)")
    ap.add_argument("--pe-weight-reg", choices=("true", "false"), default=None,
                    help="pe_weight_reg (default: the config's, true)")
    ap.add_argument("--array-input-reg", choices=("true", "false"), default=None,
                    help="array_input_reg (default: the config's, true)")
    ap.add_argument("--dsp-primitive", choices=("none", "ecp5"), default=None,
                    help="dsp_primitive (default: the config's, none)")
    ap.add_argument("--out", default="build/bench_area", help="work folder (default: %(default)s)")
    ap.add_argument("--reuse", action="store_true",
                    help="reuse a report already in the work folder for the same design, "
                         "target and tool versions (and a flat run where one is wanted)")
    args = ap.parse_args()
    out = Path(args.out)
    sizes = [int(s) for s in args.sizes.split(",")]
    targets = args.targets.split(",")
    extra = {k: v for k, v in (("k_max", args.k_max), ("acc_depth", args.acc_depth),
                               ("res_depth", args.res_depth),
                               ("requant_lanes", args.requant_lanes),
                               ("pe_product_reg", None if args.pe_product_reg is None
                                else args.pe_product_reg == "true"),
                               ("pe_weight_reg", None if args.pe_weight_reg is None
                                else args.pe_weight_reg == "true"),
                               ("array_input_reg", None if args.array_input_reg is None
                                else args.array_input_reg == "true"),
                               ("dsp_primitive", args.dsp_primitive)) if v is not None}
    print("command: .venv/bin/python benchmarks/bench_area.py " + " ".join(sys.argv[1:]))
    print("config: " + ", ".join(f"{k} {v}" for k, v in
                                 GemmConfig(name="x", **extra).to_dict(resolved=True).items()
                                 if k not in ("name", "rows", "cols", "softmax")))
    if args.error:
        for target in targets:
            print(f"{target}: {json.dumps(tool_versions(target))}")
        return error_table(args, sizes, targets, extra, out)
    for target in targets:
        print(f"\n## {target}: {json.dumps(tool_versions(target))}\n")
        if target == "ecp5":
            print("| array | run | device | LUT/MAC | FF/MAC | DSP/MAC | bare MAC LUT/FF/DSP "
                  "(DSP; LUT mult.) | overhead LUT | overhead FF | array block LUT/FF per MAC | "
                  "requantizer LUT/FF/DSP | memories | Fmax MHz | critical path | s |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            print("| array | run | µm²/MAC | FF/MAC | bare MAC µm² / FF | overhead area | "
                  "overhead FF | minimal PE µm² / FF | overhead area | overhead FF | "
                  "array / requantizer / control µm² per MAC | array / requantizer / control "
                  "FF per MAC | memories µm² / FF | reg2reg Fmax MHz | critical path | s |")
            print("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            cfg = GemmConfig(name=f"bench{n}", rows=n, cols=n, **extra)
            est_only = args.estimate or n > args.flat_max
            t0 = time.monotonic()
            r = reused(out, cfg, target, est_only, n <= args.pnr_max) if args.reuse else None
            try:
                r = r or area(cfg, target, out=out, estimate_only=est_only, top=build_npu,
                              pnr=n <= args.pnr_max,
                              command=f"bench_area {n}x{n} {target}")
            except Exception as e:          # noqa: BLE001 - a row says what failed
                print(f"| {n}x{n} | failed: {type(e).__name__}: {str(e)[:300]} |")
                sys.stdout.flush()
                continue
            secs = r["seconds"] if r.get("reused") else time.monotonic() - t0
            run = "estimate" if est_only else "flat"
            fig = r["flat"] or r["estimate"]
            mem = r["estimate"]["blocks"].get("memories", {})
            arr = r["estimate"]["blocks"].get("array", {})      # PEs, skew and deskew
            rq = r["estimate"]["blocks"].get("requantizer", {})
            macs = n * n
            psum_width = (16384 * n).bit_length() + 1
            mac = bare_mac(target, psum_width, out / f"mac_{target}_{psum_width}")
            if target == "ecp5":
                soft = bare_mac(target, psum_width, out / f"mac_{target}_{psum_width}_lut",
                                dsp=False)
                n_lut = pes_in_luts(cfg, r, out)
                ref = {k: (macs - n_lut) * mac[k] + n_lut * soft[k] for k in ("luts", "ffs")}
                luts = fig["luts"] - mem.get("luts", 0)
                ffs = fig["ffs"] - mem.get("ffs", 0)
                ov_l = (luts - ref["luts"]) / max(1, ref["luts"])
                ov_f = (ffs - ref["ffs"]) / max(1, ref["ffs"])
                p = r.get("pnr") or {}
                cp = p.get("critical_path") or {}
                path = (f"{cp.get('from')} → {cp.get('to')} ({cp.get('delay_ns')} ns: "
                        f"{cp.get('logic_ns')} logic, {cp.get('routing_ns')} routing)"
                        if cp else "–")
                lut_note = f" ({n_lut} PE mult. in LUTs)" if n_lut else ""
                print(f"| {n}x{n} | {run} | {r['device']['name']} | {luts / macs:.1f} | "
                      f"{ffs / macs:.1f} | {fig['dsps'] / macs:.2f}{lut_note} | "
                      f"{mac['luts']}/{mac['ffs']}/{mac['dsps']}; "
                      f"{soft['luts']}/{soft['ffs']}/{soft['dsps']} | "
                      f"{100 * ov_l:+.0f} % | {100 * ov_f:+.0f} % | "
                      f"{arr.get('luts', 0) / macs:.1f}/{arr.get('ffs', 0) / macs:.1f} | "
                      f"{rq.get('luts', 0)}/{rq.get('ffs', 0)}/{rq.get('dsps', 0)} | "
                      f"{fig['brams']} DP16KD, "
                      f"{fig['lutram_cells']} DPR16X4 | {_pnr_fmax(p)} | "
                      f"{path} | {secs:.0f} |")
            else:
                a = fig["area_um2"] - mem.get("area_um2", 0)
                ffs = fig["ffs"] - mem.get("ffs", 0)
                ov = (a - macs * mac["area_um2"]) / (macs * mac["area_um2"])
                ov_f = (ffs - macs * mac["ffs"]) / (macs * mac["ffs"])
                pe = min_pe(target, psum_width, out / f"minpe_{target}_{psum_width}")
                ov_pe = (a - macs * pe["area_um2"]) / (macs * pe["area_um2"])
                ov_pe_f = (ffs - macs * pe["ffs"]) / (macs * pe["ffs"])
                blocks = r["estimate"]["blocks"]
                ctl = blocks.get("control", {})
                s = r.get("sta") or {}
                rr = s.get("reg2reg") or {}
                path = (f"{rr.get('from_register', rr.get('from'))} → "
                        f"{rr.get('to_register', rr.get('to'))} ({rr.get('arrival_ns')} ns)"
                        if rr else "–")
                print(f"| {n}x{n} | {run} | {a / macs:,.0f} | {ffs / macs:.1f} | "
                      f"{mac['area_um2']:,.0f} / {mac['ffs']} | {100 * ov:+.0f} % | "
                      f"{100 * ov_f:+.0f} % | {pe['area_um2']:,.0f} / {pe['ffs']} | "
                      f"{100 * ov_pe:+.0f} % | {100 * ov_pe_f:+.0f} % | "
                      f"{arr.get('area_um2', 0) / macs:,.0f} / {rq.get('area_um2', 0) / macs:,.0f}"
                      f" / {ctl.get('area_um2', 0) / macs:,.0f} | "
                      f"{arr.get('ffs', 0) / macs:.1f} / {rq.get('ffs', 0) / macs:.1f} / "
                      f"{ctl.get('ffs', 0) / macs:.1f} | "
                      f"{mem.get('area_um2', 0):,.0f} / "
                      f"{mem.get('ffs', 0):,} | {s.get('fmax_mhz', '–')} | {path} | {secs:.0f} |")
            sys.stdout.flush()
        if not args.estimate:
            psum_width = (16384 * max(sizes)).bit_length() + 1
            clock = GemmConfig(name="x", **extra).clock_mhz
            try:
                fm = bare_mac_fmax(target, psum_width, out / f"mac_fmax_{target}_{psum_width}",
                                   clock)
                print(f"\nBare MAC Fmax ({target}, {psum_width}-bit sum, registered inputs): "
                      + ", ".join(f"{k} {v} MHz" for k, v in fm.items()))
            except Exception as e:          # noqa: BLE001 - the line says what failed
                print(f"\nBare MAC Fmax ({target}): failed: {type(e).__name__}: {str(e)[:300]}")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

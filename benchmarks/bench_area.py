"""Area per MAC and Fmax of generated arrays against N bare registered int8 MACs.

For each size (default 4x4, 8x8, 16x16) and target (default ecp5 and asic) this runs
``hw.synth.area`` on the design and synthesizes one registered int8 MAC
(``y <= c + a * b``, operands and sum as wide as a PE's) the same way, then prints

- area per MAC: LUT, FF, DSP (ecp5) or µm² (asic), memories excluded and reported on their own;
- the overhead of skew, control and requantization: (design without memories - N x MAC) / (N x MAC);
- Fmax: nextpnr's (ecp5, with place-and-route) or OpenSTA's register-to-register (asic).

Usage::

    .venv/bin/python benchmarks/bench_area.py [--sizes 4,8,16] [--targets ecp5,asic]
        [--estimate] [--out build/bench_area]

``--estimate`` uses the hierarchical estimate only (minutes for 16x16; no Fmax). The flat
16 x 16 runs take long: run them on a machine of your own. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from hw.config import GemmConfig  # noqa: E402
from hw.synth import area, tool_versions  # noqa: E402
from hw.synth import flow, tools  # noqa: E402

MAC_V = """// one registered int8 MAC, as wide as a PE of an R-row array
module bare_mac(input clk, input signed [7:0] a, input signed [7:0] b,
                input signed [{w1}:0] c, output reg signed [{w1}:0] y);
  always @(posedge clk) y <= c + a * b;
endmodule
"""


def bare_mac(target: str, psum_width: int, work: Path) -> dict:
    """Figures of one registered MAC for ``target``, flat."""
    work.mkdir(parents=True, exist_ok=True)
    (work / "bare_mac.v").write_text(MAC_V.format(w1=psum_width - 1))
    if target == "asic":
        shutil.copyfile(tools.liberty_path(), work / tools.LIBERTY_NAME)
    script = ["read_verilog bare_mac.v", "hierarchy -top bare_mac", "proc"]
    script += flow._synth_cmd(target, "bare_mac", True, True)
    script += [flow._stat_cmd(target)]
    stat = flow._run_yosys(work, script, "mac")
    mod = next(v for k, v in stat["modules"].items() if "bare_mac" in k)
    cells = flow._cells(mod)
    return flow._summary(target, cells, area_um2=flow._num(mod.get("area")) or None)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="4,8,16", help="array sizes N (N x N) (default: %(default)s)")
    ap.add_argument("--targets", default="ecp5,asic", help="targets (default: %(default)s)")
    ap.add_argument("--estimate", action="store_true", help="hierarchical estimate only")
    ap.add_argument("--out", default="build/bench_area", help="work folder (default: %(default)s)")
    args = ap.parse_args()
    out = Path(args.out)
    sizes = [int(s) for s in args.sizes.split(",")]
    targets = args.targets.split(",")
    for target in targets:
        print(f"\n## {target}: {json.dumps(tool_versions(target))}")
        if target == "ecp5":
            print("| array | LUT/MAC | FF/MAC | DSP/MAC | bare MAC LUT/FF/DSP | overhead LUT | "
                  "overhead FF | memories | Fmax MHz | limited by | s |")
            print("|---|---|---|---|---|---|---|---|---|---|---|")
        else:
            print("| array | µm²/MAC | FF/MAC | bare MAC µm² | overhead area | memories µm² | "
                  "reg2reg Fmax MHz | limited by | s |")
            print("|---|---|---|---|---|---|---|---|---|")
        for n in sizes:
            cfg = GemmConfig(name=f"bench{n}", rows=n, cols=n)
            t0 = time.monotonic()
            r = area(cfg, target, out=out, estimate_only=args.estimate,
                     command=f"bench_area {n}x{n} {target}")
            secs = time.monotonic() - t0
            fig = r["flat"] or r["estimate"]
            mem = r["estimate"]["blocks"].get("memories", {})
            macs = n * n
            psum_width = (16384 * n).bit_length() + 1
            mac = bare_mac(target, psum_width, out / f"mac_{target}_{psum_width}")
            if target == "ecp5":
                luts = fig["luts"] - mem.get("luts", 0)
                ffs = fig["ffs"] - mem.get("ffs", 0)
                ov_l = (luts - macs * mac["luts"]) / max(1, macs * mac["luts"])
                ov_f = (ffs - macs * mac["ffs"]) / max(1, macs * mac["ffs"])
                p = r.get("pnr") or {}
                cp = p.get("critical_path") or {}
                print(f"| {n}x{n} | {luts / macs:.1f} | {ffs / macs:.1f} | "
                      f"{fig['dsps'] / macs:.2f} | {mac['luts']}/{mac['ffs']}/{mac['dsps']} | "
                      f"{100 * ov_l:+.0f} % | {100 * ov_f:+.0f} % | {fig['brams']} DP16KD, "
                      f"{fig['lutram_cells']} LUT-RAM | {p.get('fmax_mhz', '–')} | "
                      f"{cp.get('from', '–')} → {cp.get('to', '–')} | {secs:.0f} |")
            else:
                a = fig["area_um2"] - mem.get("area_um2", 0)
                ov = (a - macs * mac["area_um2"]) / (macs * mac["area_um2"])
                s = r.get("sta") or {}
                rr = s.get("reg2reg") or {}
                print(f"| {n}x{n} | {a / macs:,.0f} | {(fig['ffs'] - mem.get('ffs', 0)) / macs:.1f}"
                      f" | {mac['area_um2']:,.0f} | {100 * ov:+.0f} % | "
                      f"{mem.get('area_um2', 0):,.0f} | {s.get('fmax_mhz', '–')} | "
                      f"{rr.get('from', '–')} → {rr.get('to', '–')} | {secs:.0f} |")
            sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())

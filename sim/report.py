"""``npugen report``: one page per design, in Markdown and HTML, with a utilization plot.

:func:`write_report` writes ``<out>/<name>/report/report.md``, ``report.html`` and
``utilization.png``: the design's parameters, its ports (from ``<out>/<name>/manifest.json``
when ``npugen generate`` wrote it for this configuration, else from the top component's
signature), the QoR of every ``<out>/<name>/qor/<target>.json`` that ``npugen area`` wrote, and
the cycle-exact model (:mod:`npugen.sim.perfmodel`) over a grid of M, K and N, next to SCALE-Sim's
formula; with ``measure=True`` also a few jobs measured on the RTL (Verilator) against the model.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from typing import Any, Callable

from npugen.sim import perfmodel as pm

__all__ = ["write_report", "grid", "sweeps", "GRID_M", "GRID_K", "GRID_N"]

#: The grid of the cycle table: every (M, K) row against every N column.
GRID_M = (1, 16, 64, 256, 1024)
GRID_K = (16, 64, 256, 1024)
GRID_N = (16, 64, 256)
#: The sizes swept in the plot (powers of two).
SWEEP = tuple(2 ** i for i in range(0, 11))
#: The other two dimensions while one is swept, each clamped to the design's limit (K to k_max).
SWEEP_FIXED = 256


def grid(cfg, ms=GRID_M, ks=GRID_K, ns=GRID_N) -> list[dict[str, Any]]:
    """Modelled cycles and utilization of requantized jobs over ``ms`` × ``ks`` × ``ns``.

    Shapes with ``k > k_max`` are left out (the engine rejects them).

    Returns
    -------
    list of dict
        ``m``, ``k``, ``n``, ``cycles``, ``ideal``, ``utilization``, ``scalesim`` (SCALE-Sim's
        formula on the same array and dataflow).
    """
    out = []
    for m in ms:
        for k in ks:
            if k > cfg.k_max:
                continue
            for n in ns:
                c = pm.gemm_cycles(cfg, m, k, n)
                out.append(dict(m=m, k=k, n=n, cycles=c, ideal=pm.ideal_cycles(cfg, m, k, n),
                                utilization=pm.utilization(cfg, m, k, n, cycles=c),
                                scalesim=pm.scalesim_formula(cfg, m, k, n)))
    return out


def _ports(cfg, folder: Path, top) -> tuple[list[dict], str]:
    """Ports from the manifest when it describes this configuration, else from the top."""
    manifest = folder / "manifest.json"
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text())
            if data.get("config_digest") == cfg.digest():
                return data["ports"], f"`{manifest}`"
        except (ValueError, KeyError):
            pass
    from npugen.hw import emit
    if top is None:
        from npugen.hw.top import NpuTop as top
    component = top(cfg)
    try:
        ports = [p.as_dict() for p in emit._signature_ports(component)]
    finally:
        if hasattr(component, "_MustUse__silence"):
            component._MustUse__silence = True
    return ports, "the top component's signature (no manifest.json for this configuration: " \
                  "`npugen generate` writes one)"


def _qor(folder: Path) -> list[dict]:
    out = []
    for path in sorted((folder / "qor").glob("*.json")):
        try:
            r = json.loads(path.read_text())
        except ValueError:
            continue
        if isinstance(r, dict) and "target" in r and "estimate" in r:
            r["_path"] = path
            out.append(r)
    return out


_QOR_KEYS = ("nand2_eq", "area_um2", "luts", "ffs", "dsps", "brams", "cells", "memory_bits")


def _fmt(v) -> str:
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:,.1f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def sweeps(cfg) -> list[tuple[str, list[tuple[int, int, int, int]]]]:
    """The four panels of the utilization plot: a label and the swept ``(size, m, k, n)``.

    One panel sweeps M = K = N, the others one dimension with the other two fixed at
    :data:`SWEEP_FIXED`, clamped to what the design accepts (K at most ``k_max``), so every
    panel has points. Shapes with ``k > k_max`` are left out.
    """
    fm, fk, fn = SWEEP_FIXED, min(SWEEP_FIXED, cfg.k_max), SWEEP_FIXED

    def fixed(**dims):                  # "K = N = 256", or "K = 64, N = 256"
        values = set(dims.values())
        if len(values) == 1:
            return " = ".join(dims) + f" = {values.pop()}"
        return ", ".join(f"{d} = {v}" for d, v in dims.items())

    panels = [("M = K = N", lambda s: (s, s, s)),
              (f"M ({fixed(K=fk, N=fn)})", lambda s: (s, fk, fn)),
              (f"K ({fixed(M=fm, N=fn)})", lambda s: (fm, s, fn)),
              (f"N ({fixed(M=fm, K=fk)})", lambda s: (fm, fk, s))]
    return [(label, [(s, *shape(s)) for s in SWEEP if shape(s)[1] <= cfg.k_max])
            for label, shape in panels]


def _plot(cfg, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), sharey=True)
    for ax, (label, points) in zip(axes.flat, sweeps(cfg)):
        xs, ours, ss = [], [], []
        for s, m, k, n in points:
            ideal = pm.ideal_cycles(cfg, m, k, n)
            xs.append(s)
            ours.append(100 * ideal / pm.gemm_cycles(cfg, m, k, n))
            ss.append(100 * ideal / pm.scalesim_formula(cfg, m, k, n))
        ax.plot(xs, ours, "o-", label="npugen (cycle-exact model)")
        ax.plot(xs, ss, "s--", label="SCALE-Sim formula", alpha=0.7)
        ax.set_xscale("log", base=2)
        ax.set_xlabel(label)
        ax.set_ylim(0, 105)
        ax.grid(True, alpha=0.3)
    for ax in axes[:, 0]:
        ax.set_ylabel("MAC utilization, %")
    axes[0, 0].legend(loc="lower right", fontsize=8)
    fig.suptitle(f"{cfg.name}: {cfg.rows}×{cfg.cols} {cfg.dataflow}, requantized GEMM jobs, "
                 f"streams always valid")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _measure(cfg, build_dir) -> list[dict]:
    """A few requantized jobs on Verilator: measured status cycles against the model."""
    import numpy as np

    from npugen.sim import run
    R, C = cfg.rows, cfg.cols
    shapes = [(1, 1, 1), (R, R, C), (3 * R + 1, 2 * R + 1, 2 * C + 1), (64, 64, 64)]
    shapes = [s for s in shapes if s[1] <= cfg.k_max]
    rng = np.random.default_rng(0)
    jobs = [dict(a=rng.integers(-128, 128, (m, k), dtype=np.int8),
                 b=rng.integers(-128, 128, (k, n), dtype=np.int8),
                 multiplier=np.full(n, 1 << 30), shift=np.full(n, -8)) for m, k, n in shapes]
    out = run.gemm_many(jobs, config=cfg, build_dir=build_dir)
    return [dict(m=m, k=k, n=n, measured=st["cycles"], model=st["model_cycles"])
            for (m, k, n), (_, st) in zip(shapes, out)]


# -- the page, as blocks rendered to Markdown and to HTML ----------------------------------------

def _blocks(cfg, folder: Path, top, measured) -> list[tuple]:
    R, C = cfg.rows, cfg.cols
    b: list[tuple] = [("h1", f"{cfg.name}: design report")]
    b.append(("p", f"{R} × {C} {cfg.dataflow} int8 GEMM engine, `k_max` {cfg.k_max}, "
                   f"{R * C} MACs per cycle at peak, "
                   f"{R * C * cfg.clock_mhz / 1000:g} GMAC/s at {cfg.clock_mhz:g} MHz. "
                   "Written by `npugen report`."))
    from npugen.hw.emit import parameter_rows
    params = [(f"`{key}`", shown) for key, shown in parameter_rows(cfg)]   # as generate's report
    b += [("h2", "Parameters"), ("table", ("parameter", "value"), params)]

    ports, source = _ports(cfg, folder, top)
    b += [("h2", "Ports"), ("p", f"From {source}; beat formats in docs/isa.md."),
          ("table", ("port", "direction", "width"),
           [(f"`{p['name']}`", p["direction"], str(p["width"])) for p in ports])]

    b.append(("h2", "Quality of results"))
    qor = _qor(folder)
    if not qor:
        b.append(("p", f"No QoR computed yet: `npugen area --estimate` (add `--config FILE` "
                       f"for a design other than the default, `--target T` for a target other "
                       f"than generic) writes `{folder / 'qor'}/<target>.json`."))
    for r in qor:
        fig = r.get("flat") or r["estimate"]
        kind = "flat synthesis" if r.get("flat") else "hierarchical estimate"
        rows = [(k, _fmt(fig.get(k))) for k in _QOR_KEYS if fig.get(k) is not None]
        if r.get("pnr") and not r["pnr"].get("routed", True):
            rows.append((f"Fmax, MHz (not routed in {r['pnr']['minutes_limit']:g} min; "
                         f"after placement)", _fmt(r["pnr"].get("placed_fmax_mhz"))))
        elif r.get("pnr"):
            rows.append(("Fmax, MHz (place and route)", _fmt(r["pnr"].get("fmax_mhz"))))
        if r.get("sta") and r["sta"].get("fmax_mhz"):
            rows.append(("Fmax, MHz (OpenSTA)", _fmt(r["sta"]["fmax_mhz"])))
        if r.get("device"):
            rows.append(("device", r["device"].get("name", "–")))
        b += [("h3", f"Target `{r['target']}` ({kind})"),
              ("p", f"From `{r['_path']}`."), ("table", ("figure", "value"), rows)]

    lat = pm.latencies(cfg)
    b += [("h2", "Performance"),
          ("p", "Cycles are the status beat's `cycles` of one requantized job (command accepted "
                "to status offered) with both input streams always valid and the result "
                "consumer always ready, from the cycle-exact model `npugen.sim.perfmodel.gemm_cycles` "
                "(docs/perf.md), which tests/test_perfmodel.py holds equal to the RTL. "
                "Utilization = M·K·N / (cycles · rows · cols). SCALE-Sim's formula "
                "(same array and dataflow, folds never overlapped) is given for comparison. "
                f"Pipeline: array {lat['array']} cycles, result beat {lat['result']} cycles "
                f"after a row enters (requantizer {lat['requant']}).")]
    if measured:
        b += [("h3", "Model against the RTL (Verilator)"),
              ("table", ("M×K×N", "measured", "model", "equal"),
               [(f"{r['m']}×{r['k']}×{r['n']}", f"{r['measured']:,}", f"{r['model']:,}",
                 "yes" if r["measured"] == r["model"] else "NO") for r in measured])]
    g = grid(cfg)
    b.append(("h3", "Modelled cycles over M, K, N"))
    head = ("M", "K") + tuple(f"N = {n}: cycles (util.)" for n in GRID_N)
    rows = []
    by = {(r["m"], r["k"], r["n"]): r for r in g}
    for m in GRID_M:
        for k in GRID_K:
            if k > cfg.k_max:
                continue
            rows.append((str(m), str(k)) + tuple(
                f"{by[m, k, n]['cycles']:,} ({100 * by[m, k, n]['utilization']:.1f} %)"
                for n in GRID_N))
    b.append(("table", head, rows))
    b += [("h3", "Utilization"), ("img", "utilization.png",
                                  f"MAC utilization of {cfg.name} over M, K and N")]
    return b


def _html_inline(text: str) -> str:
    parts = re.split(r"(`[^`]*`)", text)
    return "".join(f"<code>{html.escape(p[1:-1])}</code>" if p.startswith("`") and
                   p.endswith("`") and len(p) > 1 else html.escape(p) for p in parts)


def _markdown(blocks) -> str:
    out = []
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out += ["#" * int(kind[1]) + " " + blk[1], ""]
        elif kind == "p":
            out += [blk[1], ""]
        elif kind == "table":
            head, rows = blk[1], blk[2]
            out.append("| " + " | ".join(head) + " |")
            out.append("|" + "---|" * len(head))
            out += ["| " + " | ".join(r) + " |" for r in rows]
            out.append("")
        elif kind == "img":
            out += [f"![{blk[2]}]({blk[1]})", ""]
    return "\n".join(out)


_CSS = ("body{font-family:sans-serif;max-width:60em;margin:2em auto;line-height:1.4}"
        "table{border-collapse:collapse;margin:0.5em 0}"
        "td,th{border:1px solid #bbb;padding:0.2em 0.6em;text-align:left}"
        "th{background:#eee}code{background:#f4f4f4;padding:0 0.2em}img{max-width:100%}")


def _html(blocks, title: str) -> str:
    out = ["<!DOCTYPE html>", "<html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>{html.escape(title)}</title><style>{_CSS}</style></head><body>"]
    for blk in blocks:
        kind = blk[0]
        if kind in ("h1", "h2", "h3"):
            out.append(f"<{kind}>{_html_inline(blk[1])}</{kind}>")
        elif kind == "p":
            out.append(f"<p>{_html_inline(blk[1])}</p>")
        elif kind == "table":
            out.append("<table><tr>" + "".join(f"<th>{_html_inline(h)}</th>" for h in blk[1])
                       + "</tr>")
            out += ["<tr>" + "".join(f"<td>{_html_inline(c)}</td>" for c in r) + "</tr>"
                    for r in blk[2]]
            out.append("</table>")
        elif kind == "img":
            out.append(f"<p><img src=\"{html.escape(blk[1])}\" alt=\"{html.escape(blk[2])}\"></p>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(cfg, out="build", *, top: Callable | None = None, measure: bool = False,
                 build_dir=None) -> list[Path]:
    """Write the design's report page.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The design.
    out : path-like
        Folder of design folders: the page goes to ``<out>/<name>/report/``, and the manifest
        and QoR are looked up in ``<out>/<name>/``.
    top : callable or None
        Builds the top component from ``cfg`` when there is no manifest (None:
        :class:`npugen.hw.top.NpuTop`); its signature gives the ports.
    measure : bool
        Also run a few jobs on the RTL (Verilator, :func:`npugen.sim.run.gemm_many`) and tabulate the
        measured cycles against the model.
    build_dir : path-like or None
        Build root of the RTL runs (default ``out``).

    Returns
    -------
    list of Path
        ``report.md``, ``report.html`` and ``utilization.png``.
    """
    folder = Path(out) / cfg.name
    rdir = folder / "report"
    rdir.mkdir(parents=True, exist_ok=True)
    measured = _measure(cfg, build_dir if build_dir is not None else out) if measure else None
    blocks = _blocks(cfg, folder, top, measured)
    png = rdir / "utilization.png"
    _plot(cfg, png)
    md = rdir / "report.md"
    md.write_text(_markdown(blocks), encoding="utf-8")
    page = rdir / "report.html"
    page.write_text(_html(blocks, f"{cfg.name}: design report"), encoding="utf-8")
    return [md, page, png]

"""Design-space sweeps: the hierarchical area estimate over a grid of configurations.

A grid (TOML, or flags of ``npugen sweep``) lists values of ``rows``, ``cols``, ``dataflow`` and
``k_max``; every combination is one design point, named ``sw_<rows>x<cols>_<dataflow>_k<k_max>``.
The points run in parallel (local processes, or a Dask cluster given its scheduler's address);
each result is cached under ``<out>/cache/`` by a key made of the design's digest, the hashes of
the generator's and the flow's sources, the target and the tool versions, so a repeated sweep
only synthesizes what changed. The sweep writes
``<out>/sweep.csv`` and ``<out>/pareto.png`` (area against peak throughput, the Pareto front
marked).

Grid file::

    target = "generic"          # any target of hw.synth.TARGETS
    rows = [2, 4, 8]
    cols = [2, 4, 8]
    dataflow = ["ws", "os"]
    k_max = [256]
    [base]                       # other configuration keys, the same for every point
    acc_depth = 64
    res_depth = 16
"""

from __future__ import annotations

import concurrent.futures as cf
import csv
import dataclasses
import hashlib
import itertools
import json
import os
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:                                   # pragma: no cover
    import tomli as tomllib

from ..config import ConfigError, GemmConfig, parse_toml
from ..errors import InputError
from ..files import atomic_open, write_atomic
from . import flow
from .flow import QOR_VERSION, TARGETS, area, tool_versions

__all__ = ["Grid", "load_grid", "sweep", "SweepResult", "AREA_KEY"]

#: The area figure of each target that the CSV's ``area`` column and the plot use.
AREA_KEY = {"generic": "nand2_eq", "asic": "area_um2", "ecp5": "luts", "ice40": "luts",
            "xilinx": "luts"}
_AREA_UNIT = {"generic": "NAND2 equivalents", "asic": "µm²", "ecp5": "LUT4s", "ice40": "LUT4s",
              "xilinx": "LUTs"}


@dataclasses.dataclass(frozen=True)
class Grid:
    """Values to sweep; every combination is a point. ``base`` holds the other keys."""

    rows: tuple[int, ...] = (2, 4)
    cols: tuple[int, ...] = (2, 4)
    dataflow: tuple[str, ...] = ("ws",)
    k_max: tuple[int, ...] = (256,)
    target: str = "generic"
    base: tuple[tuple[str, Any], ...] = (("acc_depth", 64), ("res_depth", 16))

    def __post_init__(self):
        if self.target not in TARGETS:
            raise InputError(f"target: {self.target!r} is not a target (choose from "
                             f"{', '.join(TARGETS)})")
        for key in ("rows", "cols", "dataflow", "k_max"):
            if not getattr(self, key):
                raise InputError(f"{key}: the grid needs at least one value")
        for cfg in self.configs():      # check every point before running any
            pass

    def override(self, **values) -> "Grid":
        """A copy with the given (non-None) values replaced."""
        clean = {k: (tuple(v) if isinstance(v, list) else v) for k, v in values.items()
                 if v is not None}
        return dataclasses.replace(self, **clean)

    def configs(self) -> list[GemmConfig]:
        """The configuration of each point, in grid order."""
        out = []
        for r, c, df, k in itertools.product(self.rows, self.cols, self.dataflow, self.k_max):
            data = dict(self.base)
            data.update(name=f"sw_{r}x{c}_{df}_k{k}", rows=r, cols=c, dataflow=df, k_max=k)
            if "res_depth" in data:
                data["res_depth"] = max(int(data["res_depth"]), r)
            try:
                out.append(GemmConfig.from_dict(data, source="grid"))
            except ConfigError as e:
                raise InputError(f"grid point {data['name']}: {e}") from None
        return out


def load_grid(path: str | os.PathLike[str]) -> Grid:
    """Read a grid TOML file (see the module's documentation).

    Raises
    ------
    ValueError
        For a file that is not TOML, an unknown key or a bad value.
    OSError
        For a file that cannot be read.
    """
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise InputError(f"{path}: invalid TOML: {e}") from None
    known = {"rows", "cols", "dataflow", "k_max", "target", "base"}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InputError(f"{path}: unknown key {unknown[0]} (allowed: {', '.join(sorted(known))})")
    kwargs: dict[str, Any] = {}
    for key in ("rows", "cols", "dataflow", "k_max"):
        if key in data:
            v = data[key]
            kwargs[key] = tuple(v if isinstance(v, list) else [v])
    if "target" in data:
        kwargs["target"] = data["target"]
    if "base" in data:
        if not isinstance(data["base"], dict):
            raise InputError(f"{path}: base must be a table")
        kwargs["base"] = tuple(sorted(data["base"].items()))
    try:
        return Grid(**kwargs)
    except ValueError as e:
        raise InputError(f"{path}: {e}") from None


def _cache_key(cfg: GemmConfig, target: str, versions: dict[str, str]) -> str:
    """The design's hash: its configuration digest, the generator's and the flow's sources
    (the same configuration gives other Verilog, or other figures, when they change), the
    target and the tool versions."""
    blob = json.dumps({"digest": cfg.digest(), "name": cfg.name, "target": target,
                       "generator": flow._GENERATOR_STAMP, "flow": flow._FLOW_STAMP,
                       "tools": versions, "qor": QOR_VERSION}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def run_point(config: str, target: str, out: str, top=None) -> dict[str, Any]:
    """One point: the hierarchical estimate of ``config`` (its TOML text, so it pickles for
    process pools and Dask workers) with the top builder ``top`` (a module-level function, so
    it pickles too; see :func:`npugen.hw.synth.area`)."""
    cfg = parse_toml(config, source="sweep point")
    return area(cfg, target, out=out, estimate_only=True, top=top,
                command=f"npugen sweep (point {cfg.name})")


@dataclasses.dataclass
class SweepResult:
    """Rows of the CSV, the files written, and how many points came from the cache."""

    rows: list[dict[str, Any]]
    csv: Path
    png: Path
    cached: int


def _row(cfg: GemmConfig, target: str, r: dict[str, Any], cached: bool) -> dict[str, Any]:
    est = r["estimate"]
    row = {"name": cfg.name, "rows": cfg.rows, "cols": cfg.cols, "dataflow": cfg.dataflow,
           "k_max": cfg.k_max, "target": target, "macs": r["macs"],
           "peak_gmacs": r["peak_gmacs"], "area": est.get(AREA_KEY[target]),
           "area_unit": _AREA_UNIT[target], "ffs": est.get("ffs"), "cells": est.get("cells")}
    for k in ("luts", "dsps", "brams", "nand2_eq", "memory_bits", "area_um2"):
        if k in est:
            row[k] = est[k]
    row["synth_seconds"] = est.get("seconds")
    row["cached"] = cached
    return row


def _pareto(rows: list[dict[str, Any]]) -> None:
    """Mark the points that no other point beats in both area (lower) and throughput (higher)."""
    for a in rows:
        a["pareto"] = not any(
            b is not a and b["area"] is not None and a["area"] is not None
            and b["area"] <= a["area"] and b["peak_gmacs"] >= a["peak_gmacs"]
            and (b["area"] < a["area"] or b["peak_gmacs"] > a["peak_gmacs"]) for b in rows)


def _plot(rows: list[dict[str, Any]], target: str, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    for df, marker in (("ws", "o"), ("os", "s")):
        pts = [r for r in rows if r["dataflow"] == df and r["area"] is not None]
        if pts:
            ax.scatter([r["area"] for r in pts], [r["peak_gmacs"] for r in pts], marker=marker,
                       label=df, alpha=0.8)
            for r in pts:
                ax.annotate(f"{r['rows']}x{r['cols']} k{r['k_max']}", (r["area"], r["peak_gmacs"]),
                            fontsize=7, xytext=(3, 3), textcoords="offset points")
    front = sorted((r for r in rows if r.get("pareto") and r["area"] is not None),
                   key=lambda r: r["area"])
    if front:
        ax.step([r["area"] for r in front], [r["peak_gmacs"] for r in front], where="post",
                color="gray", linestyle="--", label="Pareto front")
    ax.set_xlabel(f"area ({_AREA_UNIT[target]}, hierarchical estimate, target {target})")
    ax.set_ylabel("peak throughput (GMAC/s at clock_mhz)")
    ax.set_title("npugen sweep: area against peak throughput")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    with atomic_open(path, "wb") as f:
        fig.savefig(f, format="png")
    plt.close(fig)


def _progress(enabled: bool, total: int):
    if not enabled:
        return None
    from rich.progress import (BarColumn, MofNCompleteColumn, Progress, TextColumn,
                               TimeElapsedColumn)
    return Progress(TextColumn("sweep"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    transient=False)


def sweep(grid: Grid, *, out: str | os.PathLike[str] = "build/sweep", jobs: int | None = None,
          scheduler: str | None = None, progress: bool = True, top=None) -> SweepResult:
    """Run the hierarchical estimate on every point of ``grid``.

    Parameters
    ----------
    grid : Grid
    out : path-like
        Folder for the points' designs (``designs/``), the cache (``cache/``), ``sweep.csv``
        and ``pareto.png``.
    jobs : int or None
        Local worker processes; None for the number of cores.
    scheduler : str or None
        Address of a Dask scheduler (``tcp://host:8786``); the points then run on its workers,
        which must share ``out`` with this machine and have npugen installed.
    progress : bool
        Show a progress bar.
    top : callable or None
        The top builder each point's design is generated with (:func:`npugen.hw.synth.area`);
        a module-level function, as it is pickled for the workers.

    Returns
    -------
    SweepResult

    Raises
    ------
    hw.tools.ToolNotFound
        If Dask is asked for and not installed (one line naming the package), or Yosys is missing.
    """
    out = Path(out)
    (out / "cache").mkdir(parents=True, exist_ok=True)
    designs = out / "designs"
    versions = tool_versions(grid.target)
    configs = grid.configs()
    results: dict[str, tuple[dict, bool]] = {}
    todo = []
    for cfg in configs:
        key = _cache_key(cfg, grid.target, versions)
        cached = out / "cache" / f"{key}.json"
        if cached.is_file():
            results[cfg.name] = (json.loads(cached.read_text(encoding="utf-8")), True)
        else:
            todo.append((cfg, cached))
    bar = _progress(progress, len(configs))

    def done(cfg: GemmConfig, cached_path: Path, report: dict) -> None:
        write_atomic(cached_path, json.dumps(report, sort_keys=True))
        results[cfg.name] = (report, False)
        if bar and not bar.console.is_terminal:
            # Not a terminal (a log, CI): rich draws no live bar there, so one line per point.
            bar.console.print(f"sweep: {len(results)}/{len(configs)} {cfg.name}", highlight=False)

    args = [(cfg.to_toml(), grid.target, str(designs), top) for cfg, _ in todo]
    if bar:
        bar.start()
        task = bar.add_task("sweep", total=len(configs), completed=len(configs) - len(todo))
    try:
        if scheduler is not None and todo:
            try:
                from dask.distributed import Client, as_completed
            except ImportError:
                from ..tools import ToolNotFound
                raise ToolNotFound("Dask is not installed: pip install 'dask[distributed]'") \
                    from None
            with Client(scheduler) as client:
                futs = {client.submit(run_point, *a, pure=False): i for i, a in enumerate(args)}
                for fut in as_completed(futs):
                    cfg, path = todo[futs[fut]]
                    done(cfg, path, fut.result())
                    if bar:
                        bar.advance(task)
        elif todo:
            n = jobs or os.cpu_count() or 1
            with cf.ProcessPoolExecutor(max_workers=max(1, min(n, len(todo)))) as pool:
                futs = {pool.submit(run_point, *a): i for i, a in enumerate(args)}
                for fut in cf.as_completed(futs):
                    cfg, path = todo[futs[fut]]
                    done(cfg, path, fut.result())
                    if bar:
                        bar.advance(task)
    finally:
        if bar:
            bar.stop()
    rows = [_row(cfg, grid.target, *results[cfg.name]) for cfg in configs]
    _pareto(rows)
    csv_path, png_path = out / "sweep.csv", out / "pareto.png"
    fields: list[str] = []
    for r in rows:
        fields += [k for k in r if k not in fields]
    with atomic_open(csv_path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    _plot(rows, grid.target, png_path)
    return SweepResult(rows, csv_path, png_path, sum(1 for r in rows if r["cached"]))

"""hw.synth.sweep and `npugen sweep`: grid files, the cache, CSV and plot, a local Dask cluster."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
from pathlib import Path

import pytest

from npugen.hw.config import GemmConfig
from npugen.hw.synth import sweep as sw

ROOT = Path(__file__).resolve().parent.parent

#: Two tiny points, so the sweep tests stay quick.
GRID = sw.Grid(rows=(1, 2), cols=(2,), dataflow=("ws",), k_max=(16,),
               base=(("acc_depth", 4), ("res_depth", 4)))


def npugen(*args: str):
    env = dict(os.environ)
    return subprocess.run([sys.executable, "-m", "npugen.sim.cli", *args], env=env, capture_output=True,
                          text=True, stdin=subprocess.DEVNULL)


def test_grid_points():
    cfgs = GRID.configs()
    assert [c.name for c in cfgs] == ["sw_1x2_ws_k16", "sw_2x2_ws_k16"]
    assert all(c.acc_depth == 4 for c in cfgs)


def test_grid_file(tmp_path):
    f = tmp_path / "g.toml"
    f.write_text('target = "generic"\nrows = [2, 4]\ncols = 2\ndataflow = ["os"]\n'
                 'k_max = [64]\n[base]\nacc_depth = 8\n')
    g = sw.load_grid(f)
    assert g.rows == (2, 4) and g.cols == (2,) and g.dataflow == ("os",)
    assert [c.name for c in g.configs()] == ["sw_2x2_os_k64", "sw_4x2_os_k64"]


@pytest.mark.parametrize("text, match", [
    ("rows = [2]\nbogus = 1\n", "unknown key bogus"),
    ('target = "vhdl"\n', "'vhdl' is not a target"),
    ("rows = [0]\n", "rows: 0 is not allowed"),
    ("rows = [\n", "invalid TOML"),
])
def test_grid_file_errors(tmp_path, text, match):
    f = tmp_path / "g.toml"
    f.write_text(text)
    with pytest.raises(ValueError, match=match):
        sw.load_grid(f)


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep")
    return out, sw.sweep(GRID, out=out, jobs=2, progress=False)


def test_sweep_writes_csv_and_plot(swept):
    out, res = swept
    assert res.cached == 0
    with open(res.csv, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["name"] for r in rows] == ["sw_1x2_ws_k16", "sw_2x2_ws_k16"]
    for r in rows:
        assert float(r["area"]) > 0 and r["area_unit"] == "NAND2 equivalents"
        # R·C MACs a cycle at the configuration's clock (the default clock_mhz: no grid key)
        assert float(r["peak_gmacs"]) == pytest.approx(int(r["macs"]) * GemmConfig().clock_mhz
                                                       / 1000)
    # The larger array has more throughput and more area: both are on the Pareto front.
    assert [r["pareto"] for r in rows] == ["True", "True"]
    assert res.png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_sweep_cache(swept):
    out, first = swept
    again = sw.sweep(GRID, out=out, jobs=1, progress=False)
    assert again.cached == 2
    assert [r["area"] for r in again.rows] == [r["area"] for r in first.rows]


def test_progress_is_one_line_per_point_off_a_terminal(swept, tmp_path, capsys):
    """Not on a terminal (CI, a log file) rich draws no live bar: each finished point prints
    a line, so a long sweep is visibly alive."""
    import json
    import shutil
    out, _ = swept
    again = tmp_path / "sweep"
    shutil.copytree(out, again)
    caches = sorted((again / "cache").glob("*.json"))
    names = {json.loads(p.read_text())["config"]["name"]: p for p in caches}
    names["sw_1x2_ws_k16"].unlink()                      # that point runs again
    res = sw.sweep(GRID, out=again, jobs=1, progress=True)
    assert res.cached == 1
    lines = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("sweep: ")]
    assert lines == ["sweep: 2/2 sw_1x2_ws_k16"]


def test_cache_key_follows_generator_and_flow_sources(monkeypatch):
    """A change to the RTL generator or to the synthesis scripts keeps the configuration
    digest but changes the figures: the cache must not serve the old ones."""
    cfg = GRID.configs()[0]
    versions = {"yosys": "x"}
    key = sw._cache_key(cfg, "generic", versions)
    assert sw._cache_key(cfg, "generic", versions) == key
    monkeypatch.setattr(sw.flow, "_GENERATOR_STAMP", "other generator sources")
    assert sw._cache_key(cfg, "generic", versions) != key
    monkeypatch.undo()
    monkeypatch.setattr(sw.flow, "_FLOW_STAMP", "other flow sources")
    assert sw._cache_key(cfg, "generic", versions) != key


def test_sweep_on_local_dask_cluster(swept, tmp_path):
    distributed = pytest.importorskip("dask.distributed")
    out, first = swept
    with distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        res = sw.sweep(sw.Grid(rows=(1,), cols=(2,), dataflow=("ws",), k_max=(16,),
                               base=GRID.base), out=tmp_path, scheduler=cluster.scheduler_address,
                       progress=False)
    assert res.cached == 0
    assert res.rows[0]["area"] == first.rows[0]["area"]


def test_cli_sweep(swept, tmp_path):
    """The same grid from a file, flags overriding it: every point comes from the cache."""
    out, _ = swept
    f = tmp_path / "g.toml"
    f.write_text("rows = [8]\ncols = [2]\nk_max = [16]\n[base]\nacc_depth = 4\nres_depth = 4\n")
    proc = npugen("sweep", "--grid", str(f), "--rows", "1,2", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == "2 points (2 from the cache)"
    assert (out / "sweep.csv").is_file() and (out / "pareto.png").is_file()


def test_cli_sweep_bad_list(tmp_path):
    proc = npugen("sweep", "--rows", "two", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "not a comma-separated list of integers" in proc.stderr


def test_cli_sweep_bad_target(tmp_path):
    proc = npugen("sweep", "--target", "vhdl", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "'vhdl' is not a target" in proc.stderr

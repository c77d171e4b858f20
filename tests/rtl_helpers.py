"""Shared helpers of the cocotb regressions (tests/test_*_rtl.py): the build root, simulator
availability, per-test seeds and one bench run that fails the test with its seed and a replay
hint."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import zlib
from pathlib import Path

import pytest

from npugen.sim import runner

__all__ = ["BUILD", "WORK", "need_sim", "seed_for", "run_bench", "covering_params"]


def _work() -> Path:
    """``$NPUGEN_TEST_BUILD``, else ``<system temp>/npugen-tests-<uid>/<checkout hash>``."""
    env = os.environ.get("NPUGEN_TEST_BUILD")
    if env:
        return Path(env).resolve()
    checkout = Path(__file__).resolve().parents[1]
    key = hashlib.sha256(str(checkout).encode()).hexdigest()[:12]
    return Path(tempfile.gettempdir()) / f"npugen-tests-{os.getuid()}" / key


#: Working folder of the tests that run a command as a user does (its ``./build`` is
#: :data:`BUILD`), outside the source tree.
WORK = _work()

#: Build root of every simulator build the tests make (``build_dir`` of :mod:`npugen.sim.runner` and
#: :mod:`npugen.sim.run`), outside the source tree: one cache shared by all pytest-xdist workers and kept
#: between runs, one per checkout (two checkouts' generators differ). The runner's file lock per
#: design (``fcntl.flock`` on ``_sim/<digest>/.lock``) builds each design once, whichever worker
#: asks first; the others wait and reuse it. ``NPUGEN_TEST_BUILD`` chooses another folder.
BUILD = WORK / "build"


def need_sim(sim: str) -> None:
    """Skip (with the Debian package to install) when ``sim`` is Icarus and it is missing."""
    if sim == "icarus" and shutil.which("iverilog") is None:
        pytest.skip("Icarus Verilog is not installed (Debian package: iverilog)")


def covering_params(pairs, covering) -> list:
    """``pairs`` (tuples of parameters) for ``pytest.mark.parametrize``, those in ``covering``
    marked ``covering``: a ``full`` test's parameters that run without ``--full`` too
    (tests/conftest.py)."""
    return [pytest.param(*p, marks=pytest.mark.covering) if p in covering else p for p in pairs]


def seed_for(label: str) -> int:
    """``NPUGEN_SEED`` if set, else a fixed seed per test (reproducible CI)."""
    env = os.environ.get("NPUGEN_SEED")
    return int(env) if env else zlib.crc32(label.encode()) & 0x7FFFFFFF


def run_bench(cfg, sim: str, *, build_dir, top: str = "npu", bench: str | None = None,
              testcase=None, full: bool = False, label: str = "", waves: bool = False):
    """Run a cocotb bench of ``cfg``'s ``top`` on ``sim`` (:func:`npugen.sim.runner.test`); fail the
    test with the design, seed, summary and replay line when it does not pass."""
    need_sim(sim)
    seed = seed_for(f"{cfg.name}-{sim}-{label}")
    run = runner.test(cfg, bench or runner.BENCH, sim=sim, testcase=testcase, seed=seed,
                      full=full, waves=waves, build_dir=build_dir, top=top)
    if not run.ok:
        name = cfg.name if top == "npu" else f"{cfg.name}_{top}"
        pytest.fail(f"{name} on {sim}, seed {seed}: {run.summary()}\n"
                    f"replay: NPUGEN_SEED={seed} pytest ...", pytrace=False)
    if not waves:
        shutil.rmtree(run.test_dir, ignore_errors=True)     # a failed run's folder is kept
    return run

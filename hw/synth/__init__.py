"""Area, Fmax and design-space sweeps of generated designs with open tools.

:func:`area` synthesizes one design for a target (``generic``, ``ecp5``, ``ice40``, ``xilinx``,
``asic``) with Yosys, places and routes it with nextpnr or times it with OpenSTA, and writes
``<out>/<name>/qor/<target>.json`` and ``.md``. :mod:`npugen.hw.synth.sweep` runs it over a grid.
``docs/area.md`` describes the flows and the report.
"""

from .flow import QOR_VERSION, TARGETS, NoDeviceFits, area, check_target, tool_versions
from .tools import SynthError

__all__ = ["area", "TARGETS", "NoDeviceFits", "SynthError", "QOR_VERSION", "check_target",
           "tool_versions"]

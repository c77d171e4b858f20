"""npugen: a generator of int8 neural-processing hardware, and its verification.

:mod:`npugen.hw` produces hardware (generator parameters, the Amaranth blocks, the emitted design
files, the synthesis flows); :mod:`npugen.sim` checks it (golden models, drivers, cocotb benches,
the cycle model) and holds the ``npugen`` command (:mod:`npugen.sim.cli`). ``hw`` never imports
``sim``.

This is a regular package (not a namespace package), so a folder named ``npugen`` in the working
directory, such as a clone of the repository, cannot shadow the installed one.
"""

from .hw import __version__

__all__ = ["__version__"]

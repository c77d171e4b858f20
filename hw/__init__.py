"""npugen hardware: generator parameters, the Amaranth blocks and the emitted design files.

Modules under :mod:`npugen.hw` never import :mod:`npugen.sim` (tests/test_layout.py checks); the
command-line front end, :mod:`npugen.sim.cli`, sits on the side that imports both.
"""

#: Version of npugen, its one definition: ``pyproject.toml`` reads it (``dynamic``), so
#: ``npugen --version`` and ``importlib.metadata.version("npugen")`` agree. It is written into
#: every generated manifest, so it is part of the output.
__version__ = "0.1.0"

"""npugen hardware: generator parameters, the Amaranth blocks and the emitted design files.

Blocks under :mod:`hw` never import :mod:`sim`; the command-line front end (:mod:`hw.cli`) is the
one module that joins the two.
"""

#: Version of npugen. It is written into every generated manifest, so it is part of the output.
__version__ = "0.1.0"

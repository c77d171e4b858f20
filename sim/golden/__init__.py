"""Integer golden models: the bit-exact references the generated hardware is checked against.

They implement docs/numerics.md (GEMM, requantization) and docs/osi8.md (the OSI8 softmax), and
import nothing from ``hw``. Every public name of :mod:`sim.golden.gemm` and
:mod:`sim.golden.softmax` is available here.
"""

from . import gemm, softmax
from .gemm import *  # noqa: F401,F403  (names listed in gemm.__all__)
from .softmax import *  # noqa: F401,F403  (names listed in softmax.__all__)

__all__ = [*gemm.__all__, *softmax.__all__]

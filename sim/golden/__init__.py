"""Integer golden models: the bit-exact references the generated hardware is checked against.

They implement docs/numerics.md (GEMM, requantization) and docs/osi8.md (the OSI8 softmax and
attention), and import nothing from ``hw``. Every public name of :mod:`npugen.sim.golden.gemm`,
:mod:`npugen.sim.golden.softmax` and :mod:`npugen.sim.golden.attention` is available here.
"""

from . import attention, gemm, softmax
from .attention import *  # noqa: F401,F403  (names listed in attention.__all__)
from .gemm import *  # noqa: F401,F403  (names listed in gemm.__all__)
from .softmax import *  # noqa: F401,F403  (names listed in softmax.__all__)

__all__ = [*gemm.__all__, *softmax.__all__, *attention.__all__]

"""Command and status formats of the npugen GEMM engine (format version 1).

This module is the single definition of the binary interface between a host and the generated
hardware. The hardware (:mod:`npugen.hw.gemm`) decodes commands with these field positions, the host
driver (:mod:`npugen.sim.driver`) encodes them, and :mod:`npugen.hw.emit` writes them into the C header. The
prose specification, with the stream orders, is ``docs/isa.md``.

All multi-bit fields are little-endian bit fields of one stream beat: field ``(lsb, width)``
occupies ``tdata[lsb + width - 1 : lsb]``. Signed fields are two's complement.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

__all__ = [
    "ISA_VERSION", "CMD_WIDTH", "STATUS_WIDTH", "PARAM_BEATS", "Field", "CMD_FIELDS",
    "ATT_CMD_FIELDS", "ATT_PARAM_BEATS", "ATT_LUT_BEATS", "ATT_PARAM_WIDTH", "STATUS_FIELDS",
    "Opcode", "Error", "pack", "unpack",
]

#: Format version carried in every command and status beat.
ISA_VERSION = 2

#: Width of one command beat on ``s_axis_cmd_tdata``, bits.
CMD_WIDTH = 128

#: Width of one status beat on ``m_axis_status_tdata``, bits.
STATUS_WIDTH = 64

#: Beats of the per-output-tile parameter block on the weight stream: 4 bias bytes,
#: 4 multiplier bytes and 1 shift byte per lane (see ``docs/isa.md``).
PARAM_BEATS = 9


@dataclass(frozen=True)
class Field:
    """One bit field of a beat.

    Parameters
    ----------
    lsb : int
        Position of the least significant bit in ``tdata``.
    width : int
        Width in bits.
    signed : bool
        Two's complement when true.
    """

    lsb: int
    width: int
    signed: bool = False

    @property
    def msb(self) -> int:
        """Position of the most significant bit."""
        return self.lsb + self.width - 1

    @property
    def min(self) -> int:
        """Smallest encodable value."""
        return -(1 << (self.width - 1)) if self.signed else 0

    @property
    def max(self) -> int:
        """Largest encodable value."""
        return (1 << (self.width - 1)) - 1 if self.signed else (1 << self.width) - 1


#: Fields of a command beat (128 bits). Bits not listed are reserved and must be zero.
CMD_FIELDS: dict[str, Field] = {
    "opcode":  Field(0, 8),     # Opcode
    "version": Field(8, 8),     # must equal ISA_VERSION
    "requant": Field(16, 1),    # 1: int8 output through the requantizer; 0: raw accumulators
    "acc_in":  Field(17, 1),    # 1: start from the accumulator held by the previous acc_out job
    "acc_out": Field(18, 1),    # 1: hold the result in the accumulator memory, emit no results
    "tag":     Field(24, 8),    # echoed in the status beat
    "m":       Field(32, 24),   # rows of A and C, >= 1
    "k":       Field(56, 24),   # columns of A = rows of B, 1 .. k_max
    "n":       Field(80, 24),   # columns of B and C, >= 1
    "zp_out":  Field(104, 8, signed=True),   # output zero point (requant jobs)
    "act_min": Field(112, 8, signed=True),   # fused clamp, low bound (requant jobs)
    "act_max": Field(120, 8, signed=True),   # fused clamp, high bound (requant jobs)
}

#: Fields of an attention command beat (opcode ``ATTENTION``, 128 bits; ``docs/attention.md``).
#: ``opcode``, ``version`` and ``tag`` sit where they sit in a GEMM command. Bits not listed are
#: reserved and must be zero.
ATT_CMD_FIELDS: dict[str, Field] = {
    "opcode":   Field(0, 8),
    "version":  Field(8, 8),
    "causal":   Field(16, 1),   # 1: query i attends key j only if j <= i (generated from positions)
    "load_lut": Field(17, 1),   # 1: the parameter block carries a new 256-entry LUT for `head`
    "tag":      Field(24, 8),
    "m":        Field(32, 24),  # queries (rows of Q and of the output), >= 1
    "n":        Field(56, 24),  # keys (rows of K and V), 1 .. N_max
    "head":     Field(80, 8),   # which head's LUT to use (and load), 0 .. heads - 1
    "zp_v":     Field(88, 8, signed=True),   # value zero point
    "zp_o":     Field(96, 8, signed=True),   # output zero point
}

#: Width of one beat of the attention parameter stream ``s_axis_param``, bits.
ATT_PARAM_WIDTH = 32

#: Beats of an attention job's parameter block before the optional LUT: score multiplier
#: ``M0_s``, score shift ``sh_s``, output multiplier ``M0_o``, output shift ``sh_o``.
ATT_PARAM_BEATS = 4

#: LUT beats that follow the parameter block when ``load_lut`` is set: ``E[0]`` ... ``E[255]``.
ATT_LUT_BEATS = 256

#: Fields of a status beat (64 bits). Bits not listed read as zero.
STATUS_FIELDS: dict[str, Field] = {
    "error":   Field(0, 8),     # Error
    "version": Field(8, 8),     # ISA_VERSION of the hardware
    "tag":     Field(16, 8),    # the command's tag
    "cycles":  Field(32, 32),   # aclk cycles from the command beat to this beat, saturating
}


class Opcode(IntEnum):
    """Command opcodes."""

    #: C = A·B + bias, optionally requantized to int8.
    GEMM = 0x01
    #: Fused OSI8 attention ``softmax(Q·Kᵀ)·V`` (the attention unit; ``docs/attention.md``).
    ATTENTION = 0x02


class Error(IntEnum):
    """Error codes of a status beat. A rejected command (codes 1 to 6) consumes no data beat."""

    OK = 0
    #: ``opcode`` is not an :class:`Opcode`.
    BAD_OPCODE = 1
    #: ``version`` is not :data:`ISA_VERSION`.
    BAD_VERSION = 2
    #: A reserved bit is set.
    BAD_RESERVED = 3
    #: ``m``, ``k`` or ``n`` is zero, or ``k`` exceeds the design's ``k_max``.
    BAD_SHAPE = 4
    #: A requant job with ``act_min`` > ``act_max``.
    BAD_CLAMP = 5
    #: ``acc_in``/``acc_out`` with ``m`` > ``acc_depth`` or ``n`` > ``cols``; ``acc_in`` when no
    #: accumulator is held (the previous job was not ``acc_out``, or it was a different shape);
    #: ``acc_out`` together with ``requant``.
    BAD_ACC = 6
    #: The job ran, but ``tlast`` on a data stream was not where the stream order puts it.
    #: The job consumed exactly the beats its shape implies; its results are not to be trusted.
    FRAME = 7
    #: An attention job whose parameter block holds a value out of range: ``M0_s`` not 0 and
    #: not in [2^30, 2^31), ``M0_o`` not in [2^30, 2^31), ``sh_s`` outside [-31, 30],
    #: ``31 + G - sh_o`` outside [1, 62], or bits 31:8 of a shift word not 0. The job ran like
    #: a ``FRAME`` job: it consumed its beats and its results are not to be trusted.
    BAD_PARAM = 8
    #: An attention command with ``load_lut`` = 0 for a head whose LUT is not loaded (never
    #: loaded since reset, or its last load ended in a ``FRAME`` error). Consumes no data beat.
    BAD_LUT = 9


def pack(fields: dict[str, Field], **values: int) -> int:
    """Pack field values into one beat.

    Parameters
    ----------
    fields : dict of str to Field
        :data:`CMD_FIELDS` or :data:`STATUS_FIELDS`.
    **values : int
        A value for any subset of the fields; the others are zero.

    Returns
    -------
    int
        The beat as a non-negative integer.

    Raises
    ------
    KeyError
        For a name that is not a field.
    ValueError
        For a value outside the field's range.
    """
    word = 0
    for name, value in values.items():
        f = fields[name]
        value = int(value)
        if not f.min <= value <= f.max:
            raise ValueError(f"{name} must be in [{f.min}, {f.max}], not {value!r}")
        word |= (value & ((1 << f.width) - 1)) << f.lsb
    return word


def unpack(fields: dict[str, Field], word: int) -> dict[str, int]:
    """Split one beat into its field values (signed fields sign-extended)."""
    out = {}
    for name, f in fields.items():
        v = (int(word) >> f.lsb) & ((1 << f.width) - 1)
        if f.signed and v >> (f.width - 1):
            v -= 1 << f.width
        out[name] = v
    return out


def reserved_mask(fields: dict[str, Field], width: int) -> int:
    """Mask of the bits of a ``width``-bit beat that no field covers."""
    used = 0
    for f in fields.values():
        used |= ((1 << f.width) - 1) << f.lsb
    return ((1 << width) - 1) & ~used

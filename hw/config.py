"""Validated generator parameters of an npugen design, read from and written to TOML.

A configuration is a :class:`GemmConfig`. It is immutable and checked when it is made, whether
from Python (``GemmConfig(rows=8)``, :func:`dataclasses.replace`) or from TOML
(:func:`parse_toml`, :func:`load_config`): a bad value, a wrong type, an unknown key or an unknown
section raises :class:`ConfigError`, whose message is one line naming the key, the value and what
is allowed. The keys are described in ``docs/config.md``.

The embedded default configuration is ``hw/default.toml`` (shipped inside the package);
``configs/default.toml`` is an identical copy for reading and editing.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import math
import numbers
import re
import sys
from dataclasses import dataclass
from importlib import resources
from os import PathLike
from typing import Any, Mapping

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

import tomli_w

from .errors import InputError, MissingSectionError

__all__ = ["ConfigError", "MissingSectionError", "Dataflow", "GemmConfig", "SoftmaxConfig", "AttentionConfig", "load_config",
           "parse_toml", "derived_acc_width"]


#: Largest magnitude of one int8 x int8 product: (-128) * (-128).
_MAX_PRODUCT = 128 * 128

#: Upper bounds of the integer parameters.
_MAX_DIM = 64
_MAX_K = (1 << 24) - 1        # the command's ``k`` field is 24 bits wide (docs/isa.md)
_MAX_ACC_WIDTH = 64
_ACC_DEPTHS = (2, 65536)      # power of two
_RES_DEPTHS = (4, 4096)
_MAX_CLOCK_MHZ = 2000.0
_MAX_NAME = 64

_NAME_RE = re.compile(r"^[a-z_][a-z0-9_]*$")

#: Verilog-2005 and SystemVerilog-2017 keywords that match the name pattern. A design name
#: becomes a module name, so none of these may be used.
_VERILOG_KEYWORDS = frozenset("""
    accept_on alias always always_comb always_ff always_latch and assert assign assume automatic
    before begin bind bins binsof bit break buf bufif0 bufif1 byte case casex casez cell chandle
    checker class clocking cmos config const constraint context continue cover covergroup
    coverpoint cross deassign default defparam design disable dist do edge else end endcase
    endchecker endclass endclocking endconfig endfunction endgenerate endgroup endinterface
    endmodule endpackage endprimitive endprogram endproperty endsequence endspecify endtable
    endtask enum event eventually expect export extends extern final first_match for force
    foreach forever fork forkjoin function generate genvar global highz0 highz1 if iff ifnone
    ignore_bins illegal_bins implements implies import incdir include initial inout input inside
    instance int integer interconnect interface intersect join join_any join_none large let
    liblist library local localparam logic longint macromodule matches medium modport module
    nand negedge nettype new nexttime nmos nor noshowcancelled not notif0 notif1 null or output
    package packed parameter pmos posedge primitive priority program property protected pull0
    pull1 pulldown pullup pulsestyle_ondetect pulsestyle_onevent pure rand randc randcase
    randsequence rcmos real realtime ref reg reject_on release repeat restrict return rnmos
    rpmos rtran rtranif0 rtranif1 s_always s_eventually s_nexttime s_until s_until_with scalared
    sequence shortint shortreal showcancelled signed small soft solve specify specparam static
    string strong strong0 strong1 struct super supply0 supply1 sync_accept_on sync_reject_on
    table tagged task this throughout time timeprecision timeunit tran tranif0 tranif1 tri tri0
    tri1 triand trior trireg type typedef union unique unique0 unsigned until until_with untyped
    use uwire var vectored virtual void wait wait_order wand weak weak0 weak1 while wildcard wire
    with within wor xnor xor
""".split())

#: Sections a configuration may have, by name: ``[softmax]`` and ``[attention]``, each a frozen
#: dataclass with ``from_dict``/``to_dict``, stored in the field of :class:`GemmConfig` of the
#: same name. Any other table is an unknown section.
_SECTIONS: dict[str, Any] = {}   # filled in below the section classes


class Dataflow(str, enum.Enum):
    """The systolic array's dataflow, a closed set.

    A ``str`` enumeration: ``Dataflow.WS == "ws"``, and it prints, formats and serializes (JSON,
    TOML) as its value. Code that depends on the dataflow dispatches with :meth:`pick`, its one
    dispatch point, never with an ``if``/``else`` that a third dataflow would fall into.
    """

    #: Weight-stationary: a ``rows x cols`` weight tile stays in the PEs, activations stream.
    WS = "ws"
    #: Output-stationary: a ``rows x cols`` output tile accumulates in the PEs.
    OS = "os"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    def pick(self, *, ws: Any, os: Any) -> Any:
        """The argument named for this dataflow (a value, class or function to call).

        Raises
        ------
        KeyError
            For a member this method does not name: a new dataflow must be added here, and
            every caller then names what it does for it.
        """
        return {Dataflow.WS: ws, Dataflow.OS: os}[self]


class ConfigError(InputError):
    """A configuration value, key or file that npugen cannot use.

    The message is one line naming the key, the value and what is allowed, for example
    ``rows: 0 is not allowed (an integer from 1 to 64)``; when the configuration came from a
    file, the file name comes first (``my.toml: rows: ...``).

    Parameters
    ----------
    message : str
        The one-line message, without the source.
    key : str or None
        The key concerned (``"rows"``, ``"[softmax]"``), or None for a file-level error.
    source : str or None
        Where the configuration came from (a file name), or None.

    Attributes
    ----------
    key : str or None
        As given.
    source : str or None
        As given.
    """

    def __init__(self, message: str, *, key: str | None = None, source: str | None = None):
        self.message = " ".join(str(message).split())   # one line, whatever the cause said
        self.key = key
        self.source = source
        super().__init__(f"{source}: {self.message}" if source else self.message)

    def with_source(self, source: str | None) -> ConfigError:
        """The same error, attributed to ``source``."""
        return ConfigError(self.message, key=self.key, source=source)


def _show(value: Any) -> str:
    """A value as it would be written in TOML, on one line, for an error message."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (numbers.Integral, float)):
        return repr(value) if isinstance(value, float) else str(int(value))
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return repr(value)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def derived_acc_width(k_max: int) -> int:
    """Accumulator width that holds any sum of ``k_max`` int8 x int8 products.

    Parameters
    ----------
    k_max : int
        Largest reduction length K of one job.

    Returns
    -------
    int
        ``max(32, (16384 * k_max).bit_length() + 1)`` bits: 32 up to ``k_max = 131071``, 33 from
        131072.
    """
    return max(32, (_MAX_PRODUCT * k_max).bit_length() + 1)


def _section_from_dict(cls, section: str, data: Mapping[str, Any]):
    """Make the section dataclass ``cls`` from its TOML table; an unknown key is a one-line
    :class:`ConfigError` naming ``<section>.<key>`` and the keys allowed."""
    known = [f.name for f in dataclasses.fields(cls)]
    for key in data:
        if key not in known:
            raise ConfigError(f"{section}.{key}: unknown key (allowed: {', '.join(known)})",
                              key=f"{section}.{key}")
    return cls(**dict(data))


@dataclass(frozen=True)
class SoftmaxConfig:
    """Generator parameters of the OSI8 softmax unit, the ``[softmax]`` section
    (``docs/osi8.md``).

    Parameters
    ----------
    F : int
        LUT fraction bits, 8 to 30 (default 24: within 0.76 LSB of float softmax up to 32768 keys).
    B : int
        Key tile width of the online max, 1 to 4096, a multiple of ``lanes`` (default 16).
    N_max : int
        Longest row, keys, 1 to 2**24 (default 32768); sets the denominator width.
    G : int
        Quotient fraction bits of the attention output divider, 1 to 30 (default 16; used by the
        attention unit).
    lanes : int
        Scores per beat and cycle, 1 to 64 (default 1).
    lut_rom_scale : float or None
        Bake the LUT as a ROM for this score scale ``c`` (> 0); None (the default) loads the LUT at
        run time through ``s_axis_lut``.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range.
    """

    F: int = 24
    B: int = 16
    N_max: int = 32768
    G: int = 16
    lanes: int = 1
    lut_rom_scale: float | None = None

    def __post_init__(self):
        for key, lo, hi in (("F", 8, 30), ("B", 1, 4096), ("N_max", 1, 1 << 24), ("G", 1, 30),
                            ("lanes", 1, 64)):
            value = getattr(self, key)
            if not _is_int(value) or not lo <= value <= hi:
                raise _bad(f"softmax.{key}", value, f"an integer from {lo} to {hi}")
            object.__setattr__(self, key, int(value))
        if self.B % self.lanes:
            raise _bad("softmax.B", self.B, f"a multiple of softmax.lanes = {self.lanes}")
        c = self.lut_rom_scale
        if c is not None:
            ok = (isinstance(c, numbers.Real) and not isinstance(c, bool) and math.isfinite(c)
                  and c > 0)
            if not ok:
                raise _bad("softmax.lut_rom_scale", c, "a number greater than 0, or absent")
            object.__setattr__(self, "lut_rom_scale", float(c))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "SoftmaxConfig":
        """Make the section from its parsed TOML table.

        Raises
        ------
        ConfigError
            For an unknown key or a bad value.
        """
        return _section_from_dict(cls, "softmax", data)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (``lut_rom_scale`` left out when None)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class AttentionConfig:
    """Generator parameters of the fused OSI8 attention unit, the ``[attention]`` section
    (``docs/attention.md``).

    The OSI8 parameters of the unit (``F``, ``B``, ``N_max``, ``G``) are those of the
    ``[softmax]`` section, or the :class:`SoftmaxConfig` defaults when there is none
    (:attr:`GemmConfig.osi8`).

    Parameters
    ----------
    d : int
        Head dimension: int8 lanes of a Q, K, V and output beat, 1 to 256 (default 64).
    heads : int
        LUTs held on chip, one per head, loaded at run time; 1 to 256 (default 12).
    q_block : int
        Queries per block: the unit holds this many query rows and streams the keys and values
        once per block; 1 to 64 (default 4).
    rescale_lanes : int or None
        Numerators rescaled per cycle and query when a tile's max grows (multipliers of
        ``W_A × (F + 1)`` bits per query); a divisor of ``d``. A rescale then takes
        ``d / rescale_lanes`` cycles. None (the default): the largest divisor of ``d`` not above
        4 (:attr:`rescale_width`).

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range.
    """

    d: int = 64
    heads: int = 12
    q_block: int = 4
    rescale_lanes: int | None = None

    def __post_init__(self):
        for key, lo, hi in (("d", 1, 256), ("heads", 1, 256), ("q_block", 1, 64)):
            value = getattr(self, key)
            if not _is_int(value) or not lo <= value <= hi:
                raise _bad(f"attention.{key}", value, f"an integer from {lo} to {hi}")
            object.__setattr__(self, key, int(value))
        r = self.rescale_lanes
        if r is not None:
            if not _is_int(r) or not 1 <= r <= self.d or self.d % r:
                raise _bad("attention.rescale_lanes", r,
                           f"a divisor of attention.d = {self.d}, or absent")
            object.__setattr__(self, "rescale_lanes", int(r))

    @property
    def rescale_width(self) -> int:
        """Numerators rescaled per cycle: ``rescale_lanes``, or the largest divisor of ``d``
        not above 4 when it is absent."""
        if self.rescale_lanes is not None:
            return self.rescale_lanes
        return max(r for r in range(1, 5) if self.d % r == 0)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "AttentionConfig":
        """Make the section from its parsed TOML table.

        Raises
        ------
        ConfigError
            For an unknown key or a bad value.
        """
        return _section_from_dict(cls, "attention", data)

    def to_dict(self) -> dict[str, Any]:
        """The parameters as a plain dict (``rescale_lanes`` left out when None)."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}


@dataclass(frozen=True)
class GemmConfig:
    """Generator parameters of one GEMM engine.

    All parameters are checked when the object is made; :func:`dataclasses.replace` checks again.

    Parameters
    ----------
    name : str
        Name of the design: the Verilog module name and the name of every generated file. A
        lower-case identifier, ``^[a-z_][a-z0-9_]*$``, at most 64 characters, not a Verilog or
        SystemVerilog keyword.
    rows : int
        Processing-element rows R of the systolic array, 1 to 64.
    cols : int
        Processing-element columns C of the systolic array, 1 to 64.
    dataflow : Dataflow or str
        ``"ws"`` (weight-stationary) or ``"os"`` (output-stationary); stored as a
        :class:`Dataflow`.
    k_max : int
        Largest reduction length K of one job, 1 to 2**24 - 1 (the command's ``k`` field).
    acc_width : int or None
        Accumulator width W, bits. None derives it from ``k_max`` (:func:`derived_acc_width`);
        an explicit value may be wider than that, up to 64, but not narrower.
    rounding : str
        Requantization rounding: ``"single"`` (one rounding step) or ``"double"`` (TFLite's
        reference double rounding), see ``docs/numerics.md``.
    requant_lanes : int or None
        Lanes of the requantizer, 1 to ``cols``: accumulators it requantizes per cycle. A
        finished row of a requant job waits in the result FIFO and is drained through the
        lanes in ``ceil(nc / requant_lanes)`` cycles (``docs/architecture.md``). None derives
        it: ``ceil(cols / 4)`` (:attr:`rq_lanes`).
    requant_pp_bits : int
        Bits of the requantization multiplier ``M0`` per partial product of the requantizer's
        ``acc * M0``: 8 (17 × 8-bit products summed in pairs a stage later: shorter
        carry-save trees, the ASIC's Fmax, one cycle more per requant job) or 16 (17 × 16-bit
        products, each fitting one 18 × 18 DSP multiplier: half the DSP blocks on an FPGA).
        Same results (:class:`npugen.hw.requant.Requantizer`, docs/area.md).
    pe_product_reg : bool
        A weight-stationary PE registers its product (``prod <= a * w``, then the partial sum),
        which puts the multiplier and the adder in separate cycles (Fmax) for 16 flip-flops a
        PE and one cycle of latency. ``os`` designs: must stay True (their PE has none).
    pe_weight_reg : bool
        A weight-stationary PE selects its weight into a register (``w_cur``) a cycle ahead, so
        no multiplexer stands before the multiplier (ECP5 Fmax) for 8 flip-flops a PE.
        ``os`` designs: must stay True.
    array_input_reg : bool
        The array registers its inputs (the row of A, the weight load, ``sel``; in ``os`` the
        A and B lanes, ``valid``, ``last``) once before its skew, so no control logic reaches a
        PE's multiplier in the same cycle (Fmax), for ``8 · (rows + cols)`` and a few
        flip-flops and one cycle of latency per job. Both dataflows.
    dsp_primitive : str
        ``"none"`` (portable Verilog: every multiplier is a ``*`` for the flow to map) or
        ``"ecp5"``: each weight-stationary PE's product is an instantiated Lattice ECP5
        ``MULT18X18D`` whose own input registers hold ``w_cur`` and a copy of the activation
        and whose output register is ``prod`` (Yosys cannot pack registers into ECP5 DSP
        blocks). Same cycles and results; needs dataflow ``ws`` and the three registers
        above; synthesizes for the ``ecp5`` target only, and simulates with npugen's model
        of the primitive (:mod:`npugen.hw.primitives`).
    operand_isolation : bool
        Hold operands that no result uses, so the logic they feed does not switch (energy,
        ``docs/power.md``): the array's input register keeps the last row of A (``os``: A and
        B lanes) on a cycle with no input instead of loading zeros, and the accumulator
        memory's read address keeps its value when the read is not used (no row, or a row
        that starts from the bias). Same results and cycles; ``8 · rows`` (``os``:
        ``8 · (rows + cols)``) multiplexers, ``bits(acc_depth - 1)`` flip-flops and a few gates.
        Needs ``array_input_reg``.
    acc_depth : int
        Rows of the accumulator memory, a power of two from 2 to 65536. A job's M is processed
        in chunks of at most this many rows.
    res_depth : int
        Depth of the result FIFO, beats (rows of a C tile), at least 4 and at least ``rows``
        (an output-stationary tile delivers ``rows`` result rows at once), at most 4096.
    clock_mhz : float
        Target clock frequency of ``aclk`` for the timing constraints, MHz; greater than 0 and at
        most 2000.
    softmax : SoftmaxConfig or None
        The ``[softmax]`` section: when present, the design also holds an OSI8 softmax unit.
    attention : AttentionConfig or None
        The ``[attention]`` section: when present, the design also holds an OSI8 attention unit,
        with the OSI8 parameters of :attr:`osi8`.

    Raises
    ------
    ConfigError
        For a value of the wrong type or out of range.
    """

    name: str = "npu"
    rows: int = 16
    cols: int = 16
    dataflow: Dataflow = Dataflow.WS
    k_max: int = 4096
    acc_width: int | None = None
    rounding: str = "single"
    requant_lanes: int | None = None
    requant_pp_bits: int = 8
    pe_product_reg: bool = True
    pe_weight_reg: bool = True
    array_input_reg: bool = True
    dsp_primitive: str = "none"
    operand_isolation: bool = False
    acc_depth: int = 512
    res_depth: int = 256
    clock_mhz: float = 280.0
    softmax: SoftmaxConfig | None = None
    attention: AttentionConfig | None = None

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = _CHECKS[f.name](self, getattr(self, f.name))
            object.__setattr__(self, f.name, value)

    # -- derived values ------------------------------------------------------------------------

    @property
    def acc_bits(self) -> int:
        """Resolved accumulator width W, bits: ``acc_width``, or the width derived from ``k_max``."""
        return derived_acc_width(self.k_max) if self.acc_width is None else self.acc_width

    @property
    def rq_lanes(self) -> int:
        """Resolved requantizer lane count: ``requant_lanes``, or ``ceil(cols / 4)`` when it is
        absent (derived)."""
        return -(-self.cols // 4) if self.requant_lanes is None else self.requant_lanes

    @property
    def osi8(self) -> SoftmaxConfig:
        """OSI8 parameters (``F``, ``B``, ``N_max``, ``G``) of the softmax and attention units:
        the ``[softmax]`` section, or the :class:`SoftmaxConfig` defaults when it is absent."""
        return SoftmaxConfig() if self.softmax is None else self.softmax

    @property
    def lane_bits(self) -> int:
        """Width L of one raw result lane on ``m_axis_res_tdata``, bits: ``8 * ceil(W / 8)``."""
        return 8 * -(-self.acc_bits // 8)

    # -- conversions ---------------------------------------------------------------------------

    def to_dict(self, *, resolved: bool = False) -> dict[str, Any]:
        """The parameters as a plain dict, in declaration order.

        Parameters
        ----------
        resolved : bool
            Replace a derived ``acc_width`` and ``requant_lanes`` (None) by their values,
            :attr:`acc_bits` and :attr:`rq_lanes`.

        Returns
        -------
        dict of str to object
            One entry per parameter; ``acc_width`` is None when derived and not ``resolved``; a
            section (``softmax``, ``attention``) is a nested dict, or None when absent.
        """
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        for key in _SECTIONS:
            if out.get(key) is not None:
                out[key] = out[key].to_dict()      # a section as a nested dict
        if resolved:
            out["acc_width"] = self.acc_bits
            out["requant_lanes"] = self.rq_lanes
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, source: str | None = None) -> GemmConfig:
        """Make a configuration from a parsed TOML table.

        Parameters
        ----------
        data : mapping of str to object
            Keys as in ``docs/config.md``; missing keys take their default.
        source : str or None
            Where ``data`` came from, for error messages.

        Returns
        -------
        GemmConfig

        Raises
        ------
        ConfigError
            For an unknown key, an unknown section, or a bad value.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        kwargs = {}
        for key, value in data.items():
            if key in _SECTIONS and isinstance(value, Mapping):
                try:
                    kwargs[key] = _SECTIONS[key].from_dict(value)
                except ConfigError as e:
                    raise e.with_source(source) from None
            elif key in _SECTIONS:
                raise ConfigError(f"[{key}]: must be a table, not {_show(value)}", key=f"[{key}]",
                                  source=source)
            elif key in known:
                kwargs[key] = value
            elif isinstance(value, Mapping):
                raise ConfigError(f"[{key}]: unknown section (allowed: "
                                  f"{', '.join(f'[{k}]' for k in _SECTIONS)})", key=f"[{key}]",
                                  source=source)
            else:
                raise ConfigError(f"{key}: unknown key (allowed: {', '.join(known)})",
                                  key=key, source=source)
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise e.with_source(source) from None

    def to_toml(self) -> str:
        """The configuration as TOML text that :func:`parse_toml` reads back to an equal object.

        The text is deterministic: keys in declaration order, one per line, a fixed header.
        A derived ``acc_width`` is not written (a comment gives its value).

        Returns
        -------
        str
            TOML, ending with a newline.
        """
        lines = ["# npugen configuration (keys: docs/config.md)"]
        sections = []
        for key, value in self.to_dict().items():
            if key in _SECTIONS:
                if value is not None:
                    sections.append(tomli_w.dumps({key: value}).rstrip("\n"))
            elif value is None and key == "requant_lanes":
                lines.append(f"# {key} = {self.rq_lanes}  (derived from cols)")
            elif value is None:
                lines.append(f"# {key} = {self.acc_bits}  (derived from k_max)")
            else:
                lines.append(tomli_w.dumps({key: value}).rstrip("\n"))
        # a blank line before each section (the text of a configuration with one section is
        # unchanged by this: digests of existing caches stay valid)
        return "\n\n".join(["\n".join(lines)] + sections) + "\n"

    def digest(self) -> str:
        """SHA-256 of the canonical TOML of the resolved configuration, for cache keys.

        Two configurations that differ only in whether ``acc_width`` is derived or given as the
        same value have the same digest.

        Returns
        -------
        str
            64 lower-case hexadecimal digits.
        """
        canonical = dataclasses.replace(self, acc_width=self.acc_bits,
                                        requant_lanes=self.rq_lanes).to_toml()
        return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# -- checks, one per field, in declaration order ----------------------------------------------

def _bad(key: str, value: Any, allowed: str) -> ConfigError:
    return ConfigError(f"{key}: {_show(value)} is not allowed ({allowed})", key=key)


def _int_range(key: str, lo: int, hi: int):
    def check(cfg: GemmConfig, value: Any) -> int:
        if not _is_int(value) or not lo <= value <= hi:
            raise _bad(key, value, f"an integer from {lo} to {hi}")
        return int(value)
    return check


def _check_dataflow(cfg: GemmConfig, value: Any) -> Dataflow:
    if not isinstance(value, str) or value not in {d.value for d in Dataflow}:
        raise _bad("dataflow", value, " or ".join(json.dumps(d.value) for d in Dataflow))
    return Dataflow(value)


def _choice(key: str, choices: tuple[str, ...]):
    def check(cfg: GemmConfig, value: Any) -> str:
        if not isinstance(value, str) or value not in choices:
            raise _bad(key, value, " or ".join(json.dumps(c) for c in choices))
        return value
    return check


def _check_name(cfg: GemmConfig, value: Any) -> str:
    if (not isinstance(value, str) or not _NAME_RE.match(value) or len(value) > _MAX_NAME
            or value in _VERILOG_KEYWORDS):
        raise _bad("name", value, f"a lower-case identifier matching {_NAME_RE.pattern}, "
                                  f"at most {_MAX_NAME} characters, not a Verilog keyword")
    return value


def _check_acc_width(cfg: GemmConfig, value: Any) -> int | None:
    if value is None:
        return None
    lo = derived_acc_width(cfg.k_max)
    if not _is_int(value) or not lo <= value <= _MAX_ACC_WIDTH:
        raise _bad("acc_width", value,
                   f"an integer from {lo} to {_MAX_ACC_WIDTH} for k_max = {cfg.k_max}")
    return int(value)


def _check_requant_lanes(cfg: GemmConfig, value: Any) -> int | None:
    if value is None:
        return None
    if not _is_int(value) or not 1 <= value <= cfg.cols:
        raise _bad("requant_lanes", value, f"an integer from 1 to cols ({cfg.cols})")
    return int(value)


#: Values of ``requant_pp_bits`` (``npugen.hw.requant.PP_BITS``).
REQUANT_PP_BITS = (8, 16)


def _check_pp_bits(cfg: GemmConfig, value: Any) -> int:
    if not _is_int(value) or value not in REQUANT_PP_BITS:
        raise _bad("requant_pp_bits", value, " or ".join(map(str, REQUANT_PP_BITS)))
    return int(value)


def _pe_register(key: str):
    def check(cfg: GemmConfig, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(key, value, "true or false")
        if not value and cfg.dataflow.pick(ws=False, os=True):
            raise _bad(key, value, "true for dataflow \"os\": its PE has no such register")
        return value
    return check


def _check_bool(key: str):
    def check(cfg: GemmConfig, value: Any) -> bool:
        if not isinstance(value, bool):
            raise _bad(key, value, "true or false")
        return value
    return check


#: Values of ``dsp_primitive``.
DSP_PRIMITIVES = ("none", "ecp5")


def _check_dsp_primitive(cfg: GemmConfig, value: Any) -> str:
    if not isinstance(value, str) or value not in DSP_PRIMITIVES:
        raise _bad("dsp_primitive", value, " or ".join(f'"{v}"' for v in DSP_PRIMITIVES))
    if value != "none":
        need = [k for k in ("pe_product_reg", "pe_weight_reg", "array_input_reg")
                if not getattr(cfg, k)]
        if cfg.dataflow.pick(ws=False, os=True) or need:
            raise _bad("dsp_primitive", value,
                       '"none" unless dataflow is "ws" and pe_product_reg, pe_weight_reg and '
                       "array_input_reg are true (the DSP block's registers hold them)")
    return value


def _check_isolation(cfg: GemmConfig, value: Any) -> bool:
    if not isinstance(value, bool):
        raise _bad("operand_isolation", value, "true or false")
    if value and not cfg.array_input_reg:
        raise _bad("operand_isolation", value,
                   "false without array_input_reg: the array's input register holds the operands")
    return value


def _check_acc_depth(cfg: GemmConfig, value: Any) -> int:
    lo, hi = _ACC_DEPTHS
    if not _is_int(value) or not lo <= value <= hi or value & (value - 1):
        raise _bad("acc_depth", value, f"a power of two from {lo} to {hi}")
    return int(value)


def _check_res_depth(cfg: GemmConfig, value: Any) -> int:
    # An output-stationary tile delivers `rows` result rows at once: the FIFO must hold them.
    lo, hi = max(_RES_DEPTHS[0], cfg.rows), _RES_DEPTHS[1]
    if not _is_int(value) or not lo <= value <= hi:
        raise _bad("res_depth", value, f"an integer from {lo} (at least rows) to {hi}")
    return int(value)


def _check_softmax(cfg: GemmConfig, value: Any) -> SoftmaxConfig | None:
    if value is None or isinstance(value, SoftmaxConfig):
        return value
    raise ConfigError(f"softmax: {_show(value)} is not allowed (a [softmax] table)", key="softmax")


def _check_attention(cfg: GemmConfig, value: Any) -> AttentionConfig | None:
    if value is None or isinstance(value, AttentionConfig):
        return value
    raise ConfigError(f"attention: {_show(value)} is not allowed (an [attention] table)",
                      key="attention")


def _check_clock(cfg: GemmConfig, value: Any) -> float:
    ok = (isinstance(value, (numbers.Real)) and not isinstance(value, bool)
          and math.isfinite(value) and 0 < value <= _MAX_CLOCK_MHZ)
    if not ok:
        raise _bad("clock_mhz", value, f"a number greater than 0 and at most {_MAX_CLOCK_MHZ:g}")
    return float(value)


_CHECKS = {
    "name": _check_name,
    "rows": _int_range("rows", 1, _MAX_DIM),
    "cols": _int_range("cols", 1, _MAX_DIM),
    "dataflow": _check_dataflow,
    "k_max": _int_range("k_max", 1, _MAX_K),
    "acc_width": _check_acc_width,
    "rounding": _choice("rounding", ("single", "double")),
    "requant_lanes": _check_requant_lanes,
    "requant_pp_bits": _check_pp_bits,
    "pe_product_reg": _pe_register("pe_product_reg"),
    "pe_weight_reg": _pe_register("pe_weight_reg"),
    "array_input_reg": _check_bool("array_input_reg"),
    "dsp_primitive": _check_dsp_primitive,
    "operand_isolation": _check_isolation,
    "acc_depth": _check_acc_depth,
    "res_depth": _check_res_depth,
    "clock_mhz": _check_clock,
    "softmax": _check_softmax,
    "attention": _check_attention,
}


# -- reading ----------------------------------------------------------------------------------

def parse_toml(text: str, source: str | None = None) -> GemmConfig:
    """Read a configuration from TOML text.

    Parameters
    ----------
    text : str
        TOML; keys as in ``docs/config.md``, missing keys take their default.
    source : str or None
        Where the text came from (a file name), put at the start of error messages.

    Returns
    -------
    GemmConfig

    Raises
    ------
    ConfigError
        For text that is not TOML, an unknown key or section, or a bad value.
    """
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"invalid TOML: {e}", source=source) from None
    return GemmConfig.from_dict(data, source=source)


def default_toml() -> str:
    """The text of the embedded default configuration, ``hw/default.toml``."""
    return resources.files(__package__).joinpath("default.toml").read_text(encoding="utf-8")


def load_config(path: str | PathLike[str] | None = None) -> GemmConfig:
    """Read a configuration file.

    Parameters
    ----------
    path : path-like or None
        A TOML file, or None for the embedded default configuration.

    Returns
    -------
    GemmConfig

    Raises
    ------
    ConfigError
        For a file that is not valid TOML or not a valid configuration; the message starts with
        ``path`` as given.
    OSError
        For a file that cannot be read (:class:`FileNotFoundError` for a missing one).
    """
    if path is None:
        return parse_toml(default_toml(), source="<embedded default>")
    with open(path, "rb") as f:
        raw = f.read()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"not UTF-8 text ({e.reason} at byte {e.start})",
                          source=str(path)) from None
    return parse_toml(text, source=str(path))

_SECTIONS["softmax"] = SoftmaxConfig
_SECTIONS["attention"] = AttentionConfig

"""The exported top: the GEMM engine behind AXI4-Stream port names, ``aclk`` and ``aresetn``."""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .errors import InputError, MissingSectionError
from .gemm import GemmEngine
from .attention import AttentionUnit
from .softmax import SoftmaxUnit

__all__ = ["NpuTop", "SoftmaxTop", "AttentionTop", "softmax_unit", "attention_unit"]

#: Width of ``s_axis_lut_tdata``: one LUT entry (F + 1 <= 31 bits), zero-extended to 32 bits.
LUT_TDATA_WIDTH = 32   # the unit clamps an entry to 2^F


def softmax_unit(cfg, lut=None) -> SoftmaxUnit:
    """The OSI8 softmax unit of a configuration's ``[softmax]`` section.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
    lut : list of int or None
        The 256 LUT entries to bake as a ROM when ``softmax.lut_rom_scale`` is set. Shared
        constants come from the golden side (``npugen.sim.golden.make_lut(lut_rom_scale, F)``; the
        ``npugen`` CLI passes them in), never from the generator.

    Raises
    ------
    ValueError
        If the configuration has no ``[softmax]`` section, or ``lut_rom_scale`` is set and no
        ``lut`` is given (or the other way round).
    """
    sm = cfg.softmax
    if sm is None:
        raise MissingSectionError(cfg, "softmax")
    if (sm.lut_rom_scale is None) != (lut is None):
        raise InputError("softmax.lut_rom_scale and a baked LUT go together: build the top "
                         "with npugen.sim.design.build_npu, which computes the LUT")
    return SoftmaxUnit(lanes=sm.lanes, F=sm.F, B=sm.B, n_max=sm.N_max, lut=lut)


def attention_unit(cfg) -> AttentionUnit:
    """The OSI8 attention unit of a configuration's ``[attention]`` section.

    ``d``, ``heads`` and ``q_block`` come from ``[attention]``; ``F``, ``B``, ``N_max`` and ``G``
    from ``[softmax]`` (the :class:`npugen.hw.config.SoftmaxConfig` defaults when there is none);
    the score requantization uses the design's ``rounding``.

    Raises
    ------
    ValueError
        If the configuration has no ``[attention]`` section.
    """
    att = getattr(cfg, "attention", None)
    if att is None:
        raise MissingSectionError(cfg, "attention")
    sm = cfg.osi8
    return AttentionUnit(d=att.d, q_block=att.q_block, heads=att.heads, F=sm.F, B=sm.B,
                         n_max=sm.N_max, G=sm.G, rounding=cfg.rounding,
                         rescale_lanes=att.rescale_width)


def _axis(members, prefix, direction, width, keep=None, user=None, last=False):
    """Add the AXI4-Stream ports ``<prefix>_tdata/tkeep/tuser/tlast/tvalid/tready``."""
    flip = Out if direction is In else In
    members[f"{prefix}_tdata"] = direction(width)
    if keep:
        members[f"{prefix}_tkeep"] = direction(keep)
    if user:
        members[f"{prefix}_tuser"] = direction(user)
    if last:
        members[f"{prefix}_tlast"] = direction(1)
    members[f"{prefix}_tvalid"] = direction(1)
    members[f"{prefix}_tready"] = flip(1)


def _softmax_ports(members, unit):
    P = unit.lanes
    if unit.rom is None:
        _axis(members, "s_axis_lut", In, LUT_TDATA_WIDTH)
    _axis(members, "s_axis_score", In, 8 * P, keep=P, user=P, last=True)
    _axis(members, "m_axis_prob", Out, 8 * P, keep=P, last=True)


def _connect_softmax(m, top, unit):
    if unit.rom is None:
        m.d.comb += [unit.lut.payload.eq(top.s_axis_lut_tdata), unit.lut.valid.eq(top.s_axis_lut_tvalid),
                     top.s_axis_lut_tready.eq(unit.lut.ready)]
    m.d.comb += [
        unit.i.payload.data.eq(top.s_axis_score_tdata), unit.i.payload.keep.eq(top.s_axis_score_tkeep),
        unit.i.payload.mask.eq(top.s_axis_score_tuser), unit.i.payload.last.eq(top.s_axis_score_tlast),
        unit.i.valid.eq(top.s_axis_score_tvalid), top.s_axis_score_tready.eq(unit.i.ready),
        top.m_axis_prob_tdata.eq(unit.o.payload.data), top.m_axis_prob_tkeep.eq(unit.o.payload.keep),
        top.m_axis_prob_tlast.eq(unit.o.payload.last), top.m_axis_prob_tvalid.eq(unit.o.valid),
        unit.o.ready.eq(top.m_axis_prob_tready),
    ]


class SoftmaxTop(wiring.Component):
    """Exported top of the OSI8 softmax unit alone (``docs/softmax.md``).

    Ports, with ``P`` = ``softmax.lanes``: ``aclk``, ``aresetn`` (synchronous, active low);
    ``s_axis_lut_tdata[31:0]``, ``_tvalid``, ``_tready`` (run-time LUT, absent with a baked ROM);
    ``s_axis_score_tdata[8P-1:0]``, ``_tkeep[P-1:0]``, ``_tuser[P-1:0]`` (mask, 1 = attend),
    ``_tlast``, ``_tvalid``, ``_tready``; ``m_axis_prob_tdata[8P-1:0]``, ``_tkeep``, ``_tlast``,
    ``_tvalid``, ``_tready``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        A configuration with a ``[softmax]`` section.
    lut : list of int or None
        The baked LUT when ``softmax.lut_rom_scale`` is set (see :func:`softmax_unit`).
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, cfg, *, lut=None):
        self.cfg = cfg
        self.unit = softmax_unit(cfg, lut)
        members = {"aclk": In(1), "aresetn": In(1)}
        _softmax_ports(members, self.unit)
        super().__init__(members)

    @property
    def latencies(self) -> dict[str, int]:
        """Cycles from a pass-2 score beat to its probability entering the output FIFO."""
        return {"softmax_pass2": self.unit.latency}

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]
        m.submodules.softmax = self.unit
        _connect_softmax(m, self, self.unit)
        return m


def _attention_ports(members, unit, prefix=""):
    """The attention unit's ports; ``prefix`` (``"att_"`` inside :class:`NpuTop`) keeps them
    apart from the GEMM engine's command and status ports."""
    _axis(members, f"s_axis_{prefix}cmd", In, isa.CMD_WIDTH)
    _axis(members, f"m_axis_{prefix}status", Out, isa.STATUS_WIDTH)
    _axis(members, f"s_axis_{prefix}param", In, isa.ATT_PARAM_WIDTH, last=True)
    _axis(members, f"s_axis_{prefix}q", In, 8 * unit.d, last=True)
    _axis(members, f"s_axis_{prefix}k", In, 8 * unit.d, user=unit.P, last=True)
    _axis(members, f"s_axis_{prefix}v", In, 8 * unit.d, last=True)
    _axis(members, f"m_axis_{prefix}o", Out, 8 * unit.d, last=True)


def _connect_attention(m, top, u, prefix=""):
    def port(name):
        return getattr(top, name.format(p=prefix))
    m.d.comb += [
        u.cmd.payload.eq(port("s_axis_{p}cmd_tdata")), u.cmd.valid.eq(port("s_axis_{p}cmd_tvalid")),
        port("s_axis_{p}cmd_tready").eq(u.cmd.ready),
        port("m_axis_{p}status_tdata").eq(u.status.payload),
        port("m_axis_{p}status_tvalid").eq(u.status.valid),
        u.status.ready.eq(port("m_axis_{p}status_tready")),
    ]
    for name in ("param", "q", "k", "v"):
        s = getattr(u, name)
        m.d.comb += [
            s.payload.data.eq(port(f"s_axis_{{p}}{name}_tdata")),
            s.payload.last.eq(port(f"s_axis_{{p}}{name}_tlast")),
            s.valid.eq(port(f"s_axis_{{p}}{name}_tvalid")),
            port(f"s_axis_{{p}}{name}_tready").eq(s.ready),
        ]
    m.d.comb += [
        u.k.payload.mask.eq(port("s_axis_{p}k_tuser")),
        port("m_axis_{p}o_tdata").eq(u.o.payload.data), port("m_axis_{p}o_tlast").eq(u.o.payload.last),
        port("m_axis_{p}o_tvalid").eq(u.o.valid), u.o.ready.eq(port("m_axis_{p}o_tready")),
    ]


class AttentionTop(wiring.Component):
    """Exported top of the OSI8 attention unit alone (``docs/attention.md``).

    Ports, with ``P`` = ``attention.q_block`` and ``d`` = ``attention.d``: ``aclk``,
    ``aresetn`` (synchronous, active low); ``s_axis_cmd_tdata[127:0]``, ``m_axis_status_tdata[63:0]``;
    ``s_axis_param_tdata[31:0]`` with ``_tlast``; ``s_axis_q_tdata[8d-1:0]`` with ``_tlast``;
    ``s_axis_k_tdata[8d-1:0]`` with ``_tuser[P-1:0]`` (mask, 1 = attend) and ``_tlast``;
    ``s_axis_v_tdata[8d-1:0]`` with ``_tlast``; ``m_axis_o_tdata[8d-1:0]`` with ``_tlast``; each
    with ``_tvalid`` and ``_tready``.

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        A configuration with an ``[attention]`` section.
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, cfg):
        self.cfg = cfg
        self.unit = u = attention_unit(cfg)
        members = {"aclk": In(1), "aresetn": In(1)}
        _attention_ports(members, u)
        super().__init__(members)

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies of the unit, cycles (:attr:`AttentionUnit.latencies`)."""
        return dict(self.unit.latencies)

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]
        m.submodules.attention = u = self.unit
        _connect_attention(m, self, u)
        return m


class NpuTop(wiring.Component):
    """Top level of a generated design, with the port names Vivado and Quartus infer as
    AXI4-Stream interfaces (``docs/isa.md``).

    One clock, ``aclk``; reset ``aresetn`` is synchronous and active low. Ports, with ``R`` =
    ``rows``, ``C`` = ``cols`` and ``L`` = ``lane_bits``:

    - ``s_axis_cmd_tdata[127:0]``, ``_tvalid``, ``_tready``: commands;
    - ``m_axis_status_tdata[63:0]``, ``_tvalid``, ``_tready``: one status per command;
    - ``s_axis_act_tdata[8R-1:0]``, ``_tkeep[R-1:0]``, ``_tlast``, ``_tvalid``, ``_tready``;
    - ``s_axis_wgt_tdata[8C-1:0]``, ``_tkeep[C-1:0]``, ``_tlast``, ``_tvalid``, ``_tready``;
    - ``m_axis_res_tdata[LC-1:0]``, ``_tkeep[LC/8-1:0]``, ``_tlast``, ``_tvalid``, ``_tready``.

    With a ``[softmax]`` section, the softmax unit's ports (see :class:`SoftmaxTop`) are added
    beside the engine's; with an ``[attention]`` section, the attention unit's ports (see
    :class:`AttentionTop`) with ``att_`` after the direction prefix (``s_axis_att_cmd``,
    ``m_axis_att_status``, ``s_axis_att_param``, ``s_axis_att_q``, ``s_axis_att_k``,
    ``s_axis_att_v``, ``m_axis_att_o``).

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The design's configuration.
    softmax_lut : list of int or None
        The baked softmax LUT when ``softmax.lut_rom_scale`` is set (see :func:`softmax_unit`).
    """

    #: The area report's block (npugen.hw.blocks).
    report_block = "control"

    def __init__(self, cfg, *, softmax_lut=None):
        self.cfg = cfg
        self.engine = GemmEngine.from_config(cfg)
        self.softmax = softmax_unit(cfg, softmax_lut) if cfg.softmax is not None else None
        self.attention = attention_unit(cfg) if cfg.attention is not None else None
        R, C, L = cfg.rows, cfg.cols, self.engine.lane_bits
        members = {"aclk": In(1), "aresetn": In(1)}

        def axis(prefix, direction, width, keep=None, last=False):
            flip = Out if direction is In else In
            members[f"{prefix}_tdata"] = direction(width)
            if keep:
                members[f"{prefix}_tkeep"] = direction(keep)
            if last:
                members[f"{prefix}_tlast"] = direction(1)
            members[f"{prefix}_tvalid"] = direction(1)
            members[f"{prefix}_tready"] = flip(1)

        axis("s_axis_cmd", In, isa.CMD_WIDTH)
        axis("m_axis_status", Out, isa.STATUS_WIDTH)
        axis("s_axis_act", In, 8 * R, keep=R, last=True)
        axis("s_axis_wgt", In, 8 * C, keep=C, last=True)
        axis("m_axis_res", Out, L * C, keep=L * C // 8, last=True)
        if self.softmax is not None:
            _softmax_ports(members, self.softmax)
        if self.attention is not None:
            _attention_ports(members, self.attention, "att_")
        super().__init__(members)

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies, cycles (see :attr:`GemmEngine.latencies`)."""
        lat = dict(self.engine.latencies)
        if self.softmax is not None:
            lat["softmax_pass2"] = self.softmax.latency
        if self.attention is not None:
            lat.update(self.attention.latencies)
        return lat

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = cd = ClockDomain("sync")
        m.d.comb += [cd.clk.eq(self.aclk), cd.rst.eq(~self.aresetn)]
        m.submodules.engine = e = self.engine
        m.d.comb += [
            e.cmd.payload.eq(self.s_axis_cmd_tdata), e.cmd.valid.eq(self.s_axis_cmd_tvalid),
            self.s_axis_cmd_tready.eq(e.cmd.ready),
            self.m_axis_status_tdata.eq(e.status.payload),
            self.m_axis_status_tvalid.eq(e.status.valid), e.status.ready.eq(self.m_axis_status_tready),
        ]
        for name, port in (("act", e.act), ("wgt", e.wgt)):
            p = f"s_axis_{name}"
            m.d.comb += [
                port.payload.data.eq(getattr(self, f"{p}_tdata")),
                port.payload.keep.eq(getattr(self, f"{p}_tkeep")),
                port.payload.last.eq(getattr(self, f"{p}_tlast")),
                port.valid.eq(getattr(self, f"{p}_tvalid")),
                getattr(self, f"{p}_tready").eq(port.ready),
            ]
        m.d.comb += [
            self.m_axis_res_tdata.eq(e.res.payload.data),
            self.m_axis_res_tkeep.eq(e.res.payload.keep),
            self.m_axis_res_tlast.eq(e.res.payload.last),
            self.m_axis_res_tvalid.eq(e.res.valid),
            e.res.ready.eq(self.m_axis_res_tready),
        ]
        if self.softmax is not None:
            m.submodules.softmax = self.softmax
            _connect_softmax(m, self, self.softmax)
        if self.attention is not None:
            m.submodules.attention = self.attention
            _connect_attention(m, self, self.attention, "att_")
        return m

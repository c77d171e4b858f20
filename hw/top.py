"""The exported top: the GEMM engine behind AXI4-Stream port names, ``aclk`` and ``aresetn``."""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .gemm import GemmEngine

__all__ = ["NpuTop"]


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

    Parameters
    ----------
    cfg : hw.config.GemmConfig
        The design's configuration.
    """

    def __init__(self, cfg):
        self.cfg = cfg
        self.engine = GemmEngine.from_config(cfg)
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
        super().__init__(members)

    @property
    def latencies(self) -> dict[str, int]:
        """Pipeline latencies of the engine, cycles (see :attr:`GemmEngine.latencies`)."""
        return self.engine.latencies

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
        return m

"""The one builder of every design: a configuration in, its top-level Amaranth component out.

Every command that elaborates a design (``generate``, ``verify``, ``run``, ``report``, ``area``,
``sweep``) takes its top from here. The builder lives on the checking side because the shared
constants of a design come from the golden models (``docs/osi8.md``: the softmax LUT that
``[softmax] lut_rom_scale`` bakes as a ROM is :func:`npugen.sim.golden.make_lut`), and the
hardware side never imports them; the synthesis flows (:func:`npugen.hw.synth.area`,
:func:`npugen.hw.synth.sweep.sweep`) receive the builder from their caller.

Three tops exist (:data:`TOPS`): ``"npu"``, the accelerator (:class:`npugen.hw.top.NpuTop`,
Verilog module ``<name>``); ``"softmax"`` and ``"attention"``, the standalone OSI8 units
(:class:`~npugen.hw.top.SoftmaxTop`, :class:`~npugen.hw.top.AttentionTop`, modules
``<name>_softmax`` and ``<name>_attention``) that the softmax and attention runs simulate. The
builders are module-level functions, so they pickle for process pools and Dask workers.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path
from typing import Callable

from npugen.hw.config import GemmConfig
from npugen.hw.errors import InputError, MissingSectionError
from npugen.hw.files import generator_stamp

__all__ = ["TOPS", "build_npu", "build_softmax", "build_attention", "builder", "emitted",
           "softmax_lut", "design_stamp"]

#: The tops a configuration can be built as.
TOPS = ("npu", "softmax", "attention")


def design_stamp() -> str:
    """Hash of everything that shapes a design's Verilog for a configuration: the generator's
    sources (:func:`npugen.hw.files.generator_stamp`), this builder and the golden models that
    compute the constants it bakes in (``sim/golden/``), hex. Cached simulator builds carry it.
    """
    h = hashlib.sha256(generator_stamp().encode())
    here = Path(__file__).resolve().parent
    for p in [here / "design.py", *sorted((here / "golden").glob("*.py"))]:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


def softmax_lut(cfg: GemmConfig) -> list[int] | None:
    """The 256 LUT entries to bake as a ROM, or None when the LUT is streamed in at run time.

    Returns ``make_lut(softmax.lut_rom_scale, softmax.F)`` (``docs/osi8.md``) when the
    configuration has a ``[softmax]`` section with ``lut_rom_scale``; None otherwise.
    """
    sm = cfg.softmax
    if sm is None or sm.lut_rom_scale is None:
        return None
    from npugen.sim.golden import make_lut
    return make_lut(sm.lut_rom_scale, sm.F)


def build_npu(cfg: GemmConfig):
    """The accelerator top of ``cfg``: :class:`npugen.hw.top.NpuTop`, with the baked softmax
    LUT when ``[softmax] lut_rom_scale`` asks for one."""
    from npugen.hw.top import NpuTop
    lut = softmax_lut(cfg)
    return NpuTop(cfg) if lut is None else NpuTop(cfg, softmax_lut=lut)


def build_softmax(cfg: GemmConfig):
    """The standalone softmax top of ``cfg`` (:class:`npugen.hw.top.SoftmaxTop`).

    Raises
    ------
    MissingSectionError
        If the configuration has no ``[softmax]`` section.
    """
    from npugen.hw.top import SoftmaxTop
    MissingSectionError.check(cfg, "softmax")
    return SoftmaxTop(cfg, lut=softmax_lut(cfg))


def build_attention(cfg: GemmConfig):
    """The standalone attention top of ``cfg`` (:class:`npugen.hw.top.AttentionTop`).

    Raises
    ------
    MissingSectionError
        If the configuration has no ``[attention]`` section.
    """
    from npugen.hw.top import AttentionTop
    MissingSectionError.check(cfg, "attention")
    return AttentionTop(cfg)


_BUILDERS: dict[str, Callable] = {"npu": build_npu, "softmax": build_softmax,
                                  "attention": build_attention}


def builder(top: str = "npu") -> Callable[[GemmConfig], object]:
    """The builder of a top (one of :data:`TOPS`).

    Raises
    ------
    ValueError
        For a top not in :data:`TOPS`.
    """
    try:
        return _BUILDERS[top]
    except KeyError:
        raise InputError(f"Top must be one of {', '.join(TOPS)}, not {top!r}") from None


def emitted(cfg: GemmConfig, top: str = "npu") -> tuple[GemmConfig, Callable]:
    """The configuration to emit and its builder, for a top.

    The standalone units are emitted under their own module names (``<name>_softmax``,
    ``<name>_attention``), so the returned configuration carries that name.

    Raises
    ------
    ValueError
        For a top not in :data:`TOPS`.
    MissingSectionError
        If the configuration lacks the section the top needs.
    """
    build = builder(top)
    if top == "npu":
        return cfg, build
    MissingSectionError.check(cfg, top)
    return dataclasses.replace(cfg, name=f"{cfg.name}_{top}"), build

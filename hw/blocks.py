"""Report blocks: which part of the design each Verilog module's area counts toward.

Every component class of the generator states the block it belongs to in a class attribute,
``report_block``, one of :data:`REPORT_BLOCKS` but ``"memories"``: ``"array"`` (PEs and the
systolic array), ``"requantizer"`` (the GEMM engine's output requantizer), ``"control"``
(command decoding, sequencers, parameter slots, result FIFO logic, the tops), ``"softmax"`` and
``"attention"`` (the OSI8 units). A unit block (``"softmax"``, ``"attention"``) claims its whole
subtree: the attention unit's own score requantizer counts toward ``"attention"``. Amaranth's
library blocks (a FIFO) count toward their parent's block. ``"memories"`` is the storage of the
memories (accumulator memory, result FIFO), which the synthesis flows split off by cell type.
A component that is not npugen's (a top of the caller's own) without ``report_block`` counts as
``"control"``.

:func:`module_blocks` walks an elaborated design and names the block of every Verilog module;
``npugen generate`` writes that map into ``manifest.json`` (``blocks``) and the area flows read
it there (docs/area.md).
"""

from __future__ import annotations

from amaranth.hdl import Fragment

__all__ = ["REPORT_BLOCKS", "UNIT_BLOCKS", "BlockError", "module_blocks"]

#: The blocks of the area report, in report order.
REPORT_BLOCKS = ("array", "requantizer", "control", "memories", "softmax", "attention")
#: Blocks that claim the whole subtree of the component that declares them.
UNIT_BLOCKS = ("softmax", "attention")


class BlockError(Exception):
    """A generator component declares no report block, or one not in :data:`REPORT_BLOCKS`.

    A bug in the generator, not bad input: every ``npugen.hw`` component class must declare
    ``report_block``.
    """


def _declared(origins) -> str | None:
    """The block the fragment's elaboratable declares; None for one that is not npugen's (a
    library block, a user's own top) and declares none."""
    for obj in origins or ():
        if type(obj).__module__.startswith("amaranth."):
            continue
        block = getattr(obj, "report_block", None)
        if block is None and not type(obj).__module__.startswith("npugen."):
            continue
        if block is None:
            raise BlockError(f"{type(obj).__module__}.{type(obj).__qualname__} declares no "
                             f"report_block (one of {', '.join(REPORT_BLOCKS)})")
        if block not in REPORT_BLOCKS or block == "memories":
            raise BlockError(f"{type(obj).__qualname__}.report_block is {block!r}, not one of "
                             f"{', '.join(b for b in REPORT_BLOCKS if b != 'memories')}")
        return block
    return None


def module_blocks(component, name: str) -> dict[str, str]:
    """The report block of every Verilog module of a design.

    Parameters
    ----------
    component : amaranth.lib.wiring.Component
        The top-level component (elaborated here; not modified).
    name : str
        The top module's name (``cfg.name``); submodules are ``<name>.<path>``, as Amaranth
        names them in the emitted Verilog.

    Returns
    -------
    dict of str to str
        Module name to block, sorted by module name.

    Raises
    ------
    BlockError
        If a component of npugen declares no block, or any component an unknown one.
    """
    out: dict[str, str] = {}

    def walk(frag, path: str, parent: str | None) -> None:
        if parent in UNIT_BLOCKS:
            block = parent
        else:
            block = _declared(frag.origins) or parent
        out[path] = block or "control"
        for sub, sub_name, _ in frag.subfragments:
            if type(sub) is Fragment:           # MemoryInstance and Instance are cells
                walk(sub, f"{path}.{sub_name}", block)

    walk(Fragment.get(component, None), name, None)
    return dict(sorted(out.items()))

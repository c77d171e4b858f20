"""FPGA devices the ``ecp5`` and ``ice40`` targets place and route on, smallest first.

Capacities are from the vendors' family data sheets (Lattice FPGA-DS-02012 for ECP5, DS1040 and
FPGA-DS-02008 for iCE40): logic cells (``LUT4`` with their flip-flop), multipliers (ECP5
``MULT18X18D``, iCE40 UltraPlus ``SB_MAC16``) and block RAMs (ECP5 ``DP16KD`` 18 kbit, iCE40
``SB_RAM40_4K`` 4 kbit).

:meth:`Device.memory_capacity` bounds from above the memory bits a device can hold at all (block
RAM, distributed RAM in LUTs, flip-flops), so that a design whose memories exceed it is ruled out
before any synthesis. The flow does not use the iCE40 UltraPlus ``SB_SPRAM256KA`` single-port
RAMs, so they do not count.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import InputError

__all__ = ["Device", "DEVICES", "device_by_name", "BRAM_BITS", "LUTRAM_BITS_PER_LUT"]

#: Bits of one block RAM: ECP5 ``DP16KD`` 1024 x 18 (parity bits included), iCE40
#: ``SB_RAM40_4K`` 256 x 16.
BRAM_BITS = {"ecp5": 18432, "ice40": 4096}

#: Bits a LUT4 holds as distributed RAM, at most: ECP5 ``TRELLIS_DPR16X4`` is 16 x 4 bits on
#: four LUT4s (the data sheet's distributed RAM is about 8 bits a LUT overall, since only two
#: of a PFU's four slices can be RAM; 16 keeps the bound an upper bound); iCE40 has none.
LUTRAM_BITS_PER_LUT = {"ecp5": 16, "ice40": 0}


@dataclass(frozen=True)
class Device:
    """One FPGA device: name, the nextpnr flags that select it, and its capacity."""

    name: str
    family: str
    flags: tuple[str, ...]
    luts: int
    ffs: int
    dsps: int
    brams: int

    def memory_capacity(self) -> int:
        """The most memory bits the device can hold: every block RAM full
        (:data:`BRAM_BITS`), every LUT as distributed RAM (:data:`LUTRAM_BITS_PER_LUT`) and every
        flip-flop holding one bit, all at once. An upper bound (the resources exclude each other),
        so a design whose memories exceed it does not fit however it is synthesized."""
        return (self.brams * BRAM_BITS[self.family] + self.ffs
                + self.luts * LUTRAM_BITS_PER_LUT[self.family])

    def as_dict(self) -> dict:
        return {"name": self.name, "family": self.family, "luts": self.luts, "ffs": self.ffs,
                "dsps": self.dsps, "brams": self.brams}


DEVICES: dict[str, tuple[Device, ...]] = {
    "ecp5": (
        Device("LFE5U-12F", "ecp5", ("--12k", "--package", "CABGA381"), 12288, 12288, 28, 32),
        Device("LFE5U-25F", "ecp5", ("--25k", "--package", "CABGA381"), 24288, 24288, 28, 56),
        Device("LFE5U-45F", "ecp5", ("--45k", "--package", "CABGA381"), 43848, 43848, 72, 108),
        Device("LFE5U-85F", "ecp5", ("--85k", "--package", "CABGA381"), 83640, 83640, 156, 208),
    ),
    "ice40": (
        Device("iCE40HX1K", "ice40", ("--hx1k", "--package", "tq144"), 1280, 1280, 0, 16),
        Device("iCE40UP5K", "ice40", ("--up5k", "--package", "sg48"), 5280, 5280, 8, 30),
        Device("iCE40HX8K", "ice40", ("--hx8k", "--package", "ct256"), 7680, 7680, 0, 32),
    ),
}


def device_by_name(family: str, name: str) -> Device:
    """The device of ``family`` called ``name`` (case-insensitive).

    Raises
    ------
    ValueError
        For an unknown name; the message lists the known ones.
    """
    for d in DEVICES[family]:
        if d.name.lower() == name.lower():
            return d
    known = ", ".join(d.name for d in DEVICES[family])
    raise InputError(f"--device: {name!r} is not a known {family} device (known: {known})")

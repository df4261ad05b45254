"""Per-action energy tables for the digital models (Timeloop style: actions x table)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyTable:
    """Energy per action in pJ; memory entries are per access of ``word_bits`` bits.

    Attributes:
        word_bits: width of one memory access the entries refer to.
        mac: one multiply-accumulate.
        rf: one register-file access.
        noc: one word moved over the inter-PE network (broadcast bus).
        sram: one on-chip buffer access.
        dram: one off-chip access.
    """

    word_bits: int
    mac: float
    rf: float
    noc: float
    sram: float
    dram: float

    def scaled(self, unit_pj: float) -> EnergyTable:
        """The table with every entry multiplied by ``unit_pj`` (for relative tables)."""
        return EnergyTable(
            self.word_bits,
            *(unit_pj * v for v in (self.mac, self.rf, self.noc, self.sram, self.dram)),
        )

    def memory_pj(self, level: str, bits: float) -> float:
        """Energy of moving ``bits`` at memory ``level`` (rf, noc, sram or dram)."""
        return getattr(self, level) * bits / self.word_bits


# Horowitz (ISSCC 2014, 45 nm, 32-bit): int mult 3.1 + int add 0.1 pJ per MAC, register
# file 1 pJ, 8 KB SRAM 5 pJ, DRAM 640 pJ. The paper gives no network figure; 2 pJ
# assumes Eyeriss's ratio (inter-PE = 2x RF).
HOROWITZ_45NM = EnergyTable(word_bits=32, mac=3.2, rf=1.0, noc=2.0, sram=5.0, dram=640.0)
# Eyeriss (65 nm, 16-bit) costs relative to one MAC: RF 1x, inter-PE 2x, global buffer
# 6x, DRAM 200x; multiplied by the model's ``energy_unit_pj``.
EYERISS_RELATIVE = EnergyTable(word_bits=16, mac=1.0, rf=1.0, noc=2.0, sram=6.0, dram=200.0)

ENERGY_TABLES: dict[str, EnergyTable] = {
    "horowitz45": HOROWITZ_45NM,
    "eyeriss": EYERISS_RELATIVE,
}


def energy_table(name: str, unit_pj: float = 1.0) -> EnergyTable:
    """The table ``name``; a relative table (eyeriss) is scaled by ``unit_pj``."""
    if name not in ENERGY_TABLES:
        raise ValueError(f"unknown energy table {name!r}; valid: {', '.join(ENERGY_TABLES)}")
    table = ENERGY_TABLES[name]
    return table.scaled(unit_pj) if name == "eyeriss" else table

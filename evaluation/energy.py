"""Energy model: event counts x a per-event energy table (docs/evaluation.md, section 2).

Source of every figure: M. Horowitz, "Computing's energy problem (and what we can do about
it)", IEEE ISSCC 2014, Digest of Technical Papers, pp. 10-14 -- the 45 nm, 0.9 V table:

=====================  =========
operation              energy
=====================  =========
8b add                 0.03 pJ
32b add                0.1 pJ
8b mult                0.2 pJ
32b mult               3.1 pJ
16b FP add             0.4 pJ
16b FP mult            1.1 pJ
32b FP add             0.9 pJ
32b FP mult            3.7 pJ
8 KB SRAM, 64b read    10 pJ
32 KB SRAM, 64b read   20 pJ
1 MB SRAM, 64b read    100 pJ
DRAM, 64b access       1.3 - 2.6 nJ
=====================  =========

Derived figures (rules stated here and in docs/evaluation.md):

* Integer multipliers other than 8 bit: energy proportional to the product of the operand
  widths (array multiplier: a x b partial-product bits), anchored at the 8b x 8b = 0.2 pJ
  point: ``E(a, b) = 0.2 pJ * a * b / 64``. Check against the table: 32b x 32b gives 3.2 pJ
  (table: 3.1 pJ). The accelerator's 5-bit x 5-bit multiplier: 0.078 pJ.
* Integer adders: linear in width through the two table points (8b 0.03, 32b 0.1 pJ):
  ``E(b) = 0.03 + (b - 8) * 0.07 / 24`` pJ (64b: 0.193 pJ); below 8 bits 0.03 * b / 8.
* SRAM: every on-chip buffer is taken as banks of 32 KB: 20 pJ per 64-bit read = 0.3125 pJ
  per bit; a write costs the same as a read (the table has no write figure).
* DRAM: the low end, 1.3 nJ per 64 bits = 162.5 pJ per byte (read or write).
* Technology node: the table is 45 nm and the model stays at 45 nm by default. ``scale_to_node``
  offers one stated rule for other nodes -- on-chip dynamic energy proportional to the feature
  size at constant voltage (x 28/45 = 0.622 for 28 nm); DRAM is not scaled (off-chip I/O).
  Ratios between configurations (what the report compares) change only through the DRAM share.
"""

from __future__ import annotations

import dataclasses

__all__ = ["SOURCE", "HOROWITZ_45NM", "EnergyTable", "int_mult_pj", "int_add_pj",
           "node_factor", "EVENTS", "energy_of"]

SOURCE = ('M. Horowitz, "Computing\'s energy problem (and what we can do about it)", '
          "IEEE ISSCC 2014, Digest of Technical Papers, pp. 10-14; 45 nm, 0.9 V")

#: The table as cited (pJ), 45 nm. Keys name the operation exactly as in the source.
HOROWITZ_45NM = {
    "add_int8": 0.03, "add_int32": 0.1,
    "mult_int8": 0.2, "mult_int32": 3.1,
    "add_fp16": 0.4, "mult_fp16": 1.1,
    "add_fp32": 0.9, "mult_fp32": 3.7,
    "sram_8kb_read_64b": 10.0, "sram_32kb_read_64b": 20.0, "sram_1mb_read_64b": 100.0,
    "dram_64b_low": 1300.0, "dram_64b_high": 2600.0,
}

BASE_NODE_NM = 45


def int_mult_pj(a_bits: int, b_bits: int | None = None) -> float:
    """Integer multiplier ``a x b`` bits: 0.2 pJ * a * b / 64 (the 8b point of the table)."""
    b_bits = a_bits if b_bits is None else b_bits
    for v in (a_bits, b_bits):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"multiplier width must be a positive int, got {v!r}")
    return HOROWITZ_45NM["mult_int8"] * a_bits * b_bits / 64


def int_add_pj(bits: int) -> float:
    """Integer adder of ``bits``: linear through (8, 0.03 pJ) and (32, 0.1 pJ)."""
    if isinstance(bits, bool) or not isinstance(bits, int) or bits < 1:
        raise ValueError(f"adder width must be a positive int, got {bits!r}")
    lo, hi = HOROWITZ_45NM["add_int8"], HOROWITZ_45NM["add_int32"]
    if bits < 8:                       # below the table: proportional to width
        return lo * bits / 8
    return lo + (bits - 8) * (hi - lo) / 24


def node_factor(node_nm: int) -> float:
    """On-chip energy factor from 45 nm to ``node_nm`` (constant voltage, E ~ feature size)."""
    if isinstance(node_nm, bool) or not isinstance(node_nm, int) or not 5 <= node_nm <= 180:
        raise ValueError(f"node_nm must be an int in [5, 180], got {node_nm!r}")
    return node_nm / BASE_NODE_NM


# Per-event energies (pJ, 45 nm). Each event is one hardware operation; docs/evaluation.md 2
# says which counter or formula counts it for every configuration.
EVENTS = {
    # products
    "mult_fp16": HOROWITZ_45NM["mult_fp16"],
    "mult_int5": int_mult_pj(5, 5),          # the accelerator's 5b x 5b multiplier
    "mult_int4": int_mult_pj(4, 4),
    "mult_int8": HOROWITZ_45NM["mult_int8"],
    # reduction: one adder per product in the adder trees (N products -> N-1 adders)
    "add_fp16": HOROWITZ_45NM["add_fp16"],
    "add_int16": int_add_pj(16),             # INT4 adder tree (10b products growing to ~14b)
    # per term (one output channel x one work item): FP32 accumulate (FP16 baseline) or the
    # per-vector scale product mant = P * (M'x * M'w) (20b x 8b multiply + 4b x 4b) and the
    # 64-bit accumulation of the INT4-VSQ / MXINT8 term unit
    "add_fp32": HOROWITZ_45NM["add_fp32"],
    "scale_term": int_mult_pj(20, 8) + int_mult_pj(4, 4) + int_add_pj(64),
    "add_int64": int_add_pj(64),
    # post-processing per output element: scale (K x acc, 32b x 16b), bias and residual adds
    "ppu_int": int_mult_pj(32, 16) + 2 * int_add_pj(32),
    "ppu_fp16": HOROWITZ_45NM["mult_fp16"] + 2 * HOROWITZ_45NM["add_fp16"],
    # sparsity detector: one zero-counter increment per output element
    "detector": int_add_pj(16),
    # memories
    "sram_bit": HOROWITZ_45NM["sram_32kb_read_64b"] / 64,
    "dram_byte": HOROWITZ_45NM["dram_64b_low"] / 8,
}

#: Events that are off-chip (not scaled by ``node_factor``).
OFF_CHIP = ("dram_byte",)


@dataclasses.dataclass(frozen=True)
class EnergyTable:
    """Per-event energies (pJ) at ``node_nm``."""
    node_nm: int = BASE_NODE_NM

    def __post_init__(self):
        node_factor(self.node_nm)

    def pj(self, event: str) -> float:
        if event not in EVENTS:
            raise KeyError(f"unknown energy event {event!r}; known: {sorted(EVENTS)}")
        f = 1.0 if event in OFF_CHIP else node_factor(self.node_nm)
        return EVENTS[event] * f

    def as_dict(self) -> dict:
        return {e: self.pj(e) for e in sorted(EVENTS)}


def energy_of(events: dict, table: EnergyTable = EnergyTable()) -> tuple[float, dict]:
    """Total energy (pJ) and per-event breakdown of ``events`` (event -> count)."""
    parts = {}
    for name, count in sorted(events.items()):
        if count < 0:
            raise ValueError(f"event {name!r} has a negative count {count}")
        parts[name] = count * table.pj(name)
    return sum(parts.values()), parts

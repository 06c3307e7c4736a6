"""Arithmetic area model for the equal-area budget (docs/evaluation.md, section 3).

Area table (45 nm, um^2 per operator), as reproduced -- identically, all nine figures -- by

* J. L. Hennessy, D. A. Patterson, "Computer Architecture: A Quantitative Approach", 6th ed.,
  Morgan Kaufmann 2019, Figure 1.13. Its note: energy from M. Horowitz, "Computing's energy
  problem (and what we can do about it)", ISSCC 2014; **area from a Design Compiler synthesis
  in TSMC 45 nm, FP units from the DesignWare library** (credited to Azizi and Dally).
* S. Kim et al., "Full Stack Optimization of Transformer Inference: a Survey", arXiv
  2302.14017 (2023), Figure 15, which cites Horowitz ISSCC 2014 for the table.

The area column is therefore usually attributed to Horowitz's ISSCC 2014 talk; the textbook
says it comes from a separate 45 nm synthesis. We could not read the ISSCC paper itself.

=============  ==========  =============  ==========
operation      area um^2   operation      area um^2
=============  ==========  =============  ==========
8b add         36          16b FP add     1360
16b add        67          32b FP add     4184
32b add        137         16b FP mult    1640
8b mult        282         32b FP mult    7700
32b mult       3495
=============  ==========  =============  ==========

Derived figures (the same rules as :mod:`evaluation.energy`):

* Integer multiplier ``a x b`` bits: area proportional to the product of the operand widths
  (array multiplier: ``a * b`` partial-product cells), anchored at 8b x 8b = 282 um^2:
  ``A(a, b) = 282 * a * b / 64``. Check: 32b x 32b gives 4512 um^2, the table 3495 (the rule
  over-estimates wide multipliers by 29 %; it only has to be good at 4-8 bits). The
  accelerator's 5b x 5b multiplier: 110.2 um^2.
* Integer adder of ``b`` bits: piecewise linear through the three table points (8b 36, 16b 67,
  32b 137 um^2), beyond 32 bits with the 16-32 slope (4.375 um^2 per bit: 64b 277 um^2), below
  8 bits proportional to width (4.5 um^2 per bit).

What one engine's arithmetic is (:func:`int_array_um2`, :func:`fp16_array_um2`): per column
of a ``lanes`` x ``cols`` array, ``lanes`` multipliers, an adder tree over the lanes, and the
per-column accumulation -- for the integer engines the RTL's term path (hw/dpe.py, hw/spe.py:
partial-sum adder of MANT_WIDTH + 2 = 22 bits, the 4b x 4b scale-mantissa product, the 22b x
8b scale multiply, one 64-bit accumulator adder); for FP16 one FP32 accumulate adder. Not
counted (no table entry): registers, operand multiplexers, the SPE's lane-selection priority
encoders, the term unit's shifter/rounding/clamp, the PPU, SRAM. (The RTL folds the term
shift's two lowest bits into the scale operand, ``M << (E mod 4)``, an FPGA timing choice of
``hw.engine``: its multiply is 22b x 11b; the model keeps 22b x 8b and, as before, no shifter.) docs/evaluation.md says which
way each omission biases the comparison.
"""

from __future__ import annotations

import math

from .baselines import dense_array

__all__ = ["SOURCE", "AREA_45NM_UM2", "int_mult_um2", "int_add_um2", "adder_tree_um2",
           "int_array_um2", "fp16_array_um2", "SQDM_ENGINES", "sqdm_um2", "column_um2",
           "equal_area_array", "PRODUCT_BITS", "PARTIAL_BITS", "SCALE_MANT_BITS", "ACC_BITS"]

SOURCE = ("45 nm area column as reproduced in Hennessy & Patterson, Computer Architecture: A "
          "Quantitative Approach, 6th ed. (2019), Fig. 1.13 (area: Design Compiler synthesis, "
          "TSMC 45 nm, DesignWare FP units; energy: Horowitz, ISSCC 2014) and in Kim et al., "
          "arXiv 2302.14017 (2023), Fig. 15 (citing Horowitz, ISSCC 2014)")

#: The table as cited (um^2, 45 nm).
AREA_45NM_UM2 = {
    "add_int8": 36.0, "add_int16": 67.0, "add_int32": 137.0,
    "add_fp16": 1360.0, "add_fp32": 4184.0,
    "mult_int8": 282.0, "mult_int32": 3495.0,
    "mult_fp16": 1640.0, "mult_fp32": 7700.0,
}

#: RTL widths (hw/common.py, hw/dpe.py, hw/spe.py).
OPERAND_BITS = 5              # signed 5-bit multiplier operands (INT4 codes, MXINT8 nibbles)
PRODUCT_BITS = 10             # 5b x 5b signed product
PARTIAL_BITS = 22             # per-column partial sum P (MANT_WIDTH + 2)
SCALE_MANT_BITS = 4           # mantissa of an FP8 scale (M in 0..15); M_x * M_w is 8 bits
ACC_BITS = 64                 # ACC_WIDTH


def _check_bits(v, what):
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        raise ValueError(f"{what} width must be a positive int, got {v!r}")


def int_mult_um2(a_bits: int, b_bits: int | None = None) -> float:
    """Integer multiplier ``a x b`` bits: 282 um^2 * a * b / 64 (the table's 8b point)."""
    b_bits = a_bits if b_bits is None else b_bits
    _check_bits(a_bits, "multiplier")
    _check_bits(b_bits, "multiplier")
    return AREA_45NM_UM2["mult_int8"] * a_bits * b_bits / 64


def int_add_um2(bits: int) -> float:
    """Integer adder of ``bits``: piecewise linear through (8, 36), (16, 67), (32, 137) um^2."""
    _check_bits(bits, "adder")
    a8, a16, a32 = (AREA_45NM_UM2[k] for k in ("add_int8", "add_int16", "add_int32"))
    if bits < 8:
        return a8 * bits / 8
    if bits <= 16:
        return a8 + (bits - 8) * (a16 - a8) / 8
    return a16 + (bits - 16) * (a32 - a16) / 16


def adder_tree_um2(inputs: int, in_bits: int) -> float:
    """Binary adder tree over ``inputs`` operands of ``in_bits``: each level's adders are one
    bit wider than their operands (16 inputs of 10 bits: 8 x 11b + 4 x 12b + 2 x 13b + 14b)."""
    if isinstance(inputs, bool) or not isinstance(inputs, int) or inputs < 1:
        raise ValueError(f"adder tree inputs must be a positive int, got {inputs!r}")
    total, n, w = 0.0, inputs, in_bits
    while n > 1:
        total += (n // 2) * int_add_um2(w + 1)
        n, w = n - n // 2, w + 1
    return total


def _column_int(lanes: int) -> dict:
    return {
        "multipliers": lanes * int_mult_um2(OPERAND_BITS),
        "adder_tree": adder_tree_um2(lanes, PRODUCT_BITS),
        "partial_sum_add": int_add_um2(PARTIAL_BITS),
        "scale_mantissa_mult": int_mult_um2(SCALE_MANT_BITS),
        "scale_mult": int_mult_um2(PARTIAL_BITS, 2 * SCALE_MANT_BITS),
        "accumulator_add": int_add_um2(ACC_BITS),
    }


def _column_fp16(lanes: int) -> dict:
    return {
        "multipliers": lanes * AREA_45NM_UM2["mult_fp16"],
        "adder_tree": (lanes - 1) * AREA_45NM_UM2["add_fp16"],
        "accumulator_add": AREA_45NM_UM2["add_fp32"],
    }


def _array(column: dict, cols: int) -> dict:
    if isinstance(cols, bool) or not isinstance(cols, int) or cols < 1:
        raise ValueError(f"cols must be a positive int, got {cols!r}")
    parts = {k: v * cols for k, v in column.items()}
    return {"parts_um2": parts, "total_um2": sum(parts.values())}


def int_array_um2(lanes: int, cols: int) -> dict:
    """Arithmetic of a ``lanes`` x ``cols`` array of 5-bit multipliers with the RTL's per-column
    adder tree over the lanes and term path (the DPE: 16 x 8, the SPE: 4 x 32, the INT4-VSQ
    dense baseline: 16 x cols)."""
    return _array(_column_int(lanes), cols)


def fp16_array_um2(lanes: int, cols: int) -> dict:
    """Arithmetic of a ``lanes`` x ``cols`` FP16 array: FP16 multipliers, an FP16 adder tree
    (``lanes - 1`` adders) and one FP32 accumulate adder per column."""
    return _array(_column_fp16(lanes), cols)


#: The accelerator's two engines (docs/hardware.md 2): DPE 16 lanes x 8 columns, SPE 4 lanes
#: (non-zero activations per cycle) x 32 columns.
SQDM_ENGINES = {"dpe": (16, 8), "spe": (4, 32)}


def sqdm_um2() -> dict:
    """Arithmetic area of this design: the DPE and the SPE (:data:`SQDM_ENGINES`)."""
    eng = {name: int_array_um2(lanes, cols) for name, (lanes, cols) in SQDM_ENGINES.items()}
    return {"engines": eng, "total_um2": sum(e["total_um2"] for e in eng.values()),
            "multipliers": sum(lanes * cols for lanes, cols in SQDM_ENGINES.values())}


def column_um2(config: str, lanes: int = 16) -> float:
    """Area of one ``lanes``-multiplier column of a dense baseline array."""
    if config == "fp16_dense":
        return sum(_column_fp16(lanes).values())
    if config == "int4_vsq_dense":
        return sum(_column_int(lanes).values())
    raise ValueError(f"no dense array area for configuration {config!r}")


def equal_area_array(config: str, budget_um2: float | None = None, *, lanes: int = 16,
                     base_tile: int = 32) -> dict:
    """Array shape of dense baseline ``config`` whose arithmetic area equals ``budget_um2``
    (default: this design's, :func:`sqdm_um2`).

    Area is linear in the column count, so the exact equal-area count is ``budget / column``
    columns of ``lanes`` multipliers. It is rounded **up** to whole columns (the baseline never
    gets less area than this design), and the tile (output channels per work item) is
    ``base_tile`` when the column count divides it, else one pass per item (tile = cols): the
    shapes :func:`evaluation.fastmodel.layer_counters` and the RTL accept (tile a multiple of
    cols).
    """
    budget = sqdm_um2()["total_um2"] if budget_um2 is None else float(budget_um2)
    if not budget > 0:
        raise ValueError(f"area budget must be positive, got {budget_um2!r}")
    col = column_um2(config, lanes)
    exact_cols = budget / col
    cols = max(1, math.ceil(exact_cols - 1e-9))
    return {**dense_array(cols, lanes=lanes, base_tile=base_tile), "multipliers": lanes * cols,
            "multipliers_exact": lanes * exact_cols, "column_um2": col,
            "area_um2": cols * col, "area_ratio": cols * col / budget}

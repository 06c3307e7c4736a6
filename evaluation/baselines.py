"""Per-execution cycles and energy events of the configurations (docs/evaluation.md 3).

Budgets: every configuration has 256 multipliers and the same DRAM bandwidth; at equal
arithmetic area (:mod:`evaluation.area`) the dense baselines get another column count
(``dense_counters(..., array=...)``, ``events_for(..., array=...)``).

* ``fp16_dense``  -- analytic: the accelerator's pipeline (walker, one item per cycle, join,
  1-channel-per-cycle serializer/PPU) with a single dense array of 16 lanes x 16 columns =
  256 FP16 multipliers, every layer in FP16 (16-channel vectors, one pass per column group).
* ``int4_vsq_dense`` -- the dense top from the same generator (``hw.config.PRESETS["dense"]``:
  16 lanes x 16 columns = 256 multipliers, no SPE), every layer INT4 with a FP8 scale per
  16-element vector: the RTL replay of the all-INT4 trace (``--plan int4``); modelled when no
  replay is given.
* ``int4_vsq_dense_plan`` -- the same dense top running the precision plan of ``sqdm`` (the same
  trace, an all-dense map): the same quality as ``sqdm``.
* ``int4_dense``  -- the SQ-DM RTL in the paper's organisation (``PRESETS["paper"]``: DPE 128
  + SPE 128) with an all-dense map: mixed precision per the plan, VSQ scales, every item on the
  DPE (the SPE idles).
* ``sqdm_paper``  -- the SQ-DM RTL in the paper's organisation with the trace's channel maps
  (architecture v1).
* ``sqdm``        -- the SQ-DM RTL (``PRESETS["default"]``: architecture v2) with the trace's
  channel maps.

The cycle counts of the analytic baselines come from :func:`evaluation.fastmodel.layer_counters`
(the closed form of the RTL's pipeline) run with ``dpe_cols=16`` and an all-dense map: the
"utilisation model" is therefore the RTL's own (padding of cin to 16-channel vectors and of
cout to 32-channel tiles, per-unit max of array time and serializer time, pipeline fill).
"""

from __future__ import annotations

import numpy as np

from golden import intref as ir
from hw.config import PRESETS, SPE_MECHANISMS
from .fastmodel import _tap_sum, layer_counters

__all__ = ["CONFIGS", "RTL_CONFIGS", "SQDM_FAMILY", "PAPER", "PRECISION", "DENSE_PEERS",
           "dense_array", "HW", "DENSE", "ARRAY_KEYS", "DENSE_ARRAY", "MULTIPLIERS", "array_of",
           "array_config", "dense_counters", "sqdm_counters", "events_for", "dram_bytes",
           "useful_macs", "nonzero_work", "channel_reads"]

CONFIGS = ("fp16_dense", "int4_dense", "int4_vsq_dense", "int4_vsq_dense_plan", "sqdm_paper",
           "sqdm")
#: The configurations built from the 4-bit RTL generator (their counters can come from a replay).
RTL_CONFIGS = ("int4_dense", "int4_vsq_dense", "int4_vsq_dense_plan", "sqdm_paper", "sqdm")
#: This design's configurations (at its own area): SQ-DM v2, the paper's organisation and that
#: organisation with an all-dense map.
SQDM_FAMILY = ("int4_dense", "sqdm_paper", "sqdm")
#: The precision each configuration runs: ``fp16``, ``int4`` (every layer) or ``plan`` (the
#: committed precision plan); the last two are keys of the golden report's ``sqnr_db``.
PRECISION = {"fp16_dense": "fp16", "int4_dense": "plan", "int4_vsq_dense": "int4",
             "int4_vsq_dense_plan": "plan", "sqdm_paper": "plan", "sqdm": "plan"}
#: The dense 4-bit peers (no SPE) and the precision each runs.
DENSE_PEERS = {c: PRECISION[c] for c in ("int4_vsq_dense", "int4_vsq_dense_plan")}
#: The RTL's configuration (``hw.config.PRESETS["default"]``: architecture v2, DPE 16 x 8,
#: SPE 4 x 32).
HW = PRESETS["default"]
#: The paper's organisation at the same sizes (``hw.config.PRESETS["paper"]``): ``sqdm_paper``
#: and ``int4_dense`` (with an all-dense map, where it routes every group to the DPE).
PAPER = PRESETS["paper"]
#: The dense peers' top at equal multiplier count (``hw.config.PRESETS["dense"]``).
DENSE = PRESETS["dense"]
#: The parameters that shape an array (an "array" dict of this module and evaluation.area).
ARRAY_KEYS = ("vector", "dpe_cols", "spe_lanes", "tile")


def array_of(config) -> dict:
    """The array shape (:data:`ARRAY_KEYS`) of an ``hw.config.AcceleratorConfig``."""
    return {k: getattr(config, k) for k in ARRAY_KEYS}


def dense_array(cols: int, *, lanes: int = 16, base_tile: int = 32) -> dict:
    """The array shape of a dense top (no SPE) with ``cols`` columns of ``lanes``: tile
    ``base_tile`` when the columns divide it, else one pass per item (tile = columns), the
    shapes the RTL and :func:`evaluation.fastmodel.layer_counters` accept."""
    return {"vector": lanes, "dpe_cols": cols, "spe_lanes": 0,
            "tile": base_tile if base_tile % cols == 0 else cols}


def array_config(array: dict):
    """The accelerator configuration of an array shape (the rest as :data:`HW`; an array
    without SPE has only ``col_skip`` of the v2 mechanisms, as :data:`DENSE`)."""
    shape = {k: array[k] for k in ARRAY_KEYS}
    if not array["spe_lanes"]:
        shape.update({m: 0 for m in SPE_MECHANISMS})
    return HW.replace(**shape)


#: The dense baselines' array: :data:`DENSE`'s (16 lanes x 16 columns, tile 32, no SPE).
DENSE_ARRAY = array_of(DENSE)
MULTIPLIERS = {c: 256 for c in CONFIGS}

_FP8_SCALE_BITS = 8
_E8M0_SCALE_BITS = 8


def _fmt_bits(fmt: ir.Format, elements: int, vectors: int) -> float:
    """Bits of ``elements`` codes in ``vectors`` scale blocks of format ``fmt``."""
    if fmt == ir.Format.MXINT8:
        return elements * 8 + vectors * _E8M0_SCALE_BITS
    return elements * 4 + vectors * _FP8_SCALE_BITS


def _vectors(pixels, channels, fmt, vector=HW.vector):
    return pixels * -(-channels // ir.block_size(fmt, vector))


def useful_macs(d) -> int:
    """Products of the convolution without padding taps (cin x cout per valid tap)."""
    s = d.shape
    taps = int(_tap_sum(np.ones((s.height, s.width), dtype=np.int64), s).sum())
    return taps * d.cin * d.cout


def nonzero_work(d, x_codes) -> int:
    """5-bit multiplier operations of the products with a non-zero activation (padding taps
    excluded): the work of an ideal zero-skipping datapath. An MXINT8 product is two per
    non-zero activation nibble (signed high ``x >> 4``, unsigned low ``x & 15``; each times
    the weight's two nibbles), so nibble skipping reaches it."""
    s = d.shape
    x = np.asarray(x_codes).astype(np.int64)
    if ir.Format(d.x_format).mode == ir.Mode.MXINT8:
        ops = 2 * (((x >> 4) != 0).astype(np.int64) + ((x & 15) != 0))
    else:
        ops = (x != 0).astype(np.int64)
    return int(_tap_sum(ops.sum(axis=2), s).sum()) * d.cout


def channel_reads(d) -> int:
    """The RTL's per-output-channel memory reads (param word, + residual word)."""
    s = d.shape
    return s.out_height * s.out_width * d.cout * (2 if d.residual else 1)


def dense_counters(d, x_codes, array=None) -> dict:
    """Cycles and item counts of a dense array running ``d`` in INT4-like passes (the FP16 and
    INT4-VSQ baselines: 16-channel vectors, one pass per column group). ``array``: the shape
    (``vector``, ``dpe_cols``, ``spe_lanes``, ``tile``), default :data:`DENSE_ARRAY` (16 x 16);
    the equal-area budget uses other column counts (:func:`evaluation.area.equal_area_array`)."""
    a = DENSE_ARRAY if array is None else array
    route = np.zeros(-(-d.cin // d.vector), dtype=bool)
    # x_format INT4: the cycles of a dense array depend on the mode only (INT4 for UINT4 too)
    return layer_counters(d.shape, route, x_codes=x_codes, x_format=ir.Format.INT4,
                          out_format=ir.Format.INT4, residual=d.residual, details=True,
                          config=array_config(a))


def sqdm_counters(d, x_codes, route, config=HW, **params) -> dict:
    """Counters (and item counts) of the top built with ``config`` (default the SQ-DM top;
    ``params`` override it) for ``d`` with channel map ``route`` and the layer's precision."""
    return layer_counters(d.shape, route, x_codes=x_codes, x_format=d.x_format,
                          out_format=d.out_format, residual=d.residual, details=True,
                          config=config.replace(**params))


def dram_bytes(config: str, d) -> float:
    """Off-chip traffic of one execution: weights and parameters, input, residual and output,
    each moved once (the on-chip buffers hold one layer's working set)."""
    s = d.shape
    px_in, px_out = d.height * d.width, s.out_height * s.out_width
    w_elems = d.cout * d.kernel ** 2 * d.cin
    if config == "fp16_dense":
        bits = 16 * (px_in * d.cin + w_elems + px_out * d.cout) + 32 * d.cout
        if d.residual:
            bits += 16 * px_out * d.cout
        return bits / 8
    if config == "int4_vsq_dense":
        xf = wf = of = ir.Format.INT4
    elif config in SQDM_FAMILY + ("int4_vsq_dense_plan",):
        xf, of = ir.Format(d.x_format), ir.Format(d.out_format)
        wf = xf.mode.weight_format
    else:
        raise ValueError(f"unknown configuration {config!r}; one of {CONFIGS}")
    bits = _fmt_bits(xf, px_in * d.cin, _vectors(px_in, d.cin, xf))
    bits += _fmt_bits(wf, w_elems, _vectors(d.cout * d.kernel ** 2, d.cin, wf))
    bits += _fmt_bits(of, px_out * d.cout, _vectors(px_out, d.cout, of))
    bits += 48 * d.cout                       # param word: K (16 b) + bias (32 b)
    if d.residual:
        bits += 32 * px_out * d.cout          # int32 residual on the 2^-16 grid
    return bits / 8


def _word_bits(fmt: ir.Format, vector=HW.vector) -> int:
    """Packed bits of one act/out word (one vector or block and its scale)."""
    return 32 * 8 + 8 if fmt == ir.Format.MXINT8 else vector * 4 + 8


#: The RTL's word widths as built (8-bit containers for every element; docs/hardware.md 5).
AS_BUILT_ACT_BITS = 264


def events_for(config: str, d, c: dict, *, as_built: bool = False, array=None) -> dict:
    """Energy events (evaluation.energy.EVENTS names -> counts) of one execution.

    ``c``: counters with item counts (``dense_counters`` / ``sqdm_counters``, or RTL counters
    with ``items`` = non-null items). ``as_built``: SRAM words at the RTL's 8-bit-container
    widths instead of packed 4-bit codes (sqdm / int4_dense only). ``array``: the dense
    baselines' array shape that ``c`` was counted with (default :data:`DENSE_ARRAY`); an item
    is one 16-element vector x ``tile`` output channels whatever the column count.
    """
    s = d.shape
    outs = s.out_height * s.out_width * d.cout
    tile = HW.tile
    if config in ("fp16_dense", "int4_vsq_dense"):
        a = DENSE_ARRAY if array is None else array
        if a["vector"] != 16:
            raise ValueError(f"dense baselines have 16-lane arrays, got vector={a['vector']}")
        tile = a["tile"]
    items = c["items"] if "items" in c else c["items_dense"] + c["items_sparse"]
    dram = dram_bytes(config, d)
    if config == "fp16_dense":
        prods = items * 16 * tile
        act_bits, out_bits = 16 * 16, 16 * 16
        sram = (items * (act_bits + tile * act_bits) + outs * (32 + (16 if d.residual else 0))
                + c["mem_writes"] * out_bits)
        return {"mult_fp16": prods, "add_fp16": prods, "add_fp32": items * tile,
                "ppu_fp16": outs, "sram_bit": sram + 8 * dram, "dram_byte": dram}
    if config == "int4_vsq_dense":
        prods = items * 16 * tile
        wb = _word_bits(ir.Format.INT4)
        sram = (items * (wb + tile * wb) + outs * (48 + (32 if d.residual else 0))
                + c["mem_writes"] * wb)
        return {"mult_int5": prods, "add_int16": prods, "scale_term": items * tile,
                "ppu_int": outs, "sram_bit": sram + 8 * dram, "dram_byte": dram}
    if config in SQDM_FAMILY + ("int4_vsq_dense_plan",):
        if config == "int4_vsq_dense_plan":
            tile = (DENSE_ARRAY if array is None else array)["tile"]
        xf, of = ir.Format(d.x_format), ir.Format(d.out_format)
        if as_built:
            xb = ob = AS_BUILT_ACT_BITS
        else:
            xb, ob = _word_bits(xf), _word_bits(of)
        sram = (items * (xb + tile * xb) + outs * (48 + (32 if d.residual else 0))
                + c["mem_writes"] * ob)
        ev = {"mult_int5": c["macs"], "add_int16": c["macs"], "scale_term": items * tile,
              "ppu_int": outs, "detector": outs, "sram_bit": sram + 8 * dram,
              "dram_byte": dram}
        if config == "int4_vsq_dense_plan":  # a dense accelerator has no use for a detector
            del ev["detector"]
        return ev
    raise ValueError(f"unknown configuration {config!r}; one of {CONFIGS}")

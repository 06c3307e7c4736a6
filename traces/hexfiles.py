"""``$readmemh`` images of one layer execution, in the word layouts of the accelerator's
memories (``hw/layout.py`` is their one definition; ``docs/hardware.md`` describes them).

Per execution folder: ``act.hex``, ``weight.hex``, ``param.hex``, ``res.hex`` (if the layer has
a residual) and ``out_expected.hex``; each memory image starts at address 0 (the descriptor's
base addresses are 0 in a replay of a single execution).
"""

from __future__ import annotations

from pathlib import Path

from hw import layout
from traces.format import Execution

DEFAULT_TILE = 32


def memory_images(ex: Execution, *, tile: int = DEFAULT_TILE) -> dict[str, tuple[list, int]]:
    """name -> (words, word width in bits) for every memory of ``ex``."""
    d, a = ex.descriptor, ex.arrays
    images = {
        "act": (layout.act_words(a["x_codes"], a["x_scales"], x_format=d.x_format,
                                 vector=d.vector), layout.ACT_WORD_BITS),
        "weight": (layout.weight_words(a["w_codes"], a["w_scales"], x_format=d.x_format,
                                       tile=tile, vector=d.vector),
                   layout.weight_word_bits(tile)),
        "param": (layout.param_words(a["scale_mant"], a["bias"]), layout.PARAM_WORD_BITS),
        "out_expected": (layout.act_words(a["out_codes"], a["out_scales"],
                                          x_format=d.out_format, vector=d.vector),
                         layout.ACT_WORD_BITS),
    }
    if d.residual:
        images["res"] = (layout.residual_words(a["residual"]), layout.RES_WORD_BITS)
    return images


def write_hex_files(ex: Execution, index: int, folder: Path, *, tile: int = DEFAULT_TILE):
    """``extra_files`` hook of ``traces.format.write_trace``: writes and returns the paths."""
    paths = []
    for name, (words, width) in memory_images(ex, tile=tile).items():
        path = Path(folder) / f"{name}.hex"
        layout.write_memh(path, words, width)
        paths.append(path)
    return paths


def predicted_counters(ex: Execution, *, tile: int = DEFAULT_TILE) -> dict:
    """The cycle model's counters (``hw.cyclemodel``) for ``ex`` on the default accelerator
    configuration (DPE 16 x 8, SPE 4 lanes, tile ``tile``) with the execution's channel map."""
    from hw.cyclemodel import predict_layer
    d = ex.descriptor
    act = layout.act_words(ex.arrays["x_codes"], ex.arrays["x_scales"], x_format=d.x_format,
                           vector=d.vector)
    counters = predict_layer(d.shape, [int(b) for b in ex.arrays["channel_map"]],
                             x_format=d.x_format, out_format=d.out_format,
                             residual=d.residual, act_words=act, vector=d.vector, tile=tile)
    return {k: int(v) for k, v in counters.items()}

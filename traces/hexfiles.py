"""``$readmemh`` images of one layer execution, in the word layouts of the accelerator's
memories (``hw/layout.py`` is their one definition, ``hw.job.memory_images`` the one mapping
from an execution to them; ``docs/hardware.md`` describes them).

Per execution folder: ``act.hex``, ``weight.hex``, ``param.hex``, ``res.hex`` (if the layer has
a residual) and ``out_expected.hex``; each memory image starts at address 0 (the descriptor's
base addresses are 0 in a replay of a single execution). The weight words are packed for the
tile of :data:`EXPORT_CONFIG`, and the counters a trace records are that configuration's.
"""

from __future__ import annotations

from pathlib import Path

from hw import layout
from hw.config import MECHANISMS, PRESETS, AcceleratorConfig
from hw.job import memory_images, predict_counters
from traces.format import Execution, Trace, TraceError

__all__ = ["EXPORT_CONFIG", "HEX_SOURCES", "CYCLE_PARAMS", "hex_header", "cycle_model_header",
           "write_hex_files", "check_hex_files", "predicted_counters"]

#: The configuration exported traces are for (the hex files' weight tile, the counters).
EXPORT_CONFIG = PRESETS["default"]
#: The arrays each hex file is written from.
HEX_SOURCES = {"act": "x_codes, x_scales", "weight": "w_codes, w_scales",
               "param": "scale_mant, bias", "res": "residual",
               "out_expected": "out_codes, out_scales"}


def hex_header(config: AcceleratorConfig = EXPORT_CONFIG) -> dict:
    """The manifest's ``hex`` entry for hex files written for ``config``."""
    return {"layout": "hw/layout.py", "weight_tile": config.tile}


#: The configuration fields the cycle counts depend on: the array's shape, the v2 mechanisms and
#: the join's second unit register.
CYCLE_PARAMS = ("vector", "dpe_cols", "spe_lanes", "tile") + MECHANISMS + ("timing_regs",)


def cycle_model_header(config: AcceleratorConfig = EXPORT_CONFIG) -> dict:
    """The manifest's ``cycle_model`` entry: the array parameters the recorded counters
    (``meta["cycles"]``) were predicted for."""
    return {"model": "hw/cyclemodel.py", **{k: getattr(config, k) for k in CYCLE_PARAMS},
            "meta_key": "cycles (counters from start to done)"}


def write_hex_files(ex: Execution, index: int, folder: Path, *,
                    config: AcceleratorConfig = EXPORT_CONFIG):
    """``extra_files`` hook of ``traces.format.write_trace``: writes and returns the paths."""
    paths = []
    for name, (words, width) in memory_images(ex.descriptor, ex.arrays,
                                              tile=config.tile).items():
        path = Path(folder) / f"{name}.hex"
        layout.write_memh(path, words, width)
        paths.append(path)
    return paths


def predicted_counters(ex: Execution, *, config: AcceleratorConfig = EXPORT_CONFIG) -> dict:
    """The cycle model's counters (``hw.cyclemodel``) for ``ex`` on ``config`` with the
    execution's channel map."""
    counters = predict_counters(ex.descriptor, ex.arrays["x_codes"], ex.arrays["channel_map"],
                                config)
    return {k: int(v) for k, v in counters.items()}


def check_hex_files(trace: Trace, index: int, ex: Execution | None = None) -> None:
    """Raise :class:`TraceError` (naming the file, the line and the arrays) unless every hex
    file of execution ``index`` holds, line for line, the words its arrays give at the
    manifest's weight tile: the line count, the characters (exactly ``ceil(width / 4)`` hex
    digits per line, as :func:`hw.layout.write_memh` writes them) and the values. A trace
    whose manifest has no ``hex`` entry has no hex files to check."""
    hex_info = trace.manifest.get("hex")
    if not hex_info:
        return
    rec = trace.records[index]
    tile = hex_info.get("weight_tile")
    if isinstance(tile, bool) or not isinstance(tile, int) or tile < 1:
        raise TraceError(trace.root / "manifest.json", "hex.weight_tile",
                         f"must be a positive int, got {tile!r}")
    ex = trace.load(index) if ex is None else ex
    folder = trace.root / rec["folder"]
    for name, (words, width) in memory_images(ex.descriptor, ex.arrays, tile=tile).items():
        path = folder / f"{name}.hex"
        if f"{rec['folder']}/{name}.hex" not in rec["files"] or not path.is_file():
            raise TraceError(path, None, f"file is missing (the {HEX_SOURCES[name]} image)")
        lines = path.read_text().splitlines()
        if len(lines) != len(words):
            raise TraceError(path, None, f"has {len(lines)} lines, the arrays "
                             f"({HEX_SOURCES[name]}) give {len(words)} words")
        digits = -(-width // 4)
        for n, (line, word) in enumerate(zip(lines, words), 1):
            if len(line) != digits or any(c not in "0123456789abcdefABCDEF" for c in line):
                raise TraceError(path, f"line {n}", f"is {line[:80]!r}, expected {digits} hex "
                                 "digits")
            if int(line, 16) != word:
                raise TraceError(path, f"line {n}", f"holds {line}, the arrays "
                                 f"({HEX_SOURCES[name]}) give {word:0{digits}x}")

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
from hw.config import PRESETS, AcceleratorConfig
from hw.job import make_job, memory_images
from traces.format import Execution

__all__ = ["EXPORT_CONFIG", "hex_header", "cycle_model_header", "write_hex_files",
           "predicted_counters"]

#: The configuration exported traces are for (the hex files' weight tile, the counters).
EXPORT_CONFIG = PRESETS["default"]


def hex_header(config: AcceleratorConfig = EXPORT_CONFIG) -> dict:
    """The manifest's ``hex`` entry for hex files written for ``config``."""
    return {"layout": "hw/layout.py", "weight_tile": config.tile}


def cycle_model_header(config: AcceleratorConfig = EXPORT_CONFIG) -> dict:
    """The manifest's ``cycle_model`` entry: the array parameters the recorded counters
    (``meta["cycles"]``) were predicted for."""
    return {"model": "hw/cyclemodel.py", "vector": config.vector, "dpe_cols": config.dpe_cols,
            "spe_lanes": config.spe_lanes, "tile": config.tile,
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
    counters = make_job(ex.descriptor, ex.arrays, config).predicted_counters()
    return {k: int(v) for k, v in counters.items()}

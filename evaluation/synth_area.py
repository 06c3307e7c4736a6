"""Area of each configuration's compute datapath from logic synthesis (``make area``).

``python -m evaluation.synth_area [--out build/area] [--jobs 2]`` synthesizes, with Yosys (the
native build; generic gates, no technology mapping), every block of the compute datapath of

* ``sqdm``: the SQ-DM top (:data:`SQDM`, ``hw.config.PRESETS["default"]``: architecture v2);
* ``paper`` and ``paper+<mechanism>``: the paper's organisation, alone and with each v2
  mechanism (the bench's ablation rows, :data:`ABLATION`);
* ``dense16``: the dense top from the same generator (``hw.config.PRESETS["dense"]``: no SPE,
  16 DPE columns = 256 multipliers, the equal-multiplier peer);
* the dense top sized to the equal-area budget (:func:`size_dense_peer`);
* the FP16 multiply + FP32 accumulate unit of the FP16 baseline (:class:`hw.fpmac.FP16MAC`),

and writes ``<out>/report.json``. A datapath is the blocks of :func:`datapath_blocks`: address
generator, operand fetch, dispatcher (a ``balance`` top), DPE, SPE (a dense top's null
engine), join/serializer, PPU, output writer and sparsity detector, each as
``hw.rtlcache.block_verilog`` emits it for the configuration; the controller, the counters
and the memories are not in it. Memories inside a block (the PPU's block buffer) stay black
boxes, counted by their bits (``sram_bits``), as the top's five memories are
(:func:`memory_bits`).

Per block and per datapath: ``cells`` (generic gates and flip-flops after ``abc``),
``flip_flops``, ``transistors`` (Yosys ``stat -tech cmos``: 2-12 per gate, 16 per flip-flop;
flip-flops with enables or resets are first split into a plain D flip-flop and gates, so
that ``stat`` counts them) and ``sram_bits``. The budget is the SQ-DM datapath's transistors.
Results are cached per Verilog file under ``<out>/cache/`` (keyed by the file's and the
script's hash and the Yosys version), so ``make bench`` reuses them.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from hw import toolchain
from hw.config import ABLATION_PRESETS, PRESETS
from hw.rtlcache import block_module, block_verilog
from .baselines import DENSE, HW, array_config, dense_array

__all__ = ["AreaError", "SQDM", "ABLATION", "datapath_blocks", "dense_config", "memory_bits",
           "peer_params",
           "yosys_executable", "synth_file", "datapath_area", "fp16_mac_area",
           "size_dense_peer", "run", "SRAM_BITCELL_UM2", "SCRIPT"]

REPO = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO / "build" / "area"

#: The SQ-DM configuration (the one every trace and replay uses).
SQDM = HW
#: The paper's organisation and each v2 mechanism alone on it (areas besides SQDM's).
ABLATION = ABLATION_PRESETS

#: Yosys script after ``read_verilog`` (``{top}``): ``synth``'s coarse steps (memories kept as
#: ``$mem_v2`` cells), its fine steps without ``memory_map``, then every flip-flop split into a
#: plain D flip-flop and gates so that ``stat -tech cmos`` counts it.
SCRIPT = ("synth -flatten -top {top} -run begin:fine; opt -fast -full; opt -full; techmap; "
          "opt -fast; abc -fast; opt -fast; dfflegalize -cell $_DFF_P_ 01; opt_clean; "
          "tee -q -o {stat} stat -json -tech cmos; tee -q -o {mems} dump t:$mem_v2")

#: 6T SRAM bit cell at 45 nm (Intel, Mistry et al., IEDM 2007: 0.346 um^2), for ``sram_um2``.
SRAM_BITCELL_UM2 = 0.346


class AreaError(RuntimeError):
    """Synthesis cannot run (no Yosys, a failed run): the message says what to do."""


def dense_config(dpe_cols: int):
    """The dense top (no SPE) with ``dpe_cols`` DPE columns
    (:func:`evaluation.baselines.dense_array`); everything else as :data:`SQDM`."""
    return array_config(dense_array(dpe_cols))


def datapath_blocks(config) -> dict[str, int]:
    """``{block of hw.rtlcache.BLOCKS: instances}`` of ``config``'s compute datapath (a
    ``balance`` top: one fetch and the dispatcher)."""
    two_fetches = config.has_spe and not config.balance
    return {"addrgen": 1, "fetch": 2 if two_fetches else 1, "dpe": 1, "spe": 1,
            "serializer": 1, "ppu": 1, "writer": 1, "detector": 1,
            **({"dispatch": 1} if config.balance else {})}


def memory_bits(config) -> dict[str, int]:
    """Bits of each of the top's memories (``hw.config.MEMORIES``)."""
    return {name: config.depths[name] * config.widths[name] for name in config.depths}


def yosys_executable() -> str:
    """:func:`hw.toolchain.yosys_executable`, its error as an :class:`AreaError`."""
    try:
        return toolchain.yosys_executable()
    except RuntimeError as e:
        raise AreaError(str(e)) from None


@functools.cache
def yosys_version() -> str:
    out = subprocess.run([yosys_executable(), "-V"], capture_output=True, text=True, check=True)
    return out.stdout.strip()


def _mem_bits(dump: str) -> int:
    widths = [int(w) for w in re.findall(r"parameter \\WIDTH (\d+)", dump)]
    sizes = [int(s) for s in re.findall(r"parameter \\SIZE (\d+)", dump)]
    return sum(w * s for w, s in zip(widths, sizes))


def synth_file(verilog: Path, top: str, *, cache: Path, log=print) -> dict:
    """Cells, flip-flops, transistors and black-boxed memory bits of module ``top`` of
    ``verilog`` (cached in ``cache``)."""
    verilog = Path(verilog)
    version = yosys_version()
    key = hashlib.sha256(json.dumps([version, SCRIPT, top]).encode()
                         + verilog.read_bytes()).hexdigest()[:20]
    hit = cache / f"{top}-{key}.json"
    if hit.exists():
        return json.loads(hit.read_text())
    cache.mkdir(parents=True, exist_ok=True)
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        stat, mems, logf = Path(tmp) / "stat.json", Path(tmp) / "mems.il", Path(tmp) / "log"
        script = SCRIPT.format(top=top, stat=stat, mems=mems)
        run = subprocess.run([yosys_executable(), "-q", "-l", str(logf), "-p",
                              f"read_verilog {verilog}; {script}"],
                             capture_output=True, text=True)
        if run.returncode != 0:
            tail = (logf.read_text() if logf.exists() else run.stderr).strip().splitlines()[-5:]
            raise AreaError(f"yosys failed on {verilog} ({top}): " + " | ".join(tail))
        design = json.loads(stat.read_text())["design"]
        dump = mems.read_text() if mems.exists() else ""
    cells = {k: int(v) for k, v in design["num_cells_by_type"].items()}
    transistors = str(design.get("estimated_num_transistors", "0"))
    result = {
        "module": top, "cells": sum(v for k, v in cells.items() if k != "$mem_v2"),
        "flip_flops": sum(v for k, v in cells.items() if "DFF" in k),
        "transistors": int(transistors.rstrip("+")), "sram_bits": _mem_bits(dump),
        "cells_by_type": cells, "yosys": version,
        "seconds": round(time.monotonic() - t0, 1),
    }
    unknown = sorted(k for k in cells if k != "$mem_v2" and not k.startswith("$_"))
    if unknown:
        raise AreaError(f"{verilog}: cells without a transistor count {unknown}")
    tmp = hit.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, hit)
    log(f"  synthesized {top} of {verilog.parent.name}: {result['cells']:,} cells, "
        f"{result['transistors']:,} transistors ({result['seconds']:.0f} s)")
    return result


def _sum(parts: dict, counts: dict) -> dict:
    keys = ("cells", "flip_flops", "transistors", "sram_bits")
    return {k: sum(parts[b][k] * n for b, n in counts.items()) for k in keys}


def datapath_area(config, *, cache: Path, pool=None, log=print) -> dict:
    """The datapath area of ``config``: per block (:func:`synth_file`) and in total, plus the
    top's memories (``memory_bits``, ``sram_bits`` of the total includes them)."""
    counts = datapath_blocks(config)
    paths = {b: block_verilog(b, config, log=log)[0] for b in counts}

    def one(block):
        return block, synth_file(paths[block], block_module(block), cache=cache, log=log)

    results = dict(pool.map(one, counts) if pool else map(one, counts))
    total = _sum(results, counts)
    mems = memory_bits(config)
    return {"params": config.to_dict(), "instances": counts,
            "blocks": {b: {k: results[b][k] for k in ("cells", "flip_flops", "transistors",
                                                       "sram_bits", "seconds")}
                       for b in counts},
            "datapath": total, "memory_bits": mems,
            "sram_bits": total["sram_bits"] + sum(mems.values()),
            "sram_um2": (total["sram_bits"] + sum(mems.values())) * SRAM_BITCELL_UM2}


def fp16_mac_area(*, cache: Path, log=print) -> dict:
    """:func:`synth_file` of the FP16 multiply + FP32 accumulate unit."""
    from hw.fpmac import FP16MAC
    from hw.verilog import emit_verilog
    path = cache / "fp16_mac.v"
    cache.mkdir(parents=True, exist_ok=True)
    emit_verilog(FP16MAC(), "fp16_mac", path)
    return synth_file(path, "fp16_mac", cache=cache, log=log)


def size_dense_peer(budget: int, *, cache: Path, pool=None, log=print, max_cols=64):
    """The dense top whose datapath has at least ``budget`` transistors with the fewest DPE
    columns (the peer never gets less area than SQ-DM). Returns ``(config, area, tried)``,
    ``tried``: ``{columns: transistors}`` of every size synthesized.

    Area grows with the columns but not linearly (the tile, hence the accumulators and the
    join, follows the columns when they do not divide 32), so the search interpolates between
    the nearest sizes measured so far until two neighbours bracket the budget."""
    tried = {}

    def area(cols):
        if cols not in tried:
            tried[cols] = datapath_area(dense_config(cols), cache=cache, pool=pool, log=log)
        return tried[cols]["datapath"]["transistors"]

    area(16), area(32)
    while True:
        over = [c for c in tried if area(c) >= budget]
        under = [c for c in tried if area(c) < budget]
        hi, lo = min(over, default=None), max(under, default=None)
        if hi is not None and (hi == 1 or lo == hi - 1):
            break
        if hi is None and lo == max_cols:
            raise AreaError(f"no dense top up to {max_cols} columns reaches {budget:,} "
                            "transistors")
        a, b = (lo, hi) if lo is not None and hi is not None else \
            sorted(sorted(tried, key=lambda c: abs(area(c) - budget))[:2])
        guess = math.ceil(a + (budget - area(a)) * (b - a) / (area(b) - area(a)))
        lower = 1 if lo is None else lo + 1
        upper = max_cols if hi is None else hi - 1
        area(min(max(guess, lower), upper))
    return dense_config(hi), tried[hi], {c: t["datapath"]["transistors"]
                                         for c, t in sorted(tried.items())}


def run(out_dir=DEFAULT_OUT, *, jobs=2, log=print) -> dict:
    out_dir = Path(out_dir)
    cache = out_dir / "cache"
    t0 = time.monotonic()
    log(f"datapath synthesis with {yosys_version()} ({jobs} parallel runs; cached in {cache})")
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        sqdm = datapath_area(SQDM, cache=cache, pool=pool, log=log)
        budget = sqdm["datapath"]["transistors"]
        log(f"  sqdm datapath: {budget:,} transistors (the budget)")
        ablation = {}
        for name in ABLATION:
            ablation[name] = datapath_area(PRESETS[name], cache=cache, pool=pool, log=log)
            log(f"  {name} datapath: {ablation[name]['datapath']['transistors']:,} "
                "transistors")
        dense16 = datapath_area(DENSE, cache=cache, pool=pool, log=log)
        peer, peer_area, tried = size_dense_peer(budget, cache=cache, pool=pool, log=log)
        fp16 = fp16_mac_area(cache=cache, log=log)
    common = dense16["datapath"]["transistors"] - dense16["blocks"]["dpe"]["transistors"]
    fp16_units = (budget - common) / fp16["transistors"]
    report = {
        "tool": {"yosys": yosys_version(), "script": SCRIPT,
                 "transistors": "yosys stat -tech cmos (generic gates 2-12, D flip-flop 16; "
                                "enables and resets as gates)",
                 "sram_bitcell_um2": SRAM_BITCELL_UM2,
                 "sram_bitcell_source": "6T SRAM cell, Intel 45 nm (Mistry et al., IEDM 2007)"},
        "budget_transistors": budget,
        "configs": {
            "sqdm": sqdm,
            **ablation,
            "dense16": dense16,
            "dense_equal_area": {**peer_area, "area_ratio": peer_area["datapath"]["transistors"]
                                 / budget, "columns_tried": tried},
        },
        "fp16_mac": fp16,
        "fp16_equal_area": {
            "rule": "the dense top's datapath without its DPE, plus N FP16 multiply + FP32 "
                    "accumulate units (one FP32 adder per multiplier: a 16-lane column's 15-adder "
                    "tree and its accumulator)",
            "common_transistors": common, "unit_transistors": fp16["transistors"],
            "multipliers_exact": fp16_units,
        },
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "report.json"
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)
    p = peer.to_dict()
    log(f"equal-area dense peer: {p['dpe_cols']} columns (tile {p['tile']}), "
        f"{peer_area['datapath']['transistors']:,} transistors "
        f"({report['configs']['dense_equal_area']['area_ratio']:.3f} of sqdm); FP16: "
        f"{fp16_units:.1f} multipliers; wrote {path} ({time.monotonic() - t0:.0f} s)")
    return report


def peer_params(report: Path) -> str:
    """The equal-area dense peer of ``report`` as ``--param NAME=VALUE`` options (the
    parameters that differ from :data:`SQDM`)."""
    try:
        params = json.loads(Path(report).read_text())["configs"]["dense_equal_area"]["params"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise AreaError(f"no equal-area peer in {report} ({e}); run make area") from None
    base = SQDM.to_dict()
    return " ".join(f"--param {k}={v}" for k, v in sorted(params.items()) if base.get(k) != v)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m evaluation.synth_area",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--jobs", type=int, default=2, help="parallel Yosys runs")
    p.add_argument("--peer-params", action="store_true",
                   help="print the equal-area dense peer as tb.cosim --param options (from "
                        "<out>/report.json; no synthesis)")
    a = p.parse_args(argv)
    if a.jobs < 1:
        p.error("--jobs must be >= 1")
    try:
        if a.peer_params:
            print(peer_params(Path(a.out) / "report.json"))
            return 0
        run(a.out, jobs=a.jobs)
    except AreaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

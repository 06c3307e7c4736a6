"""Write the Verilog of the accelerator top and of every block, plus a JSON report.

Usage: ``python -m hw.generate --out build/rtl`` (default parameters). The output is
byte-identical from run to run: Verilog comes only from :func:`hw.verilog.emit_verilog`
(no source locations) and the report is written with sorted keys and no timestamps.
"""

import argparse
import json
import sys
from pathlib import Path

from .addrgen import AddrGen
from .detector import SparsityDetector
from .dpe import DPE, DPE_LATENCY
from .ppu import PPU, PPU_LATENCY
from .spe import SPE, SPE_LATENCY
from .top import ACCELERATOR_DEFAULTS, COUNTERS, Accelerator
from .verilog import emit_verilog

__all__ = ["DEFAULTS", "blocks", "generate", "main"]

#: Generator parameters of every emitted module (module name -> (class, kwargs)).
DEFAULTS = {
    "sqdm_top": (Accelerator, dict(ACCELERATOR_DEFAULTS)),
    "sqdm_dpe": (DPE, dict(vector=16, cols=8, tile=32)),
    "sqdm_spe": (SPE, dict(vector=16, lanes=4, cols=32)),
    "sqdm_ppu": (PPU, dict(vector=16, max_channels=256)),
    "sqdm_detector": (SparsityDetector, dict(vector=16, max_channels=256, max_pixels=65536)),
    "sqdm_addrgen": (AddrGen, dict(vector=16, tile=32, max_cin=512)),
}


def blocks(names=None):
    """``(module name, component)`` pairs, freshly constructed."""
    for name, (cls, kwargs) in DEFAULTS.items():
        if names is None or name in names:
            yield name, cls(**kwargs)


def generate(out, names=None):
    """Emit every module into ``out`` and write ``out/report.json``; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modules = {}
    for name, comp in blocks(names):
        text = emit_verilog(comp, name, out / f"{name}.v")
        modules[name] = {
            "file": f"{name}.v",
            "class": type(comp).__name__,
            "parameters": DEFAULTS[name][1],
            "lines": text.count("\n"),
            "verilog_modules": _modules(text),
        }
    report = {
        "schema": 1,
        "top": "sqdm_top",
        "latencies": {"dpe": DPE_LATENCY, "spe": SPE_LATENCY, "ppu": PPU_LATENCY},
        "counters": list(COUNTERS),
        "modules": modules,
        "total_lines": sum(mod["lines"] for mod in modules.values()),
    }
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True) + "\n")
    return report


def _modules(text):
    names = []
    for line in text.splitlines():
        if line.startswith("module "):
            names.append(line.split()[1].split("(")[0].strip("\\"))
    return sorted(names)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw.generate", description=__doc__.split(
        "\n")[0])
    parser.add_argument("--out", default="build/rtl", help="output folder (build/rtl)")
    parser.add_argument("--only", nargs="*", choices=sorted(DEFAULTS), help="modules to emit")
    args = parser.parse_args(argv)
    report = generate(args.out, args.only)
    for name, mod in report["modules"].items():
        print(f"{name:16s} {mod['lines']:8d} lines  {args.out}/{mod['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

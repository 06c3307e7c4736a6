"""Write the Verilog of the accelerator top and of every block, plus a JSON report.

Usage: ``python -m hw.generate --out build/rtl`` (default parameters). The output is
byte-identical from run to run: Verilog comes only from :func:`hw.verilog.emit_verilog`
(no source locations) and the report is written with sorted keys and no timestamps.
"""

import argparse
import json
import sys
from pathlib import Path

from .config import COUNTERS, PRESETS, preset
from .rtlcache import BLOCKS, TOPLEVEL, block_args, block_module, has_block
from .top import timing_registers
from .verilog import emit_verilog

__all__ = ["MODULES", "blocks", "generate", "main"]

#: Names of the emitted modules: the top and each block, as ``hw.rtlcache`` names them.
MODULES = tuple(block_module(b) for b in BLOCKS)


def blocks(names=None, config=PRESETS["default"]):
    """``(module name, component, parameters)`` of every module of ``config``'s top (or of
    ``names``), freshly built for ``config`` (each block as the top builds it)."""
    for block in BLOCKS:
        name = block_module(block)
        if (names is None or name in names) and has_block(block, config):
            cls, kwargs = block_args(block, config)
            shown = config.to_dict() if block == "top" else kwargs
            yield name, cls(**kwargs), shown


def generate(out, names=None, config=PRESETS["default"]):
    """Emit every module into ``out`` and write ``out/report.json``; returns the report."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    modules = {}
    for name, comp, params in blocks(names, config):
        text = emit_verilog(comp, name, out / f"{name}.v")
        modules[name] = {
            "file": f"{name}.v",
            "class": type(comp).__name__,
            "parameters": params,
            "lines": text.count("\n"),
            "verilog_modules": _modules(text),
        }
    # the engines' result pipeline, then their result register (hw.engine)
    regs = timing_registers(config)
    latency = regs["engine_stages"] + 1
    report = {
        "schema": 1,
        "top": TOPLEVEL,
        "config": config.to_dict(),
        "latencies": {"dpe": latency, "spe": latency, "ppu": regs["ppu_latency"]},
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
    parser.add_argument("--only", nargs="*", choices=MODULES, help="modules to emit")
    parser.add_argument("--config", default="default", choices=sorted(PRESETS),
                        help="configuration (hw/config.py PRESETS; default 'default')")
    args = parser.parse_args(argv)
    report = generate(args.out, args.only, preset(args.config))
    for name, mod in report["modules"].items():
        print(f"{name:16s} {mod['lines']:8d} lines  {args.out}/{mod['file']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

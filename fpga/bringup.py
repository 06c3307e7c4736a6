"""FPGA bring-up kit: a plain, self-checking Verilog testbench for one layer execution of a trace.

Usage::

    python -m fpga.bringup [--trace build/traces/default] [--exec 0] [--out build/bringup]
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
import shutil
import subprocess
import sys
import time
from pathlib import Path

import jinja2
from amaranth.hdl import Shape

from hw.config import COUNTER_BITS, COUNTERS, MODEL_COUNTERS, PRESETS, parse_overrides, preset
from hw.job import JobError, make_job
from hw.rtlcache import TOPLEVEL, block_component, top_verilog
from hw.toolchain import (BUILD_WAIVERS, CLOCK_NS, ICARUS_GENERATION, verilator_env,
                          verilator_executable, waiver_flags)
from hw.top import MemSel
from hw.verilog import BUILD_ROOT

__all__ = ["TB_TOP", "CHECKED_COUNTERS", "BringupError", "testbench_text", "generate", "run",
           "main"]

#: Module name of the testbench.
TB_TOP = "sqdm_bringup_tb"
#: Counters the testbench checks against the cycle model (all that it predicts).
CHECKED_COUNTERS = MODEL_COUNTERS
#: The testbench's template (Jinja2).
TEMPLATE = Path(__file__).resolve().parent / "templates" / "tb_bringup.v.j2"

#: Host-loaded memory images, in load order, and their host-port selects.
_IMAGES = (("act", MemSel.ACT), ("weight", MemSel.WEIGHT), ("param", MemSel.PARAM),
           ("res", MemSel.RES))


class BringupError(ValueError):
    """The trace does not fit the configuration, or a tool failed."""


def _pack_bits(bits):
    return sum(int(bool(b)) << i for i, b in enumerate(bits))


def _port_widths(config):
    """Bits of every port of the top built with ``config`` (from its signature)."""
    top = block_component("top", config)
    top._MustUse__silence = True  # only the signature is read
    return {name: Shape.cast(member.shape).width
            for name, member in top.signature.members.items()}


def testbench_text(*, config, job, counters, words, zero_counts, next_map, name):
    """Verilog text of the self-checking testbench (module :data:`TB_TOP`) for ``job`` (a
    :class:`hw.job.Job`, whose ``predicted_counters()`` are ``counters``) with ``words`` per
    image, rendered from :data:`TEMPLATE`."""
    images = [(n, sel.value) for n, sel in _IMAGES if n in job.images]
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, trim_blocks=True,
                             lstrip_blocks=True, keep_trailing_newline=True)
    template = env.from_string(TEMPLATE.read_text())
    widths = _port_widths(config)
    connections = list(widths)
    return template.render(
        name=name, tb_top=TB_TOP, toplevel=TOPLEVEL, clock_ns=CLOCK_NS,
        w=widths, mem_bits=config.widths, counter_bits=COUNTER_BITS,
        timeout=2 * counters["cycles"] + 1000, words=words,
        descriptor=job.desc_value, map=job.map_value, next_map=_pack_bits(next_map),
        zero_counts=[int(z) for z in zero_counts], checked=CHECKED_COUNTERS,
        counters={n: int(counters[n]) for n in CHECKED_COUNTERS}, counters_all=COUNTERS,
        connections=["clk", "rst"] + connections, images=images,
        out_sel=MemSel.OUT.value)


def generate(trace, index, out, *, config, verify=True, log=None):
    """Write the bring-up folder ``out`` for execution ``index`` of ``trace`` on the top built
    with ``config``; returns the contents of ``bringup.json``."""
    from traces.format import TraceError, open_trace
    from traces.hexfiles import check_hex_files

    trace, out = Path(trace), Path(out)
    try:
        tr = open_trace(trace, verify_hashes=verify)
    except TraceError as e:
        raise BringupError(f"cannot open trace: {e}") from None
    if not 0 <= index < len(tr):
        raise BringupError(f"--exec must be in [0, {len(tr) - 1}], got {index}")
    rec = tr.records[index]
    try:
        ex = tr.load(index)
    except TraceError as e:
        raise BringupError(str(e)) from None
    tile = (tr.manifest.get("hex") or {}).get("weight_tile")
    if tile != config.tile:
        raise BringupError(f"trace does not fit the configuration: its weight words are "
                           f"packed for tile {tile}, the configuration has tile={config.tile}")
    try:
        job = make_job(ex.descriptor, ex.arrays, config)
    except JobError as e:
        raise BringupError(f"trace {trace} execution #{index}: {e}") from None
    folder = trace / rec["folder"]
    try:  # the hex files the testbench reads must hold exactly the arrays' words
        check_hex_files(tr, index, ex)
    except TraceError as e:
        raise BringupError(str(e)) from None
    images = job.images  # act, weight, param, res (if any) and out_expected
    words = {n: len(image) for n, image in images.items()}
    t0 = time.monotonic()
    top, emit_s = top_verilog(config, log=log)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("res.hex", "report.json"):
        (out / stale).unlink(missing_ok=True)
    shutil.copyfile(top, out / f"{TOPLEVEL}.v")
    for n in images:
        shutil.copyfile(folder / f"{n}.hex", out / f"{n}.hex")
    counters = job.predicted_counters()
    tb = testbench_text(config=config, job=job, counters=counters, words=words,
                        zero_counts=ex.arrays["zero_counts"], next_map=ex.arrays["next_map"],
                        name=rec["name"])
    (out / "tb_bringup.v").write_text(tb)
    expected = {"descriptor": f"{job.desc_value:x}", "map": job.map_value,
                "next_map": _pack_bits(ex.arrays["next_map"]),
                "zero_counts": [int(z) for z in ex.arrays["zero_counts"]],
                "counters": {n: int(counters[n]) for n in CHECKED_COUNTERS}}
    info = {
        "trace": str(trace), "exec": index, "name": rec["name"],
        "descriptor": rec["descriptor"], "params": config.to_dict(), "words": words,
        "expected": expected, "top_verilog": str(top), "emit_seconds": round(emit_s, 2),
        "generate_seconds": round(time.monotonic() - t0, 2),
    }
    (out / "bringup.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")
    return info


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
        env = verilator_env()
        mdir = "verilator"
        build = [str(verilator_executable()), "--binary", "-j", "2", "-CFLAGS", "-std=c++20",
                 *waiver_flags(BUILD_WAIVERS), "--top-module", TB_TOP, "--Mdir", mdir,
                 "-o", TB_TOP, *sources]
        p, build_s = _tool(build, out, env=env, timeout=timeout)
        if p.returncode:
            raise BringupError(f"verilator failed:\n{(p.stdout + p.stderr)[-3000:]}")
        p, run_s = _tool([str(out / mdir / TB_TOP)], out, env=env, timeout=timeout)
        report["tool"] = subprocess.run([str(verilator_executable()), "--version"], env=env,
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
    parser = argparse.ArgumentParser(prog="python -m fpga.bringup",
                                     description=__doc__.split("\n")[0])
    parser.add_argument("--trace", default=str(BUILD_ROOT / "traces" / "default"))
    parser.add_argument("--exec", type=int, default=0, dest="index")
    parser.add_argument("--out", default=str(BUILD_ROOT / "bringup"))
    parser.add_argument("--config", default="default", choices=sorted(PRESETS),
                        help="configuration (hw/config.py PRESETS; default 'default')")
    parser.add_argument("--param", action="append", metavar="NAME=VALUE",
                        help="override one Accelerator parameter (repeatable)")
    parser.add_argument("--sim", choices=("none", "icarus", "verilator"), default="none")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not check the trace files' SHA-256 against the manifest")
    args = parser.parse_args(argv)
    try:
        config = preset(args.config, **parse_overrides(args.param))
        t0 = time.monotonic()
        info = generate(args.trace, args.index, args.out, config=config,
                        verify=not args.no_verify, log=print)
        print(f"wrote {args.out}/tb_bringup.v ({info['name']}, expected "
              f"{info['expected']['counters']['cycles']} cycles) in "
              f"{time.monotonic() - t0:.1f} s")
        if args.sim == "none":
            return 0
        report = run(args.out, args.sim)
    except (BringupError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"{report['result']} ({args.sim}: build {report['build_seconds']} s, run "
          f"{report['run_seconds']} s)" + (f": {report['first_failure']}"
                                            if report["result"] != "PASS" else ""))
    print(f"wrote {args.out}/report.json")
    return 0 if report["result"] == "PASS" else 1


if __name__ == "__main__":
    sys.exit(main())

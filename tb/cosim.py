"""Trace replay on the simulated RTL: ``python -m tb.cosim [--traces DIR] [--sim verilator|icarus]
[--limit N] [--maps trace,dense,sparse,random] [--select 0,5,9] [--out build/sim]
[--shard K/N | --jobs N | --merge [N]]``.

Emits the top's Verilog once per configuration (:func:`hw.rtlcache.top_verilog`), builds it once
(:func:`tb.simulator.run_cocotb` caches builds by the Verilog's hash), runs the cocotb module
:mod:`tb.replay` with the trace folder passed in ``extra_env``, then writes
``<out>/results.json`` (one record per replayed execution and a ``summary``), prints a table and
exits non-zero on any mismatch (bit or cycle). A replay splits into shards (``--shard K/N``)
that run anywhere and merge into one results file (``--merge``), or into local processes
(``--jobs N``, :mod:`tb.shard`). docs/cosim.md describes it all.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from hw.config import PRESETS, WORKLOAD_MEMORIES, AcceleratorConfig, for_workload, preset
from hw.rtlcache import TOPLEVEL, top_verilog
from hw.toolchain import CLOCK_NS
from tb.loader import LOADER_TOP, write_loader
from tb.simulator import SIMULATORS, SimulationError, _testcases, run_cocotb
from traces.format import MANIFEST, sha256_file
from tb.results import merge_shards, shard_file, summarize
from tb.shard import run_shards
from traces.replay import (DEFAULT_TRACES, MAP_VARIANTS, ReplayError, check_trace,
                           execution_rows, parse_select, parse_shard, shard_of, write_results)

#: The replay could not run (:class:`traces.replay.ReplayError`: bad trace folder, execution
#: that does not fit the top, build failure); not a mismatch.
CosimError = ReplayError

__all__ = ["DEFAULT_TRACES", "DEFAULT_OUT", "DEFAULT_SELECT", "CosimError", "replay",
           "summary_table", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = REPO_ROOT / "build" / "sim"
#: The testbenches touch the top's ports only, so the Verilator model makes only the ports
#: public (``tb.simulator`` ``vpi_access="ports"``): ~11x faster than cocotb's default
#: ``--public-flat-rw`` on this top (docs/cosim.md section 5).
VPI_ACCESS = "ports"
#: Executions replayed when neither ``--select`` nor ``--limit`` is given: all on Verilator;
#: Icarus simulates the full-size top at tens of cycles per second (docs/cosim.md
#: section 7), so it replays one execution per layer kind (:func:`traces.replay.kind_selection`:
#: every datapath of the top, ~10 % of the default trace's cycles).
DEFAULT_SELECT = {"verilator": "all", "icarus": "kinds"}


def default_select(select, simulator, limit):
    """``select``, or when None the default selection: all executions with ``limit`` (the first
    N), else :data:`DEFAULT_SELECT` of the simulator."""
    if select is not None:
        return select
    return "all" if limit else DEFAULT_SELECT[simulator]


#: Seconds between progress lines of a running replay (``progress`` of :func:`replay`).
PROGRESS_SECONDS = 15


def _watch(jsonl, expected, stop, progress):
    """Report the replay's progress from its incrementally written records file."""
    t0 = time.monotonic()
    while not stop.wait(PROGRESS_SECONDS):
        records = _read_records(jsonl)
        cycles = sum(r["cycles_rtl"] for r in records)
        bad = sum(1 for r in records if r["mismatches"])
        progress(f"  replayed {len(records)}/{expected} execution(s), {cycles:,} cycles, "
                 f"{bad} with mismatches, {time.monotonic() - t0:.0f} s")


def _read_records(path):
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:  # a line being written (progress reads a live file)
            break
    return out


def replay(trace_dir=DEFAULT_TRACES, *, simulator="verilator", limit=None, select=None,
           maps=("trace",), config=None, out_dir=DEFAULT_OUT, results_name=None, shard=None,
           log=print, progress=None, loader=True):
    """Replay a trace folder on the simulated top and write ``out_dir/results_name``
    (default ``results.json``; ``shard-K-of-N.json`` for a shard).

    ``config``: the top's :class:`hw.config.AcceleratorConfig` (default
    ``PRESETS["default"]``). ``shard``: ``(K, N)`` replays shard K of N of the selection
    (:func:`traces.replay.shard_of`; :func:`tb.results.merge_shards` merges the N results).
    ``progress``: if given, called with a progress line every :data:`PROGRESS_SECONDS` while
    the simulator runs. ``loader``: load the memories through the :mod:`tb.loader` wrapper
    (``$readmemh``; the default) or word by word from Python. Returns the results dict
    (``{"summary": ..., "executions": [...]}``); raises
    :class:`CosimError` when the replay cannot run. Mismatches do not raise: look at
    ``summary["bit_exact"]`` / ``summary["cycle_exact"]`` / ``summary["passed"]``.
    """
    wall0 = time.monotonic()
    if simulator not in SIMULATORS:
        raise CosimError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    bad = [m for m in maps if m not in MAP_VARIANTS]
    if bad:
        raise CosimError(f"unknown map variant(s) {bad}; known {MAP_VARIANTS}")
    config = PRESETS["default"] if config is None else config
    if not isinstance(config, AcceleratorConfig):
        raise CosimError(f"config must be an hw.config.AcceleratorConfig, got {config!r}")
    if not config.has_spe and set(maps) != {"dense"}:
        raise CosimError(f"a dense top (spe_lanes=0) runs every channel group on the DPE: "
                         f"replay it with maps 'dense' only, not {','.join(maps)}")
    select = default_select(select, simulator, limit)
    trace_dir = Path(trace_dir)
    trace, chosen = check_trace(trace_dir, config, select)
    if limit:
        chosen = chosen[:limit]
    run = {"trace": str(trace_dir), "manifest_sha256": sha256_file(trace.root / MANIFEST),
           "simulator": simulator, "toplevel": TOPLEVEL, "params": config.to_dict(),
           "maps": list(maps), "memory_loads": "readmemh" if loader else "host port"}
    if shard is not None:
        k, n = shard
        run["shard"] = {"index": k, "count": n, "selected": list(chosen)}
        chosen = shard_of(chosen, k, n)
        results_name = results_name or shard_file(k, n)
    results_name = results_name or "results.json"
    out_dir = Path(out_dir).resolve()  # the simulator runs in its own folder
    out_dir.mkdir(parents=True, exist_ok=True)
    if not chosen:  # a shard of more shards than executions: nothing to simulate
        run.update(verilog=None, executions_expected=0, built=False, cocotb_failure=None,
                   run_dir=None, sim_wall_seconds=0.0, build_seconds=0.0, emit_seconds=0.0,
                   wall_seconds=time.monotonic() - wall0)
        results = {"summary": summarize(run, []), "executions": []}
        write_results(out_dir / results_name, results)
        return results

    verilog, emit_s = top_verilog(config, log=log)
    run.update(verilog=str(verilog), emit_seconds=emit_s)
    work = Path(tempfile.mkdtemp(prefix=".replay-", dir=out_dir))
    try:
        snapshot = snapshot_trace(trace, chosen, work / "trace")
        return _replay(trace_dir, snapshot, work, run, chosen=chosen, total=len(trace),
                       simulator=simulator, maps=maps, config=config, out_dir=out_dir,
                       results_name=results_name, wall0=wall0, log=log, progress=progress,
                       loader=loader)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def snapshot_trace(trace, indices, folder):
    """Copy the manifest and the selected executions' files of ``trace`` into ``folder`` and
    verify their hashes there: the replay reads this private copy, so a concurrent re-export
    of the trace (``make traces``) cannot change it under the simulator."""
    folder = Path(folder)
    folder.mkdir(parents=True)
    shutil.copy2(trace.root / MANIFEST, folder / MANIFEST)
    for i in indices:
        sub = trace.records[i]["folder"]
        shutil.copytree(trace.root / sub, folder / sub)
    hashes = trace.manifest["sha256"]
    for i in indices:
        for rel in trace.records[i]["files"]:
            if sha256_file(folder / rel) != hashes[rel]:
                raise CosimError(f"trace {trace.root}: {rel} changed while it was being "
                                 f"copied (a concurrent export?); run again")
    return folder


def _replay(trace_dir, snapshot, work, run, *, chosen, total, simulator, maps, config, out_dir,
            results_name, wall0, log, progress=None, loader=True):
    jsonl = work / "records.jsonl"
    env = {
        "SQDM_COSIM_TRACE": str(snapshot),
        "SQDM_COSIM_TRACE_NAME": str(trace_dir),
        "SQDM_COSIM_VERIFIED": "1",
        "SQDM_COSIM_RESULTS": str(jsonl),
        "SQDM_COSIM_PARAMS": json.dumps({**config.to_dict(), "clock_ns": CLOCK_NS}),
        "SQDM_COSIM_SELECT": ",".join(str(i) for i in chosen),
        "SQDM_COSIM_MAPS": ",".join(maps),
    }
    shard = run.get("shard")
    log(f"replaying {len(chosen)} of {total} execution(s) of {trace_dir} on {simulator}"
        f" (maps: {','.join(maps)})"
        + (f", shard {shard['index']}/{shard['count']}" if shard else ""))
    failure = None
    stop = threading.Event()
    watcher = None
    if progress is not None:
        watcher = threading.Thread(target=_watch, daemon=True,
                                   args=(jsonl, len(chosen) * len(maps), stop, progress))
        watcher.start()
    try:
        sources = [Path(run["verilog"])]
        if loader:
            sources.append(write_loader(sources[0], config, TOPLEVEL))
        result = run_cocotb(sources, LOADER_TOP if loader else TOPLEVEL, "tb.replay",
                            simulator=simulator, extra_env=env, check=False,
                            vpi_access=VPI_ACCESS)
    except SimulationError as e:
        records = _read_records(jsonl)
        raise CosimError(f"simulation failed after {len(records)} execution(s): {e}") from None
    finally:
        stop.set()
        if watcher is not None:
            watcher.join()
    records = _read_records(jsonl)
    if result.failed:
        failure = "; ".join(msg for _, msg in _testcases(result.results_xml)[1])
        failure += f" (run folder {result.run_dir})"
    run.update(executions_expected=len(chosen) * len(maps), built=result.built,
               cocotb_failure=failure,
               run_dir=str(result.run_dir) if result.run_dir.exists() else None,
               sim_wall_seconds=result.run_seconds, build_seconds=result.build_seconds,
               wall_seconds=time.monotonic() - wall0)
    results = {"summary": summarize(run, records), "executions": records}
    write_results(out_dir / results_name, results)
    return results


def summary_table(results):
    """The printed table: one line per replayed execution and a summary."""
    lines = execution_rows(results["executions"])
    s = results["summary"]
    ratio = s["cycles_per_ideal"]
    lines.append(
        f"{s['executions']}/{s['executions_expected']} execution(s) on {s['simulator']}: "
        f"bit-exact {s['bit_exact']}, cycle-exact {s['cycle_exact']}, "
        f"{s['mismatches']} mismatch(es); {s['simulated_cycles']} cycles in "
        f"{s['compute_wall_seconds']:.2f} s of compute = {s['cycles_per_second']:,.0f} cycles/s; "
        f"simulation {s['sim_wall_seconds']:.1f} s, build {s['build_seconds']:.1f} s, "
        f"total {s['wall_seconds']:.1f} s"
        + (f"; cycles/ideal {ratio['min']:.2f}..{ratio['max']:.2f}" if ratio else ""))
    lines.append(
        f"wall time: Verilog {s['emit_seconds']:.1f} s, build {s['build_seconds']:.1f} s, "
        f"memory loads {s['load_seconds']:.1f} s, compute {s['compute_wall_seconds']:.1f} s, "
        f"read-back {s['readback_seconds']:.1f} s, cycle model {s['model_seconds']:.1f} s, "
        f"total {s['wall_seconds']:.1f} s")
    if s["first_mismatch"]:
        lines.append(f"first mismatch: {s['first_mismatch']}")
    if s["cocotb_failure"] and not s["first_mismatch"]:
        lines.append(f"cocotb test failed: {s['cocotb_failure']}")
    return "\n".join(lines)


def _param(text):
    name, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name.strip(), int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{name}: value must be an int, got {value!r}") from None


def parser():
    p = argparse.ArgumentParser(prog="python -m tb.cosim", description=__doc__.split("\n")[0])
    p.add_argument("--traces", default=str(DEFAULT_TRACES), help="trace folder "
                   "(default build/traces/default, from `make traces`)")
    p.add_argument("--sim", choices=SIMULATORS, default="verilator")
    p.add_argument("--limit", type=int, default=None,
                   help="replay at most the first N selected executions (0 = no limit)")
    p.add_argument("--select", default=None,
                   help="'all', 'kinds' (one execution per layer kind, the cheapest) or a "
                        "comma list of execution indices (default: all on Verilator, kinds on "
                        "Icarus)")
    p.add_argument("--maps", default="trace",
                   help=f"comma list of channel maps per execution, of {MAP_VARIANTS}")
    p.add_argument("--config", choices=sorted(PRESETS), default="default",
                   help="top configuration (hw/config.py PRESETS): 'default' (the default), "
                        "'icarus' for small synthetic layers on Icarus")
    p.add_argument("--param", type=_param, action="append", default=[],
                   help="override an Accelerator parameter, e.g. res_depth=16384")
    p.add_argument("--model", choices=sorted(WORKLOAD_MEMORIES), default="digits",
                   help="the workload of the trace: its memories and channel limits are given "
                        "to the top (hw.config.for_workload; mnist: deeper act/res memories, "
                        "288 output channels), the datapath stays --config's")
    p.add_argument("--out", default=None, help="folder of results.json (default build/sim, "
                   "build/sim/icarus for --sim icarus)")
    p.add_argument("--shard", default=None, metavar="K/N",
                   help="replay shard K of N of the selection (every N-th execution from the "
                        "K-th) into <out>/shard-K-of-N.json; merge the N files with --merge")
    p.add_argument("--jobs", type=int, default=1, metavar="N",
                   help="replay in N local processes (shards 1/N..N/N) and merge their "
                        "results (default 1)")
    p.add_argument("--merge", type=int, nargs="?", const=0, default=None, metavar="N",
                   help="only merge the shard results in --out into <out>/results.json "
                        "(N: the number of shards, if the folder holds several splits)")
    p.add_argument("--quiet", action="store_true", help="print the summary line only")
    return p


def _shard_args(args):
    """The options of ``args`` that a shard process repeats (all but --jobs/--out/--quiet)."""
    out = ["--traces", args.traces, "--sim", args.sim, "--maps", args.maps,
           "--config", args.config, "--model", args.model]
    if args.limit:
        out += ["--limit", str(args.limit)]
    if args.select is not None:
        out += ["--select", args.select]
    for name, value in args.param:
        out += ["--param", f"{name}={value}"]
    return out


def _run(args, out, progress):
    """The results of the command line ``args``: merged shards, local shard processes, one
    shard, or one replay."""
    if args.merge is not None:
        if args.out is None:
            raise CosimError("--merge needs --out FOLDER (where the shard-K-of-N.json are)")
        results = merge_shards(out, args.merge or None)
        write_results(Path(out) / "results.json", results)
        return results
    select = None if args.select is None else parse_select(args.select)
    config = for_workload(preset(args.config, **dict(args.param)), args.model)
    maps = [m.strip() for m in args.maps.split(",") if m.strip()]
    shard = None if args.shard is None else parse_shard(args.shard)
    if args.jobs < 1:
        raise CosimError(f"--jobs must be at least 1, got {args.jobs}")
    if shard is not None and args.jobs > 1:
        raise CosimError("--shard runs one shard; --jobs runs all of them: give one of the two")
    if args.jobs > 1:
        _, chosen = check_trace(Path(args.traces), config,
                                default_select(select, args.sim, args.limit))
        chosen = chosen[:args.limit] if args.limit else chosen
        jobs = max(1, min(args.jobs, len(chosen)))
        if jobs > 1:
            print(f"replaying {len(chosen)} execution(s) of {args.traces} in {jobs} local "
                  f"processes", file=sys.stderr, flush=True)
            return run_shards(_shard_args(args), jobs, out, expected=len(chosen) * len(maps),
                              progress=progress)
    return replay(args.traces, simulator=args.sim, limit=args.limit, select=select,
                  maps=maps, config=config, out_dir=out, shard=shard, progress=progress)


def main(argv=None):
    args = parser().parse_args(argv)
    out = args.out or (DEFAULT_OUT if args.sim == "verilator" else DEFAULT_OUT / args.sim)
    try:
        results = _run(args, out, lambda line: print(line, file=sys.stderr, flush=True))
    except (CosimError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    table = summary_table(results)
    print(table.splitlines()[-1] if args.quiet else table)
    print(f"results: {results['summary']['results_file']}")
    return 0 if results["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

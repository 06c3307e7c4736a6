"""A replay spread over local processes: ``python -m tb.cosim --jobs N`` runs shards 1/N .. N/N
of the selection as N ``python -m tb.cosim --shard K/N`` processes side by side (one simulator
each; the Verilog emission and the simulator build are shared and locked, see
:mod:`hw.rtlcache` and :mod:`tb.simulator`), shows their combined progress and merges their
results (:func:`tb.results.merge_shards`) into one ``results.json``.

The same shards run on other machines with the same ``--shard K/N`` and ``--out``; copy the
``shard-K-of-N.json`` files into one folder and merge them with ``python -m tb.cosim --merge
--out FOLDER`` (docs/cosim.md section 4a).
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

from tb.results import find_shards, merge_shards, shard_file
from tb.simulator import _tail
from traces.replay import ReplayError, write_results

__all__ = ["run_shards"]

_PROGRESS_RE = re.compile(r"replayed (\d+)/(\d+) execution")


def _last_progress(log):
    try:
        text = log.read_text(errors="replace")
    except FileNotFoundError:
        return 0
    found = _PROGRESS_RE.findall(text)
    return int(found[-1][0]) if found else 0


def run_shards(args, jobs, out_dir, *, expected, progress=None, poll_seconds=15.0):
    """Run ``jobs`` shard processes of ``python -m tb.cosim ARGS --shard K/jobs --out
    out_dir`` (``args``: every other option, e.g. ``["--traces", DIR, "--sim",
    "verilator"]``), wait for them and merge their results into ``out_dir/results.json``.

    ``expected``: executions x maps of the whole selection (for the progress line). Each
    shard's output goes to ``shard-K-of-N.log``; the shard files and logs are removed after
    a merge that passed. Raises :class:`traces.replay.ReplayError` when a shard could not run
    (naming it, its exit status and the end of its log). Returns the merged results."""
    out_dir = Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    for path in find_shards(out_dir).get(jobs, {}).values():
        path.unlink()  # a previous split into as many shards: never merge stale results
    logs = [out_dir / shard_file(k, jobs).replace(".json", ".log") for k in range(1, jobs + 1)]
    procs = []
    t0 = time.monotonic()
    try:
        for k, log in enumerate(logs, 1):
            cmd = [sys.executable, "-m", "tb.cosim", *args, "--shard", f"{k}/{jobs}",
                   "--out", str(out_dir), "--quiet"]
            with open(log, "w") as f:
                procs.append(subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT))
        report_at = t0 + poll_seconds
        while any(p.poll() is None for p in procs):
            time.sleep(0.2)
            if progress is not None and time.monotonic() >= report_at:
                report_at += poll_seconds
                done = sum(_last_progress(log) for log in logs)
                running = sum(p.poll() is None for p in procs)
                progress(f"  replayed {done}/{expected} execution(s) in {jobs} shards "
                         f"({running} running), {time.monotonic() - t0:.0f} s")
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for k, (p, log) in enumerate(zip(procs, logs), 1):
        if p.returncode not in (0, 1) or not (out_dir / shard_file(k, jobs)).exists():
            raise ReplayError(f"shard {k}/{jobs} could not run (exit {p.returncode}); "
                              f"{log}:\n{_tail(log, 15)}")
    results = merge_shards(out_dir, jobs)
    results["summary"]["wall_seconds"] = time.monotonic() - t0
    write_results(out_dir / "results.json", results)
    if results["summary"]["passed"]:
        for k, log in enumerate(logs, 1):
            (out_dir / shard_file(k, jobs)).unlink(missing_ok=True)
            log.unlink(missing_ok=True)
    return results

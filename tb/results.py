"""A replay's results file (``results.json``: ``{"summary", "executions"}``), from one run or
merged from shards.

A replay of ``tb.cosim`` can be split into ``N`` shards (``--shard K/N``,
:func:`traces.replay.shard_of`), run anywhere (a CI matrix, a batch array, local processes),
each writing ``shard-K-of-N.json``; :func:`merge_shards` checks that the shards belong together
(same trace export, configuration, simulator, channel maps and selection; every shard exactly
once) and writes one ``results.json`` of the shape a single run writes, which ``make bench``
reads like any other.

:func:`summarize` is the one place a summary is computed from execution records, for a run and
for a merge.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from traces.replay import ReplayError

__all__ = ["SHARD_FILE", "shard_file", "summarize", "merge_shards", "find_shards"]

#: A shard's results file in its ``--out`` folder.
SHARD_FILE = "shard-{k}-of-{n}.json"
_SHARD_RE = re.compile(r"^shard-(\d+)-of-(\d+)\.json$")

#: Summary fields that describe the run, not its records; a merge checks the first group is the
#: same in every shard (the trace export by its manifest's hash: the folder's path may differ
#: between machines; the merged summary names the first shard's) and combines the rest.
RUN_IDENTITY = ("manifest_sha256", "simulator", "toplevel", "params", "maps")
#: Elapsed times of a run: a merge of shards that ran side by side takes the longest.
RUN_ELAPSED = ("sim_wall_seconds", "build_seconds", "emit_seconds", "wall_seconds")


def shard_file(k, n):
    return SHARD_FILE.format(k=k, n=n)


def _range(values):
    values = [v for v in values if v is not None]
    if not values:
        return None
    return {"min": min(values), "max": max(values), "mean": sum(values) / len(values)}


def summarize(run, records):
    """The summary of a replay: ``run`` (the run's own fields: :data:`RUN_IDENTITY`,
    :data:`RUN_ELAPSED`, ``verilog``, ``built``, ``executions_expected``, ``cocotb_failure``,
    ``run_dir``, optionally ``shard``) completed with the figures of its execution
    ``records``. ``passed``: every expected execution replayed, bit- and cycle-exact, and the
    cocotb test passed."""
    expected = run["executions_expected"]
    compute_s = sum(r["timing"]["compute_s"] for r in records)
    cycles = sum(r["cycles_rtl"] for r in records)
    # an empty shard (more shards than executions) is vacuously exact; an empty run is not
    vacuous = expected == 0 and "shard" in run
    s = dict(run)
    s.update({
        "executions": len(records),
        "bit_exact": (bool(records) or vacuous) and all(r["bit_exact"] for r in records),
        "cycle_exact": (bool(records) or vacuous) and all(r["cycle_exact"] for r in records),
        "mismatching_executions": sum(1 for r in records if r["mismatches"]),
        "mismatches": sum(r["mismatches"] for r in records),
        "first_mismatch": next((r["first_mismatch"] for r in records if r["first_mismatch"]),
                               None),
        "simulated_cycles": cycles,
        "host_port_cycles": sum(r["timing"]["load_words"] + max(r["mem_writes"], 0)
                                for r in records),
        "compute_wall_seconds": compute_s,
        "cycles_per_second": cycles / compute_s if compute_s else 0.0,
        "load_seconds": sum(r["timing"]["load_s"] for r in records),
        "readback_seconds": sum(r["timing"]["readback_s"] for r in records),
        "model_seconds": sum(r["timing"]["model_s"] for r in records),
        "cycles_per_ideal": _range([r["cycles_per_ideal"] for r in records]),
    })
    s["passed"] = (s["bit_exact"] and s["cycle_exact"] and len(records) == expected
                   and not run["cocotb_failure"])
    return s


def _load(path):
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ReplayError(f"shard results {path} do not exist") from None
    except ValueError as e:
        raise ReplayError(f"shard results {path} are not valid JSON ({e}); re-run that "
                          f"shard") from None
    summary = data.get("summary") if isinstance(data, dict) else None
    if not isinstance(summary, dict) or not isinstance(data.get("executions"), list) \
            or not isinstance(summary.get("shard"), dict):
        raise ReplayError(f"{path} is not the results of a tb.cosim shard (--shard K/N)")
    return data


def _identity(summary):
    """What must be equal in every shard of one replay: :data:`RUN_IDENTITY` and the
    selection before the split."""
    return {**{key: summary.get(key) for key in RUN_IDENTITY},
            "selected": summary["shard"].get("selected")}


def find_shards(folder):
    """The shard files in ``folder``, as ``{count: {index: path}}``."""
    found = {}
    for path in sorted(Path(folder).glob("shard-*-of-*.json")):
        m = _SHARD_RE.match(path.name)
        if m:
            found.setdefault(int(m.group(2)), {})[int(m.group(1))] = path
    return found


def merge_shards(folder, count=None):
    """Merge the shard results ``shard-K-of-N.json`` (K = 1..N) in ``folder`` into one
    results dict (not written; :func:`traces.replay.write_results` writes it). ``count``: N,
    needed only when the folder holds shards of more than one split. Raises
    :class:`traces.replay.ReplayError` naming the problem: no shards, a missing or duplicated
    shard, shards of different traces, configurations, simulators, maps or selections."""
    found = find_shards(folder)
    if not found:
        raise ReplayError(f"no shard results (shard-K-of-N.json) in {folder}")
    if count is None:
        if len(found) > 1:
            raise ReplayError(f"{folder} holds shards of {len(found)} splits (N = "
                              f"{', '.join(map(str, sorted(found)))}); say which "
                              f"(python -m tb.cosim --merge N)")
        count = next(iter(found))
    have = found.get(count, {})
    missing = [k for k in range(1, count + 1) if k not in have]
    if missing:
        raise ReplayError(f"{folder}: shard(s) {', '.join(f'{k}/{count}' for k in missing)} "
                          f"missing (run them with --shard K/{count} --out {folder})")
    shards = [_load(have[k]) for k in range(1, count + 1)]
    first = shards[0]["summary"]
    for k, data in enumerate(shards, 1):
        s = data["summary"]
        if (s["shard"].get("index"), s["shard"].get("count")) != (k, count):
            raise ReplayError(f"{have[k]} holds shard {s['shard'].get('index')}/"
                              f"{s['shard'].get('count')}, not {k}/{count} (renamed?)")
        mine, theirs = _identity(s), _identity(first)
        for key in mine:
            if mine[key] != theirs[key]:
                raise ReplayError(f"shards 1/{count} and {k}/{count} differ in {key!r} "
                                  f"({theirs[key]!r} != {mine[key]!r}): they are not one "
                                  f"replay")
    maps = first["maps"]
    records = [r for data in shards for r in data["executions"]]
    order = {i: n for n, i in enumerate(first["shard"]["selected"])}
    seen = set()
    for r in records:
        key = (r["index"], r["map"])
        if r["index"] not in order or key in seen:
            raise ReplayError(f"execution #{r['index']} [{r['map']}] is "
                              + ("in two shards" if key in seen else "not in the selection"))
        seen.add(key)
    records.sort(key=lambda r: (order[r["index"]], maps.index(r["map"])))
    summaries = [d["summary"] for d in shards]
    run = {key: first[key] for key in ("trace",) + RUN_IDENTITY}
    run.update({
        "verilog": first.get("verilog"),
        "memory_loads": first.get("memory_loads"),
        "executions_expected": sum(s["executions_expected"] for s in summaries),
        "built": any(s.get("built") for s in summaries),
        "cocotb_failure": "; ".join(f"shard {s['shard']['index']}/{count}: "
                                    f"{s['cocotb_failure']}"
                                    for s in summaries if s.get("cocotb_failure")) or None,
        "run_dir": next((s["run_dir"] for s in summaries if s.get("run_dir")), None),
        **{key: max(s.get(key) or 0.0 for s in summaries) for key in RUN_ELAPSED},
        "shards": {"count": count,
                   "wall_seconds": [s["wall_seconds"] for s in summaries],
                   "executions": [s["executions"] for s in summaries]},
    })
    return {"summary": summarize(run, records), "executions": records}

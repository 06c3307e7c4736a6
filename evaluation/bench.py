"""Speed and energy of SQ-DM against dense FP16 / INT4 / INT4-VSQ accelerators over every layer
execution of a whole-sample trace, plus sweeps (threshold, DPE:SPE ratio, channel-map policy,
DRAM bandwidth). ``python -m evaluation.bench [--traces DIR] [--results FILE] [--out DIR]``.

Writes ``<out>/report.json``, ``<out>/executions.json`` and PNG plots; prints the tables at
both budgets (equal multiplier count; equal arithmetic area, :mod:`evaluation.area`).
docs/evaluation.md describes the method and what is measured versus modelled.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np

from golden import intref as ir
from hw.config import (ABLATION_PRESETS, MECHANISMS, MODEL_COUNTERS, PRESETS,
                       WORKLOAD_MEMORIES, AcceleratorConfig, for_workload)
from traces.format import TraceError, open_trace
from . import area as ar
from . import energy as en
from .baselines import PAPER as PAPER_TOP
from .baselines import (CONFIGS, DENSE, DENSE_ARRAY, DENSE_PEERS, HW, MULTIPLIERS, PRECISION,
                        RTL_CONFIGS, SQDM_FAMILY, array_config, array_of, dense_array,
                        dense_counters, dram_bytes, events_for, nonzero_work, sqdm_counters,
                        useful_macs)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRACES = REPO / "build" / "traces" / "all"
#: The all-INT4 whole-sample trace (``traces export --plan int4``) of ``int4_vsq_dense``.
DEFAULT_INT4_TRACES = REPO / "build" / "traces" / "all-int4"
#: Where ``make bench`` has tb.cosim replay build/traces/all (maps trace and dense).
DEFAULT_RESULTS = REPO / "build" / "sim" / "all" / "results.json"
#: Where ``make bench`` has tb.cosim replay the dense peers: ``<root>/<top>-<precision>/``,
#: top ``dense`` (256 multipliers) or ``dense-area`` (the equal-area size of ``make area``),
#: precision ``plan`` (build/traces/all) or ``int4`` (build/traces/all-int4).
DEFAULT_PEER_ROOT = REPO / "build" / "sim"
#: ``make area``'s report and ``make golden-report``'s.
DEFAULT_AREA = REPO / "build" / "area" / "report.json"
DEFAULT_GOLDEN = REPO / "build" / "golden" / "report.json"
DEFAULT_OUT = REPO / "build" / "bench"
#: The workload (``--model``) of the defaults above; another workload's inputs and outputs
#: (:func:`default_paths`): the same names with ``-<model>`` (traces), under
#: ``build/sim/<model>-bench/`` (replays), ``build/golden/<model>/`` and ``build/bench/<model>/``.
DEFAULT_MODEL = "digits"


def default_paths(model: str = DEFAULT_MODEL) -> dict:
    """The default input and output locations of workload ``model`` (what ``make bench
    MODEL=<model>`` writes): keys traces, int4_traces, results, peer_root, area, golden, out."""
    if model not in WORKLOAD_MEMORIES:
        raise BenchError(f"model must be one of {sorted(WORKLOAD_MEMORIES)}, got {model!r}")
    if model == DEFAULT_MODEL:
        return {"traces": DEFAULT_TRACES, "int4_traces": DEFAULT_INT4_TRACES,
                "results": DEFAULT_RESULTS, "peer_root": DEFAULT_PEER_ROOT, "area": DEFAULT_AREA,
                "golden": DEFAULT_GOLDEN, "out": DEFAULT_OUT}
    peers = DEFAULT_PEER_ROOT / f"{model}-bench"
    return {"traces": DEFAULT_TRACES.with_name(f"all-{model}"),
            "int4_traces": DEFAULT_INT4_TRACES.with_name(f"all-int4-{model}"),
            "results": peers / "all" / "results.json", "peer_root": peers, "area": DEFAULT_AREA,
            "golden": DEFAULT_GOLDEN.parent / model / "report.json", "out": DEFAULT_OUT / model}

#: Off-chip bandwidth of every configuration (bytes per accelerator cycle).
DEFAULT_BANDWIDTH = 16
BANDWIDTHS = (4, 8, 16, 32, 64, None)          # None: unlimited (compute-bound)
THRESHOLDS = (10, 20, 30, 40, 50)
#: DPE:SPE splits: (label, dpe_cols, spe_lanes, tile). DPE = 16 x cols, SPE = lanes x tile.
#: tile must be a multiple of cols, so DPE > SPE at 256 multipliers is not realisable
#: (docs/evaluation.md 5); the DPE-heavy points have 288 multipliers.
RATIOS = (("32:224", 2, 7, 32), ("64:192", 4, 6, 32), ("128:128", 8, 4, 32),
          ("192:96", 12, 2, 48), ("256:32", 16, 1, 32))
MAP_POLICIES = ("trace", "frozen", "oracle", "dense", "sparse")
#: The counters the RTL replay provides and the cycle models predict.
RTL_COUNTERS = MODEL_COUNTERS

PAPER = {"speedup_vs_fp16": 6.91, "energy_reduction_vs_fp16": 0.515,
         "speedup_quantization_only": 3.78, "node_nm": 28, "dpe_spe_multipliers": "128:128",
         "source": "arXiv 2501.15448 (abstract; ~3.78x from 4-bit quantization alone)"}


class BenchError(RuntimeError):
    """Bad input (missing trace, results of another trace, ...): the message says what."""


# --------------------------------------------------------------------------- inputs

class Execution:
    __slots__ = ("index", "name", "d", "x", "map", "meta", "zeros")

    def __init__(self, index, ex):
        self.index, self.name, self.d, self.meta = index, ex.name, ex.descriptor, ex.meta
        self.x = ex.arrays["x_codes"]
        self.map = ex.arrays["channel_map"].astype(bool)
        self.zeros = (self.x == 0).reshape(-1, self.d.cin).sum(axis=0).astype(np.int64)


def load_trace(trace_dir, *, verify=True, progress=print):
    try:
        tr = open_trace(trace_dir, verify_hashes=verify)
    except TraceError as e:
        raise BenchError(f"cannot open trace {trace_dir}: {e} (make traces STEPS=all writes "
                         "build/traces/all)") from None
    if len(tr) == 0:
        raise BenchError(f"trace {trace_dir} has no executions")
    execs = []
    for i in range(len(tr)):
        execs.append(Execution(i, tr.load(i)))
        if progress and (i + 1) % 200 == 0:
            progress(f"  loaded {i + 1}/{len(tr)} executions")
    return tr, execs


def load_results(path, tr, execs, config=HW) -> dict:
    """RTL counters per (execution index, map variant) from a tb.cosim results.json, after
    checking that it belongs to trace ``tr`` and to the top built with ``config``."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"results file {path} does not exist") from None
    except IsADirectoryError:
        raise BenchError(f"results file {path} is a folder") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"results file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("executions"), list):
        raise BenchError(f"results file {path} has no 'executions' list (not tb.cosim output)")
    summary = data.get("summary") or {}
    params = summary.get("params") or {}
    # a parameter a results file lacks (one written before it existed) had its default
    defaults = AcceleratorConfig().to_dict() if params else config.to_dict()
    for k, v in config.to_dict().items():
        if params.get(k, defaults[k]) != v:
            raise BenchError(f"results file {path} was simulated with "
                             f"{k}={params.get(k, defaults[k])}, the benchmark's configuration "
                             f"has {k}={v}")
    if not data["executions"]:
        why = summary.get("cocotb_failure")
        raise BenchError(f"results file {path} holds no executions (a failed replay"
                         + (f": {why}" if why else "") + "); re-run tb.cosim")
    out = {}
    for r in data["executions"]:
        try:
            i, name, variant = int(r["index"]), r["name"], r.get("map", "trace")
            counters = r["counters_rtl"]
        except (KeyError, TypeError, ValueError):
            raise BenchError(f"results file {path}: a record lacks index/name/counters_rtl") \
                from None
        if not 0 <= i < len(execs) or execs[i].name != name:
            have = execs[i].name if 0 <= i < len(execs) else "nothing"
            raise BenchError(
                f"results file {path} is not of trace {tr.root}: its execution #{i} is "
                f"{name!r}, the trace has {have!r} there (results trace: "
                f"{summary.get('trace')!r}); replay this trace with `python -m tb.cosim "
                f"--traces {tr.root} --maps trace,dense --out <absolute folder>` (`make bench` "
                "does, into build/sim/all) or pass another --results")
        missing = [k for k in RTL_COUNTERS if k not in counters]
        if missing:
            raise BenchError(f"results file {path}: execution #{i} lacks counters {missing}")
        if r.get("bit_exact") is False:
            raise BenchError(f"results file {path}: execution #{i} was not bit-exact on the "
                             "RTL; its counters are not used")
        out[(i, variant)] = {k: int(counters[k]) for k in RTL_COUNTERS}
    return out


# --------------------------------------------------------------------------- maps

def maps_for(execs, policy: str, threshold: int | None = None) -> list[np.ndarray]:
    """Channel map of every execution under ``policy``.

    trace: the trace's maps (or, with ``threshold``, recomputed from the layer's input at the
    previous evaluation with ``golden.intref.channel_map``); frozen: as the trace during step
    0, then the last map measured in step 0 for every later evaluation; oracle: measured from
    the execution's own input; dense / sparse: every group to the DPE / SPE.
    """
    key = lambda e: (e.meta.get("layer", e.name), e.meta.get("image", 0))   # noqa: E731
    by_layer = {}
    for e in execs:
        by_layer.setdefault(key(e), []).append(e)
    for lst in by_layer.values():
        lst.sort(key=lambda e: e.meta.get("eval", 0))
    thr = ir.THRESHOLD_DEFAULT_PCT if threshold is None else threshold

    def measure(e):
        return ir.channel_map(e.zeros, e.d.height * e.d.width, threshold_pct=thr,
                              vector=e.d.vector)

    out = {}
    for lst in by_layer.values():
        for k, e in enumerate(lst):
            g = -(-e.d.cin // e.d.vector)
            if policy == "dense":
                m = np.zeros(g, bool)
            elif policy == "sparse":
                m = np.ones(g, bool)
            elif policy == "oracle":
                m = measure(e)
            elif policy == "trace":
                if threshold is None:
                    m = e.map
                else:
                    m = measure(lst[k - 1]) if k > 0 else np.zeros(g, bool)
            elif policy == "frozen":
                step0 = [p for p in lst[:k] if p.meta.get("step", 0) == 0]
                if e.meta.get("step", 0) == 0 or not step0:
                    m = e.map
                else:
                    m = measure(step0[-1])
            else:
                raise ValueError(f"unknown map policy {policy!r}; one of {MAP_POLICIES}")
            out[e.index] = m
    return [out[e.index] for e in execs]


# --------------------------------------------------------------------------- evaluation

def _bound(compute, dram, bw):
    return compute if bw is None else max(compute, math.ceil(dram / bw))


#: The top each configuration's model counters are computed for at 256 multipliers (FP16 dense:
#: the dense array's shape, with INT4 passes).
TOPS = {"fp16_dense": DENSE, "int4_dense": PAPER_TOP, "int4_vsq_dense": DENSE,
        "int4_vsq_dense_plan": DENSE, "sqdm_paper": PAPER_TOP, "sqdm": HW}


def _model_run(cfg, e, e4, config):
    """``(execution, channel map, model counters)`` of configuration ``cfg`` on the top
    ``config``: ``sqdm`` with the trace's map; ``fp16_dense`` (and ``int4_vsq_dense`` without the
    all-INT4 execution ``e4``) the dense array's INT4-pass model, map ``None``; the others the
    dense map in the layer's precision, ``int4_vsq_dense`` on ``e4``."""
    if cfg in ("sqdm", "sqdm_paper"):
        return e, e.map, sqdm_counters(e.d, e.x, e.map, config)
    if cfg == "fp16_dense" or (cfg == "int4_vsq_dense" and e4 is None):
        return e, None, dense_counters(e.d, e.x, array_of(config))
    ex = e4 if cfg == "int4_vsq_dense" else e
    route = np.zeros_like(ex.map)
    return ex, route, sqdm_counters(ex.d, ex.x, route, config)


def _evaluate_one(job):
    """The record of one execution (:func:`evaluate`), with what it adds to the checks:
    ``(record, fast-model check [compared, mismatches, first], [configs from the RTL],
    RTL-vs-model [compared, mismatches, first])``. ``job``: ``(n, execution, all-INT4
    execution or None, its RTL counters {config: counters}, bandwidth, energy table,
    check_every)``."""
    n, e, e4, rtl, bandwidth, table, check_every = job
    d = e.d
    per, check, used, vs_rtl = {}, [0, 0, None], [], [0, 0, None]
    for cfg in CONFIGS:
        ex, route, c = _model_run(cfg, e, e4, TOPS[cfg])
        src = "model"
        if route is not None:  # a top of the RTL generator: checked, maybe replayed
            if check_every and n % check_every == 0:
                want = _predict(ex, route, TOPS[cfg])
                got = {k: c[k] for k in RTL_COUNTERS}
                check[0] += 1
                if want != got:
                    check[1] += 1
                    check[2] = check[2] or f"{ex.name} {cfg}: {want} != {got}"
            if cfg in rtl:
                r = rtl[cfg]
                vs_rtl[0] += 1
                if any(r[k] != c[k] for k in RTL_COUNTERS):
                    vs_rtl[1] += 1
                    vs_rtl[2] = vs_rtl[2] or f"{ex.name} {cfg}"
                # the non-null items are the address streams' (the model's), not a counter
                c = {**r, "items": c["items_dense"] + c["items_sparse"]}
                src = "rtl"
                used.append(cfg)
        per[cfg] = (c, src, ex.d)
    s = d.shape
    rec = {"index": e.index, "name": e.name, "layer": e.meta.get("layer"),
           "step": e.meta.get("step"), "eval": e.meta.get("eval"),
           "precision": e.meta.get("precision"), "useful_macs": useful_macs(d),
           "nonzero_work": nonzero_work(d, e.x),
           "output_pixels": s.out_height * s.out_width,
           "output_floor": s.out_height * s.out_width * d.cout,
           "sparse_groups": int(e.map.sum()), "groups": int(e.map.size),
           "in_sparsity": float((e.x == 0).mean()), "configs": {}}
    for cfg in CONFIGS:
        c, src, dd = per[cfg]
        ev = events_for(cfg, dd, c)
        pj, parts = en.energy_of(ev, table)
        dram = ev["dram_byte"]
        r = {"source": src, "cycles_compute": int(c["cycles"]),
             "cycles": _bound(int(c["cycles"]), dram, bandwidth),
             "energy_pj": pj, "energy_parts_pj": parts, "dram_bytes": dram}
        if cfg in RTL_CONFIGS:
            r["dpe_busy"], r["spe_busy"] = int(c["dpe_busy"]), int(c["spe_busy"])
            r["macs"] = int(c["macs"])
        if cfg in SQDM_FAMILY + ("int4_vsq_dense_plan",):
            r["energy_pj_as_built"] = en.energy_of(
                events_for(cfg, dd, c, as_built=True), table)[0]
        rec["configs"][cfg] = r
    return rec, check, used, vs_rtl


def per_execution(fn, jobs_list, jobs=1, progress=None, what="executions"):
    """``[fn(job) for job in jobs_list]``, in order, in ``jobs`` processes when > 1 (the
    per-execution work of the evaluation is independent; totals are summed by the caller in
    execution order, so the result does not depend on ``jobs``)."""
    t0 = time.monotonic()
    total = len(jobs_list)

    def tick(k):
        if progress and (k % 200 == 0 or k == total):
            progress(f"  {what}: {k}/{total} ({time.monotonic() - t0:.1f} s)")

    if jobs <= 1 or total < 2:
        out = []
        for job in jobs_list:
            out.append(fn(job))
            tick(len(out))
        return out
    from concurrent.futures import ProcessPoolExecutor
    out = []
    with ProcessPoolExecutor(min(jobs, total)) as pool:
        for r in pool.map(fn, jobs_list, chunksize=8):
            out.append(r)
            tick(len(out))
    return out


def evaluate(execs, *, rtl=None, int4_execs=None, bandwidth=DEFAULT_BANDWIDTH,
             table=en.EnergyTable(), check_every=10, jobs=1, progress=print):
    """Per-execution records and totals of every configuration (:data:`CONFIGS`).

    ``rtl``: ``{(config, execution index): RTL counters}`` (:func:`rtl_counters`);
    ``int4_execs``: the all-INT4 trace's executions (``int4_vsq_dense`` runs them; without
    them it is modelled on ``execs`` shapes); ``jobs``: processes (the same result for any)."""
    rtl = rtl or {}
    by_index = {}
    for (cfg, i), c in rtl.items():
        by_index.setdefault(i, {})[cfg] = c
    jobs_list = [(n, e, int4_execs[n] if int4_execs is not None else None,
                  by_index.get(e.index, {}), bandwidth, table, check_every)
                 for n, e in enumerate(execs)]
    results = per_execution(_evaluate_one, jobs_list, jobs, progress, "evaluated")
    recs = []
    check = {"executions": 0, "mismatches": 0, "first": None}
    rtl_used = {c: 0 for c in CONFIGS}
    rtl_vs_model = {"compared": 0, "mismatches": 0, "first": None}
    for rec, chk, used, vs_rtl in results:
        recs.append(rec)
        for total, (n, bad, first) in ((check, chk), (rtl_vs_model, vs_rtl)):
            total["executions" if total is check else "compared"] += n
            total["mismatches"] += bad
            total["first"] = total["first"] or first
        for cfg in used:
            rtl_used[cfg] += 1
    return recs, check, rtl_used, rtl_vs_model


def _predict(e, route, config=HW):
    """hw.cyclemodel.predict_layer on one execution (the reference of evaluation.fastmodel),
    through the job layer."""
    from hw.job import predict_counters
    return predict_counters(e.d, e.x, route, config)


def totals(recs, bandwidth=DEFAULT_BANDWIDTH):
    out = {}
    macs = sum(r["useful_macs"] for r in recs)
    for cfg in CONFIGS:
        rs = [r["configs"][cfg] for r in recs]
        cyc = sum(_bound(x["cycles_compute"], x["dram_bytes"], bandwidth) for x in rs)
        srcs = sorted({x["source"] for x in rs})
        parts = {}
        for x in rs:
            for k, v in x["energy_parts_pj"].items():
                parts[k] = parts.get(k, 0.0) + v
        t = {"cycles": int(cyc), "cycles_compute": int(sum(x["cycles_compute"] for x in rs)),
             "energy_pj": float(sum(x["energy_pj"] for x in rs)),
             "energy_parts_pj": {k: float(v) for k, v in sorted(parts.items())},
             "source": srcs[0] if len(srcs) == 1 else "rtl+model",
             "rtl_executions": sum(1 for x in rs if x["source"] == "rtl"),
             "multipliers": MULTIPLIERS[cfg],
             "dram_bytes": float(sum(x["dram_bytes"] for x in rs)),
             "mac_utilisation": macs / (MULTIPLIERS[cfg] * cyc) if cyc else 0.0}
        if all("dpe_busy" in x for x in rs):
            t["dpe_busy"] = int(sum(x["dpe_busy"] for x in rs))
            t["spe_busy"] = int(sum(x["spe_busy"] for x in rs))
        if all("energy_pj_as_built" in x for x in rs):
            t["energy_pj_as_built"] = float(sum(x["energy_pj_as_built"] for x in rs))
        out[cfg] = t
    base = out["fp16_dense"]
    for cfg, t in out.items():
        t["speedup_vs_fp16"] = base["cycles"] / t["cycles"]
        t["energy_reduction_vs_fp16"] = 1 - t["energy_pj"] / base["energy_pj"]
        if "energy_pj_as_built" in t:
            t["energy_reduction_vs_fp16_as_built"] = 1 - t["energy_pj_as_built"] / \
                base["energy_pj"]
    return out


# --------------------------------------------------------------------------- sweeps

def _sqdm_one(job):
    """``(cycles, compute cycles, DPE busy, SPE busy, energy pJ)`` of one execution for
    :func:`sqdm_total`."""
    d, x, m, config, table, bandwidth = job
    c = sqdm_counters(d, x, m, config)
    ev = events_for("sqdm", d, c)
    return (_bound(c["cycles"], ev["dram_byte"], bandwidth), c["cycles"], c["dpe_busy"],
            c["spe_busy"], en.energy_of(ev, table)[0])


def sqdm_total(execs, maps, table, bandwidth=DEFAULT_BANDWIDTH, config=PAPER_TOP, jobs=1,
               **params):
    """Totals of SQ-DM on the top ``config`` (default the paper's organisation, the one whose
    map routes) with ``params`` overridden, for given maps (evaluation.fastmodel), in ``jobs``
    processes (summed in execution order: the same totals for any)."""
    config = config.replace(**params)
    cyc = cyc_c = dpe = spe = 0
    pj = 0.0
    for one in per_execution(_sqdm_one, [(e.d, e.x, m, config, table, bandwidth)
                                         for e, m in zip(execs, maps)], jobs):
        cyc += one[0]
        cyc_c += one[1]
        dpe += one[2]
        spe += one[3]
        pj += one[4]
    sparse_groups = sum(int(np.sum(m)) for m in maps)
    groups = sum(int(np.size(m)) for m in maps)
    return {"cycles": int(cyc), "cycles_compute": int(cyc_c), "dpe_busy": int(dpe),
            "spe_busy": int(spe), "dpe_utilisation": dpe / cyc_c, "spe_utilisation": spe / cyc_c,
            "energy_pj": pj, "sparse_group_fraction": sparse_groups / groups}


def sweeps(execs, base, table, jobs=1, progress=print):
    """The map threshold, the DPE:SPE split and the map policy, on the paper's organisation
    (where the map decides which engine computes a group)."""
    fp16_cyc, fp16_pj = base["fp16_dense"]["cycles"], base["fp16_dense"]["energy_pj"]

    def rel(t):
        t["speedup_vs_fp16"] = fp16_cyc / t["cycles"]
        t["energy_reduction_vs_fp16"] = 1 - t["energy_pj"] / fp16_pj
        return t

    out = {"source": "model (evaluation.fastmodel, the closed form of hw.cyclemodel), every "
                     "execution of the trace",
           "config": "paper (hw.config.PRESETS['paper']: the organisation whose channel map "
                     "routes; on the v2 default the map only breaks the dispatcher's ties)"}
    res = []
    trace_maps = [e.map for e in execs]
    for thr in THRESHOLDS:
        t0 = time.monotonic()
        maps = maps_for(execs, "trace", threshold=thr)
        t = rel(sqdm_total(execs, maps, table, jobs=jobs))
        t["threshold_pct"] = thr
        if thr == ir.THRESHOLD_DEFAULT_PCT:
            t["maps_equal_trace"] = all(np.array_equal(a, b) for a, b in zip(maps, trace_maps))
        res.append(t)
        progress(f"  threshold {thr:3d} %: speed-up {t['speedup_vs_fp16']:.2f}x, DPE "
                 f"{t['dpe_utilisation']:.2f} SPE {t['spe_utilisation']:.2f} "
                 f"({time.monotonic() - t0:.1f} s)")
    out["threshold"] = res
    res = []
    for label, cols, lanes, tile in RATIOS:
        t = rel(sqdm_total(execs, trace_maps, table, jobs=jobs, dpe_cols=cols, spe_lanes=lanes,
                           tile=tile))
        t.update(label=label, dpe_cols=cols, spe_lanes=lanes, tile=tile,
                 dpe_multipliers=HW.vector * cols, spe_multipliers=lanes * tile,
                 multipliers=HW.vector * cols + lanes * tile)
        res.append(t)
        progress(f"  DPE:SPE {label:>8}: speed-up {t['speedup_vs_fp16']:.2f}x")
    out["dpe_spe_ratio"] = res
    res = []
    for pol in MAP_POLICIES:
        t = rel(sqdm_total(execs, maps_for(execs, pol), table, jobs=jobs))
        t["policy"] = pol
        res.append(t)
        progress(f"  map {pol:>7}: speed-up {t['speedup_vs_fp16']:.2f}x")
    out["map_policy"] = res
    return out


#: The ablation rows: the paper's organisation, each v2 mechanism alone on it, then v2.
ABLATION = ABLATION_PRESETS + ("default",)


def v2_ablation(execs, cfgs, area, table, *, rtl=None, bandwidth=DEFAULT_BANDWIDTH, jobs=1,
                progress=print):
    """Each architecture-v2 mechanism on its own (:data:`ABLATION`: presets of
    ``hw.config.PRESETS``), the whole sample with the trace's maps: cycles, energy, datapath
    area (``make area``), speed-up against the paper's organisation. ``paper`` and
    ``default`` are ``sqdm_paper`` and ``sqdm`` (RTL counters where replayed); the single
    mechanisms come from the cycle model, which the replays of the two ends match exactly.
    ``dense_map``: v2 with every map bit 0 (the map then breaks no tie towards the SPE; RTL
    counters ``rtl[("v2:dense_map", i)]`` where replayed): what the channel map is worth in
    v2."""
    rows = {}
    maps = [e.map for e in execs]
    for name in ABLATION:
        t0 = time.monotonic()
        cfg = {"paper": "sqdm_paper", "default": "sqdm"}.get(name)
        if cfg is not None:
            c = cfgs[cfg]
            row = {k: c[k] for k in ("cycles", "cycles_compute", "energy_pj", "source")}
            row.update(dpe_busy=c.get("dpe_busy"), spe_busy=c.get("spe_busy"))
        else:
            t = sqdm_total(execs, maps, table, bandwidth, config=PRESETS[name], jobs=jobs)
            row = {k: t[k] for k in ("cycles", "cycles_compute", "energy_pj", "dpe_busy",
                                     "spe_busy")}
            row["source"] = "model"
        a = (area or {}).get("configs", {}).get("sqdm" if name == "default" else name)
        row["area_transistors"] = a["datapath"]["transistors"] if a else None
        row["mechanisms"] = {m: getattr(PRESETS[name], m) for m in MECHANISMS}
        rows[name] = row
        progress(f"  ablation {name:<18} {row['cycles']:>12,} cycles "
                 f"({time.monotonic() - t0:.1f} s)")
    base = rows["paper"]
    for row in rows.values():
        row["speedup_vs_paper"] = base["cycles"] / row["cycles"]
        row["energy_vs_paper"] = row["energy_pj"] / base["energy_pj"]
        if row["area_transistors"] and base["area_transistors"]:
            row["area_vs_paper"] = row["area_transistors"] / base["area_transistors"]
    # the channel map's worth in v2: the same top with an all-dense map
    rtl = rtl or {}
    dense = [np.zeros_like(m) for m in maps]
    if all(("v2:dense_map", e.index) in rtl for e in execs):
        cyc = sum(_bound(rtl[("v2:dense_map", e.index)]["cycles"], dram_bytes("sqdm", e.d),
                         bandwidth) for e in execs)
        src = "rtl"
    else:
        cyc, src = sqdm_total(execs, dense, table, bandwidth, config=HW,
                              jobs=jobs)["cycles"], "model"
    trace_cycles = rows["default"]["cycles"]
    return {"rows": rows, "order": list(ABLATION), "source": "rows paper and default: as "
            "configs sqdm_paper and sqdm; the others evaluation.fastmodel (whole sample)",
            "v2_map": {"trace_map_cycles": trace_cycles, "dense_map_cycles": int(cyc),
                       "dense_map_source": src,
                       "trace_map_speedup": cyc / trace_cycles}}


def cycles_per_ideal(recs, configs=("sqdm", "sqdm_paper"), min_pixels=64):
    """Per layer and configuration the worst execution's ``cycles / ideal``, two ideals:
    ``work`` = the non-zero products' 5-bit operations on all 256 multipliers
    (:func:`evaluation.baselines.nonzero_work`), ``floor`` = ``max(work, output pixels x
    cout)`` (the one-channel-per-cycle serializer and PPU, a bound of every configuration).
    Layers with at least ``min_pixels`` output pixels; ``above_1_5``: those over 1.5x."""
    out = {}
    for c in configs:
        layers = {}
        for r in recs:
            if r["output_pixels"] < min_pixels:
                continue
            work = r["nonzero_work"] / MULTIPLIERS[c]
            cyc = r["configs"][c]["cycles_compute"]
            L = layers.setdefault(r["layer"], {"work": 0.0, "floor": 0.0,
                                               "output_pixels": r["output_pixels"]})
            L["work"] = max(L["work"], cyc / max(work, 1))
            L["floor"] = max(L["floor"], cyc / max(work, r["output_floor"], 1))
        out[c] = {"layers": layers,
                  "above_1_5": {k: sorted(n for n, L in layers.items() if L[k] > 1.5)
                                for k in ("work", "floor")}}
    return {"min_output_pixels": min_pixels, "configs": out,
            "rule": "cycles / ideal of each layer's worst execution; work: non-zero products "
                    "(an MXINT8 product 2 per non-zero activation nibble) on 256 multipliers; "
                    "floor: also at least one output channel per cycle (pixels x cout)"}


def bandwidth_sweep(recs):
    res = []
    for bw in BANDWIDTHS:
        t = totals(recs, bandwidth=bw)
        res.append({"bytes_per_cycle": bw, **{c: {"cycles": t[c]["cycles"],
                                                  "speedup_vs_fp16": t[c]["speedup_vs_fp16"]}
                                              for c in CONFIGS}})
    return res


def _peer_totals(execs, cfg, array, *, int4_execs=None, rtl=None, rtl_key=None,
                 bandwidth=DEFAULT_BANDWIDTH, table=en.EnergyTable()):
    """Cycles and energy of dense baseline ``cfg`` on array shape ``array`` over ``execs``
    (``int4_vsq_dense`` on ``int4_execs`` when given): RTL counters ``rtl[(rtl_key, index)]``
    where present, else evaluation.fastmodel. Returns (totals, RTL executions used)."""
    config = array_config(array)
    cyc = cyc_c = used = 0
    pj = 0.0
    for n, e in enumerate(execs):
        ex, _, c = _model_run(cfg, e, None if int4_execs is None else int4_execs[n], config)
        if rtl and (rtl_key, e.index) in rtl:
            c = {**rtl[(rtl_key, e.index)], "items": c["items_dense"] + c["items_sparse"]}
            used += 1
        ev = events_for(cfg, ex.d, c, array=array)
        pj += en.energy_of(ev, table)[0]
        cyc_c += c["cycles"]
        cyc += _bound(c["cycles"], ev["dram_byte"], bandwidth)
    return {"cycles": int(cyc), "cycles_compute": int(cyc_c), "energy_pj": pj}, used


def _relative(out, macs):
    base = out["fp16_dense"]
    for t in out.values():
        t["mac_utilisation"] = macs / (t["multipliers"] * t["cycles"]) if t["cycles"] else 0.0
        t["speedup_vs_fp16"] = base["cycles"] / t["cycles"]
        t["energy_reduction_vs_fp16"] = 1 - t["energy_pj"] / base["energy_pj"]
    return out


def _itself(t, budget_key, budget, area=None):
    """A configuration of this design at its own area (``area``, default the budget)."""
    area = budget if area is None else area
    return {"multipliers": t["multipliers"], "multipliers_exact": float(t["multipliers"]),
            "array": array_of(HW), budget_key: area, "area_ratio": area / budget,
            "cycles": t["cycles"], "cycles_compute": t["cycles_compute"],
            "energy_pj": t["energy_pj"], "source": t["source"],
            "rtl_executions": t["rtl_executions"]}


def equal_area(execs, cfgs, *, int4_execs=None, bandwidth=DEFAULT_BANDWIDTH,
               table=en.EnergyTable(), progress=print):
    """The configurations at equal arithmetic area (docs/evaluation.md 3): the dense
    baselines re-evaluated (evaluation.fastmodel) with the column count whose multipliers, adder
    trees and accumulators have the area of this design's DPE + SPE arithmetic
    (:func:`evaluation.area.equal_area_array`; ``int4_vsq_dense_plan`` has the INT4-VSQ array);
    sqdm and int4_dense are this design itself, so their figures are those of ``cfgs``."""
    budget = ar.sqdm_um2()
    macs = sum(useful_macs(e.d) for e in execs)
    out = {}
    for cfg in CONFIGS:
        if cfg in SQDM_FAMILY:  # the same arithmetic in both organisations
            out[cfg] = _itself(cfgs[cfg], "area_um2", budget["total_um2"])
            continue
        t0 = time.monotonic()
        arr = ar.equal_area_array("fp16_dense" if cfg == "fp16_dense" else "int4_vsq_dense",
                                  budget["total_um2"])
        t, _ = _peer_totals(execs, cfg, arr, int4_execs=int4_execs, bandwidth=bandwidth,
                            table=table)
        out[cfg] = {"multipliers": arr["multipliers"],
                    "multipliers_exact": arr["multipliers_exact"],
                    "array": {k: arr[k] for k in ("vector", "dpe_cols", "spe_lanes", "tile")},
                    "area_um2": arr["area_um2"], "area_ratio": arr["area_ratio"], **t,
                    "source": "model", "rtl_executions": 0}
        progress(f"  equal arithmetic area {cfg}: {arr['multipliers']} multipliers (exact "
                 f"{arr['multipliers_exact']:.1f}), {t['cycles']:,} cycles "
                 f"({time.monotonic() - t0:.1f} s)")
    return {
        "configs": _relative(out, macs),
        "dram_bytes_per_cycle": bandwidth,
        "budget_um2": budget["total_um2"],
        "sqdm_arithmetic_um2": budget["engines"],
        "area_table_um2": ar.AREA_45NM_UM2,
        "source": ar.SOURCE,
        "rule": "arithmetic area (multipliers, adder trees, per-column accumulation) of each "
                "dense baseline equal to this design's DPE + SPE arithmetic; column count "
                "rounded up to a whole 16-multiplier column (the baseline never gets less "
                "area); tile 32 if the column count divides 32, else one pass per item "
                "(tile = columns); equal DRAM bandwidth. Not counted: registers, multiplexers, "
                "SPE lane selection, term-unit shifters, PPU, SRAM (docs/evaluation.md 3)",
        "rules_um2": {"int_mult": "282 * a * b / 64 (operand-width product, 8b anchor)",
                      "int_add": "piecewise linear through 8b 36, 16b 67, 32b 137; beyond 32b "
                                 "4.375 per bit; below 8b 4.5 per bit",
                      "int_mult_5x5": ar.int_mult_um2(5), "int_add_64": ar.int_add_um2(64)},
    }


def fp16_array(multipliers_exact: float) -> dict:
    """The FP16 array of at least ``multipliers_exact`` multipliers in whole 16-lane columns."""
    return dense_array(max(1, math.ceil(multipliers_exact / 16 - 1e-9)))


def equal_area_synth(execs, cfgs, area, *, int4_execs=None, rtl=None,
                     bandwidth=DEFAULT_BANDWIDTH, table=en.EnergyTable(), progress=print):
    """The configurations at equal synthesized datapath area (``make area``): the dense 4-bit
    peers are the dense top sized by :func:`evaluation.synth_area.size_dense_peer` (RTL
    counters from ``rtl[("area:" + config, index)]`` where replayed), FP16 dense has the
    multipliers whose FP16 MAC units fill the budget beside the dense top's other blocks."""
    budget = area["budget_transistors"]
    macs = sum(useful_macs(e.d) for e in execs)
    peer = AcceleratorConfig.from_dict(area["configs"]["dense_equal_area"]["params"])
    peer_area = area["configs"]["dense_equal_area"]
    fp16 = area["fp16_equal_area"]
    out = {}
    paper_area = area["configs"].get("paper", {}).get("datapath", {}).get("transistors")
    for cfg in CONFIGS:
        if cfg in SQDM_FAMILY:  # at its own area: v2's is the budget, the paper's its own
            out[cfg] = _itself(cfgs[cfg], "area_transistors", budget,
                               None if cfg == "sqdm" else paper_area)
            continue
        t0 = time.monotonic()
        if cfg == "fp16_dense":
            arr = fp16_array(fp16["multipliers_exact"])
            mults, exact = 16 * arr["dpe_cols"], fp16["multipliers_exact"]
            transistors = fp16["common_transistors"] + mults * fp16["unit_transistors"]
        else:
            arr = array_of(peer)
            mults = exact = peer.dpe_multipliers
            transistors = peer_area["datapath"]["transistors"]
        t, used = _peer_totals(execs, cfg, arr, int4_execs=int4_execs, rtl=rtl,
                               rtl_key=f"area:{cfg}", bandwidth=bandwidth, table=table)
        out[cfg] = {"multipliers": mults, "multipliers_exact": exact, "array": arr,
                    "area_transistors": transistors, "area_ratio": transistors / budget, **t,
                    "source": "rtl" if used == len(execs) else ("rtl+model" if used else "model"),
                    "rtl_executions": used}
        progress(f"  equal synthesized area {cfg}: {mults} multipliers, {t['cycles']:,} cycles, "
                 f"{used} RTL executions ({time.monotonic() - t0:.1f} s)")
    out = _relative(out, macs)
    sq = out["sqdm"]["cycles"]
    return {
        "configs": out,
        "speedup_vs": {c: out[c]["cycles"] / sq for c in DENSE_PEERS},
        "dram_bytes_per_cycle": bandwidth,
        "budget_transistors": budget,
        "source": "make area (build/area/report.json): Yosys generic-gate synthesis of each "
                  "datapath, transistors by stat -tech cmos",
        "rule": "datapath transistors (address generator, fetch, dispatcher, engines, "
                "join/serializer, PPU, writer, detector; memories excluded) of each dense "
                "4-bit peer at least this design's (v2, sqdm), with the fewest DPE columns; "
                "FP16 dense: the dense top's blocks but its DPE plus FP16 multiply + FP32 "
                "accumulate units, rounded up to whole 16-lane columns; equal DRAM bandwidth. "
                "sqdm_paper and int4_dense (the paper's organisation) at their own area "
                "(area_ratio)",
    }


def equal_bitwidth(execs, cfgs, *, bandwidth=DEFAULT_BANDWIDTH, table=en.EnergyTable()):
    """The paper's likely normalisation (an inference): equal datapath bit-width, one FP16 lane
    = four 4-bit lanes, so FP16 dense gets 256 / 4 = 64 multipliers against the 4-bit
    configurations' 256."""
    arr = fp16_array(64)
    t, _ = _peer_totals(execs, "fp16_dense", arr, bandwidth=bandwidth, table=table)
    return {
        "rule": "inference, not stated by the paper: equal datapath bit-width (one FP16 "
                "multiplier lane = four 4-bit lanes): FP16 dense with 64 multipliers against "
                "the 4-bit configurations at 256 (their figures as in 'configs')",
        "fp16_dense": {"multipliers": 64, "array": arr, **t},
        "speedup_vs_fp16": {c: t["cycles"] / cfgs[c]["cycles"] for c in CONFIGS
                            if c != "fp16_dense"},
        "energy_reduction_vs_fp16": {c: 1 - cfgs[c]["energy_pj"] / t["energy_pj"]
                                     for c in CONFIGS if c != "fp16_dense"},
    }


def per_layer(recs):
    out = {}
    for r in recs:
        L = out.setdefault(r["layer"], {"executions": 0, "useful_macs": 0,
                                        **{c: {"cycles": 0, "dpe_busy": 0, "spe_busy": 0}
                                           for c in CONFIGS}})
        L["executions"] += 1
        L["useful_macs"] += r["useful_macs"]
        for c in CONFIGS:
            x = r["configs"][c]
            L[c]["cycles"] += x["cycles_compute"]
            L[c]["dpe_busy"] += x.get("dpe_busy", 0)
            L[c]["spe_busy"] += x.get("spe_busy", 0)
    for L in out.values():
        for c in CONFIGS:
            x = L[c]
            x["mac_utilisation"] = L["useful_macs"] / (MULTIPLIERS[c] * x["cycles"])
            if c in RTL_CONFIGS:
                x["dpe_utilisation"] = x["dpe_busy"] / x["cycles"]
                x["spe_utilisation"] = x["spe_busy"] / x["cycles"]
            else:
                del x["dpe_busy"], x["spe_busy"]
    return out


# --------------------------------------------------------------------------- output

def equal_area_text(ea) -> str:
    cfgs = ea["configs"]
    lines = [f"equal arithmetic area ({ea['budget_um2']:,.0f} um^2 at 45 nm), "
             f"{ea['dram_bytes_per_cycle']} B/cycle:",
             f"{'config':<20} {'source':<9} {'mults':>5} {'exact':>6} {'area':>5} "
             f"{'cycles':>12} {'speed-up':>9} {'energy uJ':>10} {'energy red.':>11}"]
    for c in CONFIGS:
        t = cfgs[c]
        lines.append(f"{c:<20} {t['source']:<9} {t['multipliers']:>5} "
                     f"{t['multipliers_exact']:>6.1f} {t['area_ratio']:>5.2f} {t['cycles']:>12,} "
                     f"{t['speedup_vs_fp16']:>8.2f}x {t['energy_pj'] / 1e6:>10.2f} "
                     f"{100 * t['energy_reduction_vs_fp16']:>10.1f}%")
    return "\n".join(lines)


def table_text(cfgs) -> str:
    lines = ["equal multiplier count (256), equal bandwidth:",
             f"{'config':<20} {'source':<9} {'SQNR dB':>7} {'Mtransistors':>12} {'cycles':>12} "
             f"{'speed-up':>9} {'energy uJ':>10} {'energy red.':>11} {'as-built red.':>13}"]
    for c in CONFIGS:
        t = cfgs[c]
        ab = t.get("energy_reduction_vs_fp16_as_built")
        q = t.get("sqnr_db")
        area = (t.get("area") or {}).get("transistors")
        lines.append(f"{c:<20} {t['source']:<9} {'ref' if q is None else f'{q:.1f}':>7} "
                     f"{'' if area is None else f'{area / 1e6:.2f}':>12} {t['cycles']:>12,} "
                     f"{t['speedup_vs_fp16']:>8.2f}x {t['energy_pj'] / 1e6:>10.2f} "
                     f"{100 * t['energy_reduction_vs_fp16']:>10.1f}% "
                     f"{'' if ab is None else f'{100 * ab:.1f}%':>13}")
    lines.append(f"{'paper (28 nm)':<20} {'':<9} {'':>7} {'':>12} {'':>12} "
                 f"{PAPER['speedup_vs_fp16']:>8.2f}x {'':>10} "
                 f"{100 * PAPER['energy_reduction_vs_fp16']:>10.1f}%")
    return "\n".join(lines)


def ablation_text(abl) -> str:
    lines = ["architecture v2, each mechanism alone (whole sample, trace maps):",
             f"{'preset':<20} {'source':<7} {'cycles':>12} {'vs paper':>9} {'energy':>8} "
             f"{'area':>7} {'DPE busy':>9}"]
    for name in abl["order"]:
        r = abl["rows"][name]
        av = r.get("area_vs_paper")
        busy = r["dpe_busy"] / r["cycles_compute"] if r.get("dpe_busy") is not None else None
        lines.append(f"{name:<20} {r['source']:<7} {r['cycles']:>12,} "
                     f"{r['speedup_vs_paper']:>8.2f}x {r['energy_vs_paper']:>8.3f} "
                     f"{'' if av is None else f'{av:.3f}':>7} "
                     f"{'' if busy is None else f'{100 * busy:.0f}%':>9}")
    m = abl["v2_map"]
    lines.append(f"v2 with an all-dense map: {m['dense_map_cycles']:,} cycles "
                 f"({m['dense_map_source']}); the trace's map is worth "
                 f"{m['trace_map_speedup']:.3f}x")
    return "\n".join(lines)


def equal_area_synth_text(eas) -> str:
    cfgs = eas["configs"]
    lines = [f"equal synthesized datapath area ({eas['budget_transistors'] / 1e6:.2f} M "
             f"transistors, Yosys), {eas['dram_bytes_per_cycle']} B/cycle:",
             f"{'config':<20} {'source':<9} {'mults':>5} {'area':>5} {'cycles':>12} "
             f"{'speed-up':>9} {'energy uJ':>10} {'energy red.':>11}"]
    for c in CONFIGS:
        t = cfgs[c]
        lines.append(f"{c:<20} {t['source']:<9} {t['multipliers']:>5} {t['area_ratio']:>5.2f} "
                     f"{t['cycles']:>12,} {t['speedup_vs_fp16']:>8.2f}x "
                     f"{t['energy_pj'] / 1e6:>10.2f} {100 * t['energy_reduction_vs_fp16']:>10.1f}%")
    lines.append("sqdm speed-up against " + ", ".join(
        f"{c} {v:.2f}x" for c, v in eas["speedup_vs"].items()))
    return "\n".join(lines)


def equal_bitwidth_text(ebw) -> str:
    return ("equal datapath bit-width (inference: FP16 dense with 64 multipliers, "
            f"{ebw['fp16_dense']['cycles']:,} cycles): " + ", ".join(
                f"{c} {v:.2f}x" for c, v in ebw["speedup_vs_fp16"].items()))


def _round(x):
    if isinstance(x, float):
        return float(f"{x:.6g}")
    if isinstance(x, dict):
        return {k: _round(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_round(v) for v in x]
    return x


def write_json(path, data):
    path = Path(path)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(_round(data), indent=1, sort_keys=True) + "\n")
    os.replace(tmp, path)


def _json_or_none(path, what, progress):
    path = Path(path)
    if not path.is_file():
        progress(f"  no {what} ({path})")
        return None
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{what} {path} is not valid JSON ({e})") from None


def _has_keys(doc, keys):
    return isinstance(doc, dict) and all(k in doc for k in keys)


def load_int4_trace(path, tr, execs, *, verify=True, progress=print):
    """The all-INT4 trace's executions, checked to be the same layer executions as ``execs``
    (same count and names, in order)."""
    tr4, execs4 = load_trace(path, verify=verify, progress=progress)
    if len(execs4) != len(execs) or any(a.name != b.name for a, b in zip(execs, execs4)):
        raise BenchError(f"the all-INT4 trace {path} does not hold the executions of {tr.root} "
                         "(export both with the same --steps, num-steps and seed)")
    return tr4, execs4


def rtl_counters(tr, execs, *, results=None, tr4=None, execs4=None, peer_root=None, area=None,
                 model=DEFAULT_MODEL, progress=print):
    """``({(config, execution index): counters}, {results file: what})`` from the replays:
    ``results`` (sqdm, the v2 default: map trace; map dense, key ``v2:dense_map``) and, under
    ``peer_root``, the paper's organisation (``paper``: sqdm_paper with map trace, int4_dense
    with map dense) and the dense peers' (``dense-plan``, ``dense-int4``; with the area report
    ``dense-area-plan``, ``dense-area-int4``, keys ``area:<config>``). Every top has the
    memories of workload ``model`` (``hw.config.for_workload``); without ``results`` the
    workload's default results file is used if it exists."""
    rtl, used = {}, {}
    explicit = results is not None
    results = Path(results) if explicit else default_paths(model)["results"]
    if results.is_file() or explicit:
        try:
            for (i, variant), c in load_results(results, tr, execs,
                                                for_workload(HW, model)).items():
                cfg = {"trace": "sqdm", "dense": "v2:dense_map"}.get(variant)
                if cfg:
                    rtl[(cfg, i)] = c
            used[str(results)] = "sqdm (map trace; map dense: v2_map.dense_map)"
        except BenchError as e:
            if explicit:
                raise
            progress(f"  not using {results}: {e}")
    if peer_root is None:
        return rtl, used
    paper = Path(peer_root) / "paper" / "results.json"
    if paper.is_file():
        try:
            for (i, variant), c in load_results(paper, tr, execs,
                                                for_workload(PAPER_TOP, model)).items():
                cfg = {"trace": "sqdm_paper", "dense": "int4_dense"}.get(variant)
                if cfg:
                    rtl[(cfg, i)] = c
            used[str(paper)] = "sqdm_paper (map trace), int4_dense (map dense)"
        except BenchError as e:
            progress(f"  not using {paper}: {e}")
    tops = {"": DENSE}
    if area is not None:
        tops["area:"] = AcceleratorConfig.from_dict(area["configs"]["dense_equal_area"]["params"])
    for prefix, config in tops.items():
        folder = "dense-area" if prefix else "dense"
        for cfg, precision in DENSE_PEERS.items():
            path = Path(peer_root) / f"{folder}-{precision}" / "results.json"
            t, ex = (tr4, execs4) if precision == "int4" else (tr, execs)
            if not path.is_file() or t is None:
                continue
            try:
                got = load_results(path, t, ex, for_workload(config, model))
            except BenchError as e:
                progress(f"  not using {path}: {e}")
                continue
            for (i, variant), c in got.items():
                if variant == "dense":
                    rtl[(prefix + cfg, i)] = c
            used[str(path)] = f"{prefix}{cfg} ({config.dpe_cols} DPE columns, no SPE)"
    return rtl, used


def attach_quality_and_area(cfgs, golden, area):
    """Each configuration's denoiser SQNR (``make golden-report``: all-INT4, the plan; FP16 is
    the reference) and datapath area at the equal-multiplier budget (``make area``)."""
    sqnr = (golden or {}).get("sqnr_db", {})
    for cfg, t in cfgs.items():
        t["precision"] = PRECISION[cfg]
        t["sqnr_db"] = sqnr[PRECISION[cfg]]["mean"] if PRECISION[cfg] in sqnr else None
        if area is None:
            t["area"] = None
            continue
        if cfg == "fp16_dense":
            f = area["fp16_equal_area"]
            dense16 = area["configs"]["dense16"]
            t["area"] = {"transistors": f["common_transistors"] + 256 * f["unit_transistors"],
                         "cells": None, "sram_bits": dense16["sram_bits"],
                         "sram_um2": dense16["sram_um2"],
                         "note": "the dense top's blocks but its DPE + 256 FP16 MAC units"}
            continue
        key = {"sqdm": "sqdm", "sqdm_paper": "paper", "int4_dense": "paper"}.get(cfg, "dense16")
        a = area["configs"].get(key)
        if a is None:
            t["area"] = None
            continue
        t["area"] = {"transistors": a["datapath"]["transistors"],
                     "cells": a["datapath"]["cells"],
                     "flip_flops": a["datapath"]["flip_flops"],
                     "sram_bits": a["sram_bits"], "sram_um2": a["sram_um2"]}


def run(trace_dir=DEFAULT_TRACES, results=None, out_dir=DEFAULT_OUT, *, bandwidth=DEFAULT_BANDWIDTH,
        int4_traces=None, peer_root=None, area_report=None, golden_report=None, do_sweeps=True,
        plots=True, check_every=10, verify=True, model=DEFAULT_MODEL, jobs=1, progress=print):
    trace_dir, out_dir = Path(trace_dir), Path(out_dir)
    t_all = time.monotonic()
    progress(f"trace {trace_dir}")
    tr, execs = load_trace(trace_dir, verify=verify, progress=progress)
    tr4 = execs4 = None
    # (``python -m evaluation.bench`` passes the build/ locations of all four inputs)
    if int4_traces is not None and (Path(int4_traces) / "manifest.json").is_file():
        progress(f"all-INT4 trace {int4_traces}")
        tr4, execs4 = load_int4_trace(int4_traces, tr, execs, verify=verify, progress=progress)
    else:
        progress(f"  no all-INT4 trace ({int4_traces}): int4_vsq_dense modelled")
    area = _json_or_none(area_report, "area report (make area)", progress) if area_report else None
    if area is not None and not _has_keys(area, ("budget_transistors", "configs",
                                                  "fp16_equal_area")):
        raise BenchError(f"area report {area_report} lacks budget_transistors / configs / "
                         "fp16_equal_area (not make area's report; re-run make area)")
    golden = (_json_or_none(golden_report, "golden report (make golden-report)", progress)
              if golden_report else None)
    if golden is not None and not isinstance(golden.get("sqnr_db") if isinstance(golden, dict)
                                             else None, dict):
        raise BenchError(f"golden report {golden_report} has no sqnr_db (re-run make "
                         "golden-report)")
    rtl, results_used = rtl_counters(tr, execs, results=results, tr4=tr4, execs4=execs4,
                                     peer_root=peer_root, area=area, model=model,
                                     progress=progress)
    progress(f"  {len(execs)} executions; RTL counters for {len(rtl)} (configuration, "
             "execution) pairs")
    table = en.EnergyTable()
    t0 = time.monotonic()
    recs, check, rtl_used, rtl_vs_model = evaluate(execs, rtl=rtl, int4_execs=execs4,
                                                   bandwidth=bandwidth, table=table,
                                                   check_every=check_every, jobs=jobs,
                                                   progress=progress)
    t_eval = time.monotonic() - t0
    if check["mismatches"]:
        raise BenchError(f"evaluation.fastmodel differs from hw.cyclemodel: {check['first']}")
    if rtl_vs_model["mismatches"]:
        raise BenchError(f"the RTL's counters differ from the cycle model: "
                         f"{rtl_vs_model['first']}")
    cfgs = totals(recs, bandwidth)
    attach_quality_and_area(cfgs, golden, area)
    t0 = time.monotonic()
    ea = equal_area(execs, cfgs, int4_execs=execs4, bandwidth=bandwidth, table=table,
                    progress=progress)
    eas = (equal_area_synth(execs, cfgs, area, int4_execs=execs4, rtl=rtl, bandwidth=bandwidth,
                            table=table, progress=progress) if area else None)
    ebw = equal_bitwidth(execs, cfgs, bandwidth=bandwidth, table=table)
    t_area = time.monotonic() - t0
    progress("v2 ablation (each mechanism alone on the paper's organisation):")
    t0 = time.monotonic()
    abl = v2_ablation(execs, cfgs, area, table, rtl=rtl, bandwidth=bandwidth, jobs=jobs,
                      progress=progress)
    t_abl = time.monotonic() - t0
    progress("\n" + table_text(cfgs) + "\n\n" + equal_area_text(ea) + "\n"
             + (f"\n{equal_area_synth_text(eas)}\n" if eas else "") + "\n"
             + equal_bitwidth_text(ebw) + "\n\n" + ablation_text(abl) + "\n")
    steps = sorted({e.meta.get("step") for e in execs if e.meta.get("step") is not None})
    report = {
        "model": model,
        "trace": {"dir": str(trace_dir), "executions": len(execs), "steps": len(steps),
                  "evaluations": len({e.meta.get("eval") for e in execs}),
                  "image_sha256": tr.manifest.get("image_sha256"),
                  "code_sha256": tr.manifest.get("code_sha256")},
        "results_file": next(iter(results_used), None),
        "results_files": results_used,
        "int4_trace": ({"dir": str(tr4.root), "executions": len(execs4),
                        "image_sha256": tr4.manifest.get("image_sha256")} if tr4 else None),
        "budget": {"multipliers": 256, "dram_bytes_per_cycle": bandwidth,
                   "sqdm": {**array_of(HW), "dpe_multipliers": HW.dpe_multipliers,
                            "spe_multipliers": HW.spe_multipliers},
                   "dense_array": {k: DENSE_ARRAY[k] for k in ("vector", "dpe_cols", "tile")},
                   "note": "configs: equal multiplier count and equal DRAM bandwidth; per "
                           "execution cycles = max(compute cycles, DRAM bytes / bandwidth). "
                           "equal_area: the same at equal arithmetic area"},
        "energy_table": {"source": en.SOURCE, "node_nm": table.node_nm,
                         "pj_per_event": table.as_dict(), "cited": en.HOROWITZ_45NM},
        "configs": cfgs,
        "equal_area": ea,
        "equal_area_synth": eas,
        "equal_bitwidth": ebw,
        "v2_ablation": abl,
        "rtl_executions": rtl_used,
        "paper": PAPER,
        "fast_model_check": {**check, "reference": "hw.cyclemodel.predict_layer",
                             "sample": f"every {check_every}th execution, maps trace and dense"},
        "rtl_vs_model": rtl_vs_model,
        "per_layer": per_layer(recs),
        "cycles_per_ideal": cycles_per_ideal(recs),
        "bandwidth_sweep": bandwidth_sweep(recs),
        "timing_s": {"evaluate": t_eval, "equal_area": t_area, "ablation": t_abl},
    }
    if do_sweeps:
        progress("sweeps (evaluation.fastmodel):")
        t0 = time.monotonic()
        report["sweeps"] = sweeps(execs, cfgs, table, jobs=jobs, progress=progress)
        report["timing_s"]["sweeps"] = time.monotonic() - t0
    out_dir.mkdir(parents=True, exist_ok=True)
    timing = report.pop("timing_s")
    write_json(out_dir / "report.json", report)
    write_json(out_dir / "executions.json", recs)
    if plots:
        from .plots import write_plots
        for p in write_plots(report, out_dir):
            progress(f"  wrote {p}")
    progress(f"wrote {out_dir / 'report.json'} ({time.monotonic() - t_all:.1f} s; evaluate "
             f"{timing['evaluate']:.1f} s" + (f", sweeps {timing['sweeps']:.1f} s)"
                                              if "sweeps" in timing else ")"))
    report["timing_s"] = timing
    return report


def _check_args(p, a):
    """Bad options end here, before the trace loads: one line naming the option."""
    if a.bandwidth < 1:
        p.error(f"--bandwidth must be >= 1 byte per cycle, got {a.bandwidth}")
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    if a.check_every < 0:
        p.error(f"--check-every must be >= 0 (0: never), got {a.check_every}")
    out = Path(a.out)
    if out.exists() and not out.is_dir() or any(q.is_file() for q in out.parents):
        p.error(f"--out {out} is not a folder")
    if a.results is not None and not Path(a.results).is_file():
        p.error(f"--results {a.results} is not a file")
    # a path the user gave must exist; the defaults (build/...) are optional inputs
    for opt, given, is_dir in (("--int4-traces", a.int4_traces, True),
                               ("--peer-root", a.peer_root, True), ("--area", a.area, False),
                               ("--golden", a.golden, False)):
        if given is not None and not (Path(given).is_dir() if is_dir else
                                      Path(given).is_file()):
            p.error(f"{opt} {given} is not a {'folder' if is_dir else 'file'}")


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m evaluation.bench", description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(WORKLOAD_MEMORIES), default=DEFAULT_MODEL,
                   help="the workload: the defaults of the paths below (digits: as written; "
                        "mnist: build/traces/all-mnist, build/traces/all-int4-mnist, "
                        "build/sim/mnist-bench/, build/golden/mnist/, out build/bench/mnist) "
                        "and the memories of the replayed tops (hw.config.for_workload)")
    p.add_argument("--traces", default=None,
                   help="whole-sample trace folder (default build/traces/all)")
    p.add_argument("--results", default=None,
                   help="tb.cosim results.json (default: build/sim/all/results.json if it "
                        "exists and belongs to the trace)")
    p.add_argument("--int4-traces", default=None,
                   help="the all-INT4 whole-sample trace of int4_vsq_dense (default "
                        "build/traces/all-int4 if it exists, else int4_vsq_dense is modelled)")
    p.add_argument("--peer-root", default=None,
                   help="folder of the dense peers' replays: dense-plan/, dense-int4/, "
                        "dense-area-plan/, dense-area-int4/ with results.json (default build/sim)")
    p.add_argument("--area", default=None,
                   help="make area's report (default build/area/report.json if it exists; "
                        "without it no equal synthesized area)")
    p.add_argument("--golden", default=None,
                   help="make golden-report's report, each configuration's SQNR (default "
                        "build/golden/report.json if it exists)")
    p.add_argument("--out", default=None, help="report folder (default build/bench)")
    p.add_argument("--bandwidth", type=int, default=DEFAULT_BANDWIDTH,
                   help="DRAM bytes per cycle of every configuration")
    p.add_argument("--no-sweeps", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--jobs", type=int, default=1,
                   help="processes of the per-execution models (the report is the same for "
                        "any; make bench passes JOBS)")
    p.add_argument("--check-every", type=int, default=10,
                   help="compare evaluation.fastmodel with hw.cyclemodel on every Nth execution "
                        "(0: never)")
    a = p.parse_args(argv)
    paths = default_paths(a.model)
    a.out = a.out or str(paths["out"])
    _check_args(p, a)
    try:
        run(a.traces or paths["traces"], a.results, a.out, bandwidth=a.bandwidth,
            int4_traces=a.int4_traces or paths["int4_traces"],
            peer_root=a.peer_root or paths["peer_root"], area_report=a.area or paths["area"],
            golden_report=a.golden or paths["golden"], do_sweeps=not a.no_sweeps,
            plots=not a.no_plots, check_every=a.check_every, model=a.model, jobs=a.jobs)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

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
from hw.config import MODEL_COUNTERS
from traces.format import TraceError, open_trace
from . import area as ar
from . import energy as en
from .baselines import (CONFIGS, DENSE_ARRAY, HW, MULTIPLIERS, array_of,
                        dense_counters, events_for, sqdm_counters, useful_macs)

REPO = Path(__file__).resolve().parent.parent
DEFAULT_TRACES = REPO / "build" / "traces" / "all"
#: Where ``make bench`` has tb.cosim replay build/traces/all (maps trace and dense).
DEFAULT_RESULTS = REPO / "build" / "sim" / "all" / "results.json"
DEFAULT_OUT = REPO / "build" / "bench"

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


def load_results(path, tr, execs) -> dict:
    """RTL counters per (execution index, map variant) from a tb.cosim results.json, after
    checking that it belongs to trace ``tr`` and to a top with the default parameters."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"results file {path} does not exist") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"results file {path} is not valid JSON ({e})") from None
    if not isinstance(data, dict) or not isinstance(data.get("executions"), list):
        raise BenchError(f"results file {path} has no 'executions' list (not tb.cosim output)")
    summary = data.get("summary") or {}
    params = summary.get("params") or {}
    for k, v in HW.to_dict().items():
        if k in params and params[k] != v:
            raise BenchError(f"results file {path} was simulated with {k}={params[k]}, the "
                             f"benchmark's sqdm configuration has {k}={v}")
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


def evaluate(execs, *, rtl=None, bandwidth=DEFAULT_BANDWIDTH, table=en.EnergyTable(),
             check_every=10, progress=print):
    """Per-execution records and totals of the four configurations."""
    rtl = rtl or {}
    recs = []
    check = {"executions": 0, "mismatches": 0, "first": None}
    rtl_used = {c: 0 for c in CONFIGS}
    rtl_vs_model = {"compared": 0, "mismatches": 0, "first": None}
    t0 = time.monotonic()
    for n, e in enumerate(execs):
        d = e.d
        dense = dense_counters(d, e.x)
        per = {}
        for cfg, variant, route in (("sqdm", "trace", e.map),
                                    ("int4_dense", "dense", np.zeros_like(e.map))):
            c = sqdm_counters(d, e.x, route)
            if check_every and n % check_every == 0:
                check["executions"] += 1
                want = _predict(e, route)
                got = {k: c[k] for k in RTL_COUNTERS}
                if want != got:
                    check["mismatches"] += 1
                    check["first"] = check["first"] or f"{e.name} {variant}: {want} != {got}"
            src = "model"
            if (e.index, variant) in rtl:
                r = rtl[(e.index, variant)]
                rtl_vs_model["compared"] += 1
                if any(r[k] != c[k] for k in RTL_COUNTERS):
                    rtl_vs_model["mismatches"] += 1
                    rtl_vs_model["first"] = rtl_vs_model["first"] or e.name
                # the non-null items are the address streams' (the model's), not a counter
                c = {**r, "items": c["items_dense"] + c["items_sparse"]}
                src = "rtl"
                rtl_used[cfg] += 1
            per[cfg] = (c, src)
        per["fp16_dense"] = (dense, "model")
        per["int4_vsq_dense"] = (dense, "model")
        rec = {"index": e.index, "name": e.name, "layer": e.meta.get("layer"),
               "step": e.meta.get("step"), "eval": e.meta.get("eval"),
               "precision": e.meta.get("precision"), "useful_macs": useful_macs(d),
               "sparse_groups": int(e.map.sum()), "groups": int(e.map.size),
               "in_sparsity": float((e.x == 0).mean()), "configs": {}}
        for cfg in CONFIGS:
            c, src = per[cfg]
            ev = events_for(cfg, d, c)
            pj, parts = en.energy_of(ev, table)
            dram = ev["dram_byte"]
            r = {"source": src, "cycles_compute": int(c["cycles"]),
                 "cycles": _bound(int(c["cycles"]), dram, bandwidth),
                 "energy_pj": pj, "energy_parts_pj": parts, "dram_bytes": dram}
            if cfg in ("sqdm", "int4_dense"):
                r["dpe_busy"], r["spe_busy"] = int(c["dpe_busy"]), int(c["spe_busy"])
                r["macs"] = int(c["macs"])
                r["energy_pj_as_built"] = en.energy_of(
                    events_for(cfg, d, c, as_built=True), table)[0]
            rec["configs"][cfg] = r
        recs.append(rec)
        if progress and (n + 1) % 200 == 0:
            progress(f"  evaluated {n + 1}/{len(execs)} executions "
                     f"({time.monotonic() - t0:.1f} s)")
    return recs, check, rtl_used, rtl_vs_model


def _predict(e, route):
    """hw.cyclemodel.predict_layer on one execution (the reference of evaluation.fastmodel),
    through the job layer."""
    from hw.job import predict_counters
    return predict_counters(e.d, e.x, route, HW)


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
        if cfg in ("sqdm", "int4_dense"):
            t["dpe_busy"] = int(sum(x["dpe_busy"] for x in rs))
            t["spe_busy"] = int(sum(x["spe_busy"] for x in rs))
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

def sqdm_total(execs, maps, table, bandwidth=DEFAULT_BANDWIDTH, **params):
    """Totals of the sqdm configuration for given maps and parameters (evaluation.fastmodel)."""
    cyc = cyc_c = dpe = spe = 0
    pj = 0.0
    sparse_groups = groups = 0
    for e, m in zip(execs, maps):
        c = sqdm_counters(e.d, e.x, m, **params)
        ev = events_for("sqdm", e.d, c)
        pj += en.energy_of(ev, table)[0]
        cyc_c += c["cycles"]
        cyc += _bound(c["cycles"], ev["dram_byte"], bandwidth)
        dpe += c["dpe_busy"]
        spe += c["spe_busy"]
        sparse_groups += int(np.sum(m))
        groups += int(np.size(m))
    return {"cycles": int(cyc), "cycles_compute": int(cyc_c), "dpe_busy": int(dpe),
            "spe_busy": int(spe), "dpe_utilisation": dpe / cyc_c, "spe_utilisation": spe / cyc_c,
            "energy_pj": pj, "sparse_group_fraction": sparse_groups / groups}


def sweeps(execs, base, table, progress=print):
    fp16_cyc, fp16_pj = base["fp16_dense"]["cycles"], base["fp16_dense"]["energy_pj"]

    def rel(t):
        t["speedup_vs_fp16"] = fp16_cyc / t["cycles"]
        t["energy_reduction_vs_fp16"] = 1 - t["energy_pj"] / fp16_pj
        return t

    out = {"source": "model (evaluation.fastmodel, the closed form of hw.cyclemodel), every "
                     "execution of the trace"}
    res = []
    trace_maps = [e.map for e in execs]
    for thr in THRESHOLDS:
        t0 = time.monotonic()
        maps = maps_for(execs, "trace", threshold=thr)
        t = rel(sqdm_total(execs, maps, table))
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
        t = rel(sqdm_total(execs, trace_maps, table, dpe_cols=cols, spe_lanes=lanes, tile=tile))
        t.update(label=label, dpe_cols=cols, spe_lanes=lanes, tile=tile,
                 dpe_multipliers=HW.vector * cols, spe_multipliers=lanes * tile,
                 multipliers=HW.vector * cols + lanes * tile)
        res.append(t)
        progress(f"  DPE:SPE {label:>8}: speed-up {t['speedup_vs_fp16']:.2f}x")
    out["dpe_spe_ratio"] = res
    res = []
    for pol in MAP_POLICIES:
        t = rel(sqdm_total(execs, maps_for(execs, pol), table))
        t["policy"] = pol
        res.append(t)
        progress(f"  map {pol:>7}: speed-up {t['speedup_vs_fp16']:.2f}x")
    out["map_policy"] = res
    return out


def bandwidth_sweep(recs):
    res = []
    for bw in BANDWIDTHS:
        t = totals(recs, bandwidth=bw)
        res.append({"bytes_per_cycle": bw, **{c: {"cycles": t[c]["cycles"],
                                                  "speedup_vs_fp16": t[c]["speedup_vs_fp16"]}
                                              for c in CONFIGS}})
    return res


def equal_area(execs, cfgs, *, bandwidth=DEFAULT_BANDWIDTH, table=en.EnergyTable(),
               progress=print):
    """The four configurations at equal arithmetic area (docs/evaluation.md 3): the dense
    baselines re-evaluated (evaluation.fastmodel) with the column count whose multipliers, adder
    trees and accumulators have the area of this design's DPE + SPE arithmetic
    (:func:`evaluation.area.equal_area_array`); sqdm and int4_dense are this design itself, so
    their figures are those of ``cfgs``."""
    budget = ar.sqdm_um2()
    macs = sum(useful_macs(e.d) for e in execs)
    out = {}
    for cfg in CONFIGS:
        if cfg in ("sqdm", "int4_dense"):
            t = cfgs[cfg]
            r = {"multipliers": MULTIPLIERS[cfg], "multipliers_exact": float(MULTIPLIERS[cfg]),
                 "array": array_of(HW),
                 "area_um2": budget["total_um2"], "area_ratio": 1.0,
                 "cycles": t["cycles"], "cycles_compute": t["cycles_compute"],
                 "energy_pj": t["energy_pj"], "source": t["source"],
                 "rtl_executions": t["rtl_executions"]}
        else:
            t0 = time.monotonic()
            arr = ar.equal_area_array(cfg, budget["total_um2"])
            cyc = cyc_c = 0
            pj = 0.0
            for e in execs:
                c = dense_counters(e.d, e.x, arr)
                ev = events_for(cfg, e.d, c, array=arr)
                pj += en.energy_of(ev, table)[0]
                cyc_c += c["cycles"]
                cyc += _bound(c["cycles"], ev["dram_byte"], bandwidth)
            r = {"multipliers": arr["multipliers"], "multipliers_exact": arr["multipliers_exact"],
                 "array": {k: arr[k] for k in ("vector", "dpe_cols", "spe_lanes", "tile")},
                 "area_um2": arr["area_um2"], "area_ratio": arr["area_ratio"],
                 "cycles": int(cyc), "cycles_compute": int(cyc_c), "energy_pj": pj,
                 "source": "model", "rtl_executions": 0}
            progress(f"  equal area {cfg}: {arr['multipliers']} multipliers (exact "
                     f"{arr['multipliers_exact']:.1f}), {cyc:,} cycles "
                     f"({time.monotonic() - t0:.1f} s)")
        r["mac_utilisation"] = macs / (r["multipliers"] * r["cycles"]) if r["cycles"] else 0.0
        out[cfg] = r
    base = out["fp16_dense"]
    for t in out.values():
        t["speedup_vs_fp16"] = base["cycles"] / t["cycles"]
        t["energy_reduction_vs_fp16"] = 1 - t["energy_pj"] / base["energy_pj"]
    return {
        "configs": out,
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
            if c in ("sqdm", "int4_dense"):
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
             f"{'config':<15} {'source':<9} {'mults':>5} {'exact':>6} {'area':>5} "
             f"{'cycles':>12} {'speed-up':>9} {'energy uJ':>10} {'energy red.':>11}"]
    for c in CONFIGS:
        t = cfgs[c]
        lines.append(f"{c:<15} {t['source']:<9} {t['multipliers']:>5} "
                     f"{t['multipliers_exact']:>6.1f} {t['area_ratio']:>5.2f} {t['cycles']:>12,} "
                     f"{t['speedup_vs_fp16']:>8.2f}x {t['energy_pj'] / 1e6:>10.2f} "
                     f"{100 * t['energy_reduction_vs_fp16']:>10.1f}%")
    return "\n".join(lines)


def table_text(cfgs) -> str:
    lines = ["equal multiplier count (256), equal bandwidth:",
             f"{'config':<15} {'source':<9} {'cycles':>12} {'speed-up':>9} "
             f"{'energy uJ':>10} {'energy red.':>11} {'as-built red.':>13}"]
    for c in CONFIGS:
        t = cfgs[c]
        ab = t.get("energy_reduction_vs_fp16_as_built")
        lines.append(f"{c:<15} {t['source']:<9} {t['cycles']:>12,} "
                     f"{t['speedup_vs_fp16']:>8.2f}x {t['energy_pj'] / 1e6:>10.2f} "
                     f"{100 * t['energy_reduction_vs_fp16']:>10.1f}% "
                     f"{'' if ab is None else f'{100 * ab:.1f}%':>13}")
    lines.append(f"{'paper (28 nm)':<15} {'':<9} {'':>12} {PAPER['speedup_vs_fp16']:>8.2f}x "
                 f"{'':>10} {100 * PAPER['energy_reduction_vs_fp16']:>10.1f}%")
    return "\n".join(lines)


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


def run(trace_dir=DEFAULT_TRACES, results=None, out_dir=DEFAULT_OUT, *, bandwidth=DEFAULT_BANDWIDTH,
        do_sweeps=True, plots=True, check_every=10, verify=True, progress=print):
    trace_dir, out_dir = Path(trace_dir), Path(out_dir)
    t_all = time.monotonic()
    progress(f"trace {trace_dir}")
    tr, execs = load_trace(trace_dir, verify=verify, progress=progress)
    rtl, results_used = {}, None
    if results is not None:
        rtl = load_results(results, tr, execs)
        results_used = str(results)
    elif DEFAULT_RESULTS.is_file():
        try:
            rtl = load_results(DEFAULT_RESULTS, tr, execs)
            results_used = str(DEFAULT_RESULTS)
        except BenchError as e:
            progress(f"  not using {DEFAULT_RESULTS}: {e}")
    progress(f"  {len(execs)} executions; RTL counters for {len(rtl)} (execution, map) pairs")
    table = en.EnergyTable()
    t0 = time.monotonic()
    recs, check, rtl_used, rtl_vs_model = evaluate(execs, rtl=rtl, bandwidth=bandwidth,
                                                   table=table, check_every=check_every,
                                                   progress=progress)
    t_eval = time.monotonic() - t0
    if check["mismatches"]:
        raise BenchError(f"evaluation.fastmodel differs from hw.cyclemodel: {check['first']}")
    cfgs = totals(recs, bandwidth)
    t0 = time.monotonic()
    ea = equal_area(execs, cfgs, bandwidth=bandwidth, table=table, progress=progress)
    t_area = time.monotonic() - t0
    progress("\n" + table_text(cfgs) + "\n\n" + equal_area_text(ea) + "\n")
    steps = sorted({e.meta.get("step") for e in execs if e.meta.get("step") is not None})
    report = {
        "trace": {"dir": str(trace_dir), "executions": len(execs), "steps": len(steps),
                  "evaluations": len({e.meta.get("eval") for e in execs}),
                  "image_sha256": tr.manifest.get("image_sha256"),
                  "code_sha256": tr.manifest.get("code_sha256")},
        "results_file": results_used,
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
        "paper": PAPER,
        "fast_model_check": {**check, "reference": "hw.cyclemodel.predict_layer",
                             "sample": f"every {check_every}th execution, maps trace and dense"},
        "rtl_vs_model": rtl_vs_model,
        "per_layer": per_layer(recs),
        "bandwidth_sweep": bandwidth_sweep(recs),
        "timing_s": {"evaluate": t_eval, "equal_area": t_area},
    }
    if do_sweeps:
        progress("sweeps (evaluation.fastmodel):")
        t0 = time.monotonic()
        report["sweeps"] = sweeps(execs, cfgs, table, progress=progress)
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


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m evaluation.bench", description=__doc__.split("\n")[0])
    p.add_argument("--traces", default=str(DEFAULT_TRACES), help="whole-sample trace folder")
    p.add_argument("--results", default=None,
                   help="tb.cosim results.json (default: build/sim/all/results.json if it "
                        "exists and belongs to the trace)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--bandwidth", type=int, default=DEFAULT_BANDWIDTH,
                   help="DRAM bytes per cycle of every configuration")
    p.add_argument("--no-sweeps", action="store_true")
    p.add_argument("--no-plots", action="store_true")
    p.add_argument("--check-every", type=int, default=10,
                   help="compare evaluation.fastmodel with hw.cyclemodel on every Nth execution "
                        "(0: never)")
    a = p.parse_args(argv)
    try:
        run(a.traces, a.results, a.out, bandwidth=a.bandwidth, do_sweeps=not a.no_sweeps,
            plots=not a.no_plots, check_every=a.check_every)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``make plan``: the hardware-aware precision plan search (docs/golden.md, "Plan search").

Quality and speed are decided together by the precision plan, so candidates are scored by both:

1. **Sensitivity, explained** (``golden.sensitivity``, fake-quant executor, the FP32 sampler's
   inputs): denoiser SQNR per sampler step when only one layer -- or one operation type -- runs
   INT4 and the rest MXINT8; where a plan's error comes from (weights or activations); outlier
   statistics of weights and activations per layer.
2. **Costs per layer** (``evaluation.fastmodel``, which the RTL matches exactly): cycles
   (DRAM-bound at the bench's bandwidth) and energy of every layer over one whole golden sample
   on the integer path, once with every layer INT4 and once MXINT8.
3. **The front**: both quality (noise-to-signal ratios of independent errors add) and cost add
   up over layers, so the layers are demoted from MXINT8 to INT4 in the order of added noise per
   cycle saved; every prefix of that order is a candidate plan, and each is *measured*
   (denoiser and sample SQNR). The Pareto front of the measured candidates (and of the reference
   plans: the previous committed plan, the paper's role split, all-INT4, all-MXINT8) is reported.
4. **The rule**: the committed plan is the candidate with the fewest predicted cycles whose
   measured denoiser SQNR is at least the previous plan's (the bar, :data:`SEARCHES`: for
   digits ``golden/plans/v1_plan.json`` as it shipped, with the no-clip weight scales; for
   MNIST the role plan ``golden/plans/mnist_role_plan.json``) and which runs at least 90 % of
   the MACs in 4 bits. Its cycles (and the previous plan's) are then computed exactly on its
   own sample.

``--model digits`` (the default) writes ``golden/plans/sqdm_plan.json`` (the plan the flow
reads), ``build/plan/report.json`` and PNG figures in ``build/plan/``; ``--model mnist`` writes
``golden/plans/mnist_plan.json`` and ``build/plan/mnist/``. Per-layer costs are cached in
``costs.json`` of the report folder (keyed by everything they depend on).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from golden import sensitivity as sens
from golden.model import load_checkpoint
from golden.quant import (WEIGHT_SCALE_RULES, default_plan, int4_mac_share, load_plan,
                          save_plan, uniform_plan)
from golden.workloads import DEFAULT_WORKLOAD, PLANS_DIR, WORKLOADS, workload
from hw.config import for_workload
from traces.export import descriptor_of, sample_calls
from . import energy as en
from .baselines import HW, PAPER, events_for, sqdm_counters
from .bench import _bound

REPO = Path(__file__).resolve().parent.parent
PLAN_OUT = workload(DEFAULT_WORKLOAD).plan_path
#: The plan committed before the hardware-aware search (the block-wise MAC-budget rule of
#: ``golden.sensitivity``); its quality with the no-clip weight scales is the bar.
PREVIOUS_PLAN = PLANS_DIR / "v1_plan.json"
OUT = REPO / "build" / "plan"


@dataclass(frozen=True)
class Search:
    """What the search of one workload compares against and writes."""
    #: the plan whose measured denoiser SQNR is the bar, and the weight-scale rule it runs with
    previous: Path
    previous_weight_scales: str
    #: the report folder (``report.json``, ``costs.json``, figures)
    out_dir: Path


#: Per workload: the bar and the report folder. MNIST's bar is the role plan it shipped with
#: (``golden.quant.default_plan``: every conv_relu layer INT4, the sensitive layers MXINT8).
SEARCHES = {"digits": Search(PREVIOUS_PLAN, "max", OUT),
            "mnist": Search(PLANS_DIR / "mnist_role_plan.json", "mse", OUT / "mnist")}
assert set(SEARCHES) == set(WORKLOADS)
_RULE_NAMES = {"max": "no-clip"}
BANDWIDTH = 16            # bytes per cycle: the bench's DEFAULT_BANDWIDTH
MIN_INT4_MAC_SHARE = 0.90
#: Files whose content the per-layer costs depend on (with the checkpoint and the settings).
COST_INPUTS = ("golden/numerics.py", "golden/intref.py", "golden/quant.py", "golden/model.py",
               "golden/edm.py", "evaluation/fastmodel.py", "evaluation/baselines.py",
               "evaluation/energy.py", "hw/cyclemodel.py", "hw/config.py", "hw/dispatch.py",
               "hw/dpe.py", "hw/spe.py", "hw/ppu.py")


# --------------------------------------------------------------------------- costs

def execution_cost(call, config=HW, bandwidth=BANDWIDTH, table=en.EnergyTable()) -> dict:
    """Cycles (compute, and bound by ``bandwidth`` bytes per cycle of DRAM traffic) and energy of
    one recorded layer execution on the top ``config`` (the fast model)."""
    d = descriptor_of(call.kwargs)
    c = sqdm_counters(d, call.kwargs["x_codes"], np.asarray(call.in_map, bool), config)
    ev = events_for("sqdm", d, c)
    return {"layer": call.name, "cycles_compute": c["cycles"],
            "cycles": _bound(c["cycles"], ev["dram_byte"], bandwidth),
            "energy_pj": en.energy_of(ev, table)[0]}


def _cost_chunk(args):
    calls, config, bandwidth = args
    torch.set_num_threads(1)
    return [execution_cost(c, config, bandwidth) for c in calls]


def layer_costs(model, plan: dict, *, config=HW, seed: int = 0, num_steps: int = 18,
                weight_scales: str = "mse", bandwidth=BANDWIDTH, jobs: int = 2,
                progress=None, calls=None) -> dict:
    """Per layer: cycles, compute cycles, energy (pJ) and executions of one whole golden sample
    of ``plan`` (integer path, every evaluation of the sampler) on the top ``config``.
    ``calls``: that sample's layer executions when already run (``sample_calls``)."""
    t0 = time.time()
    where = "of the sample run before"
    if calls is None:
        calls, _, _ = sample_calls(model, plan, num_steps=num_steps, seed=seed, progress=False,
                                   weight_scales=weight_scales)
        where = f"on the integer path ({time.time() - t0:.0f} s)"
    if progress:
        progress(f"    {len(calls)} executions {where}; fast model on {jobs} process(es)...")
    chunks = [calls[i::max(1, jobs) * 4] for i in range(max(1, jobs) * 4)]
    if jobs > 1:
        with ProcessPoolExecutor(jobs) as pool:
            parts = list(pool.map(_cost_chunk, [(c, config, bandwidth) for c in chunks]))
    else:
        parts = [_cost_chunk((c, config, bandwidth)) for c in chunks]
    out: dict[str, dict] = {}
    for rec in (r for part in parts for r in part):
        acc = out.setdefault(rec["layer"], {"cycles": 0, "cycles_compute": 0, "energy_pj": 0.0,
                                            "executions": 0})
        acc["cycles"] += rec["cycles"]
        acc["cycles_compute"] += rec["cycles_compute"]
        acc["energy_pj"] += rec["energy_pj"]
        acc["executions"] += 1
    if progress:
        progress(f"    done ({time.time() - t0:.0f} s)")
    return {name: out[name] for name in plan}


def total_cost(costs: dict) -> dict:
    return {k: sum(c[k] for c in costs.values()) for k in ("cycles", "cycles_compute",
                                                           "energy_pj")}


def predict_cost(tables: dict, plan: dict) -> dict:
    """A plan's cost from the per-precision tables: each layer costs what it costs in its own
    precision (the neighbours' precisions change a layer's input sparsity and output format
    only slightly; :func:`run` reports the exact figure beside the prediction)."""
    return total_cost({name: tables[p][name] for name, p in plan.items()})


def cost_key(model_path: Path, settings: dict) -> str:
    h = hashlib.sha256(model_path.read_bytes())
    for rel in COST_INPUTS:
        h.update(rel.encode() + b"\0" + (REPO / rel).read_bytes())
    h.update(json.dumps(settings, sort_keys=True).encode())
    return h.hexdigest()


def cost_tables(model, model_path: Path, settings: dict, cache: Path, *, jobs: int,
                progress, config=HW) -> dict:
    """``{"int4": per-layer costs, "mxint8": ...}`` of the uniform plans, from ``cache`` when it
    was computed from the same inputs."""
    key = cost_key(model_path, settings)
    if cache.is_file():
        doc = json.loads(cache.read_text())
        if doc.get("key") == key:
            progress(f"  per-layer costs from {cache.relative_to(REPO) if cache.is_relative_to(REPO) else cache}")
            return doc["tables"]
    tables = {}
    for precision in ("int4", "mxint8"):
        progress(f"  per-layer costs, every layer {precision} (one whole sample)")
        tables[precision] = layer_costs(model, uniform_plan(model, precision), jobs=jobs,
                                        config=config, progress=progress,
                                        **_cost_settings(settings))
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"key": key, "settings": settings, "tables": tables},
                                indent=1, sort_keys=True) + "\n")
    return tables


def _cost_settings(settings: dict) -> dict:
    return {k: settings[k] for k in ("seed", "num_steps", "weight_scales", "bandwidth")}


# --------------------------------------------------------------------------- the search

def demotion_order(layer_sens: dict, tables: dict) -> list[str]:
    """Layers in the order they move from MXINT8 to INT4: least added noise (mean over steps of
    the noise-to-signal ratio) per cycle saved first; layers that save no cycles last, least
    noise first."""
    def key(name):
        saved = tables["mxint8"][name]["cycles"] - tables["int4"][name]["cycles"]
        noise = max(float(np.mean(layer_sens["groups"][name]["added_noise_ratio"])), 0.0)
        return (0, noise / saved, name) if saved > 0 else (1, noise, name)
    return sorted(layer_sens["groups"], key=key)


def pareto(points: list[dict]) -> list[int]:
    """Indices of the points no other point beats on both cycles (fewer) and denoiser SQNR
    (higher)."""
    keep = []
    for i, p in enumerate(points):
        dominated = any(q["cycles"] <= p["cycles"] and q["sqnr_db"] >= p["sqnr_db"]
                        and (q["cycles"] < p["cycles"] or q["sqnr_db"] > p["sqnr_db"])
                        for q in points)
        if not dominated:
            keep.append(i)
    return keep


def choose(points: list[dict], bar_db: float, min_share: float = MIN_INT4_MAC_SHARE):
    """The rule: the fewest predicted cycles among candidates with SQNR >= ``bar_db`` and at
    least ``min_share`` of the MACs in INT4 (None if there is none)."""
    ok = [p for p in points if p["kind"] == "candidate" and p["sqnr_db"] >= bar_db
          and p["int4_mac_share"] >= min_share]
    return min(ok, key=lambda p: (p["cycles"], -p["sqnr_db"])) if ok else None


def candidates(model, order: list[str]) -> list[dict]:
    """Plan k of the front: the first k layers of ``order`` in INT4, the rest MXINT8."""
    out = []
    for k in range(len(order) + 1):
        plan = uniform_plan(model, "mxint8")
        plan.update({name: "int4" for name in order[:k]})
        out.append({"kind": "candidate", "name": f"front{k:02d}", "int4_layers": k, "plan": plan})
    return out


# --------------------------------------------------------------------------- the run

def run(*, model_name: str = DEFAULT_WORKLOAD, out_dir: Path | None = None,
        plan_out: Path | None = None, images: int = 8, num_steps: int = 18, seed: int = 1,
        cost_seed: int = 0, jobs: int = 2, weight_scales: str = "mse", config=HW,
        progress=print) -> dict:
    """The whole search (module docstring) for workload ``model_name`` (its ReLU checkpoint;
    ``out_dir`` and ``plan_out`` default to :data:`SEARCHES`'); ``config``: the top whose costs
    rank the plans (default the v2 top with the workload's memories; the paper's organisation
    is always reported beside it)."""
    started = time.time()
    search = SEARCHES[model_name]
    out_dir = search.out_dir if out_dir is None else out_dir
    spec = workload(model_name)
    plan_out = spec.plan_path if plan_out is None else plan_out
    out_dir.mkdir(parents=True, exist_ok=True)
    model_path = spec.checkpoint("relu")
    model, _ = load_checkpoint(model_path)
    previous = load_plan(search.previous, model)
    previous_rule = search.previous_weight_scales
    top_name = "hw.config.PRESETS['default']" if config == HW else repr(config)
    config = for_workload(config, model_name)
    paper = for_workload(PAPER, model_name)
    settings = {"images": images, "num_steps": num_steps, "seed": seed, "cost_seed": cost_seed,
                "weight_scales": weight_scales, "bandwidth": BANDWIDTH, "top": top_name}
    if model_name != DEFAULT_WORKLOAD:
        settings["model"] = model_name
    cost_settings = {"seed": cost_seed, "num_steps": num_steps, "weight_scales": weight_scales,
                     "bandwidth": BANDWIDTH, "config": repr(config)}

    progress("[1/5] sensitivity (fake-quant executor, FP32 sampler inputs)")
    ref = sens.Reference(model, images=images, num_steps=num_steps, seed=seed)
    infos = model.layers()
    per_layer = sens.group_sensitivity(ref, model, {li.name: [li.name] for li in infos},
                                       weight_scales=weight_scales, progress=progress)
    types: dict[str, list[str]] = {}
    for li in infos:
        types.setdefault(sens.op_type(li), []).append(li.name)
    per_type = sens.group_sensitivity(ref, model, types, weight_scales=weight_scales,
                                      progress=progress)
    outliers = sens.outlier_stats(model, ref)

    progress("[2/5] per-layer cycles and energy (evaluation.fastmodel, v2 top)")
    tables = cost_tables(model, model_path, cost_settings, out_dir / "costs.json", jobs=jobs,
                         progress=progress, config=config)

    progress("[3/5] candidates: measured denoiser and sample SQNR")
    order = demotion_order(per_layer, tables)
    points = candidates(model, order)
    refs = [("previous", previous, previous_rule),
            (f"previous_{weight_scales}", previous, weight_scales),
            ("paper_split", default_plan(model), weight_scales),
            ("all_int4", uniform_plan(model, "int4"), weight_scales),
            ("all_mxint8", uniform_plan(model, "mxint8"), weight_scales)]
    seen = []  # a reference equal to an earlier one (plan and rule) is measured once
    for n, p, w in refs:
        if (p, w) not in seen:
            seen.append((p, w))
            points.append({"kind": "reference", "name": n, "plan": p, "weight_scales": w})
    for i, p in enumerate(points):
        q = sens.plan_sqnr(ref, model, p["plan"], weight_scales=p.get("weight_scales",
                                                                      weight_scales),
                           sample=True)
        cost = predict_cost(tables, p["plan"])
        p.update(sqnr_db=q["mean"], sqnr_per_step=q["per_step"],
                 sample_sqnr_db=q["sample_sqnr_db"], cycles=cost["cycles"],
                 energy_pj=cost["energy_pj"], int4_mac_share=int4_mac_share(model, p["plan"]),
                 predicted_sqnr_db=sens.predict_sqnr(
                     per_layer, [n for n, v in p["plan"].items() if v == "int4"]))
        progress(f"  [{i + 1}/{len(points)}] {p['name']:<13} {p['sqnr_db']:6.2f} dB "
                 f"(predicted {p['predicted_sqnr_db']:6.2f}), sample {p['sample_sqnr_db']:6.2f} "
                 f"dB, {p['cycles']:>9,} cycles, INT4 {p['int4_mac_share']:.1%} of MACs")
    front = pareto(points)
    bar = next(p for p in points if p["name"] == "previous")["sqnr_db"]
    chosen = choose(points, bar)
    if chosen is None:
        raise RuntimeError(f"no candidate reaches {bar:.2f} dB with >= "
                           f"{MIN_INT4_MAC_SHARE:.0%} of the MACs in INT4")

    progress("[4/5] exact costs of the chosen and the previous plan (their own samples; the "
             "v2 top and the paper's organisation)")
    exact, exact_paper = {}, {}
    for name, plan, rule in (("chosen", chosen["plan"], weight_scales),
                             ("previous", previous, previous_rule)):
        progress(f"  {name}")
        calls, _, _ = sample_calls(model, plan, num_steps=num_steps, seed=cost_seed,
                                   progress=False, weight_scales=rule)
        for top, table in ((config, exact), (paper, exact_paper)):
            table[name] = total_cost(layer_costs(model, plan, config=top, jobs=jobs,
                                                 progress=progress, calls=calls))
    split = {name: sens.error_split(ref, model, plan, weight_scales=rule)
             for name, plan, rule in (("chosen", chosen["plan"], weight_scales),
                                      ("previous", previous, previous_rule))}


    progress("[5/5] report, figures and the plan file")
    best_quality = max((p for p in points if p["int4_mac_share"] >= MIN_INT4_MAC_SHARE),
                       key=lambda p: p["sqnr_db"])
    mx = next(p for p in points if p["name"] == "all_mxint8")
    prev = next(p for p in points if p["name"] == "previous")
    rule = (f"fewest predicted sqdm cycles (v2 top, fast model, DRAM-bound at {BANDWIDTH} B/cycle) "
            f"among the measured front candidates with denoiser SQNR >= the previous plan's "
            f"{bar:.2f} dB ({_RULE_NAMES.get(previous_rule, previous_rule)} weight scales) "
            f"and >= {MIN_INT4_MAC_SHARE:.0%} of the MACs in "
            f"INT4; the front demotes layers to INT4 in the order of added noise per cycle saved")
    report = {
        "settings": settings,
        "rule": rule,
        "chosen": _point_summary(chosen),
        "exact": exact,
        "cycle_reduction_vs_previous": 1 - exact["chosen"]["cycles"] / exact["previous"]["cycles"],
        "energy_reduction_vs_previous": 1 - exact["chosen"]["energy_pj"] /
        exact["previous"]["energy_pj"],
        "exact_paper_top": exact_paper,
        "cycle_reduction_vs_previous_paper_top": 1 - exact_paper["chosen"]["cycles"] /
        exact_paper["previous"]["cycles"],
        "mxint8_cycle_share_previous": _mxint8_share(tables, previous),
        "mxint8_cycle_share_chosen": _mxint8_share(tables, chosen["plan"]),
        "max_cycle_reduction_by_precision": 1 - total_cost(tables["int4"])["cycles"] /
        predict_cost(tables, previous)["cycles"],
        "best_quality_at_90pct_int4": _point_summary(best_quality),
        "gap_to_mxint8_db": mx["sqnr_db"] - best_quality["sqnr_db"],
        "previous": _point_summary(prev),
        "error_split_db": split,
        "points": [_point_summary(p) for p in points],
        "pareto": [points[i]["name"] for i in front],
        "demotion_order": order,
        "sensitivity": {"layers": _strip(per_layer), "op_types": _strip(per_type)},
        "outliers": outliers,
        "costs": tables,
        "wall_time_s": round(time.time() - started, 1),
    }
    save_plan(plan_out, chosen["plan"], source="evaluation.plan", checkpoint=model_path.name,
              weight_scales=weight_scales, rule=rule, settings=settings,
              search={"name": chosen["name"], "denoiser_sqnr_db": chosen["sqnr_db"],
                      "sample_sqnr_db": chosen["sample_sqnr_db"],
                      "int4_mac_share": chosen["int4_mac_share"],
                      "cycles": exact["chosen"]["cycles"],
                      "previous_cycles": exact["previous"]["cycles"],
                      "previous_sqnr_db": bar, "demotion_order": order})
    _write_json(out_dir / "report.json", report)
    from .plots import write_plan_plots
    report["figures"] = [str(p.relative_to(REPO)) if p.is_relative_to(REPO) else str(p)
                         for p in write_plan_plots(report, out_dir)]
    _write_json(out_dir / "report.json", report)
    progress(summary_text(report))
    return report


def _mxint8_share(tables: dict, plan: dict) -> float:
    """The share of a plan's predicted cycles spent in its MXINT8 layers."""
    mx = sum(tables["mxint8"][n]["cycles"] for n, p in plan.items() if p == "mxint8")
    return mx / predict_cost(tables, plan)["cycles"]


def _point_summary(p: dict) -> dict:
    keys = ("kind", "name", "sqnr_db", "predicted_sqnr_db", "sample_sqnr_db", "sqnr_per_step",
            "cycles", "energy_pj", "int4_mac_share", "int4_layers")
    out = {k: p[k] for k in keys if k in p}
    out["mxint8_layers"] = sorted(n for n, v in p["plan"].items() if v == "mxint8")
    return out


def _strip(group_sens: dict) -> dict:
    return {"base_mxint8": group_sens["base_mxint8"],
            "groups": {g: {"layers": v["layers"], "mac_share": v["mac_share"],
                           "sqnr_db": v["denoiser_sqnr_db"]["mean"],
                           "sqnr_per_step": v["denoiser_sqnr_db"]["per_step"],
                           "added_noise_ratio": float(np.mean(v["added_noise_ratio"]))}
                       for g, v in group_sens["groups"].items()}}


def _write_json(path: Path, doc: dict) -> None:
    path.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")


def summary_text(r: dict) -> str:
    c, p, b = r["chosen"], r["previous"], r["best_quality_at_90pct_int4"]
    lines = [
        f"previous plan: {p['sqnr_db']:.2f} dB, {r['exact']['previous']['cycles']:,} cycles "
        f"(INT4 {p['int4_mac_share']:.1%} of MACs)",
        f"chosen plan  : {c['name']}, {c['sqnr_db']:.2f} dB, {r['exact']['chosen']['cycles']:,} "
        f"cycles (predicted {c['cycles']:,}), INT4 {c['int4_mac_share']:.1%} of MACs; "
        f"{r['cycle_reduction_vs_previous']:.1%} fewer cycles, "
        f"{r['energy_reduction_vs_previous']:.1%} less energy",
        f"  MXINT8 layers: {', '.join(c['mxint8_layers']) or 'none'}",
        f"  paper's organisation: {r['exact_paper_top']['chosen']['cycles']:,} against "
        f"{r['exact_paper_top']['previous']['cycles']:,} cycles "
        f"({r['cycle_reduction_vs_previous_paper_top']:.1%} fewer)",
        f"MXINT8 layers' share of the cycles: previous {r['mxint8_cycle_share_previous']:.1%}, "
        f"chosen {r['mxint8_cycle_share_chosen']:.1%}; every layer INT4 would save at most "
        f"{r['max_cycle_reduction_by_precision']:.1%} of the previous plan's cycles",
        f"best quality with >= 90 % INT4: {b['name']} {b['sqnr_db']:.2f} dB, "
        f"{r['gap_to_mxint8_db']:.2f} dB below all-MXINT8",
        f"Pareto front: {', '.join(r['pareto'])}",
    ]
    return "\n".join(lines)


def check_args(p: argparse.ArgumentParser, a: argparse.Namespace) -> None:
    if a.images < 1:
        p.error(f"--images must be >= 1, got {a.images}")
    if a.num_steps < 2:
        p.error(f"--num-steps must be >= 2 (the Heun sampler's minimum), got {a.num_steps}")
    if a.jobs < 1:
        p.error(f"--jobs must be >= 1, got {a.jobs}")
    a.out = a.out or str(workload(a.model).plan_path)
    a.report_dir = a.report_dir or str(SEARCHES[a.model].out_dir)
    if Path(a.out).is_dir():
        p.error(f"--out {a.out} is a directory (it names the plan file to write)")
    if Path(a.report_dir).exists() and not Path(a.report_dir).is_dir():
        p.error(f"--report-dir {a.report_dir} is a file")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.plan", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", choices=sorted(SEARCHES), default=DEFAULT_WORKLOAD,
                   help="the workload whose plan is searched")
    p.add_argument("--out", help="the plan file to write (default: the workload's plan, "
                   f"{PLAN_OUT.relative_to(REPO)} for digits)")
    p.add_argument("--report-dir", help=f"default {OUT.relative_to(REPO)} (digits), "
                   f"{SEARCHES['mnist'].out_dir.relative_to(REPO)} (mnist)")
    p.add_argument("--images", type=int, default=8, help="images of the quality reference")
    p.add_argument("--num-steps", type=int, default=18)
    p.add_argument("--seed", type=int, default=1, help="seed of the quality reference")
    p.add_argument("--cost-seed", type=int, default=0,
                   help="seed of the cost sample (the traces' seed)")
    p.add_argument("--weight-scales", choices=WEIGHT_SCALE_RULES, default="mse")
    p.add_argument("--jobs", type=int, default=2)
    a = p.parse_args(argv)
    check_args(p, a)
    torch.set_num_threads(1)
    run(model_name=a.model, out_dir=Path(a.report_dir), plan_out=Path(a.out), images=a.images,
        num_steps=a.num_steps, seed=a.seed, cost_seed=a.cost_seed, jobs=a.jobs,
        weight_scales=a.weight_scales,
        progress=lambda m: print(m, file=sys.stderr, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())

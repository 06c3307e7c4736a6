"""Host side of a trace replay on an accelerator top, without a simulator: which executions,
what to load, what to expect, how to compare, what to record and how to print it
(docs/cosim.md).

One implementation for every replay: inside the simulator by :mod:`tb.replay` (numpy only, no
torch: TOOLCHAIN pitfall 8), outside it by :mod:`tb.cosim` and :mod:`tb.bench_sim`, and on the
board (real or simulated) by :mod:`fpga.host`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import numpy as np

from golden import intref as ir
from hw.config import MODEL_COUNTERS, SATURATION_COUNTERS, AcceleratorConfig
from hw.job import Descriptor, Job, make_job
from hw.layout import unpack_outputs
from hw.top import MemSel
from traces.format import Execution, TraceError, open_trace
from traces.hexfiles import CYCLE_PARAMS

__all__ = ["DEFAULT_TRACES", "SELECTIONS", "ReplayError", "check_trace", "parse_select",
           "parse_shard", "shard_of", "write_results", "execution_rows",
           "MODEL_COUNTERS", "SATURATION_COUNTERS", "MAP_VARIANTS", "HOST_MEMS", "ReplayJob",
           "Mismatch", "config_of", "layer_kind", "kind_selection", "prepare", "route_for",
           "recorded_counters", "predicted_counters", "counter_expectations",
           "expected_saturation", "compare",
           "ideal_cycles", "record", "mismatch_text"]

#: Channel maps a replay can use: the trace's own, or one forced for every execution.
#: The default trace folder (``make traces``).
DEFAULT_TRACES = Path(__file__).resolve().parent.parent / "build" / "traces" / "default"
#: Named execution selections of :func:`check_trace`.
SELECTIONS = ("all", "kinds")
MAP_VARIANTS = ("trace", "dense", "sparse", "random")

#: Host-port memory loaded from each memory image of a job (``hw.job.memory_images``).
HOST_MEMS = {"act": MemSel.ACT, "weight": MemSel.WEIGHT, "param": MemSel.PARAM,
             "res": MemSel.RES}


def config_of(params: dict) -> AcceleratorConfig:
    """The configuration of the ``SQDM_COSIM_PARAMS`` JSON a replay receives (the
    configuration's parameters and ``clock_ns``)."""
    return AcceleratorConfig.from_dict({k: v for k, v in params.items() if k != "clock_ns"})


@dataclasses.dataclass
class ReplayJob:
    """One execution of a trace prepared for the top (:class:`hw.job.Job`), with where it
    comes from and the channel-map variant it runs with."""
    index: int
    name: str
    meta: dict
    job: Job
    map_variant: str
    arrays: dict          # the execution's arrays (inputs and expected results)

    @property
    def descriptor(self) -> Descriptor:
        return self.job.descriptor

    @property
    def config(self) -> AcceleratorConfig:
        return self.job.config

    @property
    def images(self) -> dict:
        return self.job.images

    @property
    def route(self) -> tuple:
        return self.job.route

    @property
    def desc_value(self) -> int:
        return self.job.desc_value

    @property
    def map_value(self) -> int:
        return self.job.map_value

    @property
    def out_words(self) -> int:
        return self.job.out_words

    def label(self) -> dict:
        m = self.meta
        return {"layer": m.get("layer", self.name), "step": m.get("step"),
                "eval": m.get("eval")}


def layer_kind(d: Descriptor) -> tuple:
    """What selects a different datapath through the top: input and output formats, kernel,
    stride, residual and ReLU."""
    return (ir.Format(d.x_format).name.lower(), ir.Format(d.out_format).name.lower(),
            f"k{d.kernel}", f"s{d.stride}", "res" if d.residual else "-",
            "relu" if d.relu else "-")


def kind_selection(records: list[dict]) -> list[int]:
    """Indices of one execution per :func:`layer_kind` of a trace's manifest ``records``: the
    one with the fewest predicted cycles (``meta["cycles"]``; else the fewest output values
    times input channels), in trace order. Covers every datapath at a fraction of the cost of a
    whole trace (for slow simulators)."""
    best = {}
    for i, rec in enumerate(records):
        d = Descriptor.from_json(rec["descriptor"])
        cyc = (rec.get("meta") or {}).get("cycles")
        cost = (cyc.get("cycles") if isinstance(cyc, dict) else cyc) or (
            d.shape.out_height * d.shape.out_width * d.cout * d.cin * d.kernel ** 2)
        kind = layer_kind(d)
        if kind not in best or cost < best[kind][0]:
            best[kind] = (cost, i)
    return sorted(i for _cost, i in best.values())


def route_for(ex: Execution, variant: str, seed: int = 0) -> list[int]:
    """Input channel map of ``ex`` for a map variant (see :data:`MAP_VARIANTS`)."""
    trace_map = [int(b) for b in ex.arrays["channel_map"]]
    if variant == "trace":
        return trace_map
    if variant == "dense":
        return [0] * len(trace_map)
    if variant == "sparse":
        return [1] * len(trace_map)
    if variant == "random":
        digest = hashlib.sha256(f"{seed}:{ex.name}".encode()).digest()
        rng = np.random.default_rng(int.from_bytes(digest[:8], "little"))
        return [int(b) for b in rng.integers(0, 2, len(trace_map))]
    raise ValueError(f"map variant must be one of {MAP_VARIANTS}, got {variant!r}")


def prepare(ex: Execution, index: int, *, config: AcceleratorConfig, variant: str = "trace",
            seed: int = 0) -> ReplayJob:
    """A :class:`ReplayJob` for execution ``ex`` (number ``index`` of its trace) on the top
    built with ``config`` (:func:`hw.job.make_job`; :class:`hw.job.JobError` if it does not
    fit)."""
    job = make_job(ex.descriptor, ex.arrays, config, route=route_for(ex, variant, seed))
    return ReplayJob(index=index, name=ex.name, meta=dict(ex.meta), job=job,
                     map_variant=variant, arrays=ex.arrays)


def recorded_counters(job: ReplayJob, cycle_model: dict | None) -> dict | None:
    """The counters the trace records for this execution (``meta["cycles"]``: a dict of
    counters, or the cycle count alone), if they apply: the trace's own channel map and a
    header ``cycle_model`` whose parameters (``traces.hexfiles.CYCLE_PARAMS``: the array and the
    v2 mechanisms) equal the top's (a trace without one does not say which configuration its
    counters are for: they are not used). Else None."""
    rec = job.meta.get("cycles")
    if job.map_variant != "trace" or rec is None or not cycle_model:
        return None
    params = job.config.to_dict()
    # a parameter the header lacks (a trace written before it existed) had its default
    defaults = AcceleratorConfig().to_dict()
    for key in CYCLE_PARAMS:
        if params[key] != cycle_model.get(key, defaults[key]):
            return None
    if isinstance(rec, dict):
        return {k: int(v) for k, v in rec.items() if k in MODEL_COUNTERS}
    if isinstance(rec, int):
        return {"cycles": rec}
    return None


def predicted_counters(job: ReplayJob, cycle_model: dict | None = None) -> dict:
    """Counters the RTL must produce: those the trace records (:func:`recorded_counters`)
    where it records them, the others from hw/cyclemodel.py (``predict_layer``)."""
    recorded = recorded_counters(job, cycle_model) or {}
    if all(k in recorded for k in MODEL_COUNTERS):
        return {k: recorded[k] for k in MODEL_COUNTERS}
    pred = job.job.predicted_counters()
    pred.update(recorded)
    return pred


def counter_expectations(job: ReplayJob, cycle_model: dict | None) -> tuple[dict, dict]:
    """``(predicted, source)``: the counters the RTL must produce (:func:`predicted_counters`)
    and, per counter, where the expectation comes from (for the report)."""
    recorded = recorded_counters(job, cycle_model) or {}
    predicted = predicted_counters(job, cycle_model)
    source = {k: "trace meta[cycles]" if k in recorded else "hw/cyclemodel.py"
              for k in predicted}
    return predicted, source


def expected_saturation(ex: Execution) -> dict:
    """``sat_terms`` (accumulator terms clamped to +-TERM_LIMIT) and ``sat_ppu`` (PPU values
    clamped to 32 bits) of execution ``ex``, from the golden integer reference. They do not
    depend on the channel map, so one call serves every map variant of ``ex``."""
    r = ir.run_layer(**ex.inputs())
    return {"sat_terms": int(r.saturated_terms), "sat_ppu": int(r.out.saturated)}


@dataclasses.dataclass(frozen=True)
class Mismatch:
    """One differing value; ``where`` locates it (pixel, channel, block, group, counter)."""
    what: str        # out_codes, out_scales, zero_counts, next_map, counter <name>, X/Z value
    where: dict
    expected: int | str
    actual: int | str

    def text(self) -> str:
        loc = ", ".join(f"{k} {v}" for k, v in self.where.items())
        return f"{self.what} at {loc}: expected {self.expected}, actual {self.actual}"


def compare(job: ReplayJob, actual: dict, predicted: dict, source: dict | None = None,
            saturation: dict | None = None) -> list[Mismatch]:
    """Every mismatch between what the top produced (``actual``: ``out_words``,
    ``zero_counts``, ``next_map`` bits, ``counters``) and the trace / cycle model
    (``source``: counter -> where its expectation comes from, for the report) / the golden
    saturation counts (``saturation``, see :func:`expected_saturation`; a bit mismatch)."""
    source = source or {}
    d, a = job.descriptor, job.arrays
    s = d.shape
    out = []
    # values with X/Z bits (4-state simulators; read as 0) first: they explain what follows
    for name in actual.get("unknown", ()):
        out.append(Mismatch("X/Z value", {"signal": name}, "0/1", "X/Z"))
    codes, scales = unpack_outputs(actual["out_words"], out_height=s.out_height,
                                   out_width=s.out_width, cout=d.cout,
                                   out_format=ir.Format(d.out_format), vector=d.vector)
    want = a["out_codes"].astype(np.int64)
    for y, x, c in np.argwhere(codes != want):
        out.append(Mismatch("out_codes", {"pixel (y, x)": (int(y), int(x)), "channel": int(c)},
                            int(want[y, x, c]), int(codes[y, x, c])))
    want = a["out_scales"].astype(np.int64)
    blk = d.out_block
    for y, x, b in np.argwhere(scales != want):
        out.append(Mismatch("out_scales", {
            "pixel (y, x)": (int(y), int(x)),
            "channel": f"{b * blk}..{min(d.cout, (b + 1) * blk) - 1} (block {b})"},
            int(want[y, x, b]), int(scales[y, x, b])))
    want = a["zero_counts"].astype(np.int64)
    got = np.asarray(actual["zero_counts"], dtype=np.int64)
    for c in np.flatnonzero(got != want):
        out.append(Mismatch("zero_counts", {"channel": int(c)}, int(want[c]), int(got[c])))
    want = a["next_map"].astype(np.int64)
    got = np.asarray(actual["next_map"][:len(want)], dtype=np.int64)
    for g in np.flatnonzero(got != want):
        out.append(Mismatch("next_map", {
            "group": int(g), "channel": f"{g * d.vector}..{min(d.cout, (g + 1) * d.vector) - 1}"},
            int(want[g]), int(got[g])))
    extra = [g for g, b in enumerate(actual["next_map"][len(want):], len(want)) if b]
    for g in extra:
        out.append(Mismatch("next_map", {"group": g, "channel": "beyond cout"}, 0, 1))
    for name, value in (saturation or {}).items():
        if actual["counters"][name] != value:
            out.append(Mismatch(name, {"counter": f"cnt_{name}",
                                       "expected from": "golden/intref.py"},
                                int(value), int(actual["counters"][name])))
    span = actual.get("cycles_start_to_done")
    if span is not None and span != actual["counters"]["cycles"]:
        out.append(Mismatch("counter cnt_cycles", {"versus": "clock edges from start to done"},
                            int(span), int(actual["counters"]["cycles"])))
    for name, value in predicted.items():
        if actual["counters"][name] != value:
            out.append(Mismatch(f"counter cnt_{name}", {"expected from": source.get(
                name, "hw/cyclemodel.py")}, int(value), int(actual["counters"][name])))
    return out


def mismatch_text(trace: str, job: ReplayJob, m: Mismatch) -> str:
    """The one-line report of a mismatch: trace, execution, layer, step, then the value."""
    lab = job.label()
    return (f"trace {trace}: execution #{job.index} {job.name} (layer {lab['layer']}, "
            f"step {lab['step']}, eval {lab['eval']}, map {job.map_variant}): {m.text()}")


def ideal_cycles(job: ReplayJob) -> dict:
    """Lower bound of the compute cycles for this execution and channel map: every multiplier
    busy with useful work. Dense MACs are the dense-class (map bit 0) channels' products
    including zero activations, on the DPE's ``vector x dpe_cols`` multipliers; non-zero MACs
    are the sparse-class channels' products with a non-zero activation, on the SPE's
    ``spe_lanes x tile`` multipliers. Padding taps, padded channels and padded tile columns
    are not work. An 8-bit (MXINT8) product counts 4 (4-bit multiplier operations). On a
    ``balance`` top either engine takes any item: the bound is then every channel's non-zero
    MACs on all the multipliers (``ideal_cycles``; ``dense_macs`` / ``nonzero_macs`` keep the
    map's split)."""
    d, s = job.descriptor, job.descriptor.shape
    x = job.arrays["x_codes"]
    mx = d.mode == ir.Mode.MXINT8
    # map bit of every input channel (MXINT8: block b follows bit b * 32 / vector)
    blk = d.x_block
    chan_group = (np.arange(d.cin) // blk) * (blk // d.vector)
    sparse = np.asarray(job.route, dtype=bool)[chan_group]
    # uses[iy, ix]: (output pixel, tap) pairs reading input pixel (iy, ix)
    uses = np.zeros((s.height, s.width), dtype=np.int64)
    for ky, kx in s.taps():
        for oy in range(s.out_height):
            iy = oy * s.stride - s.padding + ky
            if not 0 <= iy < s.height:
                continue
            ox = np.arange(s.out_width)
            ix = ox * s.stride - s.padding + kx
            ok = (ix >= 0) & (ix < s.width)
            np.add.at(uses[iy], ix[ok], 1)
    per_product = 4 if mx else 1
    dense_macs = int(uses.sum()) * int((~sparse).sum()) * d.cout * per_product
    nnz = (x[:, :, sparse] != 0).sum(axis=2)
    nz_macs = int((uses * nnz).sum()) * d.cout * per_product
    dpe_mults, spe_mults = job.config.dpe_multipliers, job.config.spe_multipliers
    if job.config.balance:
        all_nz = int((uses * (x != 0).sum(axis=2)).sum()) * d.cout * per_product
        ideal = all_nz / (dpe_mults + spe_mults)
    else:
        ideal = max(dense_macs / dpe_mults, nz_macs / spe_mults if nz_macs else 0)
    return {"dense_macs": dense_macs, "nonzero_macs": nz_macs, "ideal_cycles": ideal}


def record(trace: str, job: ReplayJob, actual: dict, predicted: dict, mismatches: list, *,
           timing: dict | None = None, source: dict | None = None) -> dict:
    """The results.json record of one replayed execution."""
    d = job.descriptor
    cnt = actual["counters"]
    cycles = cnt["cycles"]
    ideal = ideal_cycles(job)
    x = job.arrays["x_codes"]
    bit_exact = not any(not m.what.startswith("counter") for m in mismatches)
    cycle_exact = not any(m.what.startswith("counter") for m in mismatches)
    rec = {
        "trace": trace, "index": job.index, "name": job.name, **job.label(),
        "map": job.map_variant,
        "shape": f"{d.height}x{d.width}x{d.cin}->{d.cout} k{d.kernel}s{d.stride}p{d.padding}",
        "mode": d.mode.name.lower(), "out_format": ir.Format(d.out_format).name.lower(),
        "residual": d.residual,
        "in_sparsity": float(np.mean(x == 0)) if x.size else 0.0,
        "sparse_groups": f"{sum(job.route)}/{len(job.route)}",
        "cycles_rtl": cycles, "cycles_model": predicted.get("cycles"),
        "cycles_start_to_done": actual.get("cycles_start_to_done"),
        "dpe_utilisation": cnt["dpe_busy"] / cycles if cycles else 0.0,
        "spe_utilisation": cnt["spe_busy"] / cycles if cycles else 0.0,
        "macs": cnt["macs"], "zeros_skipped": cnt["zeros_skipped"],
        "mem_reads": cnt["mem_reads"], "mem_writes": cnt["mem_writes"],
        "sat_terms": cnt["sat_terms"], "sat_ppu": cnt["sat_ppu"],
        "dense_macs": ideal["dense_macs"], "nonzero_macs": ideal["nonzero_macs"],
        "ideal_cycles": ideal["ideal_cycles"],
        "cycles_per_ideal": cycles / ideal["ideal_cycles"] if ideal["ideal_cycles"] else None,
        "counters_rtl": dict(cnt), "counters_model": dict(predicted),
        "counters_expected_from": sorted(set((source or {}).values())) or ["hw/cyclemodel.py"],
        "out_sha256": hashlib.sha256(
            b"".join(int(w).to_bytes(33, "little") for w in actual["out_words"])).hexdigest(),
        "bit_exact": bit_exact, "cycle_exact": cycle_exact,
        "mismatches": len(mismatches),
        "first_mismatch": mismatch_text(trace, job, mismatches[0]) if mismatches else None,
        "mismatch_samples": [m.text() for m in mismatches[:20]],
    }
    if timing:
        rec["timing"] = timing
    return rec


class ReplayError(RuntimeError):
    """The replay could not run (bad trace folder, execution that does not fit the top, build
    failure, no board); not a mismatch."""


def check_trace(trace_dir, config, select="all"):
    """Open and validate ``trace_dir`` (manifest, hashes) and check that every selected
    execution (``select``: "all", "kinds" or a list of indices) fits a top built with
    ``config``. Returns ``(trace, indices)``."""
    path = Path(trace_dir)
    try:
        trace = open_trace(path)
    except TraceError as e:
        hint = ""
        if not path.exists() and path.resolve() == DEFAULT_TRACES.resolve():
            hint = " (run `make traces` to export it)"
        raise ReplayError(f"cannot replay trace: {e}{hint}") from None
    if len(trace) == 0:
        raise ReplayError(f"trace {path} holds no executions")
    if select == "all":
        indices = list(range(len(trace)))
    elif select == "kinds":
        indices = kind_selection(trace.records)
    elif isinstance(select, str):
        raise ReplayError(f"select must be one of {SELECTIONS} or a list of indices, "
                         f"not {select!r}")
    else:
        indices = list(select)
    for i in indices:
        if not 0 <= i < len(trace):
            raise ReplayError(f"trace {path}: no execution #{i} (it holds {len(trace)})")
        rec = trace.records[i]
        problems = Descriptor.from_json(rec["descriptor"]).fit_problems(config)
        if problems:
            raise ReplayError(f"trace {path}: execution #{i} {rec['name']} does not fit the top "
                             f"({'; '.join(problems)}); pass --param NAME=VALUE")
    return trace, indices




def execution_rows(records):
    """The table's header and one line per replayed execution (``results["executions"]``)."""
    lines = [f"{'#':>4} {'layer':<18} {'st':>3} {'map':<6} {'shape':<24} {'in 0%':>6} "
             f"{'cycles RTL':>10} {'model':>10} {'DPE':>5} {'SPE':>5} {'/ideal':>7} result"]
    for r in records:
        res = "ok" if not r["mismatches"] else (
            ("BITS " if not r["bit_exact"] else "") + ("CYCLES " if not r["cycle_exact"] else "")
            + f"x{r['mismatches']}")
        ratio = f"{r['cycles_per_ideal']:.2f}" if r["cycles_per_ideal"] else "-"
        step = "-" if r["step"] is None else r["step"]
        lines.append(
            f"{r['index']:>4} {str(r['layer'])[:18]:<18} {step:>3} {r['map'][:6]:<6} "
            f"{r['shape'][:24]:<24} {100 * r['in_sparsity']:>5.1f}% {r['cycles_rtl']:>10} "
            f"{r['cycles_model']:>10} {100 * r['dpe_utilisation']:>4.0f}% "
            f"{100 * r['spe_utilisation']:>4.0f}% {ratio:>7} {res}")
    return lines


def parse_select(text):
    """A ``--select`` value: one of :data:`SELECTIONS`, or a comma list of execution indices
    (``ValueError`` naming the value otherwise)."""
    if text in SELECTIONS:
        return text
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--select must be one of {SELECTIONS} or a comma list of execution "
                         f"indices, got {text!r}") from None


def parse_shard(text):
    """A ``--shard K/N`` value as ``(K, N)``, 1 <= K <= N (``ValueError`` naming it otherwise)."""
    k, sep, n = str(text).partition("/")
    try:
        k, n = int(k), int(n)
    except ValueError:
        k = n = 0
    if not sep or not 1 <= k <= n:
        raise ValueError(f"--shard must be K/N with 1 <= K <= N (e.g. 2/4), got {text!r}")
    return k, n


def shard_of(selected, k, n):
    """Shard ``k`` of ``n`` of the execution list ``selected``: every n-th execution from the
    k-th on. Deterministic, disjoint, and together the whole list; striding (not blocks) gives
    every shard a like share of each time step's layers, so shards take similar times."""
    return list(selected)[k - 1::n]


def write_results(path, results):
    """Write a replay's ``{"summary", "executions"}`` to ``path`` atomically; the summary then
    names the file (``results_file``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=1) + "\n")
    tmp.replace(path)
    results["summary"]["results_file"] = str(path)

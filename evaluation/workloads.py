"""Both workloads side by side: ``python -m evaluation.workloads [--out DIR]``.

Reads each workload's ``make bench`` report (``build/bench/report.json`` for digits,
``build/bench/<model>/report.json`` for the others, with their ``executions.json``) and puts the
figures an architect compares next to each other: speed and energy against FP16 dense at equal
multiplier count, speed against the dense INT4-VSQ peer at equal synthesized area, utilisation
and the DPE/SPE balance of SQ-DM v2, and the temporal sparsity the channel maps found. Writes
``<out>/workloads.json`` and prints the table (Markdown). A workload whose report is missing is
named, with the command that makes it; nothing is computed here that the reports do not hold.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from golden.workloads import WORKLOADS
from .bench import DEFAULT_OUT, BenchError, default_paths, write_json

#: The workloads compared, in column order (golden.workloads).
MODELS = tuple(WORKLOADS)


def _load(path: Path, model: str) -> dict:
    make = "make bench" + ("" if model == "digits" else f" MODEL={model}")
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise BenchError(f"{model}: {path} does not exist ({make} writes it)") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BenchError(f"{model}: {path} is not valid JSON ({e}); re-run {make}") from None


def workload_figures(report: dict, executions: list) -> dict:
    """The side-by-side figures of one workload from its bench report and per-execution
    records (``executions.json``)."""
    try:
        cfgs = report["configs"]
        sq = cfgs["sqdm"]
        eas = report.get("equal_area_synth") or {}
        groups = sum(r["groups"] for r in executions)
        macs = sum(r["useful_macs"] for r in executions)
        return {
            "executions": report["trace"]["executions"],
            "evaluations": report["trace"]["evaluations"],
            "sources": {c: cfgs[c]["source"] for c in cfgs},
            "sqdm_cycles": sq["cycles"],
            "speedup_vs_fp16": {c: cfgs[c]["speedup_vs_fp16"] for c in cfgs},
            "energy_reduction_vs_fp16": {c: cfgs[c]["energy_reduction_vs_fp16"] for c in cfgs},
            "equal_area_speedup_vs": eas.get("speedup_vs"),
            "mac_utilisation": {c: cfgs[c]["mac_utilisation"] for c in cfgs},
            "sqdm_dpe_busy": sq["dpe_busy"] / sq["cycles_compute"],
            "sqdm_spe_busy": sq["spe_busy"] / sq["cycles_compute"],
            "sparse_group_fraction": sum(r["sparse_groups"] for r in executions) / groups,
            "input_zero_fraction_mac_weighted":
                sum(r["in_sparsity"] * r["useful_macs"] for r in executions) / macs,
            "sqnr_db": {c: cfgs[c].get("sqnr_db") for c in cfgs},
            "rtl_vs_model_mismatches": report["rtl_vs_model"]["mismatches"],
        }
    except (KeyError, TypeError, ZeroDivisionError) as e:
        raise BenchError(f"the bench report lacks {e} (re-run make bench)") from None


ROWS = (
    ("layer executions (whole sample)", lambda f: f"{f['executions']:,}"),
    ("SQ-DM v2 cycles", lambda f: f"{f['sqdm_cycles']:,}"),
    ("speed-up vs FP16 dense, 256 multipliers: SQ-DM v2",
     lambda f: f"{f['speedup_vs_fp16']['sqdm']:.2f}x"),
    ("  the paper's organisation (v1)", lambda f: f"{f['speedup_vs_fp16']['sqdm_paper']:.2f}x"),
    ("  dense INT4-VSQ (all-INT4)", lambda f: f"{f['speedup_vs_fp16']['int4_vsq_dense']:.2f}x"),
    ("SQ-DM v2 vs dense 4-bit peer at equal synthesized area (plan / all-INT4)",
     lambda f: "-" if not f["equal_area_speedup_vs"] else
     f"{f['equal_area_speedup_vs']['int4_vsq_dense_plan']:.2f}x / "
     f"{f['equal_area_speedup_vs']['int4_vsq_dense']:.2f}x"),
    ("energy reduction vs FP16 dense: SQ-DM v2",
     lambda f: f"{f['energy_reduction_vs_fp16']['sqdm']:.1%}"),
    ("MAC utilisation (useful MACs / multipliers x cycles): SQ-DM v2 / FP16 dense",
     lambda f: f"{f['mac_utilisation']['sqdm']:.1%} / {f['mac_utilisation']['fp16_dense']:.1%}"),
    ("SQ-DM v2 DPE / SPE busy (share of cycles)",
     lambda f: f"{f['sqdm_dpe_busy']:.2f} / {f['sqdm_spe_busy']:.2f}"),
    ("sparse channel groups (routed to the SPE)", lambda f: f"{f['sparse_group_fraction']:.1%}"),
    ("zero input activations (MAC-weighted)",
     lambda f: f"{f['input_zero_fraction_mac_weighted']:.1%}"),
    ("denoiser SQNR of the plan / all-INT4 (dB)",
     lambda f: "-" if f["sqnr_db"]["sqdm"] is None else
     f"{f['sqnr_db']['sqdm']:.1f} / {f['sqnr_db']['int4_vsq_dense']:.1f}"),
    ("counters from", lambda f: "RTL" if f["sources"]["sqdm"] == "rtl" else f["sources"]["sqdm"]),
)


def table_text(figures: dict) -> str:
    models = list(figures)
    lines = ["| | " + " | ".join(models) + " |", "|---|" + "---:|" * len(models)]
    lines += [f"| {label} | " + " | ".join(row(figures[m]) for m in models) + " |"
              for label, row in ROWS]
    return "\n".join(lines)


def run(models=MODELS, out_dir=DEFAULT_OUT, progress=print) -> dict:
    figures = {}
    for model in models:
        folder = Path(default_paths(model)["out"])
        report = _load(folder / "report.json", model)
        executions = _load(folder / "executions.json", model)
        figures[model] = {"report": str(folder / "report.json"),
                          **workload_figures(report, executions)}
    doc = {"workloads": figures,
           "note": "each workload's whole sample (18 Heun steps) from its make bench report; "
                   "the same tops, budgets, energy table and bandwidth for both"}
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    write_json(Path(out_dir) / "workloads.json", doc)
    progress(table_text(figures))
    progress(f"wrote {Path(out_dir) / 'workloads.json'}")
    return doc


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m evaluation.workloads",
                                description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder of workloads.json")
    a = p.parse_args(argv)
    try:
        run(out_dir=a.out)
    except BenchError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())

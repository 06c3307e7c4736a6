"""PNG plots of build/bench/report.json (matplotlib, Agg backend, fixed metadata)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from .baselines import CONFIGS  # noqa: E402

_META = {"Software": None}   # no version/date string in the PNG: byte-stable output


def _save(fig, path):
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata=_META)
    plt.close(fig)
    return path


def write_plots(report: dict, out_dir) -> list[Path]:
    out_dir = Path(out_dir)
    paths = []
    cfgs = report["configs"]
    paper = report["paper"]

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    colors = ["grey", "tab:orange", "tab:green", "tab:olive", "tab:blue"]
    er = [100 * cfgs[c]["energy_reduction_vs_fp16"] for c in CONFIGS]
    budgets = [("equal multipliers (256)", cfgs, {}),
               ("equal arithmetic area", (report.get("equal_area") or {}).get("configs"),
                {"alpha": 0.6, "hatch": "//"}),
               ("equal synthesized area",
                (report.get("equal_area_synth") or {}).get("configs"),
                {"alpha": 0.35, "hatch": ".."})]
    budgets = [b for b in budgets if b[1]]
    xs = range(len(CONFIGS))
    w = 0.8 / len(budgets)
    for k, (label, table, style) in enumerate(budgets):
        ax[0].bar([i + (k - (len(budgets) - 1) / 2) * w for i in xs],
                  [table[c]["speedup_vs_fp16"] for c in CONFIGS], w, label=label,
                  color=colors, **style)
    ax[0].set_xticks(list(xs))
    ax[0].set_xticklabels(CONFIGS)
    ax[0].axhline(paper["speedup_vs_fp16"], color="k", ls="--", label="paper sqdm 6.91x")
    ax[0].axhline(1, color="grey", lw=0.5)
    ax[0].set_ylabel("speed-up vs fp16_dense")
    ax[0].legend()
    ax[1].bar(CONFIGS, er, color=colors)
    ab = [100 * cfgs[c].get("energy_reduction_vs_fp16_as_built", float("nan"))
          for c in CONFIGS]
    ax[1].plot(CONFIGS, ab, "kx", label="RTL word widths as built")
    ax[1].axhline(100 * paper["energy_reduction_vs_fp16"], color="k", ls="--",
                  label="paper sqdm 51.5 %")
    ax[1].set_ylabel("energy reduction vs fp16_dense (%)")
    ax[1].legend()
    for a in ax:
        a.tick_params(axis="x", rotation=20)
    bw = report["budget"]["dram_bytes_per_cycle"]
    fig.suptitle(f"{report['trace']['executions']} layer executions, "
                 + " / ".join(b[0] for b in budgets) + f", {bw} B/cycle DRAM")
    paths.append(_save(fig, out_dir / "speedup_energy.png"))

    sw = report.get("sweeps")
    if sw:
        th = sw["threshold"]
        x = [t["threshold_pct"] for t in th]
        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        ax[0].plot(x, [t["dpe_utilisation"] for t in th], "o-", label="DPE busy / cycles")
        ax[0].plot(x, [t["spe_utilisation"] for t in th], "s-", label="SPE busy / cycles")
        ax[0].plot(x, [t["sparse_group_fraction"] for t in th], "^--",
                   label="groups routed to SPE")
        ax[0].set_xlabel("sparsity threshold (%)")
        ax[0].legend()
        ax[1].plot(x, [t["speedup_vs_fp16"] for t in th], "o-", label="speed-up vs fp16")
        ax[1].plot(x, [t["energy_reduction_vs_fp16"] for t in th], "s-",
                   label="energy reduction (fraction)")
        ax[1].set_xlabel("sparsity threshold (%)")
        ax[1].legend()
        fig.suptitle("threshold sweep (cycle model, maps recomputed from recorded inputs)")
        paths.append(_save(fig, out_dir / "threshold_sweep.png"))

        fig, ax = plt.subplots(1, 2, figsize=(10, 4))
        r = sw["dpe_spe_ratio"]
        ax[0].bar([f"{t['label']}\n({t['multipliers']})" for t in r],
                  [t["speedup_vs_fp16"] for t in r])
        ax[0].set_ylabel("speed-up vs fp16_dense")
        ax[0].set_title("DPE:SPE multipliers (total)")
        m = sw["map_policy"]
        ax[1].bar([t["policy"] for t in m], [t["speedup_vs_fp16"] for t in m])
        ax[1].set_title("channel-map policy")
        paths.append(_save(fig, out_dir / "ratio_policy_sweep.png"))

    pl = report["per_layer"]
    layers = sorted(pl, key=lambda k: -pl[k]["fp16_dense"]["cycles"])
    fig, ax = plt.subplots(figsize=(12, 4.5))
    xs = range(len(layers))
    w = 0.27
    ax.bar([i - w for i in xs], [pl[k]["sqdm"]["dpe_utilisation"] for k in layers], w,
           label="sqdm DPE busy")
    ax.bar(list(xs), [pl[k]["sqdm"]["spe_utilisation"] for k in layers], w,
           label="sqdm SPE busy")
    ax.bar([i + w for i in xs], [pl[k]["int4_vsq_dense"]["mac_utilisation"] for k in layers], w,
           label="int4_vsq_dense MAC utilisation")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(layers, rotation=75, fontsize=7)
    ax.set_ylabel("fraction of cycles")
    ax.set_title("per-layer utilisation (layers by fp16_dense cycles, all evaluations)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "per_layer_utilisation.png"))
    return paths


def write_plan_plots(report: dict, out_dir) -> list[Path]:
    """Figures of ``make plan``'s report (build/plan/report.json): the Pareto front, the
    per-layer sensitivity per sampler step, the operation types and the outlier statistics."""
    out_dir = Path(out_dir)
    paths = []
    pts = report["points"]
    front = set(report["pareto"])
    fig, axes = plt.subplots(1, 2, figsize=(14, 5.5))
    cand = [p for p in pts if p["kind"] == "candidate"]
    fp = sorted((p for p in pts if p["name"] in front), key=lambda p: p["cycles"])
    bar = report["previous"]["sqnr_db"]
    marked = [p for p in pts if p["kind"] == "reference" or p["name"] == report["chosen"]["name"]]
    for k, ax in enumerate(axes):
        ax.plot([p["cycles"] / 1e6 for p in cand], [p["sqnr_db"] for p in cand], ".-",
                color="grey", label="candidates (layers demoted to INT4 one by one)")
        ax.plot([p["cycles"] / 1e6 for p in cand], [p["predicted_sqnr_db"] for p in cand], ":",
                color="grey", lw=0.8, label="additive-noise prediction")
        ax.plot([p["cycles"] / 1e6 for p in fp], [p["sqnr_db"] for p in fp], "o", mfc="none",
                color="tab:blue", label="Pareto front")
        ax.axhline(bar, color="tab:red", ls="--", lw=0.8, label="previous plan's quality")
        for i, p in enumerate(sorted(marked, key=lambda p: (p["cycles"], p["sqnr_db"]))):
            chosen = p["name"] == report["chosen"]["name"]
            ax.plot(p["cycles"] / 1e6, p["sqnr_db"], "*" if chosen else "s",
                    ms=12 if chosen else 6, color="tab:red" if chosen else "k")
            if k == 1:   # labels in the zoomed panel, staggered
                ax.annotate(f"{'chosen: ' if chosen else ''}{p['name']}: {p['sqnr_db']:.2f} dB, "
                            f"INT4 {p['int4_mac_share']:.1%}",
                            (p["cycles"] / 1e6, p["sqnr_db"]), fontsize=7,
                            xytext=(8, 22 - 14 * (i % 4)), textcoords="offset points",
                            arrowprops={"arrowstyle": "-", "lw": 0.5})
        ax.set_xlabel("sqdm cycles per sample (millions; v2 top, fast model)")
        ax.set_ylabel("denoiser SQNR vs FP32 (dB, mean over steps)")
    lo = min(p["cycles"] for p in pts) / 1e6
    hi = report["previous"]["cycles"] / 1e6
    axes[1].set_xlim(lo - 0.05 * (hi - lo), hi + 0.4 * (hi - lo))
    axes[1].set_ylim(bar - 3, bar + 2.5)
    axes[0].set_title("precision plans: quality against cycles")
    axes[1].set_title("near the previous plan")
    axes[0].legend(fontsize=8, loc="lower right")
    paths.append(_save(fig, out_dir / "pareto.png"))

    layers = report["sensitivity"]["layers"]["groups"]
    names = list(layers)
    grid = [[layers[n]["sqnr_per_step"][s] for n in names]
            for s in range(len(layers[names[0]]["sqnr_per_step"]))]
    fig, ax = plt.subplots(figsize=(12, 5))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", interpolation="nearest")
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=75, fontsize=7)
    ax.set_ylabel("sampler step (0 = sigma 80)")
    ax.set_title("denoiser SQNR (dB) with only this layer INT4, the rest MXINT8")
    fig.colorbar(im, ax=ax, label="dB")
    paths.append(_save(fig, out_dir / "sensitivity_layers.png"))

    types = report["sensitivity"]["op_types"]["groups"]
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    tn = list(types)
    ax[0].bar(tn, [types[t]["sqnr_db"] for t in tn])
    for i, t in enumerate(tn):
        ax[0].annotate(f"{types[t]['mac_share']:.1%} MACs", (i, types[t]["sqnr_db"]),
                       ha="center", fontsize=7, xytext=(0, 3), textcoords="offset points")
    ax[0].axhline(report["sensitivity"]["op_types"]["base_mxint8"]["mean"], color="k", ls="--",
                  lw=0.8, label="all MXINT8")
    ax[0].set_ylabel("denoiser SQNR (dB), only this type INT4")
    ax[0].tick_params(axis="x", rotation=30)
    ax[0].legend(fontsize=8)
    for t in tn:
        ax[1].plot(types[t]["sqnr_per_step"], label=t)
    ax[1].set_xlabel("sampler step (0 = sigma 80)")
    ax[1].set_ylabel("dB")
    ax[1].set_title("per step")
    ax[1].legend(fontsize=7)
    paths.append(_save(fig, out_dir / "sensitivity_op_types.png"))

    o = report["outliers"]
    on = list(o)
    fig, ax = plt.subplots(figsize=(12, 4.5))
    xs = range(len(on))
    w = 0.27
    ax.bar([i - w for i in xs], [o[n]["weight_in_channel_outlier_ratio"] for n in on], w,
           label="weights: max / median of input-channel maxima")
    ax.bar(list(xs), [o[n]["act_channel_outlier_ratio"] for n in on], w,
           label="activations: max / median of channel maxima")
    ax.bar([i + w for i in xs], [o[n]["act_vector_crest"] for n in on], w,
           label="activations: mean crest (max / RMS) of 16-channel vectors")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(on, rotation=75, fontsize=7)
    ax.set_title("outlier statistics (FP32 model along the reference sampler run)")
    ax.legend(fontsize=8)
    paths.append(_save(fig, out_dir / "outliers.png"))
    return paths

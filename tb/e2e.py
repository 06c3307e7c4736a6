"""Hardware in the loop: ``python -m tb.e2e [--steps N] [--seed S] [--no-check] [--out DIR]``.

Samples one image with the golden EDM Heun sampler where every accelerated layer execution is
computed by the simulated RTL (cocotb module :mod:`tb.cocotb_e2e`, Verilator), then samples the
same image on the golden integer path (``QuantUNet`` with its default backend, same checkpoint,
plan, seed and steps) and compares the two final images bit for bit. Writes
``<out>/e2e.json`` (steps, layer_executions, identical, wall_seconds, ...) and
``<out>/e2e.png`` (RTL image | golden image, 8x upscaled). Exit code 1 unless identical.

The default is the full sample (:data:`DEFAULT_STEPS` = 18 sampler steps, 2 x steps - 1 = 35
network evaluations of 34 layer executions each; about 5 minutes, docs/cosim.md); fewer steps
(``--steps 2``) make a quick check. With the defaults (18 steps, seed 0) the image must also be
the one whose hash ``make traces`` records (``image_sha256`` of build/traces/default).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from tb.cosim import DEFAULT_OUT, VPI_ACCESS
from golden.workloads import DEFAULT_WORKLOAD, WORKLOADS, workload
from hw.config import PRESETS, for_workload
from hw.rtlcache import TOPLEVEL, top_verilog
from hw.toolchain import CLOCK_NS
from tb.loader import LOADER_TOP, write_loader
from tb.simulator import SimulationError, _testcases, run_cocotb

#: Sampler steps by default: the full sample of ``make traces`` (35 network evaluations, 1190
#: layer executions, ~8.3 M cycles: ~5 minutes here). ``--steps 2`` takes ~30 s.
DEFAULT_STEPS = 18


def golden_image(steps, seed, plan):
    """The final image of the golden integer path (default backend) of the plan JSON ``plan``
    (it names its checkpoint), as a numpy array."""
    import torch

    from golden import edm
    from golden.quant import load_plan_model
    from traces.export import sample_latents

    torch.set_num_threads(1)
    pm = load_plan_model(plan)
    image = edm.heun_sampler(edm.EDMDenoiser(pm.quant_unet()), sample_latents(pm.model, seed),
                             num_steps=steps)
    return image.detach().numpy()


def write_png(path, images, scale=8):
    """Grey-scale PNG of images in [-1, 1] side by side (2 px gap), each upscaled."""
    from matplotlib.image import imsave
    tiles = []
    for img in images:
        a = np.clip((np.asarray(img, dtype=np.float64).reshape(img.shape[-2:]) + 1) * 127.5,
                    0, 255).round().astype(np.uint8)
        tiles.append(np.kron(a, np.ones((scale, scale), dtype=np.uint8)))
        tiles.append(np.full((tiles[-1].shape[0], 2 * scale), 255, dtype=np.uint8))
    imsave(path, np.concatenate(tiles[:-1], axis=1), cmap="gray", vmin=0, vmax=255)


def _follow(path, stop, log):
    """Print the lines appended to ``path`` until ``stop`` is set (progress of the sim)."""
    pos = 0
    while True:
        done = stop.wait(2.0)
        try:
            with open(path) as f:
                f.seek(pos)
                text = f.read()
                pos = f.tell()
        except FileNotFoundError:
            text = ""
        for line in text.splitlines():
            log(f"  [rtl] {line}")
        if done:
            return


def main(argv=None, log=print):
    p = argparse.ArgumentParser(prog="python -m tb.e2e", description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                   help=f"Heun sampler steps (default {DEFAULT_STEPS}; 18 = the full sample)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-check", action="store_true",
                   help="do not compare each layer with the golden reference as it runs")
    p.add_argument("--model", choices=sorted(WORKLOADS), default=DEFAULT_WORKLOAD,
                   help="the workload: its checkpoint and precision plan; the top is default's "
                        "with the workload's memories (hw.config.for_workload)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error(f"--steps must be >= 2 (the Heun sampler's minimum), got {args.steps}")
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        p.error(f"--out {out} is not a directory (it names the folder of e2e.json and e2e.png)")
    wall0 = time.monotonic()
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        p.error(f"--out {out}: cannot create the folder ({e.strerror})")
    out = out.resolve()  # the simulator runs in its own folder: its paths must be absolute
    config = for_workload(PRESETS["default"], args.model)
    plan = workload(args.model).plan_path
    verilog, _ = top_verilog(config, log=log)

    work = Path(tempfile.mkdtemp(prefix=".e2e-", dir=out))
    npz, progress = work / "rtl.npz", work / "progress.txt"
    env = {"SQDM_E2E_STEPS": args.steps, "SQDM_E2E_SEED": args.seed, "SQDM_E2E_OUT": npz,
           "SQDM_E2E_PROGRESS": progress, "SQDM_E2E_CHECK": "0" if args.no_check else "1",
           "SQDM_E2E_PLAN": plan,
           "SQDM_COSIM_PARAMS": json.dumps({**config.to_dict(), "clock_ns": CLOCK_NS})}
    log(f"hardware in the loop: {args.model} model, {args.steps} sampler steps "
        f"({2 * args.steps - 1} network evaluations), seed {args.seed}, every layer on the simulated {TOPLEVEL} (Verilator)")
    stop = threading.Event()
    follower = threading.Thread(target=_follow, args=(progress, stop, log), daemon=True)
    follower.start()
    try:
        result = run_cocotb([verilog, write_loader(verilog, config, TOPLEVEL)], LOADER_TOP,
                            "tb.cocotb_e2e", simulator="verilator",
                            extra_env=env, check=False, vpi_access=VPI_ACCESS)
    except SimulationError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    finally:
        stop.set()
        follower.join()
    failure = None
    if result.failed:
        failure = "; ".join(msg for _, msg in _testcases(result.results_xml)[1])
    if not npz.exists():
        print(f"error: the simulation wrote no image ({failure}); run folder "
              f"{result.run_dir}", file=sys.stderr)
        return 2
    with np.load(npz) as z:
        rtl_image = z["image"]
        records = json.loads(str(z["records"]))
        sim_wall = float(z["wall_seconds"])
    log("golden integer path (default backend), same seed and steps ...")
    t = time.monotonic()
    gold = golden_image(args.steps, args.seed, plan)
    golden_s = time.monotonic() - t
    identical = (rtl_image.dtype == gold.dtype and rtl_image.shape == gold.shape
                 and rtl_image.tobytes() == gold.tobytes())
    png = out / "e2e.png"
    write_png(png, [rtl_image, gold])
    cycles = sum(r["cycles"] for r in records)
    layer_checked = [r for r in records if "layer_identical" in r]
    report = {
        "model": args.model, "plan": str(plan.relative_to(plan.parents[2])),
        "steps": args.steps, "evaluations": 2 * args.steps - 1, "seed": args.seed,
        "layer_executions": len(records),
        "identical": bool(identical),
        "max_abs_difference": float(np.max(np.abs(rtl_image.astype(np.float64)
                                                  - gold.astype(np.float64)))),
        "layers_checked": len(layer_checked),
        "layers_identical": sum(1 for r in layer_checked if r["layer_identical"]),
        "simulated_cycles": cycles,
        "rtl_layer_wall_seconds": sum(r["wall_s"] for r in records),
        "sim_wall_seconds": sim_wall, "golden_wall_seconds": golden_s,
        "build_seconds": result.build_seconds,
        "wall_seconds": time.monotonic() - wall0,
        "image_sha256_rtl": hashlib.sha256(rtl_image.tobytes()).hexdigest(),
        "image_sha256_golden": hashlib.sha256(gold.tobytes()).hexdigest(),
        "image_png": str(png), "simulator": "verilator", "params": config.to_dict(),
        "cocotb_failure": failure,
        "layers": records,
    }
    (out / "e2e.json").write_text(json.dumps(report, indent=1) + "\n")
    log(f"{len(records)} layer executions on the RTL ({cycles} cycles), "
        f"{report['layers_identical']}/{len(layer_checked)} layers identical to the golden "
        f"reference; final image identical: {identical}; {report['wall_seconds']:.0f} s")
    log(f"wrote {out / 'e2e.json'} and {png}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if identical and not failure else 1


if __name__ == "__main__":
    sys.exit(main())

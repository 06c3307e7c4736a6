"""Export the layer executions of one golden sample (the committed ReLU checkpoint, the
precision plan, a seeded latent) as a trace folder."""

from __future__ import annotations

import hashlib
import sys
import time
from pathlib import Path

import numpy as np
import torch

from golden import edm
from golden.model import CHECKPOINT_DIR, load_checkpoint
from golden.quant import PRECISIONS, PlanModel, QuantUNet, load_plan_model, uniform_plan
from golden.workloads import DEFAULT_WORKLOAD, workload
from traces.format import Descriptor, Execution, write_trace
from traces.hexfiles import cycle_model_header, hex_header, predicted_counters, write_hex_files

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PLAN = workload(DEFAULT_WORKLOAD).plan_path
CODE_FILES = ("golden/numerics.py", "golden/intref.py", "golden/quant.py", "golden/model.py",
              "golden/edm.py", "traces/format.py", "traces/export.py")


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def code_hash() -> str:
    h = hashlib.sha256()
    for rel in CODE_FILES:
        h.update(rel.encode() + b"\0" + (REPO / rel).read_bytes())
    return h.hexdigest()


def descriptor_of(kwargs: dict) -> Descriptor:
    s = kwargs["shape"]
    return Descriptor(height=s.height, width=s.width, cin=s.cin, cout=s.cout, kernel=s.kernel,
                      stride=s.stride, padding=s.padding, x_format=int(kwargs["x_format"]),
                      out_format=int(kwargs["out_format"]), relu=bool(kwargs["relu"]),
                      residual=kwargs["residual"] is not None,
                      scale_shift=int(kwargs["scale_shift"]),
                      threshold_pct=int(kwargs["threshold_pct"]), vector=int(kwargs["vector"]))


def input_arrays(kwargs: dict, in_map) -> dict:
    """The input arrays of a trace execution from ``run_layer``'s keyword arguments and the
    input channel map."""
    arrays = {k: kwargs[k] for k in ("x_codes", "x_scales", "w_codes", "w_scales",
                                     "scale_mant", "bias")}
    if kwargs["residual"] is not None:
        arrays["residual"] = kwargs["residual"]
    arrays["channel_map"] = np.asarray(in_map, dtype=np.bool_)
    return arrays


def execution_of(call, step: int, sigma: float, precision: str, role: str) -> Execution:
    kw = call.kwargs
    arrays = input_arrays(kw, call.in_map)
    codes, scales, zeros, next_map = call.result
    arrays.update(out_codes=codes, out_scales=scales, zero_counts=zeros.astype(np.int64),
                  next_map=next_map.astype(np.bool_))
    name = f"s{step:02d}.e{call.eval_index:02d}.{call.name}"
    meta = {"layer": call.name, "step": step, "eval": call.eval_index, "sigma": sigma,
            "precision": precision, "role": role, "image": call.image}
    return Execution(name, descriptor_of(kw), arrays, meta)


def select_steps(spec: str, num_steps: int) -> list[int]:
    """"default": first, middle and last sampler step; "all"; or a comma list of steps."""
    if spec == "default":
        return sorted({0, num_steps // 2, num_steps - 1})
    if spec == "all":
        return list(range(num_steps))
    try:
        steps = sorted({int(s) for s in spec.split(",")})
    except ValueError:
        raise ValueError(f"steps must be 'default', 'all' or a comma list of ints, "
                         f"got {spec!r}") from None
    bad = [s for s in steps if not 0 <= s < num_steps]
    if bad:
        raise ValueError(f"steps {bad} are outside [0, {num_steps - 1}]")
    return steps


def resolve_plan(plan, model_name: str = DEFAULT_WORKLOAD):
    """``(golden.quant.PlanModel, name, bytes hashed into the trace header)`` of ``plan``: None
    for the committed plan, a precision of ``golden.quant.PRECISIONS`` for every layer in it (the
    all-INT4 / all-MXINT8 references, on the ReLU checkpoint of workload ``model_name``, default
    weight rule), or the path of a plan JSON, which must exist (it names its checkpoint and
    weight rule; ``model_name`` is then unused)."""
    if plan in PRECISIONS:
        ckpt = workload(model_name).checkpoint("relu")
        model, _ = load_checkpoint(ckpt)
        table = uniform_plan(model, plan)
        name = f"uniform:{plan}" if model_name == DEFAULT_WORKLOAD else \
            f"uniform:{plan}:{model_name}"
        return PlanModel(model, table, ckpt.name, "mse"), name, \
            repr(sorted(table.items())).encode()
    path = Path(plan) if plan else DEFAULT_PLAN
    if not path.is_file():
        raise ValueError(f"plan {path} is not a file (a plan JSON, or one of {PRECISIONS} for "
                         "every layer in that precision)")
    path = path.resolve()
    name = str(path.relative_to(REPO)) if path.is_relative_to(REPO) else path.name
    return load_plan_model(path), name, path.read_bytes()


def sample_latents(model, seed: int) -> torch.Tensor:
    """The latent of one golden sample of ``model`` (one image at its resolution), seeded."""
    r = model.config["resolution"]
    return torch.randn(1, 1, r, r, generator=torch.Generator().manual_seed(seed))


def sample_calls(model, plan: dict, *, num_steps: int = 18, seed: int = 0, progress=True,
                 **quant_options):
    """Run one golden sample (one image, latent seeded with ``seed``) on the integer path.
    Returns ``(calls, sigmas, image)``: every layer execution (``golden.quant.LayerCall``), the
    sigma of each denoiser evaluation, and the final image. ``quant_options`` go to
    ``QuantUNet``."""
    calls = []
    qnet = QuantUNet(model, plan, recorder=calls.append, **quant_options)
    sigmas: dict[int, float] = {}
    started = time.time()

    def hook(k, i, sigma, x, den):
        sigmas[k] = sigma
        if progress:
            print(f"\r  sampler eval {k + 1}/{2 * num_steps - 1} (step {i}, sigma {sigma:.3g}) "
                  f"{time.time() - started:5.1f} s", end="", file=sys.stderr, flush=True)

    image = edm.heun_sampler(edm.EDMDenoiser(qnet), sample_latents(model, seed),
                             num_steps=num_steps, hook=hook)
    if progress:
        print(file=sys.stderr)
    return calls, sigmas, image


def export_sample(out_dir, *, steps: str = "default", num_steps: int = 18, seed: int = 0,
                  plan_path=None, model_name: str = DEFAULT_WORKLOAD, hex_files: bool = True,
                  progress=True) -> Path:
    """Run one golden sample on the integer path and write the selected steps' executions
    (``model_name``: the workload of a uniform plan, see :func:`resolve_plan`)."""
    torch.set_num_threads(1)
    keep = set(select_steps(steps, num_steps))
    pm, plan_name, plan_bytes = resolve_plan(plan_path, model_name)
    model, plan = pm.model, pm.plan
    calls, sigmas, image = sample_calls(model, plan, num_steps=num_steps, seed=seed,
                                        progress=progress, weight_scales=pm.weight_scales)
    infos = {li.name: li for li in model.layers()}
    executions = [execution_of(c, c.eval_index // 2, sigmas[c.eval_index], plan[c.name],
                               infos[c.name].role)
                  for c in calls if c.eval_index // 2 in keep]
    started = time.time()
    for n, ex in enumerate(executions, 1):
        ex.meta["cycles"] = predicted_counters(ex)
        if progress and (n % 50 == 0 or n == len(executions)):
            print(f"\r  cycle model {n}/{len(executions)} executions "
                  f"{time.time() - started:5.1f} s", end="\n" if n == len(executions) else "",
                  file=sys.stderr, flush=True)
    ckpt = CHECKPOINT_DIR / pm.checkpoint
    header = {
        "source": "golden-sample",
        "model": {"checkpoint": f"golden/checkpoints/{pm.checkpoint}",
                  "weight_scales": pm.weight_scales,
                  "sha256": sha256_bytes(ckpt.read_bytes())},
        "plan": {"path": plan_name, "sha256": sha256_bytes(plan_bytes)},
        "code_sha256": code_hash(),
        "sampler": {"num_steps": num_steps, "seed": seed, "steps_exported": sorted(keep),
                    "sigmas": [sigmas[k] for k in sorted(sigmas)]},
        "channel_map_rule": "input map of a layer at evaluation e = detector map of that "
                            "input at evaluation e-1; all dense at e = 0",
        "image_sha256": sha256_bytes(image.numpy().tobytes()),
        "hex": hex_header() if hex_files else None,
        "cycle_model": cycle_model_header(),
    }
    return write_trace(out_dir, executions, header=header,
                       extra_files=write_hex_files if hex_files else None)

"""cocotb test module: hardware in the loop. The golden EDM sampler runs one image with every
accelerated layer execution computed by the simulated top (driven by :mod:`tb.e2e`).

The sampler (``golden.edm.heun_sampler`` on ``EDMDenoiser(QuantUNet(plan checkpoint, plan,
backend=<RTL backend>))``) is blocking Python code, so it runs in a thread started with
``cocotb.task.bridge`` (the 2.x name of ``cocotb.external``); its layer backend calls back into
the simulation through ``cocotb.task.resume`` (the 2.x name of ``cocotb.function``), which
blocks the sampler thread while the layer runs on the RTL (load, start, ``await
RisingEdge(done)``, read back). Only one of the two runs at any time.

Environment (``extra_env``): ``SQDM_E2E_STEPS`` (sampler steps), ``SQDM_E2E_SEED`` (latent
seed), ``SQDM_E2E_OUT`` (npz written at the end: image, per-layer records),
``SQDM_E2E_PROGRESS`` (a text file, one line per sampler evaluation), ``SQDM_E2E_CHECK``
("1": also compare every layer with the golden integer reference as it runs),
``SQDM_E2E_PLAN`` (the precision plan JSON; it names its checkpoint),
``SQDM_COSIM_PARAMS`` (the top's parameters, JSON).
"""

import json
import os
import time

import cocotb
import numpy as np
from cocotb.task import bridge, resume
from cocotb.triggers import Timer

from golden import intref as ir
from tb.host import AcceleratorTB
from traces.replay import config_of, prepare
from hw.layout import unpack_outputs

#: Simulated-time limit (the whole 18-step sample is ~8.3 M compute cycles plus host-port
#: cycles, well under 0.5 s of simulated time at 10 ns).
TIMEOUT_S = 100


def execution_from_kwargs(kwargs, in_map, name):
    """A ``traces.format.Execution`` of one backend call (expected outputs zero: unknown)."""
    from traces.export import descriptor_of, input_arrays
    from traces.format import Execution, array_specs

    desc = descriptor_of(kwargs)
    specs = array_specs(desc)
    arrays = input_arrays(kwargs, in_map)
    for k in ("out_codes", "out_scales"):
        shape, dtype, _, _ = specs[k]
        arrays[k] = np.zeros(shape, dtype=dtype)
    return Execution(name, desc, arrays, {"layer": name})


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def e2e(dut):
    """One image of the golden sampler with every accelerated layer on the RTL."""
    import torch

    from golden import edm
    from golden.quant import load_plan_model
    from traces.export import sample_latents

    steps = int(os.environ["SQDM_E2E_STEPS"])
    seed = int(os.environ.get("SQDM_E2E_SEED", "0"))
    out_path = os.environ["SQDM_E2E_OUT"]
    progress_path = os.environ.get("SQDM_E2E_PROGRESS")
    check = os.environ.get("SQDM_E2E_CHECK", "1") == "1"
    params = json.loads(os.environ["SQDM_COSIM_PARAMS"])

    torch.set_num_threads(1)
    tb = AcceleratorTB(dut, params.get("clock_ns", 10))
    await tb.reset()

    pm = load_plan_model(os.environ["SQDM_E2E_PLAN"])
    records = []
    state = {"t0": time.monotonic()}
    progress = open(progress_path, "a") if progress_path else None

    @resume
    async def run_on_rtl(ex):
        job = prepare(ex, len(records), config=config_of(params))
        t = time.monotonic()
        actual = await tb.execute(job)
        return job, actual, time.monotonic() - t

    def backend(kwargs, site):
        name, in_map = site.name, site.in_map
        ex = execution_from_kwargs(kwargs, in_map, name)
        job, actual, wall = run_on_rtl(ex)     # blocks this thread; the simulator runs
        d, s = ex.descriptor, ex.descriptor.shape
        out_fmt = ir.Format(d.out_format)
        codes, scales = unpack_outputs(actual["out_words"], out_height=s.out_height,
                                       out_width=s.out_width, cout=d.cout,
                                       out_format=out_fmt, vector=d.vector)
        code_dtype = ex.arrays["out_codes"].dtype
        result = (codes.astype(code_dtype), scales.astype(np.uint8),
                  np.asarray(actual["zero_counts"], dtype=np.int64),
                  np.asarray(actual["next_map"][:-(-d.cout // d.vector)], dtype=bool))
        rec = {"name": name, "eval": site.eval_index,
               "shape": f"{d.height}x{d.width}x{d.cin}->{d.cout} k{d.kernel}s{d.stride}",
               "cycles": actual["counters"]["cycles"],
               "cycles_start_to_done": actual["cycles_start_to_done"],
               "sparse_groups": int(np.sum(in_map)), "wall_s": wall}
        if check:
            ref = ir.run_layer(**kwargs)
            rec["layer_identical"] = bool(
                np.array_equal(ref.out.codes, result[0]) and np.array_equal(ref.out.scales,
                                                                             result[1])
                and np.array_equal(ref.out.zero_counts, result[2])
                and np.array_equal(ref.next_map, result[3]))
        records.append(rec)
        return result

    net = pm.quant_unet(backend=backend)

    def hook(k, i, sigma, x, den):
        line = (f"eval {k + 1}/{2 * steps - 1} (step {i}, sigma {sigma:.3g}) done: "
                f"{len(records)} layer executions, "
                f"{sum(r['cycles'] for r in records)} cycles, "
                f"{time.monotonic() - state['t0']:.0f} s")
        dut._log.info(line)
        if progress:
            progress.write(line + "\n")
            progress.flush()

    @bridge
    def sample():
        return edm.heun_sampler(edm.EDMDenoiser(net), sample_latents(pm.model, seed),
                                num_steps=steps, hook=hook)

    image = await sample()
    image = image.detach().numpy()
    np.savez(out_path, image=image, records=json.dumps(records),
             wall_seconds=time.monotonic() - state["t0"])
    if progress:
        progress.close()
    bad = [r["name"] for r in records if r.get("layer_identical") is False]
    assert not bad, f"{len(bad)} layer execution(s) differ from the golden reference: {bad[:5]}"
    await Timer(1, unit="ns")

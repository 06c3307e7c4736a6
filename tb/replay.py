"""cocotb test module: replay the layer executions of a trace folder on the accelerator top
(``sqdm_top``, :class:`hw.top.Accelerator`) and compare every result and counter exactly.

Driven by :mod:`tb.cosim` through :func:`tb.simulator.run_cocotb`; configured by environment
variables (``extra_env``):

==========================  ===================================================================
``SQDM_COSIM_TRACE``        trace folder (required)
``SQDM_COSIM_TRACE_NAME``   how to name the trace in reports (default: the folder)
``SQDM_COSIM_VERIFIED``     "1": the files' hashes were verified already (a tb.cosim snapshot)
``SQDM_COSIM_RESULTS``      JSON-lines file; one record per replayed execution (required)
``SQDM_COSIM_PARAMS``       JSON of the top's generator parameters (tile, lanes, ... ; required)
``SQDM_COSIM_LIMIT``        replay at most this many executions (0 or unset: all)
``SQDM_COSIM_SELECT``       comma list of execution indices (default: all, in order)
``SQDM_COSIM_MAPS``         comma list of map variants per execution: ``trace`` (default),
                            ``dense``, ``sparse``, ``random``
==========================  ===================================================================

Per execution (docs/cosim.md): every memory image of ``traces.hexfiles.memory_images`` is
written through the host port (one word per clock edge), the descriptor and the channel map are
set, ``start`` is pulsed for one cycle and the test then waits for ``done`` with a single
``await RisingEdge(dut.done)``: during the computation the clock is cocotb's C++ (GPI) clock and
no Python runs. Then the out memory (host port, one word per cycle, pipelined), the zero
counters (``zc_chan``/``zc_count``, in the same cycles), ``next_map`` and every ``cnt_*`` are
read back and compared with the trace's expectations and the cycle model. All executions are
replayed; the test fails at the end naming the first mismatch and counting all of them.
"""

import json
import os
import time
from pathlib import Path

import cocotb
from cocotb.triggers import Timer

from tb.host import AcceleratorTB
from traces.replay import (HOST_MEMS, MAP_VARIANTS, compare, config_of,
                             counter_expectations, expected_saturation, mismatch_text, prepare,
                             record)
from traces.format import open_trace

#: Simulated-time limit of one test (a generous bound; the replay of build/traces/default
#: simulates well under a second of 10 ns cycles).
TIMEOUT_S = 20


def _env_list(name, default):
    text = os.environ.get(name, "").strip()
    return [t.strip() for t in text.split(",") if t.strip()] if text else default


@cocotb.test(timeout_time=TIMEOUT_S, timeout_unit="sec")
async def replay(dut):
    """Replay the executions of ``SQDM_COSIM_TRACE``; fail on any mismatch."""
    trace_dir = os.environ["SQDM_COSIM_TRACE"]
    trace_name = os.environ.get("SQDM_COSIM_TRACE_NAME", trace_dir)
    results_path = Path(os.environ["SQDM_COSIM_RESULTS"])
    params = json.loads(os.environ["SQDM_COSIM_PARAMS"])
    config = config_of(params)
    limit = int(os.environ.get("SQDM_COSIM_LIMIT", "0") or 0)
    variants = _env_list("SQDM_COSIM_MAPS", ["trace"])
    bad = [v for v in variants if v not in MAP_VARIANTS]
    assert not bad, f"SQDM_COSIM_MAPS: unknown map variant(s) {bad}; known {MAP_VARIANTS}"

    # TraceError names the file and the field. tb.cosim hands over a private snapshot holding
    # the selected executions only, their hashes already verified.
    trace = open_trace(trace_dir,
                       verify_hashes=os.environ.get("SQDM_COSIM_VERIFIED", "0") != "1")
    cycle_model = trace.manifest.get("cycle_model")
    select = [int(i) for i in _env_list("SQDM_COSIM_SELECT", [])] or list(range(len(trace)))
    if limit:
        select = select[:limit]

    tb = AcceleratorTB(dut, params.get("clock_ns", 10))
    await tb.reset()
    first, total, failed_execs, replayed = None, 0, 0, 0
    with open(results_path, "a") as results:
        for index in select:
            t0 = time.monotonic()
            ex = trace.load(index)
            problems = ex.descriptor.fit_problems(config)
            assert not problems, (f"trace {trace_name}: execution #{index} {ex.name} does not "
                                  f"fit the top: {'; '.join(problems)}")
            saturation = expected_saturation(ex)
            for variant in variants:
                job = prepare(ex, index, config=config, variant=variant)
                t1 = time.monotonic()
                for name, sel in HOST_MEMS.items():
                    if name in job.images:
                        await tb.load(sel, job.images[name])
                t2 = time.monotonic()
                span = await tb.run(job.desc_value, job.map_value)
                t3 = time.monotonic()
                actual = await tb.read_back(job.out_words, job.descriptor.cout)
                actual["cycles_start_to_done"] = span
                t4 = time.monotonic()
                predicted, source = counter_expectations(job, cycle_model)
                mismatches = compare(job, actual, predicted, source, saturation=saturation)
                t5 = time.monotonic()
                timing = {"prepare_s": t1 - t0, "load_s": t2 - t1, "compute_s": t3 - t2,
                          "readback_s": t4 - t3, "model_s": t5 - t4,
                          "load_words": sum(len(job.images[n]) for n in HOST_MEMS
                                            if n in job.images)}
                rec = record(trace_name, job, actual, predicted, mismatches, timing=timing,
                             source=source)
                results.write(json.dumps(rec) + "\n")
                results.flush()
                replayed += 1
                status = "ok" if not mismatches else f"{len(mismatches)} MISMATCH(ES)"
                dut._log.info("#%d %s [%s] cycles %d (model %s) %s", index, job.name, variant,
                              actual["counters"]["cycles"], predicted["cycles"], status)
                if mismatches:
                    failed_execs += 1
                    total += len(mismatches)
                    if first is None:
                        first = mismatch_text(trace_name, job, mismatches[0])
                t0 = time.monotonic()
    assert first is None, (f"{total} mismatch(es) in {failed_execs} of {replayed} replayed "
                           f"execution(s); first: {first}")
    await Timer(1, unit="ns")

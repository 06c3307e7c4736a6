"""The accelerator top's Verilog for co-simulation, emitted once per configuration and cached.

Emitting :class:`hw.top.Accelerator` through :func:`hw.verilog.emit_verilog` takes about a
minute (the top is ~150 k lines), so the text is cached under
``build/sim/rtl/<key>/sqdm_top.v`` where ``key`` hashes the generator parameters, the Amaranth
and Yosys versions and the source text of every module the generator imports (``hw/*.py``
without the tests, ``golden/intref.py``, ``golden/numerics.py``). A change in any of them gives a
new key and a new emission; a file lock lets parallel pytest workers share one emission. The
simulator build is then cached by :mod:`tb.simulator` on the Verilog's text.

:data:`REPLAY_PARAMS` is the one configuration every co-simulation uses (``python -m tb.cosim``,
``tb/test_cosim.py``, ``tb.bench_sim``, ``tb.e2e``), so they all share one Verilator build.
It is ``Accelerator()``'s defaults (:data:`hw.top.ACCELERATOR_DEFAULTS`).
"""

from pathlib import Path

__all__ = ["TOPLEVEL", "RTL_ROOT", "DEFAULT_PARAMS", "REPLAY_PARAMS", "SMALL_PARAMS", "CONFIGS",
           "CLOCK_NS",
           "top_params", "top_verilog"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RTL_ROOT = REPO_ROOT / "build" / "sim" / "rtl"
#: Verilog module name of the top (as ``python -m hw.generate`` names it).
from hw.fpga.rtl import TOPLEVEL  # noqa: E402  (one name for the top)
from hw.top import ACCELERATOR_DEFAULTS  # noqa: E402
#: Clock period of every co-simulation (ns); only simulated time depends on it.
CLOCK_NS = 10

#: ``Accelerator()``'s defaults (docs/hardware.md section 2).
DEFAULT_PARAMS = dict(ACCELERATOR_DEFAULTS)
#: The co-simulation configuration: the defaults.
REPLAY_PARAMS = dict(DEFAULT_PARAMS)
#: A small configuration (the shape of hw/test_top.py's) for slow simulators (Icarus runs the
#: full-size top at a few hundred cycles per second, docs/cosim.md section 7). It fits small
#: synthetic layers only (cin <= 64, cout <= 64, <= 256 output pixels).
SMALL_PARAMS = dict(vector=16, dpe_cols=4, spe_lanes=2, tile=8, max_cin=64, max_cout=64,
                    max_pixels=256, act_depth=256, weight_depth=256, res_depth=1024,
                    out_depth=256)
#: Named configurations (``python -m tb.cosim --config NAME``).
CONFIGS = {"replay": REPLAY_PARAMS, "small": SMALL_PARAMS}

def top_params(config="replay", **overrides):
    """The parameters of configuration ``config`` (see :data:`CONFIGS`) with ``overrides``
    (unknown names are rejected)."""
    if config not in CONFIGS:
        raise ValueError(f"unknown configuration {config!r}; known: {sorted(CONFIGS)}")
    unknown = sorted(set(overrides) - set(DEFAULT_PARAMS))
    if unknown:
        raise ValueError(f"unknown Accelerator parameter(s) {unknown}; "
                         f"known: {sorted(DEFAULT_PARAMS)}")
    return {**CONFIGS[config], **overrides}


def top_verilog(params=None, *, log=None):
    """Path of the top's Verilog for ``params`` (default :data:`REPLAY_PARAMS`) under
    :data:`RTL_ROOT`, emitted by the one cached emitter :func:`hw.fpga.rtl.top_verilog` unless
    an up-to-date copy exists. Returns ``(path, seconds spent emitting or waiting)``."""
    from hw.fpga.rtl import top_verilog as cached_top_verilog
    params = dict(REPLAY_PARAMS if params is None else params)
    return cached_top_verilog(params, root=RTL_ROOT, log=log)

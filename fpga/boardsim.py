"""The board without a board: the host program against the simulated board core.

```
python -m fpga.boardsim [--config board] [--param NAME=VALUE] [--divisor 4] [--select ...]
    [--limit N] [--out build/board-sim] [TRACE_DIR]
```

Builds ``sqdm_board_core`` (:class:`fpga.board.BoardCore`: UART, host link, the accelerator
top) with Verilator into a C++ harness (``fpga/cpp/board_sim.cpp``) that puts a UART model
on the ``rx`` / ``tx`` pins and serves them on a local TCP socket, starts it, and runs the host
program (:func:`fpga.host.replay_on_board`) on ``socket://127.0.0.1:<port>``: the same program,
protocol, link and gateware as on the board, minus the PLL and the pins. ``--divisor`` is the
simulated UART's clock cycles per bit (the board's is ``clock / baud``); it changes how long
the transfers take, never a counted cycle of the accelerator. Results: ``<out>/results.json``
(as :mod:`fpga.host`'s, with ``target: board-sim`` and the harness's cycle and byte counts).
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import time
from pathlib import Path

from hw.config import PRESETS, parse_overrides, preset
from hw.dsp import ECP5
from hw.rtlcache import top_verilog
from hw.toolchain import BUILD_WAIVERS, build_cpp_harness, waiver_flags
from traces.replay import DEFAULT_TRACES, ReplayError, check_trace, parse_select, write_results

from .board import CORE_NAME, core_verilog
from .host import DEFAULT_CONFIG, BoardLink, LinkError, replay_on_board, \
    summary_lines

__all__ = ["DEFAULT_DIVISOR", "DEFAULT_OUT", "SIM_TIMEOUT", "build_board_sim", "BoardSim", "main"]

#: Seconds to wait for each answer of the simulated board (the host's default is 60 s for a
#: real one): the simulation answers a layer's weight write in tens of seconds, and on a
#: loaded machine (a place and route beside it) one took more than 60 s.
SIM_TIMEOUT = 600.0

REPO_ROOT = Path(__file__).resolve().parent.parent
HARNESS_CPP = Path(__file__).resolve().parent / "cpp" / "board_sim.cpp"
#: The models of the ECP5 primitives the accelerator's ECP5 Verilog instantiates (hw.dsp).
PRIMITIVE_MODELS = (Path(__file__).resolve().parent / "models" / "MULT18X18D.v",)
WORK_ROOT = REPO_ROOT / "build" / "board-sim"
DEFAULT_OUT = WORK_ROOT
#: Clock cycles per bit of the simulated UART (the smallest the receiver takes).
DEFAULT_DIVISOR = 4
BUILD_FLAGS = ("--cc", "--exe", "--build", "-j", "2", "-Wno-fatal") + waiver_flags(BUILD_WAIVERS)


def build_board_sim(config, *, divisor=DEFAULT_DIVISOR, log=print):
    """Build (or reuse) the simulated board for ``config``: returns ``(binary, seconds,
    built)``. The top's Verilog is the bitstream's (for :data:`hw.dsp.ECP5`, with the models
    of its primitives, :data:`PRIMITIVE_MODELS`). Keyed by the Verilog of the core, the top
    and the models, the harness and the flags."""
    top_path, _ = top_verilog(config, log=log, target=ECP5)
    core_text = core_verilog(config, divisor=divisor)
    h = hashlib.sha256()
    for part in (top_path.read_bytes(), core_text.encode(), HARNESS_CPP.read_bytes(),
                 *(p.read_bytes() for p in PRIMITIVE_MODELS), " ".join(BUILD_FLAGS).encode()):
        h.update(hashlib.sha256(part).digest())
    folder = WORK_ROOT / f"harness-{h.hexdigest()[:16]}"
    core_path = folder / f"{CORE_NAME}.v"
    if not core_path.exists():
        core_verilog(config, divisor=divisor, path=core_path)  # atomic (hw.verilog)
    try:
        return build_cpp_harness(folder, CORE_NAME, [core_path, top_path, *PRIMITIVE_MODELS,
                                                     HARNESS_CPP],
                                 BUILD_FLAGS, binary_name="board_sim", log=log,
                                 what="simulated board")
    except RuntimeError as e:
        raise ReplayError(str(e)) from None


class BoardSim:
    """The running simulated board (a context manager): ``url`` is its ``socket://`` port;
    ``stats`` (after exit) the harness's cycle, byte and framing-error counts."""

    def __init__(self, binary, divisor=DEFAULT_DIVISOR):
        self.binary, self.divisor = binary, divisor
        self.url, self.stats, self.proc = None, {}, None

    def __enter__(self):
        self.proc = subprocess.Popen([str(self.binary), str(self.divisor), "0"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.startswith("listening on "):
            self.proc.kill()
            raise ReplayError(f"the simulated board did not start: {line!r} "
                             f"{self.proc.stderr.read()[-2000:]}")
        self.url = f"socket://127.0.0.1:{int(line.split()[-1])}"
        return self

    def __exit__(self, *exc):
        try:
            _out, err = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _out, err = self.proc.communicate()
        for line in err.splitlines():
            words = line.split()
            if words[:1] == ["cycles"] and len(words) % 2 == 0:
                self.stats = {k: int(v) for k, v in zip(words[::2], words[1::2])}
        self.returncode = self.proc.returncode
        return False


def run(trace_dir=DEFAULT_TRACES, *, config=None, divisor=DEFAULT_DIVISOR, select="all",
        limit=None, out_dir=DEFAULT_OUT, timeout=SIM_TIMEOUT, progress=True, log=print):
    """Build and start the simulated board, replay ``trace_dir`` on it through the host
    program; returns the results dict (also written to ``out_dir/results.json``)."""
    config = PRESETS[DEFAULT_CONFIG] if config is None else config
    wall0 = time.monotonic()
    checked = check_trace(trace_dir, config, select)  # a bad trace fails before the build
    binary, build_s, built = build_board_sim(config, divisor=divisor, log=log)
    with BoardSim(binary, divisor) as sim:
        link = BoardLink.open(sim.url, config, timeout=timeout)
        try:
            results = replay_on_board(link, trace_dir, select=select, limit=limit,
                                      out_dir=out_dir, target="board-sim", progress=progress,
                                      log=log, checked=checked)
        finally:
            link.close()
    s = results["summary"]
    s.update({"divisor": divisor, "build_seconds": build_s, "built": built,
              "harness": str(binary), "harness_stats": sim.stats,
              "framing_errors": sim.stats.get("framing_errors"),
              "wall_seconds": time.monotonic() - wall0})
    if sim.stats.get("framing_errors"):
        s["passed"] = False
    write_results(s.pop("results_file"), results)
    return results


def parser():
    p = argparse.ArgumentParser(prog="python -m fpga.boardsim",
                                description=__doc__.split("\n")[0])
    p.add_argument("trace", metavar="TRACE_DIR", nargs="?", default=str(DEFAULT_TRACES),
                   help="trace folder (default build/traces/default)")
    p.add_argument("--config", choices=sorted(PRESETS), default=DEFAULT_CONFIG)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--divisor", type=int, default=DEFAULT_DIVISOR,
                   help="clock cycles per bit of the simulated UART (>= 4)")
    p.add_argument("--select", default="all")
    p.add_argument("--limit", type=int, default=None)
    p.add_argument("--timeout", type=float, default=SIM_TIMEOUT,
                   help="seconds to wait for each answer (default %(default)s)")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        config = preset(args.config, **parse_overrides(args.param))
        select = parse_select(args.select)
        if args.divisor < 4:
            raise ValueError(f"--divisor must be >= 4, got {args.divisor}")
        results = run(args.trace, config=config, divisor=args.divisor, select=select,
                      limit=args.limit, out_dir=args.out, timeout=args.timeout)
    except (ReplayError, LinkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = summary_lines(results)
    print("\n".join(lines[-3:] if args.quiet else lines))
    s = results["summary"]
    print(f"simulated board: {s['harness_stats'].get('cycles', 0):,} clock cycles (UART divisor "
          f"{s['divisor']}), build {s['build_seconds']:.1f} s")
    print(f"results: {s['results_file']}")
    return 0 if s["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

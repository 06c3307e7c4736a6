"""The host program: replay a trace's layer executions on the board through its serial link.

```
python -m fpga.host --port /dev/ttyUSB0 [--baud 1000000] [--config board] [--param NAME=VALUE]
    [--select all|kinds|0,5,9] [--limit N] [--timeout 60] [--out build/board] TRACE_DIR
```

``--port`` is anything pyserial opens: a serial device (the ULX3S's FTDI UART), or
``socket://127.0.0.1:PORT`` (the simulated board of :mod:`fpga.boardsim`). Per execution, as
``make sim`` does it on the simulated top (``tb.replay``), and with the same expectations
(:mod:`traces.replay`): every memory image of the job on the board's configuration is
written through the link (:mod:`fpga.protocol`), then the descriptor and the channel map;
``START`` runs the layer; the out memory, the zero counters, the counters and the next channel
map are read back and compared with the trace (bit-exact) and the cycle model (every counter
exact). The board first answers ``INFO``: a bitstream of another configuration is refused.

Writes ``<out>/results.json`` (the shape of ``make sim``'s: ``summary`` and one record per
execution), prints the table and a summary, shows a progress bar while it runs and exits 1 on
any mismatch, 2 when the replay cannot run (bad trace, no board, link timeout).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from hw.config import COUNTERS, PRESETS, parse_overrides, preset
from traces.replay import (HOST_MEMS, ReplayError, check_trace, compare, counter_expectations,
                           execution_rows, expected_saturation, parse_select, prepare, record,
                           write_results)

from . import protocol as proto

__all__ = ["DEFAULT_CONFIG", "DEFAULT_BAUD", "DEFAULT_OUT", "LinkError", "BoardLink",
           "replay_on_board", "summary_lines", "main"]

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = "board"
#: The ULX3S's FT231X runs 1 Mbaud reliably; it divides 25, 50 and 100 MHz clocks exactly.
DEFAULT_BAUD = 1_000_000
DEFAULT_OUT = REPO_ROOT / "build" / "board"
DEFAULT_TIMEOUT = 60.0


class LinkError(RuntimeError):
    """The board did not answer as the protocol says (timeout, wrong reply, wrong bitstream)."""


class BoardLink:
    """The commands of :mod:`fpga.protocol` over an open byte stream ``port`` (an object with
    ``read(n)`` / ``write(data)`` / ``close()``, e.g. a pyserial ``Serial``) for a board
    built with ``config``."""

    def __init__(self, port, config, *, timeout=DEFAULT_TIMEOUT, name="board"):
        self.port, self.config, self.timeout, self.name = port, config, timeout, name
        self.sent = self.received = 0
        self.word_bytes = proto.word_bytes(config)
        self.read_bytes = proto.read_bytes(config)

    @classmethod
    def open(cls, url, config, *, baud=DEFAULT_BAUD, timeout=DEFAULT_TIMEOUT):
        """Open ``url`` with pyserial (a device path or a ``socket://`` URL)."""
        import serial  # pyserial
        try:
            port = serial.serial_for_url(url, baudrate=baud, timeout=timeout)
        except (serial.SerialException, ValueError) as e:
            raise LinkError(f"cannot open {url}: {e}") from None
        return cls(port, config, timeout=timeout, name=url)

    def close(self):
        self.port.close()

    def _send(self, data):
        self.port.write(bytes(data))
        self.sent += len(data)

    def _recv(self, n, what):
        data = b""
        deadline = time.monotonic() + self.timeout
        while len(data) < n and time.monotonic() < deadline:
            data += self.port.read(n - len(data))
        self.received += len(data)
        if len(data) != n:
            raise LinkError(f"{self.name}: no answer to {what} within {self.timeout:.0f} s "
                            f"(got {len(data)} of {n} bytes: {data[:16].hex()}); is the board "
                            "programmed and the port right? (reset: button PWR)")
        return data

    def _expect(self, byte, what):
        got = self._recv(1, what)[0]
        if got != byte:
            more = self.port.read(1) if got == proto.ERROR else b""
            raise LinkError(f"{self.name}: {what} answered {got:#04x}"
                            + (f" (ERROR for command {more.hex()})" if more else "")
                            + f", expected {byte:#04x}")

    def info(self):
        """Check the board's ``INFO``: the protocol's magic and version and this
        configuration's id (:func:`fpga.protocol.config_id`)."""
        self._send([proto.CMD["INFO"]])
        want = proto.info_reply(self.config)
        got = self._recv(len(want), "INFO")
        if got[:len(proto.MAGIC)] != proto.MAGIC:
            raise LinkError(f"{self.name}: INFO answered {got.hex()}, not an SQ-DM board link")
        if got[len(proto.MAGIC)] != proto.VERSION:
            raise LinkError(f"{self.name}: the board speaks protocol version "
                            f"{got[len(proto.MAGIC)]}, this host {proto.VERSION}")
        if got != want:
            have = int.from_bytes(got[-4:], "little")
            raise LinkError(f"{self.name}: the bitstream was built for configuration id "
                            f"{have:#010x}, the host expects {proto.config_id(self.config):#010x} "
                            f"({self.config}); rebuild it (make bitstream) or pass the "
                            "board's --config / --param")
        return got

    def _header(self, command, kind, addr, count):
        return (bytes([proto.CMD[command], kind]) + addr.to_bytes(proto.ADDR_BYTES, "little")
                + count.to_bytes(proto.COUNT_BYTES, "little"))

    def write(self, memory, words):
        """Write ``words`` to ``memory`` (act, weight, param, res) from address 0."""
        nbytes, kind = self.word_bytes[memory], HOST_MEMS[memory].value
        for start in range(0, len(words), proto.MAX_COUNT):
            chunk = words[start:start + proto.MAX_COUNT]
            data = b"".join(int(w).to_bytes(nbytes, "little") for w in chunk)
            self._send(self._header("WRITE", kind, start, len(chunk)) + data)
            self._expect(proto.ACK, f"WRITE {memory}")

    def descriptor(self, desc_value, map_value):
        nd = proto.desc_bits(self.config) - self.config.groups_in
        value = desc_value | map_value << nd
        self._send(bytes([proto.CMD["DESC"]])
                   + value.to_bytes(proto.desc_bytes(self.config), "little"))
        self._expect(proto.ACK, "DESC")

    def start(self):
        """Run the layer; returns when the board reports ``done``."""
        self._send([proto.CMD["START"]])
        self._expect(proto.FINISHED, "START (the layer did not finish)")

    def read(self, space, addr, count):
        """``count`` items of ``space`` (:data:`fpga.protocol.SPACES`) from ``addr``."""
        nbytes, out = self.read_bytes[space], []
        for start in range(addr, addr + count, proto.MAX_COUNT):
            n = min(proto.MAX_COUNT, addr + count - start)
            self._send(self._header("READ", proto.SPACES.index(space), start, n))
            data = self._recv(n * nbytes, f"READ {space}")
            out += [int.from_bytes(data[i:i + nbytes], "little")
                    for i in range(0, len(data), nbytes)]
        return out

    def status(self):
        self._send([proto.CMD["STATUS"]])
        byte = self._recv(1, "STATUS")[0]
        return {"busy": bool(byte & proto.STATUS_BUSY), "done": bool(byte & proto.STATUS_DONE),
                "framing_error": bool(byte & proto.STATUS_FRAMING)}

    def execute(self, job):
        """Load, run and read back one job (:class:`traces.replay.ReplayJob`): the
        ``actual`` dict of :func:`traces.replay.compare`, and the link's wall times."""
        t0 = time.monotonic()
        for name in HOST_MEMS:
            if name in job.images:
                self.write(name, job.images[name])
        self.descriptor(job.desc_value, job.map_value)
        t1 = time.monotonic()
        self.start()
        t2 = time.monotonic()
        counters = dict(zip(COUNTERS, self.read("counter", 0, len(COUNTERS))))
        next_bits = self.read("next_map", 0, 1)[0]
        actual = {
            "out_words": self.read("out", 0, job.out_words),
            "zero_counts": self.read("zero_count", 0, job.descriptor.cout),
            "next_map": [(next_bits >> g) & 1 for g in range(self.config.groups_out)],
            "counters": counters, "unknown": [],
        }
        t3 = time.monotonic()
        return actual, {"load_s": t1 - t0, "compute_s": t2 - t1, "readback_s": t3 - t2}


class Progress:
    """A progress bar on a terminal (a line every 15 s otherwise) on ``stream``."""

    def __init__(self, total, stream=sys.stderr, width=30):
        self.total, self.stream, self.width = total, stream, width
        self.tty = hasattr(stream, "isatty") and stream.isatty()
        self.t0 = self.last = time.monotonic()

    def update(self, done, bad, cycles):
        now = time.monotonic()
        fill = self.width * done // max(1, self.total)
        text = (f"[{'#' * fill}{'.' * (self.width - fill)}] {done}/{self.total} executions, "
                f"{cycles:,} cycles, {bad} with mismatches, {now - self.t0:.0f} s")
        if self.tty:
            self.stream.write("\r" + text + ("\n" if done == self.total else ""))
            self.stream.flush()
        elif now - self.last >= 15 or done == self.total:
            self.stream.write(text + "\n")
            self.stream.flush()
            self.last = now


def replay_on_board(link, trace_dir, *, select="all", limit=None, out_dir=DEFAULT_OUT,
                    target="board", progress=True, log=print, checked=None):
    """Replay executions of ``trace_dir`` through ``link`` (a :class:`BoardLink`); write
    ``out_dir/results.json`` and return the results dict. Raises :class:`ReplayError` (bad
    trace, an execution that does not fit) or :class:`LinkError`. ``checked``: the
    ``(trace, indices)`` of :func:`traces.replay.check_trace` when the caller has them already."""
    wall0 = time.monotonic()
    config = link.config
    trace, indices = checked or check_trace(trace_dir, config, select)
    if limit:
        indices = indices[:limit]
    link.info()
    cycle_model = trace.manifest.get("cycle_model")
    log(f"replaying {len(indices)} of {len(trace)} execution(s) of {trace_dir} on {target} "
        f"({link.name})")
    bar = Progress(len(indices)) if progress else None
    records, timing_total = [], {"load_s": 0.0, "compute_s": 0.0, "readback_s": 0.0,
                                 "model_s": 0.0}
    for n, index in enumerate(indices, 1):
        ex = trace.load(index)
        job = prepare(ex, index, config=config)
        actual, timing = link.execute(job)
        t0 = time.monotonic()
        predicted, source = counter_expectations(job, cycle_model)
        mismatches = compare(job, actual, predicted, source, saturation=expected_saturation(ex))
        timing["model_s"] = time.monotonic() - t0
        timing["load_words"] = sum(len(job.images[m]) for m in HOST_MEMS if m in job.images)
        for k in timing_total:
            timing_total[k] += timing[k]
        records.append(record(str(trace_dir), job, actual, predicted, mismatches,
                              timing=timing, source=source))
        if bar:
            bar.update(n, sum(1 for r in records if r["mismatches"]),
                       sum(r["cycles_rtl"] for r in records))
    first = next((r["first_mismatch"] for r in records if r["first_mismatch"]), None)
    summary = {
        "trace": str(trace_dir), "target": target, "port": link.name,
        "config_id": f"{proto.config_id(config):#010x}", "params": config.to_dict(),
        "executions": len(records), "executions_expected": len(indices), "maps": ["trace"],
        "bit_exact": bool(records) and all(r["bit_exact"] for r in records),
        "cycle_exact": bool(records) and all(r["cycle_exact"] for r in records),
        "mismatching_executions": sum(1 for r in records if r["mismatches"]),
        "mismatches": sum(r["mismatches"] for r in records),
        "first_mismatch": first,
        "accelerator_cycles": sum(r["cycles_rtl"] for r in records),
        "bytes_sent": link.sent, "bytes_received": link.received,
        **{f"{k[:-2]}_seconds": v for k, v in timing_total.items()},
        "wall_seconds": time.monotonic() - wall0,
    }
    summary["passed"] = (summary["bit_exact"] and summary["cycle_exact"]
                         and len(records) == len(indices))
    results = {"summary": summary, "executions": records}
    write_results(Path(out_dir) / "results.json", results)
    return results


def summary_lines(results):
    """The printed table (``make sim``'s rows) and the summary."""
    s = results["summary"]
    lines = execution_rows(results["executions"])
    lines.append(
        f"{s['executions']}/{s['executions_expected']} execution(s) on {s['target']} "
        f"({s['port']}): bit-exact {s['bit_exact']}, cycle-exact {s['cycle_exact']}, "
        f"{s['mismatches']} mismatch(es); {s['accelerator_cycles']:,} accelerator cycles")
    lines.append(
        f"wall time: loads {s['load_seconds']:.1f} s, runs {s['compute_seconds']:.1f} s, "
        f"read-back {s['readback_seconds']:.1f} s, cycle model {s['model_seconds']:.1f} s, "
        f"total {s['wall_seconds']:.1f} s; {s['bytes_sent']:,} bytes sent, "
        f"{s['bytes_received']:,} received")
    lines.append("PASS" if s["passed"] else f"FAIL: first mismatch: {s['first_mismatch']}")
    return lines


def parser():
    p = argparse.ArgumentParser(prog="python -m fpga.host", description=__doc__.split("\n")[0])
    p.add_argument("trace", metavar="TRACE_DIR", help="trace folder (e.g. build/traces/default)")
    p.add_argument("--port", required=True,
                   help="serial port (/dev/ttyUSB0) or socket://HOST:PORT (make board-sim)")
    p.add_argument("--baud", type=int, default=DEFAULT_BAUD,
                   help=f"baud rate of the bitstream's UART (default {DEFAULT_BAUD})")
    p.add_argument("--config", choices=sorted(PRESETS), default=DEFAULT_CONFIG,
                   help="the bitstream's configuration (hw/config.py PRESETS; default board)")
    p.add_argument("--param", action="append", default=[], metavar="NAME=VALUE",
                   help="override a parameter of --config, as for the bitstream")
    p.add_argument("--select", default="all",
                   help="'all', 'kinds' (one execution per layer kind) or a comma list of "
                        "execution indices")
    p.add_argument("--limit", type=int, default=None, help="at most the first N selected")
    p.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                   help="seconds to wait for each answer of the board")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder of results.json")
    p.add_argument("--quiet", action="store_true", help="print the summary only")
    return p


def main(argv=None, *, target="board"):
    args = parser().parse_args(argv)
    try:
        config = preset(args.config, **parse_overrides(args.param))
        select = parse_select(args.select)
        if args.limit is not None and args.limit < 0:
            raise ValueError(f"--limit must be >= 0, got {args.limit}")
        if args.timeout <= 0:
            raise ValueError(f"--timeout must be > 0, got {args.timeout}")
        checked = check_trace(args.trace, config, select)  # before the board is needed
        link = BoardLink.open(args.port, config, baud=args.baud, timeout=args.timeout)
        try:
            results = replay_on_board(link, args.trace, select=select, limit=args.limit,
                                      out_dir=args.out, target=target, checked=checked)
        finally:
            link.close()
    except (ReplayError, LinkError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    lines = summary_lines(results)
    print("\n".join(lines[-3:] if args.quiet else lines))
    print(f"results: {results['summary']['results_file']}")
    return 0 if results["summary"]["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())

"""The board path without a board: the UART (amaranth.sim), the protocol, the host program
against the simulated board core (Verilator, UART model on the pins: bit- and cycle-exact, a
corrupted expectation named, the error paths), and one short run of the whole FPGA tool chain
(Yosys, nextpnr-ecp5, ecppack on the UART loopback) so a broken tool install fails CI."""

import json
import random
import socket
import threading

import pytest
from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator

from fpga import protocol as proto
from fpga.bitstream import build as build_bitstream
from fpga.board import ULX3S_PINS, core_verilog, divisor_for, ulx3s_lpf
from fpga.boardsim import DEFAULT_DIVISOR, BoardSim, build_board_sim, run as run_board_sim
from fpga.host import BoardLink, LinkError, main as host_main
from fpga.paths import Netlist, estimate
from fpga.uart import UARTRx, UARTTx
from hw.config import COUNTERS, PRESETS, preset
from traces.format import write_trace
from traces.synth import random_execution

HEADER = {"source": "fpga/test_board.py"}
BOARD = PRESETS["board"]


# --------------------------------------------------------------------------- UART

def _uart_case(divisor, data, bad_frame=False):
    """Bytes through UARTTx -> line -> UARTRx; optionally one frame with a 0 stop bit driven
    by hand first. Returns (received bytes, framing errors seen)."""
    m = Module()
    m.submodules.tx = tx = UARTTx(divisor=divisor)
    m.submodules.rx = rx = UARTRx(divisor=divisor)
    line, use_manual = Signal(init=1), Signal()
    m.d.comb += rx.rx.eq(line & (tx.tx | use_manual))
    got, errors = [], []

    async def bench(ctx):
        if bad_frame:
            ctx.set(use_manual, 1)
            for bit in [0] + [1, 0, 1, 0, 1, 0, 1, 0] + [0]:  # 0x55 with a 0 stop bit
                ctx.set(line, bit)
                await ctx.tick().repeat(divisor)
            ctx.set(line, 1)
            await ctx.tick().repeat(3 * divisor)
            ctx.set(use_manual, 0)
        for byte in data:
            ctx.set(tx.i.payload, byte)
            ctx.set(tx.i.valid, 1)
            await ctx.tick().until(tx.i.ready)
            ctx.set(tx.i.valid, 0)
        await ctx.tick().repeat(12 * divisor)

    async def sink(ctx):
        ctx.set(rx.o.ready, 1)
        async for _clk, _rst, valid, payload, ferr in ctx.tick().sample(
                rx.o.valid, rx.o.payload, rx.framing_error):
            if valid:
                got.append(payload)
            if ferr:
                errors.append(1)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.add_process(sink)
    sim.run()
    return got, len(errors)


@pytest.mark.parametrize("divisor", [4, 7])
def test_uart_round_trip(divisor):
    data = [0x00, 0xFF, 0x55, 0xAA] + [random.Random(divisor).randrange(256) for _ in range(12)]
    got, errors = _uart_case(divisor, data)
    assert got == data and errors == 0


def test_uart_drops_and_flags_a_bad_stop_bit():
    got, errors = _uart_case(4, [0x3C], bad_frame=True)
    assert got == [0x3C] and errors == 1


def test_uart_rejects_a_short_divisor():
    with pytest.raises(ValueError, match="divisor"):
        UARTRx(divisor=3)


# --------------------------------------------------------------------------- protocol

def test_protocol_fields_of_the_board_preset():
    assert proto.word_bytes(BOARD) == {"act": 33, "weight": 264, "param": 6, "res": 4}
    assert proto.read_bytes(BOARD) == {"out": 33, "zero_count": 2, "counter": 6, "next_map": 2}
    reply = proto.info_reply(BOARD)
    assert reply[:4] == b"SQDM" and reply[4] == proto.VERSION and len(reply) == 9
    ids = {proto.config_id(c) for c in PRESETS.values()}
    assert len(ids) == len(PRESETS)                       # every preset has its own id
    assert proto.config_id(BOARD) == proto.config_id(preset("board"))


def test_baud_divisor_rules():
    assert divisor_for(25, 1_000_000) == 25 and divisor_for(100, 1_000_000) == 100
    with pytest.raises(ValueError, match="off"):
        divisor_for(25, 3_000_000)        # 8.33 cycles per bit
    with pytest.raises(ValueError, match="too fast"):
        divisor_for(10, 5_000_000)


def test_lpf_places_every_pin():
    text = ulx3s_lpf()
    for name, ball in ULX3S_PINS.items():
        assert f'LOCATE COMP "{name}" SITE "{ball}";' in text
    assert 'FREQUENCY PORT "clk_25mhz" 25 MHZ;' in text
    # a 100 MHz target for a 15 MHz system clock: the oscillator constrained at 25 * 100 / 15
    assert 'FREQUENCY PORT "clk_25mhz" 166.667 MHZ;' in ulx3s_lpf(25 * 100 / 15)


def test_bitstream_rejects_a_bad_target(tmp_path):
    with pytest.raises(ValueError, match="target_mhz must be a positive frequency, got 0"):
        build_bitstream(design="loopback", out=tmp_path, target_mhz=0)
    with pytest.raises(ValueError, match=r"placer must be one of \('heap', 'static'\), got 'sa'"):
        build_bitstream(design="loopback", out=tmp_path, placer="sa")
    assert not any(tmp_path.iterdir())  # nothing ran


def test_board_core_wires_every_port_of_the_top():
    text = core_verilog(BOARD, divisor=4)
    assert "sqdm_top top (" in text
    for name in ("desc", "map", "start", "host_wdata", "host_rdata", "zc_count",
                 *(f"cnt_{n}" for n in COUNTERS)):
        assert f".{name}(" in text, name


# --------------------------------------------------------------------------- the simulated board

#: Layers of both precisions, a residual, every output format, strides and kernels, sized for
#: seconds of UART time at divisor 4.
CASES = [
    dict(height=3, width=3, cin=20, cout=12, kernel=3, stride=1, sparsity=0.6, mode="int4",
         residual=True, channel_map="random"),
    dict(height=2, width=2, cin=40, cout=9, kernel=1, stride=1, sparsity=0.4, mode="mxint8",
         out_format="int4", residual=True, channel_map="random", saturate=True),
    dict(height=4, width=3, cin=16, cout=5, kernel=3, stride=2, sparsity=0.5, mode="mxint8",
         out_format="mxint8", channel_map="detect"),
]


@pytest.fixture(scope="module")
def board_trace(tmp_path_factory):
    folder = tmp_path_factory.mktemp("board_trace")
    executions = [random_execution(**c, seed=8300 + i) for i, c in enumerate(CASES)]
    write_trace(folder, executions, header=HEADER)
    return folder, executions


def test_host_replays_through_the_simulated_board(board_trace, tmp_path):
    folder, executions = board_trace
    results = run_board_sim(folder, config=BOARD, out_dir=tmp_path, progress=False,
                            log=lambda *_: None)
    s = results["summary"]
    assert s["passed"] and s["bit_exact"] and s["cycle_exact"], s["first_mismatch"]
    assert s["executions"] == len(CASES) and s["framing_errors"] == 0
    assert s["target"] == "board-sim" and s["harness_stats"]["cycles"] > s["accelerator_cycles"]
    rec = results["executions"]
    assert [r["name"] for r in rec] == [e.name for e in executions]
    assert all(r["cycles_rtl"] == r["cycles_model"] for r in rec)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["summary"]["passed"] and len(saved["executions"]) == len(CASES)


def test_a_wrong_result_is_named(tmp_path, capsys):
    ex = random_execution(**CASES[0], seed=8400)
    codes = ex.arrays["out_codes"]
    codes[1, 2, 5] = (int(codes[1, 2, 5]) + 3) % 16
    want = int(codes[1, 2, 5])
    write_trace(tmp_path / "t", [ex], header=HEADER)
    binary, _, _ = build_board_sim(BOARD, log=lambda *_: None)
    with BoardSim(binary, DEFAULT_DIVISOR) as sim:
        code = host_main(["--port", sim.url, "--out", str(tmp_path / "out"), "--quiet",
                          str(tmp_path / "t")], target="board-sim")
    out = capsys.readouterr().out
    assert code == 1
    s = json.loads((tmp_path / "out" / "results.json").read_text())["summary"]
    assert not s["bit_exact"] and s["cycle_exact"] and not s["passed"]
    first = s["first_mismatch"]
    assert f"execution #0 {ex.name}" in first and "out_codes at pixel (y, x) (1, 2), channel 5" in first
    assert f"expected {want}, actual {(want - 3) % 16}" in first and "FAIL" in out


def test_a_bitstream_of_another_configuration_is_refused(board_trace, tmp_path, capsys):
    folder, _ = board_trace
    binary, _, _ = build_board_sim(BOARD, log=lambda *_: None)
    with BoardSim(binary, DEFAULT_DIVISOR) as sim:
        code = host_main(["--port", sim.url, "--param", "res_depth=4096", "--out",
                          str(tmp_path), str(folder)])
    err = capsys.readouterr().err
    assert code == 2 and "built for configuration id" in err and "rebuild it" in err


def test_a_silent_port_times_out_with_a_clear_error(board_trace, tmp_path, capsys):
    folder, _ = board_trace
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    conns = []
    thread = threading.Thread(target=lambda: conns.append(server.accept()), daemon=True)
    thread.start()
    code = host_main(["--port", f"socket://127.0.0.1:{port}", "--timeout", "0.5", "--out",
                      str(tmp_path), str(folder)])
    err = capsys.readouterr().err
    thread.join()
    for conn, _ in conns:
        conn.close()
    server.close()
    assert code == 2 and "no answer to INFO within" in err


def test_bad_port_and_missing_trace_are_clear_errors(board_trace, tmp_path, capsys):
    folder, _ = board_trace
    assert host_main(["--port", str(tmp_path / "no-such-tty"), str(folder)]) == 2
    assert "cannot open" in capsys.readouterr().err
    # the trace is checked before the port is opened: no board needed to find a bad trace
    assert host_main(["--port", str(tmp_path / "no-such-tty"), str(tmp_path / "missing")]) == 2
    assert "cannot replay trace" in capsys.readouterr().err
    assert host_main(["--port", "x", "--select", "7", str(folder)]) == 2
    assert "no execution #7" in capsys.readouterr().err


def test_board_link_rejects_a_foreign_device():
    class Echo:  # a port that answers something else entirely
        def write(self, data):
            self.last = data

        def read(self, n):
            return b"\x00" * n

        def close(self):
            pass

    with pytest.raises(LinkError, match="not an SQ-DM board link"):
        BoardLink(Echo(), BOARD, timeout=0.1).info()


# --------------------------------------------------------------------------- tool chain

def test_loopback_bitstream_builds(tmp_path):
    """Yosys, nextpnr-ecp5 and ecppack from the pinned yowasp packages, on the UART echo,
    placed by the static placer and routed for a 400 MHz target that it misses (the
    oscillator's constraint scaled): the bitstream is still written, since it runs at the
    25 MHz clock."""
    report = build_bitstream(design="loopback", out=tmp_path, target_mhz=400, placer="static",
                             nextpnr_args=["--detailed-timing-report"])
    assert report["nextpnr_cmd"].endswith(
        "--placer static --router router1 --detailed-timing-report")
    lpf = (tmp_path / "loopback" / "ulx3s.lpf").read_text()
    assert 'FREQUENCY PORT "clk_25mhz" 400 MHZ;' in lpf
    assert report["target_mhz"] == 400 and report["clock_mhz"] == 25
    assert report["fmax_mhz"] < 400 and not report["target_pass"]
    assert report["status"] == "bitstream" and report["timing_pass"]
    assert report["bitstream_bytes"] > 100_000
    assert report["utilisation"]["TRELLIS_IO"]["used"] == len(ULX3S_PINS)
    # two global buffers: the clock's and the reset's (global_reset), routed on globals
    assert report["utilisation"]["DCCA"]["used"] == 2
    log = (tmp_path / "loopback" / "nextpnr.stdout").read_text()
    assert "routing clock net rst using global" in log
    assert (tmp_path / "loopback" / "sqdm_loopback.bit").exists()
    # fpga.paths on the real netlist: the UART's registers, its estimate near nextpnr's
    est = report["path_estimate"]
    assert est["endpoints"] > 20 and any("rx" in g["name"] for g in est["groups"])
    routed_ns = 1000.0 / report["fmax_mhz"]
    assert 0.5 * routed_ns < est["worst_ns"] < 2.0 * routed_ns
    ends, _ = estimate(Netlist(tmp_path / "loopback" / "loopback.json"))
    assert ends[0].arrival_ns == est["worst_ns"]
    # fpga.paths --routed on nextpnr's detailed report: its worst endpoint is the critical path
    routed = report["routed_paths"]
    assert abs(routed["worst_ns"] - routed_ns) < 0.01 and routed["endpoints"] > 20
    assert routed["failing"] > 0 and routed["target_mhz"] == 400

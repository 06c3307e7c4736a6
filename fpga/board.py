"""The board: the accelerator top behind a UART host link, and its ULX3S pin-level top.

* :class:`BoardCore` (Verilog module ``sqdm_board_core``): UART receiver and transmitter
  (:mod:`fpga.uart`), the link (:class:`fpga.link.HostLink`) and an instance of ``sqdm_top``
  (the accelerator's Verilog from :func:`hw.rtlcache.top_verilog`, never re-elaborated here).
  Pins: ``rx``, ``tx``, ``busy``, ``done``, ``framing_error``; ``clk`` / ``rst``. The board
  simulation (:mod:`fpga.boardsim`) runs exactly this module with a UART model on ``rx`` /
  ``tx``.
* :class:`Ulx3sTop` (``sqdm_ulx3s``): the core on the ULX3S pins (:data:`ULX3S_PINS`): the
  25 MHz oscillator, through an ECP5 PLL (module ``sqdm_pll``, written by ``ecppll``) when the
  system clock is not 25 MHz; reset until the PLL locks and while button PWR is pressed
  (:func:`global_reset`); the FTDI UART; LEDs 0..3 = busy, done, a framing error seen,
  heartbeat.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.config import AcceleratorConfig
from hw.rtlcache import TOPLEVEL
from hw.verilog import emit_verilog

from .link import HostLink
from .uart import UARTRx, UARTTx
from .wrapper import top_ports

__all__ = ["CORE_NAME", "BOARD_NAME", "PLL_NAME", "OSC_MHZ", "ULX3S_PINS", "BoardCore",
           "Ulx3sTop", "global_reset", "core_verilog", "board_verilog", "ulx3s_lpf"]

CORE_NAME = "sqdm_board_core"
BOARD_NAME = "sqdm_ulx3s"
PLL_NAME = "sqdm_pll"
#: The ULX3S's oscillator.
OSC_MHZ = 25
#: ULX3S (v3.x) balls of the pins the board top uses (the board's published constraint file):
#: the 25 MHz clock, the FTDI FT231X UART (``ftdi_txd`` is the FTDI's output, the FPGA's
#: input), button PWR (active low) and LEDs 0..7.
ULX3S_PINS = {
    "clk_25mhz": "G2",
    "ftdi_txd": "M1",
    "ftdi_rxd": "L4",
    "btn_pwr_n": "D6",
    **{f"led[{i}]": ball for i, ball in enumerate(("B2", "C2", "C1", "D2", "D1", "E2", "E1",
                                                    "H3"))},
}


def global_reset(m, arst):
    """Drive the ``sync`` domain's (asynchronous) reset from ``arst`` (active high, any
    clock): asserted at once, released on the second clock edge after ``arst`` falls (a
    reset synchronizer), through an ECP5 ``DCCA`` clock buffer onto a global network, which
    reaches every slice's LSR. In the fabric, the reset of the accelerator's ~20 k
    flip-flops was one net of ~20 k routing arcs (about a tenth of the design's), spread
    over the whole die (docs/fpga.md 0.6); nextpnr promotes only clocks to globals."""
    # (the domain's name sorts after "clk", so that nextpnr names the clock net "clk")
    m.domains.reset_sync = ClockDomain("reset_sync", async_reset=True, local=True)
    m.d.comb += [ClockSignal("reset_sync").eq(ClockSignal("sync")),
                 ResetSignal("reset_sync").eq(arst)]
    held = Signal(2, init=0b11)  # ones while arst, then shifts zeros in
    m.d.reset_sync += held.eq(held >> 1)
    m.submodules.reset_buffer = Instance("DCCA", i_CLKI=held[0], i_CE=Const(1, 1),
                                         o_CLKO=ResetSignal("sync"))


class BoardCore(wiring.Component):
    """The accelerator for ``config`` behind a UART of ``divisor`` clock cycles per bit."""

    def __init__(self, config: AcceleratorConfig, *, divisor):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an hw.config.AcceleratorConfig, got {config!r}")
        self.config = config
        self.divisor = divisor
        self.urx, self.utx = UARTRx(divisor=divisor), UARTTx(divisor=divisor)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1), "busy": Out(1),
                          "done": Out(1), "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.urx = urx = self.urx
        m.submodules.utx = utx = self.utx
        m.submodules.link = link = HostLink(self.config)
        m.d.comb += [urx.rx.eq(self.rx), self.tx.eq(utx.tx),
                     link.framing_error.eq(urx.framing_error)]
        wiring.connect(m, urx.o, link.rx)
        wiring.connect(m, link.tx, utx.i)
        ports = {"i_clk": ClockSignal(), "i_rst": ResetSignal()}
        for name, direction, _width in top_ports(self.config):
            ports[f"{direction}_{name}"] = getattr(link, name)
        m.submodules.top = Instance(TOPLEVEL, **ports)
        m.d.comb += [self.busy.eq(link.busy), self.done.eq(link.done)]
        with m.If(urx.framing_error):
            m.d.sync += self.framing_error.eq(1)
        return m


class Ulx3sTop(wiring.Component):
    """:class:`BoardCore` on the ULX3S's pins, at ``clock_mhz`` (a PLL from the 25 MHz
    oscillator unless it is 25) and ``baud``."""

    def __init__(self, config: AcceleratorConfig, *, clock_mhz, baud):
        self.config, self.clock_mhz, self.baud = config, clock_mhz, baud
        self.divisor = divisor_for(clock_mhz, baud)
        super().__init__({"clk_25mhz": In(1), "ftdi_txd": In(1), "ftdi_rxd": Out(1),
                          "btn_pwr_n": In(1), "led": Out(8)})

    def elaborate(self, platform):
        m = Module()
        m.domains.sync = ClockDomain("sync", async_reset=True)
        locked = Signal()
        if self.clock_mhz == OSC_MHZ:
            m.d.comb += [ClockSignal("sync").eq(self.clk_25mhz), locked.eq(1)]
        else:
            m.submodules.pll = Instance(PLL_NAME, i_clkin=self.clk_25mhz,
                                        o_clkout0=ClockSignal("sync"), o_locked=locked)
        global_reset(m, ~locked | ~self.btn_pwr_n)
        m.submodules.core = core = BoardCore(self.config, divisor=self.divisor)
        half_second = max(2, int(self.clock_mhz * 1e6) // 2)
        beat = Signal(range(half_second))
        led3 = Signal()
        m.d.sync += beat.eq(beat + 1)
        with m.If(beat == half_second - 1):
            m.d.sync += [beat.eq(0), led3.eq(~led3)]
        m.d.comb += [core.rx.eq(self.ftdi_txd), self.ftdi_rxd.eq(core.tx),
                     self.led.eq(core.busy | core.done << 1 | core.framing_error << 2
                                 | led3 << 3)]
        return m


def divisor_for(clock_mhz, baud):
    """Clock cycles per UART bit at ``clock_mhz`` and ``baud``; refuses a rate off by more
    than 2 % (the receiver samples in the middle of a bit: 10 bits may drift 20 % of one)."""
    divisor = round(clock_mhz * 1e6 / baud)
    if divisor < 4:
        raise ValueError(f"baud {baud} is too fast for a {clock_mhz} MHz clock (at least 4 "
                         "clock cycles per bit)")
    error = abs(clock_mhz * 1e6 / divisor - baud) / baud
    if error > 0.02:
        raise ValueError(f"baud {baud} at {clock_mhz} MHz: the nearest rate "
                         f"{clock_mhz * 1e6 / divisor:.0f} is {100 * error:.1f} % off (2 % at "
                         "most); pick a baud that divides the clock")
    return divisor


def core_verilog(config, *, divisor, path=None):
    """Emit ``sqdm_board_core`` (the top is an instance: add the top's Verilog file)."""
    return emit_verilog(BoardCore(config, divisor=divisor), CORE_NAME, path)


def board_verilog(config, *, clock_mhz, baud, path=None):
    """Emit ``sqdm_ulx3s`` with its core (instances: ``sqdm_top``, and ``sqdm_pll`` unless
    the clock is 25 MHz)."""
    return emit_verilog(Ulx3sTop(config, clock_mhz=clock_mhz, baud=baud), BOARD_NAME, path)


def ulx3s_lpf(osc_constraint_mhz=OSC_MHZ):
    """The LPF constraint file of :class:`Ulx3sTop`: every pin's ball and I/O standard, and
    the oscillator's frequency constraint (nextpnr derives the PLL output's from it; a value
    above :data:`OSC_MHZ` over-constrains place and route, ``fpga.bitstream --target-mhz``)."""
    lines = [f'LOCATE COMP "{name}" SITE "{ball}";\nIOBUF PORT "{name}" IO_TYPE=LVCMOS33'
             + (" PULLMODE=UP" if name.startswith("btn") else "")
             + (" DRIVE=4" if name.startswith(("led", "ftdi_rxd")) else "") + ";"
             for name, ball in ULX3S_PINS.items()]
    lines.append(f'FREQUENCY PORT "clk_25mhz" {osc_constraint_mhz:.6g} MHZ;')
    return "\n".join(lines) + "\n"

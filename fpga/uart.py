"""8N1 UART receiver and transmitter with byte streams: the board's host link
(:mod:`fpga.link`) on the FTDI pins, and the line the board simulation's UART model drives.

A bit lasts ``divisor`` clock cycles (``divisor = f_clk / baud``, at least 4). The receiver
synchronises the pin through two flip-flops, starts on a falling edge, checks the start bit
half a bit later and samples every data bit in its middle; a frame whose stop bit is 0 is
dropped and flagged (``framing_error`` pulses). It holds one byte: the consumer must take it
within a frame time (the link always does: a command's work is a few cycles per byte).
"""

from amaranth.hdl import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.common import check_int, validating

__all__ = ["MIN_DIVISOR", "UARTRx", "UARTTx"]

#: Smallest clock cycles per bit (the receiver samples at half a bit and needs the synchroniser's
#: two cycles of delay to stay inside the bit).
MIN_DIVISOR = 4


class UARTRx(wiring.Component):
    """Members: ``rx`` In(1) the line (idle high); ``o`` Out(stream.Signature(8)) received
    bytes; ``framing_error`` Out(1) pulses for a frame with a bad stop bit."""

    def __init__(self, *, divisor):
        with validating(self):
            self.divisor = check_int("divisor", divisor, MIN_DIVISOR, 2 ** 24)
        super().__init__({"rx": In(1, init=1), "o": Out(stream.Signature(8)),
                          "framing_error": Out(1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        sync = Signal(2, init=0b11)
        m.d.sync += sync.eq(Cat(self.rx, sync[0]))
        line = sync[1]
        timer = Signal(range(d + d // 2 + 1))
        bit = Signal(range(10))
        shift = Signal(8)
        m.d.comb += self.o.payload.eq(shift)
        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(timer != 0):
            m.d.sync += timer.eq(timer - 1)
        with m.FSM():
            with m.State("IDLE"):
                with m.If(~line):
                    m.d.sync += timer.eq(d // 2 - 1)
                    m.next = "START"
            with m.State("START"):
                with m.If(timer == 0):
                    with m.If(line):  # a glitch, not a start bit
                        m.next = "IDLE"
                    with m.Else():
                        m.d.sync += [timer.eq(d - 1), bit.eq(0)]
                        m.next = "DATA"
            with m.State("DATA"):
                with m.If(timer == 0):
                    m.d.sync += [shift.eq(Cat(shift[1:], line)), timer.eq(d - 1),
                                 bit.eq(bit + 1)]
                    with m.If(bit == 7):
                        m.next = "STOP"
            with m.State("STOP"):
                with m.If(timer == 0):
                    with m.If(line):
                        m.d.sync += self.o.valid.eq(1)
                    with m.Else():
                        m.d.comb += self.framing_error.eq(1)
                    m.next = "IDLE"
        return m


class UARTTx(wiring.Component):
    """Members: ``i`` In(stream.Signature(8)) bytes to send; ``tx`` Out(1) the line (idle
    high). One byte per frame of 10 bits, back to back while ``i`` is valid."""

    def __init__(self, *, divisor):
        with validating(self):
            self.divisor = check_int("divisor", divisor, MIN_DIVISOR, 2 ** 24)
        super().__init__({"i": In(stream.Signature(8)), "tx": Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        d = self.divisor
        frame = Signal(10, init=0x3FF)  # LSB first: start bit, 8 data bits, stop bit
        left = Signal(range(11))
        timer = Signal(range(d))
        m.d.comb += [self.tx.eq(frame[0]), self.i.ready.eq(left == 0)]
        with m.If(left == 0):
            with m.If(self.i.valid):
                m.d.sync += [frame.eq(Cat(Const(0, 1), self.i.payload, Const(1, 1))),
                             left.eq(10), timer.eq(d - 1)]
        with m.Elif(timer == 0):
            m.d.sync += [frame.eq(Cat(frame[1:], Const(1, 1))), left.eq(left - 1),
                         timer.eq(d - 1)]
        with m.Else():
            m.d.sync += timer.eq(timer - 1)
        return m

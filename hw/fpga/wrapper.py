"""Pin-limited synthesis wrapper around the accelerator top (``sqdm_top``).

The top has far more port bits than any ECP5 package has pins (``host_wdata`` alone is
``tile x 264`` bits wide), so for synthesis / place and route the top is
wrapped and its ports are kept internal:

* every input of the top except ``start`` and ``host_we`` (``desc``, ``map``, ``zc_chan``,
  ``host_sel``, ``host_addr``, ``host_wdata``) is driven by one serial shift register,
  followed by the output-select field ``osel``. While ``shift`` is high the register shifts one
  bit per cycle, ``si`` entering at the top (MSB) end; after ``chain_bits`` shifts the first bit
  sent sits at bit 0. No shadow register: the top sees the chain as it shifts, which is fine for
  a synthesis harness (the host holds ``start``/``host_we`` low while shifting);
* ``start`` and ``host_we`` are real pins (they are one-cycle pulses);
* every output of the top except ``busy``/``done`` (``host_rdata``, ``next_map``, ``zc_count``,
  the counters) is concatenated into one bus, and a registered mux drives byte ``osel`` of it
  onto the 8 ``dout`` pins; ``busy`` and ``done`` are real pins.

So all logic of the top stays observable and controllable (nothing is optimised away) with
``clk``, ``rst``, ``si``, ``shift``, ``start``, ``host_we``, ``dout[8]``, ``busy``, ``done``:
16 pins. The cost of the wrapper itself is one flip-flop per input bit plus the output mux
(``python -m hw.fpga.synth`` measures it separately, with the top as a black box).

The top is instantiated as a Verilog ``Instance`` of the module emitted by
:func:`hw.fpga.rtl.top_verilog` (cached), so emitting the wrapper never re-elaborates the top.
"""

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, ResetSignal, Shape, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ..verilog import emit_verilog
from .rtl import TOPLEVEL

__all__ = ["WRAPPER_NAME", "PIN_INPUTS", "PIN_OUTPUTS", "top_ports", "SynthWrapper",
           "wrapper_verilog"]

#: Verilog module name of the wrapper (the ``synth_ecp5 -top``).
WRAPPER_NAME = "sqdm_synth_top"
#: Inputs of the top that become real pins (pulses), not shift-register bits.
PIN_INPUTS = ("start", "host_we")
#: Outputs of the top that become real pins, not bytes of the output mux.
PIN_OUTPUTS = ("busy", "done")
#: Width of the output window (``dout`` pins).
DOUT_BITS = 8


def top_ports(params):
    """``[(name, "i"|"o", width), ...]`` of the top for ``params``, in signature order.

    Builds :class:`hw.top.Accelerator` (cheap: no elaboration) only to read its signature."""
    from ..top import Accelerator
    top = Accelerator(**params)
    top._MustUse__silence = True  # never elaborated here: only the signature is read
    out = []
    for name, member in top.signature.members.items():
        if not member.is_port:
            raise TypeError(f"top member {name!r} is not a port")
        direction = "i" if member.flow == In else "o"
        out.append((name, direction, Shape.cast(member.shape).width))
    return out


class SynthWrapper(wiring.Component):
    """See the module docstring. ``ports`` is :func:`top_ports`' list."""

    def __init__(self, ports, *, toplevel=TOPLEVEL):
        self.top_ports = list(ports)
        self.toplevel = toplevel
        names = {name for name, _, _ in self.top_ports}
        missing = [n for n in PIN_INPUTS + PIN_OUTPUTS if n not in names]
        if missing:
            self._MustUse__silence = True  # never elaborated
            raise ValueError(f"top has no port(s) {missing}")
        self.in_fields = [(n, w) for n, d, w in self.top_ports if d == "i" and n not in PIN_INPUTS]
        self.out_fields = [(n, w) for n, d, w in self.top_ports
                           if d == "o" and n not in PIN_OUTPUTS]
        self.out_bits = sum(w for _, w in self.out_fields)
        self.out_bytes = -(-self.out_bits // DOUT_BITS)
        self.osel_bits = max(1, (self.out_bytes - 1).bit_length())
        self.in_bits = sum(w for _, w in self.in_fields)
        #: Length of the serial chain: every shifted input bit, then ``osel``.
        self.chain_bits = self.in_bits + self.osel_bits
        super().__init__({
            "si": In(1), "shift": In(1), "start": In(1), "host_we": In(1),
            "dout": Out(DOUT_BITS), "busy": Out(1), "done": Out(1),
        })

    def field_offsets(self):
        """``{name: (offset, width)}`` of each field in the chain (LSB first), incl. ``osel``."""
        out, off = {}, 0
        for name, width in self.in_fields + [("osel", self.osel_bits)]:
            out[name] = (off, width)
            off += width
        return out

    def elaborate(self, platform):
        m = Module()
        chain = Signal(self.chain_bits, reset_less=True)
        with m.If(self.shift):
            m.d.sync += chain.eq(Cat(chain[1:], self.si))

        kwargs = {"i_clk": ClockSignal(), "i_rst": ResetSignal(),
                  "i_start": self.start, "i_host_we": self.host_we,
                  "o_busy": self.busy, "o_done": self.done}
        offsets = self.field_offsets()
        for name, width in self.in_fields:
            off, _ = offsets[name]
            kwargs[f"i_{name}"] = chain[off:off + width]
        outs = []
        for name, width in self.out_fields:
            sig = Signal(width, name=f"top_{name}")
            kwargs[f"o_{name}"] = sig
            outs.append(sig)
        m.submodules.top = Instance(self.toplevel, **kwargs)

        pad = self.out_bytes * DOUT_BITS - self.out_bits
        bus = Cat(*outs, Const(0, pad)) if pad else Cat(*outs)
        off, width = offsets["osel"]
        osel = chain[off:off + width]
        m.d.sync += self.dout.eq(bus.word_select(osel, DOUT_BITS))
        return m


def wrapper_verilog(params, path=None):
    """Emit the wrapper for ``params`` (through :func:`hw.verilog.emit_verilog`); returns
    ``(text, wrapper)``."""
    wrapper = SynthWrapper(top_ports(params))
    return emit_verilog(wrapper, WRAPPER_NAME, path), wrapper

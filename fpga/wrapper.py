"""Pin-limited synthesis wrapper around the accelerator top (``sqdm_top``) or one of its blocks.

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
(``python -m fpga.synth`` measures it separately, with the top as a black box).

The same wrapper takes any :class:`amaranth.lib.wiring.Component`'s ports
(:func:`component_ports`: the signature flattened as the Verilog back end does, so a stream
``i`` is the ports ``i__payload``, ``i__valid`` and ``i__ready``): of :data:`PIN_INPUTS` /
:data:`PIN_OUTPUTS` only the names the block has become pins, every other input bit comes from
the chain and every other output bit goes through the registered ``dout`` mux, so the block's
inputs are driven by flip-flops and its outputs land in flip-flops (register-to-register
timing, as inside the top). For a block the outputs are first captured in one flip-flop per bit
(``out_regs``, :func:`wrapper_verilog`'s default for blocks), so a path through a block's
combinational outputs ends right there and not after the wrapper's wide ``dout`` mux (the micro
PPU's worst path did: 11 of its 66 ns were the mux). The top keeps its wrapper as before
(no capture register: the 745-flip-flop figures below stay valid).

The top (or block) is instantiated as a Verilog ``Instance`` of the module emitted by
:func:`hw.rtlcache.block_verilog` (cached), so emitting the wrapper never re-elaborates it.
"""

import re

from amaranth.hdl import (Cat, ClockSignal, Const, Instance, Module, ResetSignal, Signal, Value,
                          ValueCastable)
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hw.rtlcache import TOPLEVEL, block_component, block_module
from hw.verilog import emit_verilog

__all__ = ["WRAPPER_NAME", "PIN_INPUTS", "PIN_OUTPUTS", "component_ports", "top_ports",
           "block_ports", "verilog_ports", "SynthWrapper", "wrapper_verilog"]

#: Verilog module name of the wrapper (the ``synth_ecp5 -top``).
WRAPPER_NAME = "sqdm_synth_top"
#: Inputs that become real pins (pulses), not shift-register bits, when the block has them.
PIN_INPUTS = ("start", "host_we")
#: Outputs that become real pins, not bytes of the output mux, when the block has them.
PIN_OUTPUTS = ("busy", "done")
#: Width of the output window (``dout`` pins).
DOUT_BITS = 8


def component_ports(component):
    """``[(name, "i"|"o", width), ...]`` of a :class:`wiring.Component`'s Verilog ports, in
    signature order: the signature flattened and named as :func:`amaranth.back.verilog.convert`
    names them (path joined with ``__``: ``i__payload``, ``o__ready``; ``clk`` / ``rst`` are
    not members)."""
    out = []
    for path, member, value in component.signature.flatten(component):
        if isinstance(value, ValueCastable):
            value = value.as_value()
        direction = "i" if member.flow == In else "o"
        out.append(("__".join(map(str, path)), direction, len(Value.cast(value))))
    return out


def top_ports(params):
    """:func:`component_ports` of the top for ``params`` (the top is built, never elaborated:
    only its signature is read)."""
    return block_ports("top", params)


def block_ports(block, params):
    """:func:`component_ports` of ``block`` (:data:`hw.rtlcache.BLOCKS`) for ``params``."""
    comp = block_component(block, params)
    comp._MustUse__silence = True  # never elaborated here: only the signature is read
    return component_ports(comp)


def verilog_ports(text, module):
    """``{name: "i"|"o"}`` of the ports of ``module`` in Verilog ``text`` (as Yosys writes it:
    ``module name(a, b);`` then one ``input`` / ``output`` declaration per port)."""
    m = re.search(rf"^module {re.escape(module)}\((.*?)\);(.*?)^endmodule", text, re.S | re.M)
    if not m:
        raise ValueError(f"no module {module!r} in the Verilog")
    names = [n.strip() for n in m.group(1).split(",") if n.strip()]
    dirs = dict((d.group(2), d.group(1)[0]) for d in re.finditer(
        r"^\s*(input|output)\s+(?:wire\s+|reg\s+|signed\s+|\[[^\]]*\]\s*)*(\w+)\s*;",
        m.group(2), re.M))
    return {n: dirs.get(n) for n in names}


class SynthWrapper(wiring.Component):
    """See the module docstring. ``ports`` is :func:`component_ports`' list of the instantiated
    module ``toplevel``; of ``pin_inputs`` / ``pin_outputs`` the names in ``ports`` become
    pins. ``clock_ports``: which of ``clk`` / ``rst`` the module has (both when it uses the
    ``sync`` domain), connected to the wrapper's own. ``out_regs``: capture every mux output
    bit in a flip-flop first (the mux then selects among those flip-flops)."""

    def __init__(self, ports, *, toplevel=TOPLEVEL, pin_inputs=PIN_INPUTS,
                 pin_outputs=PIN_OUTPUTS, clock_ports=("clk", "rst"), out_regs=False):
        self.top_ports = list(ports)
        self.toplevel = toplevel
        self.clock_ports = tuple(clock_ports)
        self.out_regs = bool(out_regs)
        dirs = {name: d for name, d, _ in self.top_ports}
        bad = [(n, d) for n, d, _ in self.top_ports if d not in ("i", "o")]
        clash = sorted(set(dirs) & {"clk", "rst"})
        if bad or clash or len(dirs) != len(self.top_ports):
            self._MustUse__silence = True  # never elaborated
            raise ValueError(f"bad port list for {toplevel}: directions {bad}, clock/reset "
                             f"ports {clash}, {len(self.top_ports) - len(dirs)} duplicates")
        self.pin_inputs = tuple(n for n in pin_inputs if dirs.get(n) == "i")
        self.pin_outputs = tuple(n for n in pin_outputs if dirs.get(n) == "o")
        widths = {n: w for n, _, w in self.top_ports}
        wide = [n for n in self.pin_inputs + self.pin_outputs if widths[n] != 1]
        if wide:
            self._MustUse__silence = True
            raise ValueError(f"pin port(s) {wide} of {toplevel} are not 1 bit wide")
        self.in_fields = [(n, w) for n, d, w in self.top_ports
                          if d == "i" and n not in self.pin_inputs]
        self.out_fields = [(n, w) for n, d, w in self.top_ports
                           if d == "o" and n not in self.pin_outputs]
        self.out_bits = sum(w for _, w in self.out_fields)
        self.out_bytes = max(1, -(-self.out_bits // DOUT_BITS))
        self.osel_bits = max(1, (self.out_bytes - 1).bit_length())
        self.in_bits = sum(w for _, w in self.in_fields)
        #: Length of the serial chain: every shifted input bit, then ``osel``.
        self.chain_bits = self.in_bits + self.osel_bits
        members = {"si": In(1), "shift": In(1)}
        members.update((n, In(1)) for n in self.pin_inputs)
        members["dout"] = Out(DOUT_BITS)
        members.update((n, Out(1)) for n in self.pin_outputs)
        super().__init__(members)

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

        kwargs = {}
        if "clk" in self.clock_ports:
            kwargs["i_clk"] = ClockSignal()
        if "rst" in self.clock_ports:
            kwargs["i_rst"] = ResetSignal()
        kwargs.update((f"i_{n}", getattr(self, n)) for n in self.pin_inputs)
        kwargs.update((f"o_{n}", getattr(self, n)) for n in self.pin_outputs)
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

        if self.out_regs and outs:
            captured = Signal(self.out_bits, name="out_capture", reset_less=True)
            m.d.sync += captured.eq(Cat(*outs))
            outs = [captured]
        pad = self.out_bytes * DOUT_BITS - self.out_bits
        bus = Cat(*outs, Const(0, pad)) if pad else Cat(*outs)
        off, width = offsets["osel"]
        osel = chain[off:off + width]
        m.d.sync += self.dout.eq(bus.word_select(osel, DOUT_BITS))
        return m


def wrapper_verilog(params, path=None, *, block="top", block_text=None, out_regs=None):
    """Emit the wrapper of ``block`` (default the top) for ``params`` (through
    :func:`hw.verilog.emit_verilog`); returns ``(text, wrapper)``. ``out_regs`` (default: for
    a block, not for the top) see :class:`SynthWrapper`.

    ``block_text``: the block's emitted Verilog, if at hand. Its port list is then checked
    against the signature's (:class:`ValueError` on a mismatch) and ``clk`` / ``rst`` are
    connected only if the module has them."""
    module = block_module(block)
    ports = block_ports(block, params)
    clock_ports = ("clk", "rst")
    if block_text is not None:
        have = verilog_ports(block_text, module)
        clock_ports = tuple(n for n in ("clk", "rst") if n in have)
        want = {n: d for n, d, _ in ports}
        want.update((n, "i") for n in clock_ports)
        if have != want:
            raise ValueError(f"{module}'s Verilog ports {have} differ from its signature's "
                             f"{want}")
    if out_regs is None:
        out_regs = block != "top"
    wrapper = SynthWrapper(ports, toplevel=module, clock_ports=clock_ports, out_regs=out_regs)
    return emit_verilog(wrapper, WRAPPER_NAME, path), wrapper

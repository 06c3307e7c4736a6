"""The board's host link: the commands of :mod:`fpga.protocol`, executed on the accelerator
top's ports (``desc``, ``map``, ``start``, the host port, the read-out ports and the counters).

It sits between a UART's byte streams and an instance of ``sqdm_top`` (:class:`fpga.board.
BoardCore` wires the three together). One command at a time:

* ``WRITE``: every byte of a word goes to its byte slot of a staging register: the received
  byte and a one-hot byte position are registered as it arrives and stored in the next cycle,
  so each slot's enable is a flip-flop and an AND (the position's decode, spread over the
  register's 2 kbit, was the board's critical path). Once the word's last byte has reached
  its slot (the ``STORE`` cycle) the register is written through the host port (``host_we``
  for one cycle at the command's address plus the word's number).
* ``DESC``: the bytes fill the staging register, whose low bits then load the ``desc`` and
  ``map`` registers that drive the top.
* ``START``: ``start`` for one cycle, then ``FINISHED`` once ``done`` rises again.
* ``READ``: per item, the address goes to ``host_addr`` and, through a register, to
  ``zc_chan``; the memory word, the selected counter and ``zc_count`` are registered in the
  next cycle and the item is captured into a shift register the cycle after, then sent byte
  by byte. (Each multiplexer between the address and the shift register has a register of
  its own: the read-out was one of the board's longest paths.)

The accelerator's cycle counters run from ``start`` to ``done`` inside the top, so the link's
own timing (and the serial line's) never changes a counted cycle.
"""

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hw.config import COUNTERS, MEMORIES, AcceleratorConfig
from hw.descriptor import descriptor_layout
from hw.rtlcache import block_component

from . import protocol as proto

__all__ = ["HostLink"]


class HostLink(wiring.Component):
    """Members: ``rx`` In(stream.Signature(8)), ``tx`` Out(stream.Signature(8)) -- the UART's
    byte streams; ``framing_error`` In(1) -- the receiver's pulse (reported by ``STATUS``);
    and, towards the top, :class:`hw.top.Accelerator`'s signature flipped (``desc``, ``map``,
    ``start``, ``zc_chan``, the host port are outputs; ``busy``, ``done``, ``next_map``,
    ``zc_count``, ``host_rdata``, ``cnt_<name>`` inputs), so the two connect port by port."""

    def __init__(self, config: AcceleratorConfig):
        if not isinstance(config, AcceleratorConfig):
            raise TypeError(f"config must be an hw.config.AcceleratorConfig, got {config!r}")
        self.config = config
        top = block_component("top", config)  # only its signature is read
        top._MustUse__silence = True
        members = {"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
                   "framing_error": In(1)}
        members.update((name, member.flip()) for name, member in top.signature.members.items())
        super().__init__(members)

    def elaborate(self, platform):
        m = Module()
        cfg = self.config
        cmd_bytes = proto.CMD
        wbytes = proto.word_bytes(cfg)
        rbytes = proto.read_bytes(cfg)
        nbytes_stage = max(max(wbytes.values()), proto.desc_bytes(cfg))
        stage = Signal(8 * nbytes_stage)
        tx_bits = 8 * max(max(rbytes.values()), len(proto.info_reply(cfg)))
        tx_shift = Signal(tx_bits)
        tx_left = Signal(range(tx_bits // 8 + 1))

        cmd = Signal(8)
        args = Signal(8 * proto.ARG_BYTES)
        argn = Signal(range(proto.ARG_BYTES + 1))
        kind = args[:8]                      # memory (WRITE) or space (READ)
        addr = Signal(8 * proto.ADDR_BYTES)
        count = Signal(8 * proto.COUNT_BYTES)
        bidx = Signal(range(nbytes_stage + 1))
        # the received byte, registered with its slot (one-hot) and stored in the next cycle
        rx_byte, rx_new = Signal(8), Signal()
        rx_slot = Signal(nbytes_stage, init=1)
        blast = Signal(range(nbytes_stage + 1))  # index of the current word's last byte
        desc = Signal(descriptor_layout().size)
        route = Signal(cfg.groups_in)
        framing = Signal()
        zc_chan = Signal.like(self.zc_chan)
        m.d.comb += [self.desc.as_value().eq(desc), self.map.eq(route),
                     self.host_addr.eq(addr), self.host_wdata.eq(stage[:cfg.host_width]),
                     self.host_sel.as_value().eq(kind),
                     self.zc_chan.eq(zc_chan),
                     self.tx.payload.eq(tx_shift[:8])]
        m.d.sync += zc_chan.eq(Mux(addr < cfg.max_cout, addr, 0))
        with m.If(self.framing_error):
            m.d.sync += framing.eq(1)
        m.d.sync += rx_new.eq(0)
        with m.If(rx_new):
            m.d.sync += rx_slot.eq(rx_slot.rotate_left(1))
            for i in range(nbytes_stage):
                with m.If(rx_slot[i]):
                    m.d.sync += stage[8 * i:8 * (i + 1)].eq(rx_byte)

        # the bytes of one word of each memory, by its host-port number
        mem_bytes = Array(Const(wbytes.get(name, 1), range(nbytes_stage + 1))
                          for name in MEMORIES)
        item_bytes = Array(Const(rbytes[s], range(tx_bits // 8 + 1)) for s in proto.SPACES)
        counters = Array(getattr(self, f"cnt_{n}") for n in COUNTERS)
        counter = Mux(addr < len(COUNTERS), counters[addr[:max(1, (len(COUNTERS) - 1)
                                                               .bit_length())]], 0)
        rd_data = Signal.like(self.host_rdata)
        rd_zc, rd_counter = Signal.like(self.zc_count), Signal.like(counter)
        item = Array([rd_data, rd_zc, rd_counter, self.next_map])

        def send(value, nbytes, then):
            m.d.sync += [tx_shift.eq(value), tx_left.eq(nbytes)]
            m.next = then

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [cmd.eq(self.rx.payload), argn.eq(0), bidx.eq(0),
                                 rx_slot.eq(1)]
                    p = self.rx.payload
                    with m.If((p == cmd_bytes["WRITE"]) | (p == cmd_bytes["READ"])):
                        m.next = "ARGS"
                    with m.Elif(p == cmd_bytes["DESC"]):
                        m.d.sync += blast.eq(proto.desc_bytes(cfg) - 1)
                        m.next = "DATA"
                    with m.Elif(p == cmd_bytes["START"]):
                        m.next = "START"
                    with m.Elif(p == cmd_bytes["INFO"]):
                        info = proto.info_reply(cfg)
                        send(int.from_bytes(info, "little"), len(info), "SEND")
                    with m.Elif(p == cmd_bytes["STATUS"]):
                        m.d.sync += framing.eq(self.framing_error)
                        send(Cat(self.busy, self.done, framing), 1, "SEND")
                    with m.Else():
                        send(Cat(Const(proto.ERROR, 8), p), 2, "SEND")

            with m.State("ARGS"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [args.eq(Cat(args[8:], self.rx.payload)), argn.eq(argn + 1)]
                    with m.If(argn == proto.ARG_BYTES - 1):
                        m.next = "DECODE"

            with m.State("DECODE"):
                a0, a1 = 8, 8 + 8 * proto.ADDR_BYTES
                m.d.sync += [addr.eq(args[a0:a1]), count.eq(args[a1:]),
                             blast.eq(mem_bytes[kind[:3]] - 1)]
                with m.If(cmd == cmd_bytes["WRITE"]):
                    with m.If(args[a1:] == 0):
                        send(proto.ACK, 1, "SEND")
                    with m.Else():
                        m.next = "DATA"
                with m.Elif(kind >= len(proto.SPACES)):
                    m.d.sync += count.eq(0)
                    send(Cat(Const(proto.ERROR, 8), cmd), 2, "SEND")
                with m.Elif(args[a1:] == 0):
                    m.next = "IDLE"
                with m.Else():
                    m.next = "READ_ADDR"

            with m.State("DATA"):  # the bytes of one word (WRITE) or of the descriptor (DESC)
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [rx_byte.eq(self.rx.payload), rx_new.eq(1), bidx.eq(bidx + 1)]
                    with m.If(bidx == blast):
                        m.next = "STORE"

            with m.State("STORE"):  # the last byte reaches its slot
                with m.If(cmd == cmd_bytes["DESC"]):
                    m.next = "LOAD_DESC"
                with m.Else():
                    m.next = "WRITE"

            with m.State("WRITE"):
                m.d.comb += self.host_we.eq(1)
                m.d.sync += [addr.eq(addr + 1), count.eq(count - 1), bidx.eq(0),
                             rx_slot.eq(1)]
                with m.If(count == 1):
                    send(proto.ACK, 1, "SEND")
                with m.Else():
                    m.next = "DATA"

            with m.State("LOAD_DESC"):
                nd = descriptor_layout().size
                m.d.sync += [desc.eq(stage[:nd]), route.eq(stage[nd:nd + cfg.groups_in])]
                send(proto.ACK, 1, "SEND")

            with m.State("START"):
                m.d.comb += self.start.eq(1)
                m.next = "WAIT_BUSY"
            with m.State("WAIT_BUSY"):  # done falls in the cycle busy rises
                m.next = "WAIT_DONE"
            with m.State("WAIT_DONE"):
                with m.If(self.done):
                    send(proto.FINISHED, 1, "SEND")

            with m.State("READ_ADDR"):  # host_addr and zc_chan's register load
                m.next = "READ_WAIT"
            with m.State("READ_WAIT"):  # host_rdata: one cycle after host_addr
                m.d.sync += [rd_data.eq(self.host_rdata), rd_zc.eq(self.zc_count),
                             rd_counter.eq(counter)]
                m.next = "READ_ITEM"
            with m.State("READ_ITEM"):
                m.d.sync += [addr.eq(addr + 1), count.eq(count - 1)]
                send(item[kind[:2]], item_bytes[kind[:2]], "SEND")

            with m.State("SEND"):
                m.d.comb += self.tx.valid.eq(tx_left != 0)
                with m.If(tx_left == 0):
                    with m.If((cmd == cmd_bytes["READ"]) & (count != 0)):
                        m.next = "READ_ADDR"
                    with m.Else():
                        m.next = "IDLE"
                with m.Elif(self.tx.ready):
                    m.d.sync += [tx_shift.eq(tx_shift >> 8), tx_left.eq(tx_left - 1)]
        return m

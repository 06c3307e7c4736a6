"""Cycle-stepped model of :class:`hw.top.Accelerator` for one layer execution.

It steps the same single-register handshakes as the RTL (docs/hardware.md 4.7): two walkers,
two fetch stages (or one and the dispatcher, with its input register if ``timing_regs``;
each fetch stage with its second register if ``timing_regs``),
DPE, SPE, join (with its second unit register if ``timing_regs``), serializer, PPU and
writer, and predicts every performance counter, including ``cycles``. The skid buffers of
``timing_regs`` add no cycle (:mod:`hw.skid`) and are not stepped. The per-item costs come
from :func:`hw.dpe.dpe_item_cycles` and :func:`hw.spe.spe_item_cycles`, the item streams from
:func:`hw.addrgen.walk_items`. The test of the top checks that the RTL's counters equal this
model exactly.
"""

from golden import intref

from .addrgen import ADDRGEN_LATENCY, walk_items
from .dpe import dpe_item_cycles
from .engine import ENGINE_STAGES
from .layout import unpack_vector
from .ppu import BUFFER_DEPTH, block_closed_by
from .ppu_fixed import FIXED_LATENCY, fixed_latency
from .dispatch import choose_spe
from .spe import spe_item_cycles, spe_item_macs
from .top import timing_registers

__all__ = ["LAUNCH_CYCLES", "start_cycle", "EngineModel", "DispatcherModel",
           "BlockQueueModel",
           "PPUModel", "predict_layer"]

#: Cycles from the ``start`` cycle (cycle 0) to the walkers' start pulse (the controller's
#: ``launch`` register, :class:`hw.top.Accelerator`).
LAUNCH_CYCLES = 1


def start_cycle(config):
    """Cycle in which both engines can accept their first item on the top built with
    ``config``: the launch, the address generator's latency, the fetch stage's (two registers
    with ``timing_regs``; :func:`hw.top.timing_registers`)."""
    return LAUNCH_CYCLES + ADDRGEN_LATENCY + timing_registers(config)["fetch_stages"]


class EngineModel:
    """Cycle model of a DPE / SPE: an issue stage (``costs(item)`` cycles per item, the next
    item accepted in the final cycle of the current one) and the result pipeline of
    :mod:`hw.engine`: ``stages`` registers (:func:`hw.engine.engine_stages`) that move
    together and stall, with the issue stage, while the last one holds the final pass of a
    ``last`` item and ``o`` is still full; with ``queue`` (the second result register) while
    it holds that pass and two results wait (``results``, those not yet taken by the join).

    Per cycle: :meth:`comb` (given the join's ``o_ready``) sets ``i_ready``, then :meth:`edge`
    clocks the engine."""

    def __init__(self, costs, stages=ENGINE_STAGES, queue=False):
        self.costs = costs        # item -> issue cycles
        self.queue = queue
        self.results = 0          # results emitted, not yet taken (o, then the second)
        self.busy = False
        self.left = 0
        self.item = None
        # per pipeline register: it holds the final pass of a ``last`` item
        self.pipe = [False] * stages
        self.busy_cycles = 0

    @property
    def o_valid(self):
        return self.results > 0

    def comb(self, o_ready):
        self.final = self.busy and self.left == 1
        if self.queue:
            self.stall = self.pipe[-1] and self.results == 2
        else:
            self.stall = self.pipe[-1] and self.o_valid and not o_ready
        self.adv = self.busy and not self.stall
        self.i_ready = (not self.busy) or (self.final and not self.stall)

    def edge(self, o_ready, i_valid, i_item):
        if self.adv:
            self.busy_cycles += 1
        if self.o_valid and o_ready:
            self.results -= 1
        if not self.stall:
            if self.pipe[-1]:
                self.results += 1
            issued = self.adv and self.final and self.item["last"]
            self.pipe = [issued] + self.pipe[:-1]
        if i_valid and self.i_ready:
            self.item, self.busy, self.left = i_item, True, self.costs(i_item)
        elif self.adv and self.final:
            self.busy = False
        elif self.adv:
            self.left -= 1


class DispatcherModel:
    """Cycle model of :class:`hw.dispatch.Dispatcher` (a ``balance`` top): per cycle
    :meth:`comb` (given the input stream's item and the engines' ``i_ready``) sets the
    engines' inputs ``out[e]`` (an item dict or None) and ``i_ready``; :meth:`edge` clocks it
    with the engines' processing flags. ``cost[e](item)``: the item's cycles on engine ``e``
    ("d" or "s"); ``head_reg``: the input register stage (``timing_regs``)."""

    def __init__(self, cost, head_reg=False):
        self.cost = cost
        self.rem = {"d": 0, "s": 0}
        self.got = {"d": False, "s": False}
        self.closing = self.close_s = False
        self.hold = self.hold_s = False
        self.reg = {"valid": False, "item": None} if head_reg else None

    def comb(self, i_valid, i_item, eng_ready):
        if self.reg is None:
            head_valid, head = i_valid, i_item
        else:
            head_valid, head = self.reg["valid"], self.reg["item"]
        head = head if head_valid else None
        free = {e: r <= 1 for e, r in self.rem.items()}
        if self.hold:
            want_s = self.hold_s
        elif head is None:
            want_s = None
        else:
            want_s = choose_spe(dpe_free=free["d"], spe_free=free["s"],
                                dpe_cost=self.cost["d"](head), spe_cost=self.cost["s"](head),
                                pref=head["pref"])
        # no offer while neither engine is free, nor a unit's last item while a close is owed
        open_ = want_s is not None and (not self.closing or not head["last"])
        owed = {"s": self.closing and self.close_s, "d": self.closing and not self.close_s}
        to = {"s": open_ and want_s and not owed["s"],
              "d": open_ and not want_s and not owed["d"]}
        self.want_s, self.owed, self.to, self.head_valid, self.head = (
            want_s, owed, to, head_valid, head)
        self.out = {}
        for e in "ds":
            if owed[e]:
                self.out[e] = {"act_addr": 0, "w_addr": 0, "null": 1,
                               "first": int(not self.got[e]), "last": 1, "ncols": 0, "pref": 0}
            elif head_valid and to[e]:
                self.out[e] = {**head, "first": int(not self.got[e])}
            else:
                self.out[e] = None
        head_ready = eng_ready["s"] and to["s"] if want_s else eng_ready["d"] and to["d"]
        self.taken = {e: self.out[e] is not None and eng_ready[e] for e in "ds"}
        self.accept = head_valid and head_ready
        if self.reg is None:
            self.i_ready = head_ready
        else:  # the stage loads whenever it is empty or its item leaves
            self.i_ready = not head_valid or head_ready
            self._load = (i_valid, i_item if i_valid else None)

    def edge(self, adv):
        head = self.head
        for e in "ds":
            if self.taken[e]:
                self.rem[e] = 1 if self.owed[e] else self.cost[e](self.out[e])
                self.got[e] = False if self.owed[e] else not head["last"]
            elif adv[e] and self.rem[e]:
                self.rem[e] -= 1
        if self.accept and head["last"]:
            self.closing, self.close_s = True, not self.want_s
        elif any(self.taken[e] and self.owed[e] for e in "ds"):
            self.closing = False
        if self.accept:
            self.hold = False
        elif self.head_valid and (self.to["s"] or self.to["d"]):
            self.hold, self.hold_s = True, self.want_s
        if self.reg is not None and self.i_ready:
            self.reg["valid"], self.reg["item"] = self._load


class BlockQueueModel:
    """Cycle model of :class:`hw.ppu_queue.BlockQueue`, its registers as block counts: b0 / b1
    (closed; b0 holds a block that closed while b1 could not move on), b2 (scale), b3 (read
    out one element per ``o`` transfer, position ``rd``) and ``held`` (values accepted, not yet
    read out); the input stalls while b0 is taken or the buffer is full.

    Per cycle: :meth:`comb` (given ``o.ready``) sets ``i_ready``, ``o_valid`` and the moves,
    then :meth:`edge` clocks it."""

    def __init__(self):
        self.b = [None, None, None, None]  # b0, b1, b2, b3
        self.rd = 0
        self.held = 0

    def comb(self, o_ready=True):
        b0, b1, b2, b3 = self.b
        self.o_valid = b3 is not None
        self.drain = self.o_valid and bool(o_ready)
        self.drain_end = self.drain and self.rd == b3 - 1
        self.mv23 = b2 is not None and (b3 is None or self.drain_end)
        self.mv12 = b1 is not None and (b2 is None or self.mv23)
        self.i_ready = b0 is None and self.held < BUFFER_DEPTH

    def edge(self, accepted, closing):
        """``accepted``: a value was taken this cycle; ``closing``: the count of the block an
        entering value closes (None: it closes none)."""
        self.held += int(accepted) - int(self.drain)
        b0, b1, b2, b3 = self.b
        if self.mv23:
            b3, self.rd = b2, 0
        elif self.drain_end:
            b3 = None
        elif self.drain:
            self.rd += 1
        if self.mv12:
            b2 = b1
        elif self.mv23:
            b2 = None
        if b1 is None or self.mv12:  # b1 takes b0, else the closing block (none while b0 is taken)
            b1, b0 = (b0 if b0 is not None else closing), None
        elif closing:
            b0 = closing
        self.b = [b0, b1, b2, b3]


class PPUModel:
    """Cycle model of the PPU (:mod:`hw.ppu`) with ``o`` always ready, register by register: the
    fixed-point stage's ``fixed`` registers (:func:`hw.ppu_fixed.fixed_latency`; each empty, or the
    block count its element closes, 0 if it is not ``last``), the block queue
    (:class:`BlockQueueModel`, drained one element per cycle), the quantizer's read and comparison
    registers (``q_last``, ``c_last``: they hold a block's last element).

    Per cycle: :meth:`comb` sets ``i_ready``, then :meth:`edge` clocks it; ``o_valid``: a
    block is on ``o`` in this cycle."""

    def __init__(self, fixed=FIXED_LATENCY):
        self.f = [None] * fixed
        self.queue = BlockQueueModel()
        self.q_last = self.c_last = False
        self.o_valid = False

    def comb(self):
        self.queue.comb()
        self.i_ready = self.queue.i_ready

    def edge(self, i_valid, i_closes):
        """``i_closes``: the count of the block the input element closes (0: not ``last``)."""
        go = self.i_ready
        self.o_valid, self.c_last, self.q_last = self.c_last, self.q_last, self.queue.drain_end
        self.queue.edge(i_valid and go, (self.f[-1] or None) if go else None)
        if go:
            self.f = [i_closes if i_valid else None] + self.f[:-1]


def predict_layer(shape, route, *, x_format, out_format, residual, act_words, config,
                  max_cycles=10 ** 7, details=False):
    """Counters of one layer on the top built with ``config`` (an
    :class:`hw.config.AcceleratorConfig`): every name of :data:`hw.config.MODEL_COUNTERS`
    (``act_words``: the act memory image, relative to ``act_base``, used for the SPE's
    non-zero counts). With ``details`` also the items each engine took (``items_dense``,
    ``items_sparse``: non-null; ``null_dense``, ``null_sparse``) and ``units``."""
    vector, tile = config.vector, config.tile
    if not config.has_spe:  # a dense top ties its channel map to all-dense
        route = [0] * len(route)
    fmt = intref.Format(x_format)
    mode = fmt.mode
    count = fmt.block(vector)
    # the walkers: dense (False) and sparse (True), or a balance top's single one (None)
    classes = (None,) if config.balance else (False, True)
    streams = {s: list(walk_items(shape, route, sparse=s, mode=mode, vector=vector, tile=tile))
               for s in classes}

    def x_of(item):
        return unpack_vector(act_words[item["act_addr"]])[0] if not item["null"] else [0] * 32

    def dpe_cost(it):
        return dpe_item_cycles(mode=mode, null=it["null"], vector=vector, cols=config.dpe_cols,
                               tile=tile, ncols=it["ncols"] if config.col_skip else None)

    def spe_cost(it):
        return spe_item_cycles(x_of(it), mode=mode, null=it["null"], vector=vector,
                               lanes=config.spe_lanes, nibble_skip=bool(config.nibble_skip))

    regs = timing_registers(config)
    dpe = EngineModel(dpe_cost, regs["engine_stages"], regs["result_queue"])
    spe = EngineModel(spe_cost, regs["engine_stages"], regs["result_queue"])
    engines = {False: dpe, True: spe}
    disp = (DispatcherModel({"d": dpe_cost, "s": spe_cost}, head_reg=regs["head_reg"])
            if config.balance else None)
    walk = {s: {"pos": 0, "running": False, "o_valid": False, "o": None} for s in streams}
    depth = regs["fetch_stages"]
    # each fetch's register stages, first to last (the last one's item is on its output)
    fetch = {s: [{"valid": False, "item": None} for _ in range(depth)] for s in streams}
    taken_items = {False: [], True: []}  # the items each engine took

    out_blk = intref.block_size(intref.Format(out_format), vector)
    nblk = -(-shape.cout // out_blk)
    pixels = shape.out_height * shape.out_width
    total_words = pixels * nblk
    uval = nval = False   # the join's unit registers (N: ``timing_regs`` only)
    spare = regs["spare_unit"]
    c_idx = tc = 0
    pf_valid, pf_closes = False, 0
    ppu = PPUModel(fixed_latency(regs["fixed_split"]))
    written = 0
    cycle = 0
    busy = False
    cycles = 0
    while True:
        # ---- combinational, downstream first
        ppu.comb()
        take_p = not pf_valid or ppu.i_ready
        ser_step = uval and take_p
        chan = tc + c_idx
        tile_end = c_idx == tile - 1 or chan == shape.cout - 1
        ser_done = ser_step and tile_end
        if spare:
            join = dpe.o_valid and spe.o_valid and not nval
        else:
            join = dpe.o_valid and spe.o_valid and (not uval or ser_done)
        for s, eng in engines.items():
            eng.comb(join)
        if disp is not None:
            f = fetch[None][-1]
            disp.comb(f["valid"], f["item"] if f["valid"] else None,
                      {"d": dpe.i_ready, "s": spe.i_ready})
            o_ready = {None: disp.i_ready}
            inputs = {False: disp.out["d"], True: disp.out["s"]}
        else:
            o_ready = {s: engines[s].i_ready for s in streams}
            inputs = {s: fetch[s][-1]["item"] if fetch[s][-1]["valid"] else None
                      for s in engines}
        take = {}  # per stream, per fetch register: it takes an item in this cycle
        for s in streams:
            ready, take[s] = o_ready[s], [None] * depth
            for k in reversed(range(depth)):
                take[s][k] = ready = not fetch[s][k]["valid"] or ready

        # ---- clock edge
        if busy:
            cycles += 1
        if ppu.o_valid:  # a block on the PPU's output: written
            written += 1
            if written == total_words:
                busy = False
                break
        adv = {"d": dpe.adv, "s": spe.adv}
        for s, eng in engines.items():
            if inputs[s] is not None and eng.i_ready:
                taken_items[s].append(inputs[s])
            eng.edge(join, inputs[s] is not None, inputs[s])
        if disp is not None:
            disp.edge(adv)
        for s in streams:
            w, f = walk[s], fetch[s]
            o_ready = take[s][0]
            advance = w["running"] and (not w["o_valid"] or o_ready)
            for k in reversed(range(1, depth)):
                if take[s][k]:
                    f[k] = dict(f[k - 1])
            if o_ready:
                f[0] = {"valid": w["o_valid"], "item": w["o"]}
            if w["o_valid"] and o_ready:
                w["o_valid"] = False
            if advance:
                w["o_valid"], w["o"] = True, streams[s][w["pos"]]
                w["pos"] += 1
                if w["pos"] == len(streams[s]):
                    w["running"] = False
            if cycle == LAUNCH_CYCLES:
                w["running"], w["pos"] = True, 0
        ppu.edge(pf_valid, pf_closes)
        if take_p:
            pf_valid = uval
            pf_closes = block_closed_by(chan, shape.cout, out_blk)
        if ser_step:
            if tile_end:
                c_idx = 0
                tc = 0 if tc + tile >= shape.cout else tc + tile
            else:
                c_idx += 1
        if spare:
            if not uval or ser_done:
                uval, nval = nval or join, False
            elif join:
                nval = True
        elif join:
            uval = True
        elif ser_done:
            uval = False
        if cycle == 0:
            busy = True
        cycle += 1
        if cycle > max_cycles:
            raise RuntimeError(f"no completion within {max_cycles} cycles")

    spe_macs = sum(spe_item_macs(x_of(it), mode=mode, vector=vector, lanes=config.spe_lanes,
                                 nibble_skip=bool(config.nibble_skip)) * tile
                   for it in taken_items[True] if not it["null"])
    items = [it for s in streams for it in streams[s]]
    nnz = [sum(1 for v in x_of(it)[:count] if v) for it in taken_items[True] if not it["null"]]
    dense_passes = dpe.busy_cycles - sum(1 for it in taken_items[False] if it["null"])
    ch_reads = pixels * shape.cout * (2 if residual else 1)
    out = {
        "cycles": cycles,
        "dpe_busy": dpe.busy_cycles,
        "spe_busy": spe.busy_cycles if config.has_spe else 0,
        "macs": dense_passes * config.dpe_multipliers + spe_macs,
        "zeros_skipped": sum(count - n for n in nnz),
        "mem_reads": 2 * sum(1 for it in items if not it["null"]) + ch_reads,
        "mem_writes": total_words,
    }
    if details:
        for name, s in (("dense", False), ("sparse", True)):
            nulls = sum(1 for it in taken_items[s] if it["null"])
            out[f"items_{name}"] = len(taken_items[s]) - nulls
            out[f"null_{name}"] = nulls
        out["units"] = pixels * -(-shape.cout // tile)
    return out

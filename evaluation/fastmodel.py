"""Closed-form per-unit cycle model of the accelerator top: the same counters as
``hw.cyclemodel.predict_layer`` (which steps every cycle) from a recurrence over units.

Derivation (docs/hardware.md 4.7; docs/evaluation.md 4). Number the loop iterations of
``predict_layer`` as cycles. The walkers emit one item per cycle and every engine item takes
at least one cycle, so after the launch the engines are never starved: both accept their
first item in cycle ``start = start_cycle(config)`` (``hw.cyclemodel``, derived from the
blocks' latencies) and then issue their items back to back. For unit ``u`` let ``S_u`` be an engine's sum of
item cycles (``max(1, valid taps x class vectors)`` items, a lone null item costing 1),
``n_u = min(tile, cout - tc)`` the unit's channels. ``F_u``, the cycle in which the unit's
final pass leaves the last of the ``D`` result-pipeline registers (``D =
timing_registers(config)["engine_stages"]`` cycles after its issue), stalls the whole
engine until the join takes its previous result; the stall shifts everything behind it, so:

    F_u = max(F_{u-1} + S_u, R_{u-1})            (F_{-1} = start + D, R_{-1} = -inf)
    A_u = max(F_u^dpe, F_u^spe) + 1               (both results valid)
                                                  (result_queue: F_u = max(F_{u-1} + S_u,
                                                  R_{u-2} + 1), A_u = max(F_u^dpe, F_u^spe,
                                                  R_{u-1}) + 1)
    L_u = max(A_u, L_{u-1} + n_{u-1})             (the unit register loads; serializer frees)
    R_u = L_u                                     (join: the engines' results are taken)
    O_b = max(C_b + P, O_{b-1}) + m_b             (hw.ppu.ppu_block_out: output block b, of m_b
                                                  channels, its last one at the PPU in C_b;
                                                  P = timing_registers(config)["ppu_latency"])
    cycles = O_last + 1                           (the last out write)

where channel i of unit u reaches the PPU in cycle ``C = L_u + i + 1`` (the serializer, then
the PPU's input register), and blocks are drained in order, one element per cycle (the PPU's
input never stalls: blocks arrive no faster than their length). With ``timing_regs``
the pair joins into the second unit register as soon as it is empty, the cycle after the
unit before moved on: ``R_u = max(A_u, L_{u-1} + 1)``.

The other counters are sums over items (dpe_busy, spe_busy, macs, zeros_skipped,
mem_reads, mem_writes), computed per input pixel with numpy. ``eval/test_fastmodel.py``
checks equality with ``predict_layer`` on random layers and channel maps.
"""

from __future__ import annotations

import numpy as np

from golden import intref as ir
from hw.common import MX_BLOCK, Mode
from hw.cyclemodel import predict_layer, start_cycle
from hw.layout import act_words
from hw.dpe import dpe_item_cycles
from hw.ppu import block_closed_by, ppu_block_out
from hw.top import timing_registers

__all__ = ["layer_counters"]


def _stepped(shape, route, x, fmt, out_format, residual, config, details):
    """:func:`hw.cyclemodel.predict_layer` on codes ``x`` (a ``balance`` top), with the item
    counts of ``details`` from its own walk."""
    vector = config.vector
    blk = fmt.block(vector)
    nvec = -(-shape.cin // blk)
    words = act_words(x, np.zeros(x.shape[:2] + (nvec,), dtype=np.int64), x_format=fmt,
                      vector=vector)
    return predict_layer(shape, route, x_format=fmt, out_format=out_format, residual=residual,
                         act_words=words, config=config, details=details)


def _tap_sum(a, shape):
    """``out[oy, ox] = sum over kernel taps of a[iy, ix]`` (zero outside the input)."""
    k, s, p = shape.kernel, shape.stride, shape.padding
    oh, ow = shape.out_height, shape.out_width
    pad = np.zeros((a.shape[0] + 2 * p + k, a.shape[1] + 2 * p + k), dtype=np.int64)
    pad[p:p + a.shape[0], p:p + a.shape[1]] = a
    out = np.zeros((oh, ow), dtype=np.int64)
    for ky in range(k):
        for kx in range(k):
            out += pad[ky:ky + (oh - 1) * s + 1:s, kx:kx + (ow - 1) * s + 1:s]
    return out


def layer_counters(shape, route, *, x_codes, x_format, out_format, residual, config,
                   details=False):
    """Counters of one layer execution on the top built with ``config`` (an
    :class:`hw.config.AcceleratorConfig`), equal to ``hw.cyclemodel.predict_layer``.

    ``x_codes``: the ``[H, W, cin]`` input codes (the act memory's elements); ``route``: map
    bit per 16-channel group (1 = SPE). With ``details`` also item counts for the energy model
    (``items_dense``, ``items_sparse``: non-null items; ``null_dense``, ``null_sparse``).
    """
    vector, tile, spe_lanes = config.vector, config.tile, config.spe_lanes
    fmt = ir.Format(x_format)
    mode = fmt.mode
    mx = mode == Mode.MXINT8
    blk = fmt.block(vector)
    nvec = -(-shape.cin // blk)
    step = MX_BLOCK // vector if mx else 1
    route = np.asarray(route).astype(bool)
    if not config.has_spe:  # a dense top ties its channel map to all-dense
        route = np.zeros_like(route)
    if route.size < (nvec - 1) * step + 1:
        raise ValueError(f"route has {route.size} groups, the layer needs "
                         f"{(nvec - 1) * step + 1}")
    sparse_vec = np.array([bool(route[j * step]) for j in range(nvec)], dtype=bool)
    nd, ns = int((~sparse_vec).sum()), int(sparse_vec.sum())

    x = np.asarray(x_codes)
    if config.balance:  # the dispatcher's choices depend on the cycle: the stepped model
        return _stepped(shape, route, x, fmt, out_format, residual, config, details)
    h, w, c = x.shape
    padded = np.zeros((h, w, nvec * blk), dtype=np.int64)
    padded[..., :c] = x
    elems = padded.reshape(h, w, nvec, blk)
    nnz = (elems != 0).sum(axis=3).astype(np.int64)                         # [h, w, nvec]
    lanes = max(spe_lanes, 1)

    def sweep(n):
        return np.maximum(1, -(-n // lanes))
    if mx and config.nibble_skip:  # sweeps over the non-zero high / low nibbles
        hi = ((elems >> 4) != 0).sum(axis=3).astype(np.int64)
        lo = ((elems & 15) != 0).sum(axis=3).astype(np.int64)
        spe_cost = 2 * sweep(hi) + 2 * sweep(lo)
        lane_ops = 2 * (hi + lo)
    else:
        passes = 4 if mx else 1
        spe_cost = passes * sweep(nnz)
        lane_ops = passes * nnz

    taps = _tap_sum(np.ones((h, w), dtype=np.int64), shape)                 # [oh, ow]
    s_cost = _tap_sum(spe_cost[..., sparse_vec].sum(axis=2), shape)
    s_nnz = _tap_sum(nnz[..., sparse_vec].sum(axis=2), shape)
    s_ops = _tap_sum(lane_ops[..., sparse_vec].sum(axis=2), shape)
    items_d = taps * nd
    items_s = taps * ns
    ss = np.where(items_s > 0, s_cost, 1).ravel()

    ntile = -(-shape.cout // tile)
    nch = [min(tile, shape.cout - t * tile) for t in range(ntile)]
    # per tile: the DPE's cycles per item (col_skip: the groups holding the tile's channels)
    cds = [dpe_item_cycles(mode=mode, null=False, vector=vector, cols=config.dpe_cols,
                           tile=tile, ncols=n if config.col_skip else None) for n in nch]
    sds = [np.where(items_d > 0, items_d * cd, 1).ravel() for cd in cds]
    out_blk = ir.block_size(ir.Format(out_format), vector)
    # per tile: (channel offset in the tile, block count) of each output block ending in it
    ends = []
    for t, n in enumerate(nch):
        closes = [(c - t * tile, block_closed_by(c, shape.cout, out_blk))
                  for c in range(t * tile, t * tile + n)]
        ends.append([(off, m) for off, m in closes if m])
    # the recurrence over units (pixel-major, tile-minor)
    regs = timing_registers(config)
    spare = regs["spare_unit"]   # the join's second unit register N
    queue = regs["result_queue"]  # the engines' second result register
    fd = fs = start_cycle(config) + regs["engine_stages"]
    l_prev = r_prev = r_prev2 = o_blk = None
    n_prev = 0
    for sdus, ssu in zip(zip(*(sd.tolist() for sd in sds)), ss.tolist()):
        for sdu, n, tile_ends in zip(sdus, nch, ends):
            if l_prev is None:
                fd, fs = fd + sdu, fs + ssu
                l = r = max(fd, fs) + 1
            else:
                if not queue:
                    fd = max(fd + sdu, r_prev)
                    fs = max(fs + ssu, r_prev)
                    a = max(fd, fs) + 1
                else:  # a result waits behind the previous one: free after R_{u-2}
                    release = -1 if r_prev2 is None else r_prev2 + 1
                    fd = max(fd + sdu, release)
                    fs = max(fs + ssu, release)
                    a = max(fd, fs, r_prev) + 1   # at the queue's head after R_{u-1}
                l = max(a, l_prev + n_prev)
                r = max(a, l_prev + 1) if spare else l   # N frees the cycle after U loads
            for off, m in tile_ends:
                o_blk = ppu_block_out(l + off + 1, m, o_blk, regs["ppu_latency"])
            l_prev, r_prev, r_prev2, n_prev = l, r, r_prev, n
    cycles = o_blk + 1

    pixels = shape.out_height * shape.out_width
    nonnull_d = int(items_d.sum()) * ntile
    nonnull_s = int(items_s.sum()) * ntile
    null_d = int((items_d == 0).sum()) * ntile
    null_s = int((items_s == 0).sum()) * ntile
    dpe_busy = sum(int(sd.sum()) for sd in sds)
    spe_busy = int(ss.sum()) * ntile
    nnz_s = int(s_nnz.sum()) * ntile
    out = {
        "cycles": int(cycles),
        "dpe_busy": dpe_busy,
        "spe_busy": spe_busy if config.has_spe else 0,
        "macs": (dpe_busy - null_d) * config.dpe_multipliers + int(s_ops.sum()) * ntile * tile,
        "zeros_skipped": nonnull_s * blk - nnz_s,
        "mem_reads": 2 * (nonnull_d + nonnull_s) + pixels * shape.cout * (2 if residual else 1),
        "mem_writes": pixels * -(-shape.cout // out_blk),
    }
    if details:
        out.update(items_dense=nonnull_d, items_sparse=nonnull_s, null_dense=null_d,
                   null_sparse=null_s, units=pixels * ntile)
    return out

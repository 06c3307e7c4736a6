"""The accelerator's configuration: one frozen, validated value that every module receives.

:class:`AcceleratorConfig` holds every generator parameter of :class:`hw.top.Accelerator`, its
range, and the rules derived from it (column groups, channel-map widths, memory depths and word
widths). :data:`PRESETS` names the configurations the project uses; each name is defined here
only, and everything else (the RTL generator, the co-simulation, the FPGA kit, the cycle models,
the evaluation, the tests) looks it up with :func:`preset` instead of retyping parameters.

Performance counter names (:data:`COUNTERS`) are part of the top's interface and live here too.
"""

from __future__ import annotations

import dataclasses

from .common import MX_BLOCK, VECTOR_CHOICES, check_choice, check_int
from .descriptor import ADDR_BITS
from .layout import ACT_WORD_BITS, PARAM_WORD_BITS, RES_WORD_BITS, weight_word_bits

__all__ = ["AcceleratorConfig", "PAPER", "V2", "ABLATION_PRESETS", "PRESETS", "preset",
           "parse_overrides", "for_workload", "WORKLOAD_MEMORIES", "COUNTERS", "MODEL_COUNTERS",
           "SATURATION_COUNTERS", "COUNTER_BITS",
           "MEMORIES", "MECHANISMS", "SPE_MECHANISMS", "LATER_FIELDS"]

#: Performance counters of the top (output ports ``cnt_<name>``), cleared by ``start``.
COUNTERS = ("cycles", "dpe_busy", "spe_busy", "macs", "zeros_skipped", "mem_reads",
            "mem_writes", "sat_terms", "sat_ppu")
#: The counters the cycle models (``hw.cyclemodel``, ``evaluation.fastmodel``) predict.
MODEL_COUNTERS = COUNTERS[:7]
#: The counters of arithmetic events (saturations), predicted by the golden reference.
SATURATION_COUNTERS = COUNTERS[7:]
#: Bits of every counter port.
COUNTER_BITS = 48
#: The architecture-v2 mechanisms: configuration fields, each 0 (off) or 1 (docs/hardware.md 8).
MECHANISMS = ("balance", "col_skip", "nibble_skip")
#: Fields added after configurations were first identified by their dict, with their
#: defaults: :meth:`AcceleratorConfig.to_dict` leaves them out at these values.
LATER_FIELDS = {"dsp_regs": 0}
#: The mechanisms that change the SPE's work (meaningless on a dense top).
SPE_MECHANISMS = ("balance", "nibble_skip")
#: The top's memories, in host-port select order (``hw.top.MemSel``).
MEMORIES = ("act", "weight", "param", "res", "out")


@dataclasses.dataclass(frozen=True)
class AcceleratorConfig:
    """Generator parameters of the accelerator (docs/hardware.md 2). Frozen and checked on
    construction: a bad value raises ``TypeError`` / ``ValueError`` naming the parameter.

    vector: 4, 8 or 16 -- channels per INT4 vector and channel-map group.
    dpe_cols: 1..64 -- DPE output channels per cycle (DPE = vector x dpe_cols multipliers).
    spe_lanes: 0..32 -- SPE non-zero activations per cycle (SPE = spe_lanes x tile); 0: no
    SPE, a dense accelerator (every channel group on the DPE, :mod:`hw.nullspe`).
    tile: a multiple of dpe_cols, <= 256 -- output channels per unit.
    max_cin, max_cout: vector..2048 -- channel-map widths, param memory depth (max_cout).
    max_pixels: 1..2**24 -- output pixels per layer (zero-counter width).
    act_depth, weight_depth, res_depth, out_depth: 1..2**20 -- memory depths in words. The
    residual memory holds one residual tensor (pixels x cout words).

    The architecture-v2 mechanisms (docs/hardware.md 8), each 0 (off, the paper's organisation)
    or 1:
    balance -- one walker and one operand fetch; a dispatcher sends each item to a free engine,
    the cheaper one for it when both are free (the channel map breaks ties). Needs an SPE.
    col_skip -- the DPE issues only the column groups that hold output channels of the unit
    (small-cout layers: ``conv_out``'s one channel takes one group of ``tile / dpe_cols``).
    nibble_skip -- MXINT8 on the SPE sweeps the non-zero high nibbles for the two passes that
    use an activation's high nibble and the non-zero low nibbles for the other two, instead of
    the non-zero elements for all four. Needs an SPE.

    Timing, 0 or 1 (docs/hardware.md 4.7; the ``board`` preset's 1, for an FPGA's clock):
    timing_regs -- registers that cut the longest paths of an FPGA implementation: a second
    unit register at the join (the engines' ``ready`` from registers only, so the
    serializer's handshake no longer reaches the engines in the cycle it is used; ``tile`` x
    64 + 24 flip-flops), the SPE's end-of-sweep flag and its input item's lane selection as
    registers, the engines' products registered before their column sums, the engine-side
    counter increments through a register, a skid buffer between each walker and its fetch
    stage (no cycle added), the fetch stage's second register and, on a ``balance`` top, the
    dispatcher's input register (the head item and its costs; the head's weight word stays
    in the weight memory's read port) and its choice's inputs as registers. The fetch's
    register adds a cycle to the start and the product register one to each engine's
    results, the PPU's fixed-point registers five to the last block; the join's register
    releases the engines no later than with 0, so a layer takes at most seven cycles more,
    except on a ``balance`` top, where the dispatcher's input
    register adds a cycle to the start and its choices follow the engines' timing (a layer
    can also take more); the cycle models follow.
    dsp_regs -- the engines' mantissa multiplier (``P * M``, stage 2 of hw/engine.py)
    registered at its operands and at its product, as an FPGA's multiplier block holds them:
    on ECP5 (the FPGA kit's Verilog, :mod:`hw.dsp`) the ``MULT18X18D`` blocks' own input and
    output registers, so that no path runs through a block and the wires on both sides of
    it. Two cycles more per result; the cycle models follow.
    """
    vector: int = 16
    dpe_cols: int = 8
    spe_lanes: int = 4
    tile: int = 32
    max_cin: int = 512
    max_cout: int = 256
    max_pixels: int = 65536
    act_depth: int = 2048
    weight_depth: int = 512
    res_depth: int = 8192
    out_depth: int = 2048
    balance: int = 0
    col_skip: int = 0
    nibble_skip: int = 0
    timing_regs: int = 0
    dsp_regs: int = 0

    def __post_init__(self):
        check_choice("vector", self.vector, VECTOR_CHOICES)
        check_int("dpe_cols", self.dpe_cols, 1, 64)
        check_int("spe_lanes", self.spe_lanes, 0, MX_BLOCK)
        check_int("tile", self.tile, self.dpe_cols, 256)
        if self.tile % self.dpe_cols:
            raise ValueError(f"tile must be a multiple of dpe_cols={self.dpe_cols}, "
                             f"got {self.tile!r}")
        check_int("max_cin", self.max_cin, self.vector, 2048)
        check_int("max_cout", self.max_cout, self.vector, 2048)
        check_int("max_pixels", self.max_pixels, 1, 2 ** 24)
        for name in ("act_depth", "weight_depth", "res_depth", "out_depth"):
            check_int(name, getattr(self, name), 1, 2 ** ADDR_BITS)
        for name in MECHANISMS:
            check_int(name, getattr(self, name), 0, 1)
            if getattr(self, name) and name in SPE_MECHANISMS and not self.spe_lanes:
                raise ValueError(f"{name}=1 needs an SPE (spe_lanes >= 1), got spe_lanes=0 "
                                 "(a dense top: the dense preset, or also "
                                 f"{'=0, '.join(SPE_MECHANISMS)}=0)")
        check_int("timing_regs", self.timing_regs, 0, 1)
        check_int("dsp_regs", self.dsp_regs, 0, 1)

    # ---- construction helpers

    @classmethod
    def names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def replace(self, **overrides) -> "AcceleratorConfig":
        """A copy with ``overrides`` applied (unknown names are rejected)."""
        unknown = sorted(set(overrides) - set(self.names()))
        if unknown:
            raise ValueError(f"unknown Accelerator parameter(s) {unknown}; known: "
                             f"{list(self.names())}")
        return dataclasses.replace(self, **overrides)

    @classmethod
    def from_dict(cls, params: dict) -> "AcceleratorConfig":
        """The configuration of a parameter dict (as :meth:`to_dict` writes it); missing
        names take the defaults, unknown names are rejected."""
        return cls().replace(**dict(params))

    def to_dict(self) -> dict:
        """Every parameter, except those of :data:`LATER_FIELDS` at their default: a field
        added later leaves the dict of every configuration that does not use it as it was, and
        with it every identity derived from it (``fpga.protocol.config_id``, which the board
        top holds as a constant, so its netlist and the routed figures measured on it)."""
        return {k: v for k, v in dataclasses.asdict(self).items()
                if k not in LATER_FIELDS or v != LATER_FIELDS[k]}

    # ---- derived rules

    @property
    def column_groups(self) -> int:
        """DPE passes per INT4 item: the tile's columns in groups of ``dpe_cols``."""
        return self.tile // self.dpe_cols

    @property
    def groups_in(self) -> int:
        """Bits of the input channel map (``map`` port)."""
        return -(-self.max_cin // self.vector)

    @property
    def groups_out(self) -> int:
        """Bits of the output channel map (``next_map`` port)."""
        return -(-self.max_cout // self.vector)

    @property
    def has_spe(self) -> bool:
        """False for a dense top (``spe_lanes=0``): its channel map is tied to all-dense."""
        return self.spe_lanes > 0

    @property
    def dpe_multipliers(self) -> int:
        return self.vector * self.dpe_cols

    @property
    def spe_multipliers(self) -> int:
        return self.spe_lanes * self.tile

    @property
    def depths(self) -> dict:
        """Words of each memory (:data:`MEMORIES`; the param memory has one per channel)."""
        return {"act": self.act_depth, "weight": self.weight_depth, "param": self.max_cout,
                "res": self.res_depth, "out": self.out_depth}

    @property
    def widths(self) -> dict:
        """Bits of a word of each memory (``hw.layout``)."""
        return {"act": ACT_WORD_BITS, "weight": weight_word_bits(self.tile),
                "param": PARAM_WORD_BITS, "res": RES_WORD_BITS, "out": ACT_WORD_BITS}

    @property
    def host_width(self) -> int:
        """Bits of the host port's write data (the widest memory word)."""
        return max(self.widths.values())


#: The paper's organisation: every architecture-v2 mechanism off (``AcceleratorConfig()``).
PAPER = AcceleratorConfig()
#: Architecture v2 (docs/hardware.md 8): the paper's sizes with every mechanism on.
V2 = PAPER.replace(**{name: 1 for name in MECHANISMS})
#: What a workload's layers need of the memories beyond ``default``'s (its model's largest
#: layer): ``mnist`` (32x32 layers) act 4096 words, residual 32768, 288 output channels
#: (attention's qkv of 96 channels). Applied to any top with :func:`for_workload`.
WORKLOAD_MEMORIES = {"digits": {},
                     "mnist": {"act_depth": 4096, "res_depth": 32768, "max_cout": 288}}
#: The ablation presets: the paper's organisation, then each mechanism alone on it.
ABLATION_PRESETS = ("paper",) + tuple(f"paper+{name}" for name in MECHANISMS)

#: The named configurations. ``default``: architecture v2, the ASIC-sized design every trace,
#: co-simulation and evaluation uses; ``paper``: the same sizes in the paper's organisation
#: (``AcceleratorConfig()``, every v2 mechanism off); ``paper+<mechanism>``: the paper's
#: organisation with one mechanism on (the bench's ablation rows). ``small``, ``tiny``,
#: ``micro``: the FPGA kit's (docs/fpga.md): ``small`` keeps the trace word layout (tile 32) and
#: shrinks the rest; ``tiny`` (tile 8) is the largest that routes on an LFE5U-85F; ``micro``
#: keeps every per-column datapath with one DPE column, one SPE lane, tile 2 and 16-word
#: memories (the place-and-route default); the FPGA kit keeps the paper's organisation.
#: ``board``: the FPGA board's (docs/fpga.md): architecture v2 with every block of ``default``
#: (DPE, SPE, both precisions, PPU, detector, address generator) at 4 DPE columns, one SPE lane
#: and tile 8, with memories and channel limits that hold every layer of the digits model
#: (``python -m fpga.host`` replays the default trace on it), with ``timing_regs`` and
#: ``dsp_regs``.
#: ``mnist``: ``default`` with memories and channel limits for the MNIST workload's 32x32 layers
#: (act 4096 words, residual 32768, 288 output channels: attention's qkv of 96 channels); the
#: same datapath, so the same cycles per layer as ``default`` would take.
#: ``dense``: the dense INT4-VSQ peer from the same generator (no SPE, 16 DPE columns: 256
#: multipliers like ``default``'s 128 + 128; ``col_skip`` on, the one v2 mechanism of a DPE).
#: ``icarus``: the co-simulation of small synthetic layers on slow simulators (tile 8).
#: ``unit``: the amaranth.sim tests of the whole top (tile 4).
PRESETS = {
    "default": V2,
    "paper": PAPER,
    **{p: PAPER.replace(**{name: 1}) for p, name in zip(ABLATION_PRESETS[1:], MECHANISMS)},
    "small": AcceleratorConfig(dpe_cols=8, spe_lanes=2, tile=32, max_cin=64, max_cout=32,
                               max_pixels=64, act_depth=64, weight_depth=64, res_depth=256,
                               out_depth=64),
    "tiny": AcceleratorConfig(dpe_cols=4, spe_lanes=1, tile=8, max_cin=32, max_cout=32,
                              max_pixels=16, act_depth=32, weight_depth=64, res_depth=64,
                              out_depth=32),
    "micro": AcceleratorConfig(dpe_cols=1, spe_lanes=1, tile=2, max_cin=16, max_cout=16,
                               max_pixels=16, act_depth=16, weight_depth=16, res_depth=16,
                               out_depth=16),
    "board": V2.replace(dpe_cols=4, spe_lanes=1, tile=8, max_cin=128, max_cout=192,
                        max_pixels=256, act_depth=1024, weight_depth=512, res_depth=8192,
                        out_depth=512, timing_regs=1, dsp_regs=1),
    "mnist": V2.replace(**WORKLOAD_MEMORIES["mnist"]),
    "dense": AcceleratorConfig(dpe_cols=16, spe_lanes=0, col_skip=1),
    "icarus": AcceleratorConfig(dpe_cols=4, spe_lanes=2, tile=8, max_cin=64, max_cout=64,
                                max_pixels=256, act_depth=256, weight_depth=256,
                                res_depth=1024, out_depth=256),
    "unit": AcceleratorConfig(dpe_cols=4, spe_lanes=2, tile=4, max_cin=64, max_cout=48,
                              max_pixels=64, act_depth=512, weight_depth=256, res_depth=1024,
                              out_depth=256),
}


def preset(name: str, **overrides) -> AcceleratorConfig:
    """Configuration ``name`` of :data:`PRESETS` with ``overrides`` applied."""
    if name not in PRESETS:
        raise ValueError(f"configuration must be one of {sorted(PRESETS)}, got {name!r}")
    return PRESETS[name].replace(**overrides)


def for_workload(config: AcceleratorConfig, model: str) -> AcceleratorConfig:
    """``config`` with memories and channel limits deep enough for workload ``model``'s layers
    (:data:`WORKLOAD_MEMORIES`; a deeper memory is kept). The datapath is unchanged, so are the
    cycles of every layer."""
    if model not in WORKLOAD_MEMORIES:
        raise ValueError(f"model must be one of {sorted(WORKLOAD_MEMORIES)}, got {model!r}")
    need = WORKLOAD_MEMORIES[model]
    return config.replace(**{k: max(getattr(config, k), v) for k, v in need.items()})


def parse_overrides(items) -> dict:
    """``["tile=8", ...]`` (command-line ``--param`` values) -> ``{"tile": 8}``."""
    out = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--param wants NAME=VALUE, got {item!r}")
        try:
            out[name.strip()] = int(value, 0)
        except ValueError:
            raise ValueError(f"--param {name}: {value!r} is not an integer") from None
    return out

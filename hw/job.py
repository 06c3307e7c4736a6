"""The job layer: one layer execution prepared for a configured accelerator top.

(layer descriptor + integer operands, :class:`hw.config.AcceleratorConfig`) -> the descriptor
register value, the memory images, the channel map, a fit check that names every problem, the
expected output words and the cycle model's counters. It is the one place that translates a
layer execution into hardware inputs: the cocotb replay, the FPGA bring-up kit, the ``$readmemh``
export, the evaluation and the hardware tests all go through it.

:class:`Descriptor` is the layer as the controller is programmed with it, in the terms of the
golden model (``golden.intref.run_layer``'s arguments); the trace format stores exactly its
fields. :meth:`Descriptor.register_fields` is the one mapping to the register block
(:func:`hw.descriptor.descriptor_for`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from golden import intref as ir
from golden import numerics as nx

from . import layout
from .config import AcceleratorConfig
from .descriptor import descriptor_for, descriptor_layout

__all__ = ["Descriptor", "Job", "JobError", "memory_images", "make_job", "predict_counters"]


class JobError(ValueError):
    """A layer execution does not fit the configuration (the message lists every reason) or
    its operands are not those of the descriptor."""


@dataclasses.dataclass(frozen=True)
class Descriptor:
    """Everything the controller is programmed with for one layer execution."""
    height: int
    width: int
    cin: int
    cout: int
    kernel: int
    stride: int
    padding: int
    x_format: int            # golden.intref.Format
    out_format: int          # golden.intref.Format
    relu: bool
    residual: bool
    scale_shift: int
    threshold_pct: int = ir.THRESHOLD_DEFAULT_PCT
    vector: int = 16

    @property
    def shape(self) -> ir.ConvShape:
        return ir.ConvShape(self.height, self.width, self.cin, self.cout, self.kernel,
                            self.stride, self.padding)

    @property
    def mode(self) -> ir.Mode:
        return ir.Format(self.x_format).mode

    @property
    def x_block(self) -> int:
        return ir.Format(self.x_format).block(self.vector)

    @property
    def out_block(self) -> int:
        return ir.Format(self.out_format).block(self.vector)

    @property
    def out_pixels(self) -> int:
        s = self.shape
        return s.out_height * s.out_width

    @property
    def out_words(self) -> int:
        """Words of the layer's output (one per output pixel and output block)."""
        return self.out_pixels * -(-self.cout // self.out_block)

    @property
    def groups_in(self) -> int:
        """Bits of the input channel map of this layer."""
        return -(-self.cin // self.vector)

    def validate(self) -> None:
        """Raise ValueError (naming the field) unless this is a layer the accelerator runs."""
        self.shape  # ConvShape checks the geometry
        for name in ("x_format", "out_format"):
            if getattr(self, name) not in [f.value for f in ir.Format]:
                raise ValueError(f"{name} must be one of {[f.value for f in ir.Format]}, "
                                 f"got {getattr(self, name)!r}")
        if not isinstance(self.relu, bool) or not isinstance(self.residual, bool):
            raise ValueError("relu and residual must be booleans")
        if self.out_format == ir.Format.UINT4 and not self.relu:
            raise ValueError("out_format UINT4 needs relu")
        if not 0 <= self.scale_shift <= ir.SCALE_SHIFT_MAX:
            raise ValueError(f"scale_shift must be in [0, {ir.SCALE_SHIFT_MAX}], "
                             f"got {self.scale_shift}")
        if not 0 <= self.threshold_pct <= 100:
            raise ValueError(f"threshold_pct must be in [0, 100], got {self.threshold_pct}")
        nx._check_vector(self.vector)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> "Descriptor":
        names = {f.name for f in dataclasses.fields(cls)}
        missing = sorted(n for n in names if n not in data
                         and n not in ("threshold_pct", "vector"))
        if missing:
            raise ValueError(f"missing field(s) {missing}")
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown field(s) {unknown}")
        return cls(**data)

    @classmethod
    def of_layer(cls, shape: ir.ConvShape, *, x_format, out_format, relu, residual,
                 scale_shift, threshold_pct=ir.THRESHOLD_DEFAULT_PCT, vector=16):
        """The descriptor of a layer given in ``golden.intref.run_layer``'s terms."""
        return cls(shape.height, shape.width, shape.cin, shape.cout, shape.kernel,
                   shape.stride, shape.padding, int(ir.Format(x_format)),
                   int(ir.Format(out_format)), bool(relu), bool(residual), int(scale_shift),
                   int(threshold_pct), int(vector))

    # ---- the hardware side

    def register_fields(self, **bases) -> dict:
        """Field values of the register block (``descriptor_layout().const``); ``bases``:
        memory base addresses (``act_base``, ... ; default 0)."""
        return descriptor_for(self.shape, x_format=ir.Format(self.x_format),
                              out_format=ir.Format(self.out_format), relu=self.relu,
                              residual=self.residual, shift=self.scale_shift,
                              threshold=self.threshold_pct, **bases)

    def register_const(self, **bases):
        """The register block as a ``descriptor_layout()`` constant (all bases 0 unless
        given)."""
        return descriptor_layout().const(self.register_fields(**bases))

    def register_value(self, **bases) -> int:
        """The packed register block (all bases 0 unless given)."""
        return self.register_const(**bases).as_value().value

    def requirements(self, tile: int) -> dict:
        """Accelerator parameters (minimum values) this layer needs on a top with ``tile``:
        memory depths in words and the channel / pixel limits."""
        nvec_in = -(-self.cin // self.x_block)
        return {
            "act_depth": self.height * self.width * nvec_in,
            "weight_depth": -(-self.cout // tile) * self.kernel ** 2 * nvec_in,
            "res_depth": self.out_pixels * self.cout if self.residual else 0,
            "out_depth": self.out_words,
            "max_cin": self.cin,
            "max_cout": self.cout,  # also the param memory depth
            "max_pixels": self.out_pixels,
        }

    def fit_problems(self, config: AcceleratorConfig) -> list[str]:
        """Every reason why this layer does not run on a top built with ``config`` (empty:
        it fits)."""
        problems = []
        if self.vector != config.vector:
            problems.append(f"vector is {self.vector}, the top has vector={config.vector}")
        for name, need in self.requirements(config.tile).items():
            have = getattr(config, name)
            if need > have:
                problems.append(f"needs {name} >= {need} (the top has {have})")
        return problems


def memory_images(d: Descriptor, arrays: dict, *, tile: int) -> dict[str, tuple[list, int]]:
    """``name -> (words, word width in bits)`` of every memory image of a layer execution with
    operands ``arrays`` (the trace's array names): ``act``, ``weight``, ``param``, ``res`` (if
    the layer has a residual) and, when ``arrays`` holds the expected outputs,
    ``out_expected``. Every image starts at address 0."""
    a = arrays
    images = {
        "act": (layout.act_words(a["x_codes"], a["x_scales"], x_format=d.x_format,
                                 vector=d.vector), layout.ACT_WORD_BITS),
        "weight": (layout.weight_words(a["w_codes"], a["w_scales"], x_format=d.x_format,
                                       tile=tile, vector=d.vector),
                   layout.weight_word_bits(tile)),
        "param": (layout.param_words(a["scale_mant"], a["bias"]), layout.PARAM_WORD_BITS),
    }
    if d.residual:
        images["res"] = (layout.residual_words(a["residual"]), layout.RES_WORD_BITS)
    if "out_codes" in a:
        images["out_expected"] = (layout.act_words(a["out_codes"], a["out_scales"],
                                                   x_format=d.out_format, vector=d.vector),
                                  layout.ACT_WORD_BITS)
    return images


@dataclasses.dataclass(frozen=True)
class Job:
    """One layer execution prepared for the top built with ``config``."""
    descriptor: Descriptor
    config: AcceleratorConfig
    route: tuple          # input channel map bits of the layer, 1 = sparse
    images: dict          # memory name -> list of words (see :func:`memory_images`)

    @property
    def desc_value(self) -> int:
        """The packed descriptor register (all bases 0)."""
        return self.descriptor.register_value()

    @property
    def map_value(self) -> int:
        """The ``map`` port value (bits beyond the layer's groups are 0)."""
        return sum(int(b) << g for g, b in enumerate(self.route))

    @property
    def out_words(self) -> int:
        return self.descriptor.out_words

    def predicted_counters(self) -> dict:
        """Every counter the cycle model (:func:`hw.cyclemodel.predict_layer`) predicts."""
        return _predict(self.descriptor, self.route, self.images["act"], self.config)


def _predict(d: Descriptor, route, act_words, config) -> dict:
    from .cyclemodel import predict_layer
    return predict_layer(d.shape, list(route), x_format=ir.Format(d.x_format),
                         out_format=ir.Format(d.out_format), residual=d.residual,
                         act_words=act_words, config=config)


def predict_counters(d: Descriptor, x_codes, route, config: AcceleratorConfig) -> dict:
    """The cycle model's counters of layer ``d`` with input codes ``x_codes`` and channel map
    ``route`` on ``config``, without the other operands: the counters depend on the input's
    zeros and the layer's shape only (the scales in the act words are left 0)."""
    scales = np.zeros((d.height, d.width, -(-d.cin // d.x_block)), np.uint8)
    act = layout.act_words(x_codes, scales, x_format=d.x_format, vector=d.vector)
    return _predict(d, [int(b) for b in np.asarray(route).reshape(-1)], act, config)


def make_job(d: Descriptor, arrays: dict, config: AcceleratorConfig, *, route=None) -> Job:
    """The :class:`Job` of descriptor ``d`` with operands ``arrays`` (``x_codes``, ``x_scales``,
    ``w_codes``, ``w_scales``, ``scale_mant``, ``bias``, ``residual`` if any; the expected
    ``out_codes`` / ``out_scales`` if known) on ``config``. ``route``: the input channel map
    (default ``arrays["channel_map"]``). Raises :class:`JobError` unless the layer fits."""
    if not isinstance(config, AcceleratorConfig):
        raise TypeError(f"config must be an hw.config.AcceleratorConfig, got {config!r}")
    problems = d.fit_problems(config)
    if problems:
        raise JobError("the layer does not fit the configuration: " + "; ".join(problems))
    if route is None:
        route = arrays["channel_map"]
    route = tuple(int(b) for b in np.asarray(route).reshape(-1))
    if not d.groups_in <= len(route) <= config.groups_in or any(b not in (0, 1) for b in route):
        raise JobError(f"the channel map must hold {d.groups_in} to {config.groups_in} bits "
                       f"(one per {d.vector}-channel group of cin {d.cin}, at most the top's "
                       f"map width), got {route!r}")
    if not config.has_spe and any(route):
        raise JobError("the top has no SPE (spe_lanes=0): it runs every channel group on the "
                       f"DPE, so the channel map must be all dense, got {route!r}")
    images = {name: words for name, (words, _w) in
              memory_images(d, arrays, tile=config.tile).items()}
    return Job(descriptor=d, config=config, route=route, images=images)

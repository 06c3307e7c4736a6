"""The layer descriptor: the register block a layer execution is programmed with.

Field widths are fixed (not parametric) so that the register map and the trace format do not
depend on generator parameters; the Python side (:func:`descriptor_for`) checks the values.
"""

from amaranth.lib import data

from golden import intref

from .common import Format, Mode

__all__ = ["descriptor_layout", "descriptor_for", "DIM_BITS", "ADDR_BITS"]

#: Bits of a shape field (height, width, cin, cout).
DIM_BITS = 12
#: Bits of a memory base address / word address.
ADDR_BITS = 20


def descriptor_layout():
    """``data.StructLayout`` of the descriptor, fields packed LSB first in this order."""
    return data.StructLayout({
        "height": DIM_BITS,
        "width": DIM_BITS,
        "cin": DIM_BITS,
        "cout": DIM_BITS,
        "kernel": 2,       # 1 or 3
        "stride": 2,       # 1 or 2
        "padding": 2,      # 0 .. kernel - 1
        "mode": Mode,
        "x_format": Format,
        "out_format": Format,
        "relu": 1,
        "res_en": 1,
        "threshold": 7,    # percent, 0..100
        "shift": 6,        # PPU scale shift, 0..63
        "act_base": ADDR_BITS,
        "w_base": ADDR_BITS,
        "par_base": ADDR_BITS,
        "res_base": ADDR_BITS,
        "out_base": ADDR_BITS,
    })


def descriptor_for(shape, *, x_format, out_format, relu, residual=False, shift=0,
                   threshold=intref.THRESHOLD_DEFAULT_PCT, act_base=0, w_base=0, par_base=0,
                   res_base=0, out_base=0):
    """Descriptor field values (a dict for ``descriptor_layout().const``) of one layer."""
    if not isinstance(shape, intref.ConvShape):
        raise TypeError(f"shape must be a golden.intref.ConvShape, got {shape!r}")
    for name in ("height", "width", "cin", "cout"):
        value = getattr(shape, name)
        if value >= 2 ** DIM_BITS:
            raise ValueError(f"{name} must be < {2 ** DIM_BITS}, got {value}")
    x_format, out_format = intref.Format(x_format), intref.Format(out_format)
    if out_format == intref.Format.UINT4 and not relu:
        raise ValueError("out_format UINT4 needs relu=True")
    if not 0 <= shift <= intref.SCALE_SHIFT_MAX:
        raise ValueError(f"shift must be in [0, {intref.SCALE_SHIFT_MAX}], got {shift}")
    if not 0 <= threshold <= 100:
        raise ValueError(f"threshold must be in [0, 100], got {threshold}")
    return {
        "height": shape.height, "width": shape.width, "cin": shape.cin, "cout": shape.cout,
        "kernel": shape.kernel, "stride": shape.stride, "padding": shape.padding,
        "mode": x_format.mode, "x_format": x_format, "out_format": out_format, "relu": int(relu), "res_en": int(residual),
        "threshold": threshold, "shift": shift, "act_base": act_base, "w_base": w_base,
        "par_base": par_base, "res_base": res_base, "out_base": out_base,
    }

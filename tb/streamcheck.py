"""Stream protocol checker for cocotb tests of emitted Verilog (the counterpart of
:mod:`hw.streamcheck` for amaranth.sim).

:func:`stream_checker` is a coroutine to run in the background (``cocotb.start_soon``) for one
stream port of the DUT (the Verilog ports ``<name>__valid``, ``<name>__ready``,
``<name>__payload``): once ``valid`` is high at a rising edge without ``ready``, ``valid`` must
still be high, with the same payload, at the next rising edge; otherwise it raises
:class:`StreamViolation` naming the stream and the simulation time, which fails the test.
"""

from cocotb.simtime import get_sim_time
from cocotb.triggers import ReadOnly, RisingEdge

__all__ = ["StreamViolation", "stream_checker"]


class StreamViolation(AssertionError):
    """A stream broke the valid/ready handshake."""


def _high(signal):
    """True if the 1-bit ``signal`` is 1 (an X or Z counts as low)."""
    return str(signal.value) == "1"


async def stream_checker(dut, name, clk=None):
    """Watch the stream ``name`` of ``dut`` at every rising edge of ``clk`` (default
    ``dut.clk``) until cancelled; values are sampled in the ReadOnly phase before the edge."""
    clk = dut.clk if clk is None else clk
    valid, ready, payload = (getattr(dut, f"{name}__{m}") for m in ("valid", "ready", "payload"))
    held = None  # payload of a pending transfer (valid & ~ready at the previous edge)
    while True:
        await ReadOnly()
        value = str(payload.value)  # a bit string: compares X/Z too, and any width
        if held is not None:
            at = f"at {get_sim_time('ns'):g} ns"
            if not _high(valid):
                raise StreamViolation(f"stream {name}: valid dropped before ready {at}")
            if value != held:
                raise StreamViolation(f"stream {name}: payload changed while valid & ~ready "
                                      f"{at}: {_hex(held)} -> {_hex(value)}")
        held = value if _high(valid) and not _high(ready) else None
        await RisingEdge(clk)


def _hex(bits):
    """A payload bit string as hex (as is if it holds X or Z)."""
    try:
        return f"{int(bits, 2):#x}"
    except ValueError:
        return bits

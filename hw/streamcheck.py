"""Stream protocol checker for amaranth.sim testbenches.

:func:`stream_checker` returns a background monitor (an async function of ``ctx``, for
``hw.simtest.run_sim(..., monitors=[...])``) that fails the simulation as soon as a
``lib.stream`` interface breaks the handshake rules: once ``valid`` is high it must stay high,
with an unchanged payload, until the cycle of the transfer (``valid & ready``).
"""

from amaranth.hdl import Value
from amaranth.lib import stream

__all__ = ["stream_checker", "stream_members"]


def stream_members(component):
    """``{name: interface}`` of the top-level ``lib.stream`` members of a component (none for
    an object without a signature)."""
    sig = getattr(component, "signature", None)
    members = getattr(sig, "members", None)
    if members is None:
        return {}
    return {name: getattr(component, name) for name, member in members.items()
            if member.is_signature and isinstance(member.signature, stream.Signature)}


def stream_checker(port, name):
    """Monitor of the stream interface ``port`` (or of a function returning it, resolved when
    the simulation starts: e.g. a submodule's port that exists only after elaboration).

    In every cycle that follows one with ``valid & ~ready``, ``valid`` must still be high and
    the payload unchanged; otherwise AssertionError names the stream (``name``), the cycle
    (clock edges since the start of the simulation) and the values."""
    async def monitor(ctx):
        p = port() if callable(port) else port
        payload = Value.cast(p.payload)
        held = None  # payload of a pending transfer (valid & ~ready in the previous cycle)
        cycle = 0
        async for _, _, valid, ready, value in ctx.tick().sample(p.valid, p.ready, payload):
            if held is not None:
                if not valid:
                    raise AssertionError(f"stream {name}: valid dropped before ready in cycle "
                                         f"{cycle}")
                if value != held:
                    raise AssertionError(f"stream {name}: payload changed while valid & ~ready "
                                         f"in cycle {cycle}: {held:#x} -> {value:#x}")
            held = value if valid and not ready else None
            cycle += 1
    return monitor

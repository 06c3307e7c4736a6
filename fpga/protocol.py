"""The serial protocol between the host program (:mod:`fpga.host`) and the board's link
(:class:`fpga.link.HostLink`): one definition of every command, field and reply, imported by
both sides.

Byte-oriented, request/response, 8N1. Every multi-byte field is little-endian. A command is one
byte, then its fixed argument bytes, then (``WRITE``, ``DESC``) its data:

============  =====================================  =============================================
command       arguments, then data                   reply
============  =====================================  =============================================
``INFO``      --                                     :data:`MAGIC`, :data:`VERSION` (1 byte),
                                                     the configuration id (4 bytes,
                                                     :func:`config_id`)
``WRITE``     memory (1), address (3), count (2);    ``ACK`` after the last word
              then ``count`` words of
              :func:`word_bytes` bytes each
``DESC``      the descriptor register and the        ``ACK``
              channel map as one number
              (``desc | map << desc_bits``) of
              :func:`desc_bytes` bytes
``START``     --                                     ``FINISHED`` when the accelerator's ``done``
                                                     rises (the layer ran to its end)
``READ``      space (1), address (3), count (2)      ``count`` items of :func:`read_bytes` bytes
``STATUS``    --                                     one byte: bit 0 ``busy``, bit 1 ``done``,
                                                     bit 2 a byte arrived with a bad stop bit
                                                     since the last ``STATUS``
============  =====================================  =============================================

An unknown command byte is answered with ``ERROR`` and the byte itself, and ignored. Memories
(``WRITE``) are numbered as the top's host port (:class:`hw.top.MemSel`: act, weight, param,
res); read spaces (``READ``) are :data:`SPACES`: words of the out memory, the per-channel zero
counters (address = channel), the counters (address = index in :data:`hw.config.COUNTERS`)
and the next channel map (address ignored).
"""

from __future__ import annotations

import hashlib
import json

from hw.config import COUNTER_BITS, COUNTERS, MEMORIES, AcceleratorConfig
from hw.descriptor import ADDR_BITS, descriptor_layout

__all__ = ["MAGIC", "VERSION", "CMD", "ACK", "FINISHED", "ERROR", "SPACES", "ARG_BYTES",
           "ADDR_BYTES", "COUNT_BYTES", "MAX_COUNT", "STATUS_BUSY", "STATUS_DONE",
           "STATUS_FRAMING", "config_id", "word_bytes", "desc_bits", "desc_bytes",
           "read_widths", "read_bytes", "info_reply"]

#: The first bytes of the ``INFO`` reply.
MAGIC = b"SQDM"
#: Protocol version (the byte after :data:`MAGIC`).
VERSION = 1
#: Command bytes (printable, so a serial terminal shows them).
CMD = {"INFO": ord("I"), "WRITE": ord("W"), "DESC": ord("D"), "START": ord("S"),
       "READ": ord("R"), "STATUS": ord("T")}
ACK = ord("K")
FINISHED = ord("F")
ERROR = ord("E")
#: ``READ`` spaces, in the order of their number.
SPACES = ("out", "zero_count", "counter", "next_map")
#: Bytes of an address and of a word count (``WRITE`` and ``READ`` arguments).
ADDR_BYTES = 3
COUNT_BYTES = 2
MAX_COUNT = 2 ** (8 * COUNT_BYTES) - 1
#: Argument bytes of ``WRITE`` and ``READ``: memory / space, address, count.
ARG_BYTES = 1 + ADDR_BYTES + COUNT_BYTES
STATUS_BUSY, STATUS_DONE, STATUS_FRAMING = 1, 2, 4

assert ADDR_BITS <= 8 * ADDR_BYTES


def config_id(config: AcceleratorConfig) -> int:
    """32-bit identity of a configuration (the first 4 bytes of the SHA-256 of its parameters
    as sorted JSON): the board reports it, the host refuses a bitstream built for another."""
    text = json.dumps(config.to_dict(), sort_keys=True).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


def word_bytes(config: AcceleratorConfig) -> dict:
    """``{memory: bytes per word}`` of the memories ``WRITE`` loads."""
    return {name: -(-config.widths[name] // 8) for name in MEMORIES if name != "out"}


def desc_bits(config: AcceleratorConfig) -> int:
    """Bits of the ``DESC`` number: the descriptor register, then the channel map."""
    return descriptor_layout().size + config.groups_in


def desc_bytes(config: AcceleratorConfig) -> int:
    return -(-desc_bits(config) // 8)


def read_widths(config: AcceleratorConfig) -> dict:
    """``{space: bits of one item}`` of the ``READ`` spaces."""
    return {"out": config.widths["out"], "zero_count": config.max_pixels.bit_length(),
            "counter": COUNTER_BITS, "next_map": config.groups_out}


def read_bytes(config: AcceleratorConfig) -> dict:
    return {name: -(-bits // 8) for name, bits in read_widths(config).items()}


def info_reply(config: AcceleratorConfig) -> bytes:
    """What the board answers to ``INFO``."""
    return MAGIC + bytes([VERSION]) + config_id(config).to_bytes(4, "little")


assert len(COUNTERS) < 2 ** (8 * ADDR_BYTES)

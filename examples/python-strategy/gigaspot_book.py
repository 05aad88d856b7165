"""Decodes the two byte buffers of the GigaSPOT plugin contract (gigaspot:plugin@0.3.0).

The market hands a plugin the machine and its candidate bids as little-endian byte
buffers; `wit/since_v0.3.0/plugin.wit` documents both layouts (`type machine`,
`type book`). This module turns them into plain Python objects and offers the market's
own economic formulas, so that a strategy or validator reads like its Rust twin. It
depends on nothing but the standard library; copy it into your plugin as it is.
"""

import struct
from dataclasses import dataclass
from typing import List, Optional, Tuple

#: CLORE base units in one CLORE.
UNITS_PER_CLORE = 100_000_000

_MACHINE_HEAD = struct.Struct("<QQddQdIIIIQQQQ")
_GPU = struct.Struct("<IIIIIIIIiiiiII")
_BOOK_HEAD = struct.Struct("<IIIIIIII")
_BID = struct.Struct("<QQQQIIIIII")

#: Presence bits of a GPU's allowed ranges and of a bid's per-GPU settings.
CORE_LOCK, MEM_LOCK, CORE_OFFSET, MEM_OFFSET = 1, 2, 4, 8


@dataclass
class Gpu:
    """One GPU of the machine with the ranges a bid may set (None when not allowed)."""

    index: int
    model: str
    power_limit_w: Tuple[int, int]
    core_lock_mhz: Optional[Tuple[int, int]]
    mem_lock_mhz: Optional[Tuple[int, int]]
    core_offset_mhz: Optional[Tuple[int, int]]
    mem_offset_mhz: Optional[Tuple[int, int]]


@dataclass
class Running:
    """The bid running on the machine (it won the interval before this one)."""

    bid_id: int
    owner_id: int
    price_per_day: int
    total_power_limit_w: Optional[int]
    running_for_s: int


@dataclass
class Machine:
    """The machine being cleared."""

    id: int
    host_id: int
    energy_price_usd_per_kwh: float
    clore_usd: float
    min_bid_per_day: int
    reliability: float
    interval_s: int
    gpus: List[Gpu]
    running: Optional[Running]


@dataclass
class GpuOc:
    """A bid's settings for one GPU (None for a setting it leaves alone)."""

    power_limit_w: int
    core_lock_mhz: Optional[int]
    mem_lock_mhz: Optional[int]
    core_offset_mhz: Optional[int]
    mem_offset_mhz: Optional[int]


@dataclass
class Bid:
    """One candidate bid; prices in CLORE base units per day."""

    id: int
    owner_id: int
    price_per_day: int
    created_at: int
    total_power_limit_w: int
    image: str
    oc: List[GpuOc]
    env_keys: List[str]


def _range(bits: int, bit: int, low: int, high: int) -> Optional[Tuple[int, int]]:
    return (low, high) if bits & bit else None


def decode_machine(buf: bytes) -> Machine:
    """The machine of a `machine` buffer."""
    (mid, host, energy, rate, min_bid, reliability, interval, gpus, present, power,
     run_id, run_owner, run_price, run_for) = _MACHINE_HEAD.unpack_from(buf, 0)
    strings = 96 + gpus * _GPU.size
    decoded = []
    for g in range(gpus):
        (index, bits, pmin, pmax, clmin, clmax, mlmin, mlmax, comin, comax, momin, momax,
         offset, length) = _GPU.unpack_from(buf, 96 + g * _GPU.size)
        model = bytes(buf[strings + offset:strings + offset + length]).decode("utf-8")
        decoded.append(Gpu(index, model, (pmin, pmax),
                           _range(bits, CORE_LOCK, clmin, clmax),
                           _range(bits, MEM_LOCK, mlmin, mlmax),
                           _range(bits, CORE_OFFSET, comin, comax),
                           _range(bits, MEM_OFFSET, momin, momax)))
    running = None
    if present & 1:
        running = Running(run_id, run_owner, run_price, power if present & 2 else None, run_for)
    return Machine(mid, host, energy, rate, min_bid, reliability, interval, decoded, running)


def _signed(word: int) -> int:
    return word - (1 << 32) if word & 0x8000_0000 else word


def _oc(words: Tuple[int, ...], start: int, count: int) -> List[GpuOc]:
    settings, at = [], start
    for _ in range(count):
        power, bits = words[at], words[at + 1]
        at += 2
        values = []
        for bit in (CORE_LOCK, MEM_LOCK, CORE_OFFSET, MEM_OFFSET):
            if bits & bit:
                values.append(words[at])
                at += 1
            else:
                values.append(None)
        core_off = None if values[2] is None else _signed(values[2])
        mem_off = None if values[3] is None else _signed(values[3])
        settings.append(GpuOc(power, values[0], values[1], core_off, mem_off))
    return settings


def decode_book(buf: bytes) -> List[Bid]:
    """The candidate bids of a `book` buffer, oldest first."""
    n, w, e, i, k, s, _, _ = _BOOK_HEAD.unpack_from(buf, 0)
    at = _BOOK_HEAD.size + n * _BID.size
    words = struct.unpack_from(f"<{w}I", buf, at)
    at += 4 * w
    env_refs = struct.unpack_from(f"<{e}I", buf, at)
    at += 4 * e
    image_spans = struct.unpack_from(f"<{2 * i}I", buf, at)
    at += 8 * i
    key_spans = struct.unpack_from(f"<{2 * k}I", buf, at)
    at += 8 * k
    area = bytes(buf[at:at + s])

    def text(spans: Tuple[int, ...], index: int) -> str:
        offset, length = spans[2 * index], spans[2 * index + 1]
        return area[offset:offset + length].decode("utf-8")

    images = [text(image_spans, x) for x in range(i)]
    keys = [text(key_spans, x) for x in range(k)]
    bids = []
    for b in range(n):
        (bid_id, owner, price, created, power, image, oc_start, oc_count, env_start,
         env_count) = _BID.unpack_from(buf, _BOOK_HEAD.size + b * _BID.size)
        bids.append(Bid(bid_id, owner, price, created, power, images[image],
                        _oc(words, oc_start, oc_count),
                        [keys[r] for r in env_refs[env_start:env_start + env_count]]))
    return bids


def clore_per_day(units_per_day: int) -> float:
    """A price in base units per day as CLORE per day."""
    return float(units_per_day) / float(UNITS_PER_CLORE)


def energy_cost_usd_per_day(power_w: int, usd_per_kwh: float) -> float:
    """The energy cost in USD of drawing `power_w` watts for a day."""
    return float(power_w) * 24.0 / 1000.0 * usd_per_kwh


def net_profit_usd_per_day(machine: Machine, bid: Bid) -> float:
    """The host's net profit of running the bid for a day, in USD."""
    return (clore_per_day(bid.price_per_day) * machine.clore_usd
            - energy_cost_usd_per_day(bid.total_power_limit_w, machine.energy_price_usd_per_kwh))


def covers_energy(machine: Machine, bid: Bid) -> bool:
    """Whether the bid's price covers the host's energy cost of running it."""
    return net_profit_usd_per_day(machine, bid) >= 0.0


def price_per_watt(bid: Bid) -> float:
    """CLORE per day per watt of the bid's total power limit; 0 without power."""
    if bid.total_power_limit_w == 0:
        return 0.0
    return clore_per_day(bid.price_per_day) / float(bid.total_power_limit_w)


# For tests: buffers as the market would hand them over, from a few numbers.

def sample_machine(energy_price_usd_per_kwh: float, clore_usd: float) -> bytes:
    """A `machine` buffer without GPUs and with nothing running."""
    return _MACHINE_HEAD.pack(1, 2, energy_price_usd_per_kwh, clore_usd, 0, 1.0, 60,
                              0, 0, 0, 0, 0, 0, 0)


def sample_book(*rows: Tuple[int, int, int, int], image: str = "registry.example/app:1") -> bytes:
    """A `book` buffer of `(id, price in whole CLORE per day, power limit per GPU in W,
    GPUs)` rows: owner 7, created at 0, every bid with `image`, no other setting and no
    environment."""
    words: List[int] = []
    entries = []
    for bid_id, price, watts, gpus in rows:
        entries.append(_BID.pack(bid_id, 7, price * UNITS_PER_CLORE, 0, watts * gpus, 0,
                                 len(words), gpus, 0, 0))
        for _ in range(gpus):
            words += [watts, 0]
    text = image.encode("utf-8")
    head = _BOOK_HEAD.pack(len(rows), len(words), 0, 1, 0, len(text), 0, 0)
    return (head + b"".join(entries) + struct.pack(f"<{len(words)}I", *words)
            + struct.pack("<2I", 0, len(text)) + text)

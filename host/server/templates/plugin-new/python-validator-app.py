"""`{{name}}`: a GigaSPOT bid validator in Python. Each billing interval the market calls
`validate` once per machine with every candidate bid; each rejection vetoes one bid for
this interval, with a kebab-case code and a message the bidder and the host read.

Rejects bids that pay less than a minimum price per watt (the configuration, in CLORE/day
per W; empty means no minimum).
"""

import math
from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import PluginInfo, Rejection

import gigaspot_book as book


class WitWorld(wit_world.WitWorld):
    """The validator world's exports."""

    min_per_w = 0.0

    def info(self) -> PluginInfo:
        return PluginInfo(name="{{name}}", version="0.1.0",
                          description="Rejects bids below a minimum price per watt")

    def configure(self, config: str) -> None:
        text = config.strip()
        try:
            value = float(text) if text else 0.0
        except ValueError:
            value = -1.0
        if not math.isfinite(value) or value < 0.0:
            raise Err(f"expected CLORE/day per W (>= 0), got {text!r}")
        self.min_per_w = value

    def validate(self, machine: bytes, bids: bytes) -> List[Rejection]:
        rejections = []
        for bid in book.decode_book(bids):
            per_w = book.price_per_watt(bid)
            if per_w < self.min_per_w:
                rejections.append(Rejection(
                    bid_id=bid.id, code="below-minimum-price-per-watt",
                    message=f"{per_w:.6f} CLORE/day per W is below this host's minimum of "
                            f"{self.min_per_w}"))
        return rejections

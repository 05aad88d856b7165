"""`{{name}}`: a GigaSPOT ranking strategy in Python. Each billing interval the market calls
`rank` once per machine with every candidate bid; the highest score wins, zero or less
means "not acceptable to this host".

Price per watt among the bids that cover the host's energy cost, never for bids that draw
more than the configured number of watts in total (empty configuration: no cap).
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import PluginInfo, Score

import gigaspot_book as book


class WitWorld(wit_world.WitWorld):
    """The strategy world's exports."""

    max_w = None

    def info(self) -> PluginInfo:
        return PluginInfo(name="{{name}}", version="0.1.0",
                          description="Price per watt for bids that cover energy, under a power cap")

    def configure(self, config: str) -> None:
        text = config.strip()
        if not text:
            self.max_w = None
        elif text.isdigit():
            self.max_w = int(text)
        else:
            raise Err(f"expected a power cap in watts, got {text!r}")

    def rank(self, machine: bytes, bids: bytes) -> List[Score]:
        m = book.decode_machine(machine)
        scores = []
        for bid in book.decode_book(bids):
            ok = ((self.max_w is None or bid.total_power_limit_w <= self.max_w)
                  and book.covers_energy(m, bid))
            scores.append(Score(bid_id=bid.id, score=book.price_per_watt(bid) if ok else 0.0))
        return scores

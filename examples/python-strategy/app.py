"""price-per-watt in Python: the same scores as the Rust plugin (plugins/price-per-watt).

Score = the bid's price in CLORE/day divided by its total power limit in W, for bids whose
price covers the host's energy cost at those power limits; others score 0. Takes no
configuration.
"""

from typing import List

import wit_world
from componentize_py_types import Err
from wit_world.imports.types import PluginInfo, Score

import gigaspot_book as book


def score(machine: book.Machine, bid: book.Bid) -> float:
    """The score of one bid on `machine`."""
    if book.covers_energy(machine, bid):
        return book.price_per_watt(bid)
    return 0.0


class WitWorld(wit_world.WitWorld):
    """The strategy world's exports."""

    def info(self) -> PluginInfo:
        return PluginInfo(
            name="python-price-per-watt",
            version="0.1.0",
            description="Price per watt among bids that cover energy, written in Python",
        )

    def configure(self, config: str) -> None:
        if config.strip():
            raise Err(f"python-price-per-watt takes no configuration, got {config!r}")

    def rank(self, machine: bytes, bids: bytes) -> List[Score]:
        m = book.decode_machine(machine)
        return [Score(bid_id=b.id, score=score(m, b)) for b in book.decode_book(bids)]

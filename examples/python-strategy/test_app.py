"""The strategy's own tests, run natively by test.sh: the same cases as the Rust plugin's."""

import struct
import unittest

import gigaspot_book as book
from app import WitWorld
from componentize_py_types import Err


def machine(energy_usd_per_kwh: float, clore_usd: float) -> bytes:
    """A `machine` buffer without GPUs and with nothing running."""
    return struct.pack("<QQddQdIIIIQQQQ", 1, 2, energy_usd_per_kwh, clore_usd, 0, 1.0, 60,
                       0, 0, 0, 0, 0, 0, 0)


def bids(*rows) -> bytes:
    """A `book` buffer of (id, price in CLORE/day, power per GPU in W, GPUs) rows, one
    image "app" and no environment."""
    words, entries = [], []
    for bid_id, price, watts, gpus in rows:
        entries.append((bid_id, 7, price * book.UNITS_PER_CLORE, 0, watts * gpus, 0,
                        len(words), gpus, 0, 0))
        for _ in range(gpus):
            words += [watts, 0]
    head = struct.pack("<8I", len(rows), len(words), 0, 1, 0, 3, 0, 0)
    body = b"".join(struct.pack("<QQQQIIIIII", *e) for e in entries)
    return head + body + struct.pack(f"<{len(words)}I", *words) + struct.pack("<2I", 0, 3) + b"app"


class PricePerWatt(unittest.TestCase):
    def test_the_book_decodes(self):
        decoded = book.decode_book(bids((1, 100, 250, 4)))
        self.assertEqual(decoded[0].total_power_limit_w, 1000)
        self.assertEqual(decoded[0].image, "app")
        self.assertEqual(len(decoded[0].oc), 4)

    def test_the_better_price_per_watt_wins_even_at_a_lower_price(self):
        scores = WitWorld().rank(machine(0.0, 0.05), bids((1, 100, 250, 4), (2, 60, 100, 4)))
        self.assertEqual([(s.bid_id, s.score) for s in scores], [(1, 0.1), (2, 0.15)])

    def test_bids_below_the_energy_cost_score_zero(self):
        # 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        scores = WitWorld().rank(machine(0.125, 0.0625), bids((1, 47, 250, 4), (2, 48, 250, 4)))
        self.assertEqual([s.score for s in scores], [0.0, 0.048])

    def test_configuration_is_refused(self):
        WitWorld().configure("")
        with self.assertRaises(Err):
            WitWorld().configure("bonus = 1")


if __name__ == "__main__":
    unittest.main()

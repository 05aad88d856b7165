"""The strategy's own tests, run natively by test.sh: the same cases as the Rust plugin's."""

import unittest

from componentize_py_types import Err

import gigaspot_book as book
from app import WitWorld


class PricePerWatt(unittest.TestCase):
    def test_the_book_decodes(self):
        decoded = book.decode_book(book.sample_book((1, 100, 250, 4)))
        self.assertEqual(decoded[0].total_power_limit_w, 1000)
        self.assertEqual(decoded[0].image, "registry.example/app:1")
        self.assertEqual([oc.power_limit_w for oc in decoded[0].oc], [250] * 4)

    def test_the_better_price_per_watt_wins_even_at_a_lower_price(self):
        scores = WitWorld().rank(book.sample_machine(0.0, 0.05),
                                 book.sample_book((1, 100, 250, 4), (2, 60, 100, 4)))
        self.assertEqual([(s.bid_id, s.score) for s in scores], [(1, 0.1), (2, 0.15)])

    def test_bids_below_the_energy_cost_score_zero(self):
        # 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        scores = WitWorld().rank(book.sample_machine(0.125, 0.0625),
                                 book.sample_book((1, 47, 250, 4), (2, 48, 250, 4)))
        self.assertEqual([s.score for s in scores], [0.0, 0.048])

    def test_configuration_is_refused(self):
        WitWorld().configure("")
        with self.assertRaises(Err):
            WitWorld().configure("bonus = 1")


if __name__ == "__main__":
    unittest.main()

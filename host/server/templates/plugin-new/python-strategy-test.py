"""`{{name}}`'s own tests, run natively by test.sh (the component is built first)."""

import unittest

from componentize_py_types import Err

import gigaspot_book as book
from app import WitWorld


def configured(config: str) -> WitWorld:
    plugin = WitWorld()
    plugin.configure(config)
    return plugin


class Strategy(unittest.TestCase):
    def test_the_better_price_per_watt_wins(self):
        scores = configured("").rank(book.sample_machine(0.0, 0.05),
                                     book.sample_book((1, 100, 250, 4), (2, 60, 100, 4)))
        self.assertEqual([(s.bid_id, s.score) for s in scores], [(1, 0.1), (2, 0.15)])

    def test_bids_over_the_cap_or_below_the_energy_cost_are_not_acceptable(self):
        scores = configured("1000").rank(book.sample_machine(0.0, 0.05),
                                         book.sample_book((1, 100, 300, 4), (2, 50, 200, 4)))
        self.assertEqual(scores[0].score, 0.0)
        self.assertGreater(scores[1].score, 0.0)
        # 1000 W at 0.125 USD/kWh = 3 USD/day = 48 CLORE/day at 0.0625 USD/CLORE.
        scores = configured("").rank(book.sample_machine(0.125, 0.0625),
                                     book.sample_book((1, 47, 250, 4)))
        self.assertEqual(scores[0].score, 0.0)

    def test_a_bad_configuration_is_refused(self):
        with self.assertRaises(Err):
            configured("lots")


if __name__ == "__main__":
    unittest.main()

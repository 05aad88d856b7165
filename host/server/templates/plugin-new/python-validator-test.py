"""`{{name}}`'s own tests, run natively by test.sh (the component is built first)."""

import unittest

from componentize_py_types import Err

import gigaspot_book as book
from app import WitWorld


def configured(config: str) -> WitWorld:
    plugin = WitWorld()
    plugin.configure(config)
    return plugin


class Validator(unittest.TestCase):
    def test_bids_below_the_minimum_are_rejected(self):
        rejected = configured("0.12").validate(
            book.sample_machine(0.0, 0.05), book.sample_book((1, 100, 250, 4), (2, 60, 100, 4)))
        self.assertEqual([(r.bid_id, r.code) for r in rejected],
                         [(1, "below-minimum-price-per-watt")])

    def test_without_a_minimum_every_bid_passes(self):
        self.assertEqual(configured("").validate(book.sample_machine(0.0, 0.05),
                                                 book.sample_book((1, 1, 450, 4))), [])
        with self.assertRaises(Err):
            configured("-1")


if __name__ == "__main__":
    unittest.main()

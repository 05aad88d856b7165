//! Typed bids from the per-call tables of contract 0.2.0.
//!
//! The market hands a plugin a `book`: flat bid records plus tables of per-GPU settings,
//! images and environment keys, so that lowering 1,000 bids costs one allocation per list
//! instead of several per bid. [`Bid`] is the author's view of one bid: it borrows its
//! settings, image and keys from the book, so building the views costs two allocations per
//! call (the list of views and the list of key names), none per bid.

use std::borrow::Cow;

use crate::__private::strategy::gigaspot::plugin::types::{Bid as Row, Book};
use crate::GpuOc;

/// A candidate bid for the machine. The market has already checked it against every
/// admission rule, so a plugin can trust the ranges; it ranks or vetoes, nothing else.
///
/// Inside a plugin the fields borrow from the market's input; in tests build bids with
/// [`crate::testing::bid`] or a struct literal (`image: "repo/app:1".into()`,
/// `oc: vec![…].into()`, `env_keys: &["MODEL"]`).
#[derive(Debug, Clone, PartialEq)]
pub struct Bid<'a> {
    /// Bid id; unique, and older bids have lower ids.
    pub id: u64,
    /// Account id of the bidder.
    pub owner_id: u64,
    /// Offered price in CLORE base units per day (1 CLORE = 10^8 units).
    pub price_per_day: u64,
    /// One entry per GPU of the machine, in the machine's GPU order.
    pub oc: Cow<'a, [GpuOc]>,
    /// Sum of the per-GPU power limits in watts.
    pub total_power_limit_w: u32,
    /// When the bid was created, in unix seconds.
    pub created_at: u64,
    /// The container image reference the bid wants to run.
    pub image: Cow<'a, str>,
    /// Names of the environment variables the bid sets (values are never shown to plugins).
    pub env_keys: &'a [&'a str],
}

/// Every bid's environment-key names, bid after bid (the bids' views borrow slices of it).
#[doc(hidden)]
pub fn env_names(book: &Book) -> Vec<&str> {
    book.env
        .iter()
        .map(|&key| book.env_keys[key as usize].as_str())
        .collect()
}

/// The views of the book's bids; `env` is [`env_names`] of the same book.
#[doc(hidden)]
pub fn bids<'a>(book: &'a Book, env: &'a [&'a str]) -> Vec<Bid<'a>> {
    book.bids.iter().map(|row| view(book, env, row)).collect()
}

fn view<'a>(book: &'a Book, env: &'a [&'a str], row: &Row) -> Bid<'a> {
    let range = |start: u32, count: u32| start as usize..start as usize + count as usize;
    Bid {
        id: row.id,
        owner_id: row.owner_id,
        price_per_day: row.price_per_day,
        oc: Cow::Borrowed(&book.oc[range(row.oc_start, row.oc_count)]),
        total_power_limit_w: row.total_power_limit_w,
        created_at: row.created_at,
        image: Cow::Borrowed(book.images[row.image as usize].as_str()),
        env_keys: &env[range(row.env_start, row.env_count)],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oc(power_limit_w: u32) -> GpuOc {
        GpuOc {
            power_limit_w,
            core_lock_mhz: None,
            mem_lock_mhz: None,
            core_offset_mhz: Some(-50),
            mem_offset_mhz: None,
        }
    }

    #[test]
    fn views_resolve_every_table_reference() {
        let row = |id, oc_start, image, env_start, env_count| Row {
            id,
            owner_id: 7,
            price_per_day: id * 100,
            total_power_limit_w: 600,
            created_at: 1,
            oc_start,
            oc_count: 2,
            image,
            env_start,
            env_count,
        };
        let book = Book {
            bids: vec![row(1, 0, 1, 0, 2), row(2, 2, 0, 2, 0), row(3, 4, 1, 2, 1)],
            oc: (0..6).map(|i| oc(100 + i)).collect(),
            images: vec!["a:1".into(), "b:2".into()],
            env_keys: vec!["X".into(), "Y".into()],
            env: vec![1, 0, 1],
        };
        let env = env_names(&book);
        let bids = bids(&book, &env);
        assert_eq!(bids.len(), 3);
        assert_eq!(bids[0].image, "b:2");
        assert_eq!(bids[0].env_keys, ["Y", "X"]);
        assert_eq!(
            bids[0]
                .oc
                .iter()
                .map(|o| o.power_limit_w)
                .collect::<Vec<_>>(),
            [100, 101]
        );
        assert_eq!(bids[1].image, "a:1");
        assert!(bids[1].env_keys.is_empty());
        assert_eq!(bids[1].oc[1].power_limit_w, 103);
        assert_eq!(bids[2].env_keys, ["Y"]);
        assert_eq!(bids[2].oc[0].core_offset_mhz, Some(-50));
        assert_eq!(bids[2].price_per_day, 300);
    }
}

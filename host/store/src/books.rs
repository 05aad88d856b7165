//! Each machine's active and suspended bids as shared lists, kept up to date with every
//! bid write, so that a tick's snapshot shares them (one reference count per machine)
//! instead of copying half a million bid references into lists of its own and releasing
//! them again afterwards (each a cache miss: about 50 ms of a tick at 10,000 machines ×
//! 50 bids on the reference machine). A write to a machine whose list a snapshot still
//! holds copies that one list first (copy on write). Also each owner's sum of active
//! prices, which the tick's funding check starts from instead of a pass over every bid.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use gigaspot_market::account::AccountId;
use gigaspot_market::bid::{Bid, BidState};
use gigaspot_market::machine::MachineId;

/// A machine's bids of one state, by id.
pub type Book = Arc<Vec<Arc<Bid>>>;

/// The active and the suspended books of every machine that has such bids.
#[derive(Default)]
pub(crate) struct Books {
    active: BTreeMap<MachineId, Book>,
    suspended: BTreeMap<MachineId, Book>,
    /// Each owner's sum of its active bids' prices per day, in base units.
    price_sums: HashMap<AccountId, u128>,
}

impl Books {
    /// Records that `new` replaces `old` (the same bid before the write, if any).
    pub(crate) fn put(&mut self, old: Option<&Arc<Bid>>, new: &Arc<Bid>) {
        if let Some(old) = old
            && self.remove(old)
            && old.state == BidState::Active
            && let Some(sum) = self.price_sums.get_mut(&old.owner)
        {
            *sum = sum.saturating_sub(u128::from(old.price_per_day.0));
        }
        if let Some(books) = self.of_state(new.state) {
            let bids = Arc::make_mut(books.entry(new.machine).or_default());
            match bids.binary_search_by_key(&new.id, |b| b.id) {
                Ok(at) => bids[at] = Arc::clone(new),
                Err(at) => bids.insert(at, Arc::clone(new)),
            }
            if new.state == BidState::Active {
                *self.price_sums.entry(new.owner).or_default() += u128::from(new.price_per_day.0);
            }
        }
    }

    /// Takes `bid` out of the book of its state; whether it was there.
    fn remove(&mut self, bid: &Bid) -> bool {
        let Some(books) = self.of_state(bid.state) else {
            return false;
        };
        let Some(book) = books.get_mut(&bid.machine) else {
            return false;
        };
        let bids = Arc::make_mut(book);
        let Ok(at) = bids.binary_search_by_key(&bid.id, |b| b.id) else {
            return false;
        };
        bids.remove(at);
        if bids.is_empty() {
            books.remove(&bid.machine);
        }
        true
    }

    fn of_state(&mut self, state: BidState) -> Option<&mut BTreeMap<MachineId, Book>> {
        match state {
            BidState::Active => Some(&mut self.active),
            BidState::Suspended => Some(&mut self.suspended),
            _ => None,
        }
    }

    /// Every machine's active bids (shared).
    pub(crate) fn active(&self) -> BTreeMap<MachineId, Book> {
        self.active.clone()
    }

    /// Every machine's suspended bids (shared).
    pub(crate) fn suspended(&self) -> BTreeMap<MachineId, Book> {
        self.suspended.clone()
    }

    /// Each owner's sum of its active bids' prices per day (including bids past their
    /// lifetime that no tick has marked expired yet).
    pub(crate) fn price_sums(&self) -> HashMap<AccountId, u128> {
        self.price_sums.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::money::Amount;

    fn bid(id: u64, machine: MachineId, state: BidState) -> Arc<Bid> {
        Arc::new(Bid {
            id,
            owner: 1,
            machine,
            price_per_day: Amount::clore(1),
            image: "app".into(),
            env: Default::default(),
            oc: vec![],
            created_at: 0,
            expires_at: 10,
            state,
        })
    }

    fn ids(books: &BTreeMap<MachineId, Book>, machine: MachineId) -> Vec<u64> {
        books
            .get(&machine)
            .map(|b| b.iter().map(|b| b.id).collect())
            .unwrap_or_default()
    }

    #[test]
    fn books_follow_every_write_and_a_held_snapshot_keeps_its_own_view() {
        let mut books = Books::default();
        for id in [5, 2, 9] {
            books.put(None, &bid(id, 1, BidState::Active));
        }
        books.put(None, &bid(3, 2, BidState::Active));
        assert_eq!(ids(&books.active(), 1), vec![2, 5, 9]);
        let sum = |books: &Books| books.price_sums().get(&1).copied().unwrap_or_default();
        assert_eq!(sum(&books), 4 * u128::from(Amount::clore(1).0));
        let held = books.active();
        // Suspend 5, cancel 9, edit 2 (still active), on machine 1.
        books.put(
            Some(&bid(5, 1, BidState::Active)),
            &bid(5, 1, BidState::Suspended),
        );
        books.put(
            Some(&bid(9, 1, BidState::Active)),
            &bid(9, 1, BidState::Cancelled),
        );
        let edited = bid(2, 1, BidState::Active);
        books.put(Some(&bid(2, 1, BidState::Active)), &edited);
        assert_eq!(ids(&books.active(), 1), vec![2]);
        assert!(Arc::ptr_eq(&books.active()[&1][0], &edited));
        assert_eq!(ids(&books.suspended(), 1), vec![5]);
        // Active now: 2 (edited) and 3.
        assert_eq!(sum(&books), 2 * u128::from(Amount::clore(1).0));
        // The snapshot taken before is unchanged; machine 2's list is still shared.
        assert_eq!(ids(&held, 1), vec![2, 5, 9]);
        assert!(Arc::ptr_eq(&held[&2], &books.active()[&2]));
        // The last active bid of a machine leaves: the machine has no book.
        books.put(
            Some(&bid(3, 2, BidState::Active)),
            &bid(3, 2, BidState::Expired),
        );
        assert!(!books.active().contains_key(&2));
        assert_eq!(sum(&books), u128::from(Amount::clore(1).0));
    }
}

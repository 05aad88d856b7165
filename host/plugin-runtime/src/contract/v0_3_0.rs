//! Host bindings of the contract `gigaspot:plugin@0.3.0` (`wit/since_v0.3.0/`): the
//! candidate bids as one little-endian byte buffer (`type book = list<u8>`), so that
//! lowering a book is a single copy into the guest, whatever the number of bids.

use std::cell::RefCell;
use std::ops::{Deref, DerefMut};

use super::Strings;

super::contract_version!("../../wit/since_v0.3.0");

/// Bytes of the header: six counts and two reserved words, all u32.
const HEADER: usize = 32;
/// Bytes of one bid row.
const ROW: usize = 56;

/// Presence bits of a per-GPU entry's optional settings, in the order their words follow
/// (and of a machine's GPU's optional ranges).
const CORE_LOCK: u32 = 1;
const MEM_LOCK: u32 = 2;
const CORE_OFFSET: u32 = 4;
const MEM_OFFSET: u32 = 8;

/// The machine buffer and the book of this version.
fn input(m: &market::MachineContext, bids: &[market::CandidateBid]) -> (Reused, Reused) {
    (machine(m), book(bids))
}

thread_local! {
    /// Buffers given back by [`Reused`] on this thread.
    static SPARE: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
}

/// Spare buffers kept per thread, and the largest capacity kept (a bigger one, from an
/// unusually large book, is freed).
const SPARES: usize = 8;
const SPARE_CAPACITY: usize = 4 << 20;

/// A byte buffer taken from this thread's spares and given back, emptied, when dropped:
/// encoding writes into pages already mapped. With a fresh allocation per call the
/// encoding page-faulted, a fifth of the WASM clearing's time.
pub(crate) struct Reused(Vec<u8>);

impl Reused {
    fn take() -> Reused {
        let spare = SPARE.try_with(|s| s.borrow_mut().pop()).ok().flatten();
        Reused(spare.unwrap_or_default())
    }
}

impl Deref for Reused {
    type Target = Vec<u8>;
    fn deref(&self) -> &Vec<u8> {
        &self.0
    }
}

impl DerefMut for Reused {
    fn deref_mut(&mut self) -> &mut Vec<u8> {
        &mut self.0
    }
}

impl Drop for Reused {
    fn drop(&mut self) {
        let mut buffer = std::mem::take(&mut self.0);
        if buffer.capacity() > SPARE_CAPACITY {
            return;
        }
        buffer.clear();
        // At thread exit the spares may be gone already: then the buffer is just freed.
        let _ = SPARE.try_with(|s| {
            let mut spares = s.borrow_mut();
            if spares.len() < SPARES {
                spares.push(buffer);
            }
        });
    }
}

/// Bytes of the machine's fixed part and of one GPU entry.
const MACHINE: usize = 96;
const GPU: usize = 56;

/// The machine in the layout `type machine` of `wit/since_v0.3.0/plugin.wit` documents.
pub(crate) fn machine(m: &market::MachineContext) -> Reused {
    let mut out = Reused::take();
    out.resize(MACHINE + m.gpus.len() * GPU, 0);
    set_u64(&mut out, 0, m.id);
    set_u64(&mut out, 8, m.host_id);
    set_u64(&mut out, 16, m.energy_price_usd_per_kwh.to_bits());
    set_u64(&mut out, 24, m.clore_usd.to_bits());
    set_u64(&mut out, 32, m.min_bid);
    set_u64(&mut out, 40, m.reliability.to_bits());
    set_u32(&mut out, 48, m.billing_interval_s);
    set_u32(&mut out, 52, word(m.gpus.len()));
    if let Some(r) = &m.running {
        set_u32(
            &mut out,
            56,
            1 | if r.total_power_limit_w.is_some() {
                2
            } else {
                0
            },
        );
        set_u32(&mut out, 60, r.total_power_limit_w.unwrap_or(0));
        set_u64(&mut out, 64, r.bid_id);
        set_u64(&mut out, 72, r.owner_id);
        set_u64(&mut out, 80, r.price_per_day);
        set_u64(&mut out, 88, r.running_for_s);
    }
    let mut offset = 0;
    for (g, entry) in m.gpus.iter().zip(out[MACHINE..].chunks_exact_mut(GPU)) {
        let unsigned = |r: Option<market::RangeU32>| r.map(|r| (r.min, r.max));
        let signed = |r: Option<market::RangeS32>| r.map(|r| (r.min as u32, r.max as u32));
        let ranges = [
            (unsigned(g.core_lock_mhz), CORE_LOCK),
            (unsigned(g.mem_lock_mhz), MEM_LOCK),
            (signed(g.core_offset_mhz), CORE_OFFSET),
            (signed(g.mem_offset_mhz), MEM_OFFSET),
        ];
        set_u32(entry, 0, g.index);
        set_u32(entry, 8, g.power_limit_w.min);
        set_u32(entry, 12, g.power_limit_w.max);
        let mut present = 0;
        for (i, (range, bit)) in ranges.into_iter().enumerate() {
            if let Some((min, max)) = range {
                present |= bit;
                set_u32(entry, 16 + i * 8, min);
                set_u32(entry, 20 + i * 8, max);
            }
        }
        set_u32(entry, 4, present);
        set_u32(entry, 48, word(offset));
        set_u32(entry, 52, word(g.model.len()));
        offset += g.model.len();
    }
    for g in &m.gpus {
        out.extend_from_slice(g.model.as_bytes());
    }
    out
}

/// Length or count as the u32 the layout stores. The market's books are far below 4 GiB
/// (a plugin's memory cap is 64 MiB), so a larger one is a bug of ours.
fn word(n: usize) -> u32 {
    u32::try_from(n).expect("a plugin book stays below 4 GiB")
}

/// Writes `value` little-endian at byte `at` of `out`.
fn set_u32(out: &mut [u8], at: usize, value: u32) {
    out[at..at + 4].copy_from_slice(&value.to_le_bytes());
}

/// Writes `value` little-endian at byte `at` of `out`.
fn set_u64(out: &mut [u8], at: usize, value: u64) {
    out[at..at + 8].copy_from_slice(&value.to_le_bytes());
}

/// Appends one GPU's entry: power limit, presence bits, then the value of each setting
/// present (2 to 6 words). Returns the number of words written. Each word is stored in
/// place (no staging array read back whole, which stalls on store forwarding).
fn put_entry(out: &mut Vec<u8>, o: &market::GpuOc) -> usize {
    let optional = [
        (o.core_lock_mhz, CORE_LOCK),
        (o.mem_lock_mhz, MEM_LOCK),
        (o.core_offset_mhz.map(|v| v as u32), CORE_OFFSET),
        (o.mem_offset_mhz.map(|v| v as u32), MEM_OFFSET),
    ];
    let start = out.len();
    out.resize(start + 24, 0);
    let entry = &mut out[start..];
    set_u32(entry, 0, o.power_limit_w);
    let mut present = 0;
    let mut at = 8;
    for (value, bit) in optional {
        if let Some(value) = value {
            present |= bit;
            set_u32(entry, at, value);
            at += 4;
        }
    }
    set_u32(entry, 4, present);
    out.truncate(start + at);
    at / 4
}

/// The candidates in the layout `type book` of `wit/since_v0.3.0/plugin.wit` documents,
/// in one pass over the bids: rows in place in the book, per-GPU entries and environment
/// references into their own sections, appended after the rows.
pub(crate) fn book(bids: &[market::CandidateBid]) -> Reused {
    let mut images = Strings::default();
    let mut keys = Strings::default();
    let rows_end = HEADER + bids.len() * ROW;
    let mut out = Reused::take();
    out.resize(rows_end, 0);
    let mut settings = Reused::take();
    let mut references = Reused::take();

    let mut oc_start = 0;
    for (b, row) in bids.iter().zip(out[HEADER..].chunks_exact_mut(ROW)) {
        set_u64(row, 0, b.id);
        set_u64(row, 8, b.owner_id);
        set_u64(row, 16, b.price_per_day);
        set_u64(row, 24, b.created_at);
        set_u32(row, 32, b.total_power_limit_w);
        set_u32(row, 36, images.get(&b.image));
        set_u32(row, 40, word(oc_start));
        set_u32(row, 44, word(b.oc.len()));
        set_u32(row, 48, word(references.len() / 4));
        set_u32(row, 52, word(b.env_keys.len()));
        oc_start +=
            b.oc.iter()
                .map(|o| put_entry(&mut settings, o))
                .sum::<usize>();
        for key in &b.env_keys {
            references.extend_from_slice(&keys.get(key).to_le_bytes());
        }
    }
    out.extend_from_slice(&settings);
    out.extend_from_slice(&references);
    let mut offset = 0;
    for text in images.order.iter().chain(&keys.order) {
        out.extend_from_slice(&word(offset).to_le_bytes());
        out.extend_from_slice(&word(text.len()).to_le_bytes());
        offset += text.len();
    }
    for text in images.order.iter().chain(&keys.order) {
        out.extend_from_slice(text.as_bytes());
    }
    let counts = [
        bids.len(),
        oc_start,
        references.len() / 4,
        images.order.len(),
        keys.order.len(),
        offset,
    ];
    for (i, count) in counts.into_iter().enumerate() {
        set_u32(&mut out, i * 4, word(count));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use gigaspot_market::sample::SampleMarket;

    fn u32_at(book: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(book[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn strings_are_numbered_in_order_of_first_use_scanned_or_hashed() {
        let texts: Vec<String> = (0..40).map(|i| format!("image-{}", i % 20)).collect();
        let mut strings = Strings::default();
        let indices: Vec<u32> = texts.iter().map(|t| strings.get(t)).collect();
        let want: Vec<u32> = (0..40).map(|i| i % 20).collect();
        assert_eq!(indices, want);
        assert_eq!(strings.order.len(), 20);
    }

    #[test]
    fn the_layout_holds_every_field_once_per_bid_and_each_string_once() {
        let mut sample = SampleMarket::new(3);
        let mut machine = sample.machine(1);
        let bids = sample.bids(&mut machine, 40);
        let book = book(&bids);
        let [n, o, e, i, k, s] = [0, 4, 8, 12, 16, 20].map(|at| u32_at(&book, at) as usize);
        assert_eq!(n, 40);
        let entries: usize = bids.iter().map(|b| b.oc.len()).sum();
        assert!((2 * entries..=6 * entries).contains(&o), "{o} words");
        assert_eq!(e, bids.iter().map(|b| b.env_keys.len()).sum::<usize>());
        let distinct = |f: &dyn Fn(&market::CandidateBid) -> Vec<&str>| {
            let mut all: Vec<&str> = bids.iter().flat_map(f).collect();
            all.sort();
            all.dedup();
            all.len()
        };
        assert_eq!(i, distinct(&|b| vec![b.image.as_str()]));
        assert_eq!(
            k,
            distinct(&|b| b.env_keys.iter().map(String::as_str).collect())
        );
        assert_eq!(
            book.len(),
            HEADER + n * ROW + o * 4 + e * 4 + (i + k) * 8 + s
        );
        // The last bid's row, and its first GPU's power limit.
        let last = &bids[39];
        let row = HEADER + 39 * ROW;
        assert_eq!(
            u64::from_le_bytes(book[row..row + 8].try_into().unwrap()),
            last.id
        );
        assert_eq!(u32_at(&book, row + 32), last.total_power_limit_w);
        let (start, count) = (u32_at(&book, row + 40), u32_at(&book, row + 44));
        assert_eq!(count as usize, last.oc.len());
        let first = HEADER + n * ROW + start as usize * 4;
        assert_eq!(u32_at(&book, first), last.oc[0].power_limit_w);
    }
}

//! Host bindings of the contract `gigaspot:plugin@0.3.0` (`wit/since_v0.3.0/`): the
//! candidate bids as one little-endian byte buffer (`type book = list<u8>`), so that
//! lowering a book is a single copy into the guest, whatever the number of bids.

use rustc_hash::FxHashMap;

super::contract_version!("../../wit/since_v0.3.0");

/// Bytes of the header: six counts and two reserved words, all u32.
const HEADER: usize = 32;
/// Bytes of one bid row.
const ROW: usize = 56;

/// Presence bits of a per-GPU entry's optional settings, in the order their words follow.
const CORE_LOCK: u32 = 1;
const MEM_LOCK: u32 = 2;
const CORE_OFFSET: u32 = 4;
const MEM_OFFSET: u32 = 8;

/// The machine record and the book of this version.
fn input(m: &market::MachineContext, bids: &[market::CandidateBid]) -> (wit::Machine, Vec<u8>) {
    let machine = wit::Machine {
        id: m.id,
        host_id: m.host_id,
        gpus: gpus(m),
        energy_price_usd_per_kwh: m.energy_price_usd_per_kwh,
        clore_usd: m.clore_usd,
        min_bid: m.min_bid,
        billing_interval_s: m.billing_interval_s,
        reliability: m.reliability,
        running: m.running.map(|r| wit::Running {
            bid_id: r.bid_id,
            owner_id: r.owner_id,
            price_per_day: r.price_per_day,
            total_power_limit_w: r.total_power_limit_w,
            running_for_s: r.running_for_s,
        }),
    };
    (machine, book(bids))
}

/// Distinct strings in order of first use, each referenced by its index.
#[derive(Default)]
struct Strings<'a> {
    index: FxHashMap<&'a str, u32>,
    order: Vec<&'a str>,
}

impl<'a> Strings<'a> {
    fn get(&mut self, text: &'a str) -> u32 {
        let next = self.order.len() as u32;
        *self.index.entry(text).or_insert_with(|| {
            self.order.push(text);
            next
        })
    }
}

/// Length or count as the u32 the layout stores. The market's books are far below 4 GiB
/// (a plugin's memory cap is 64 MiB), so a larger one is a bug of ours.
fn word(n: usize) -> u32 {
    u32::try_from(n).expect("a plugin book stays below 4 GiB")
}

/// Appends one GPU's entry: power limit, presence bits, then the value of each setting
/// present (2 to 6 words). Returns the number of words written.
fn put_entry(out: &mut Vec<u8>, o: &market::GpuOc) -> usize {
    let mut words = [o.power_limit_w, 0, 0, 0, 0, 0];
    let mut used = 2;
    let optional = [
        (o.core_lock_mhz, CORE_LOCK),
        (o.mem_lock_mhz, MEM_LOCK),
        (o.core_offset_mhz.map(|v| v as u32), CORE_OFFSET),
        (o.mem_offset_mhz.map(|v| v as u32), MEM_OFFSET),
    ];
    for (value, bit) in optional {
        if let Some(value) = value {
            words[1] |= bit;
            words[used] = value;
            used += 1;
        }
    }
    let mut bytes = [0u8; 24];
    for (chunk, w) in bytes.chunks_exact_mut(4).zip(words) {
        chunk.copy_from_slice(&w.to_le_bytes());
    }
    out.extend_from_slice(&bytes[..used * 4]);
    used
}

/// The candidates in the layout `type book` of `wit/since_v0.3.0/plugin.wit` documents,
/// in one pass over the bids: rows into the book, per-GPU entries and environment
/// references into their own sections, appended after the rows.
pub(crate) fn book(bids: &[market::CandidateBid]) -> Vec<u8> {
    let mut images = Strings::default();
    let mut keys = Strings::default();
    let mut out = Vec::with_capacity(HEADER + bids.len() * ROW + 1024);
    out.resize(HEADER, 0);
    // Entries of three words on average, two environment references.
    let mut settings = Vec::with_capacity(bids.len() * 4 * 12);
    let mut references = Vec::with_capacity(bids.len() * 8);

    let mut oc_start = 0;
    for b in bids {
        let mut row = [0u8; ROW];
        row[0..8].copy_from_slice(&b.id.to_le_bytes());
        row[8..16].copy_from_slice(&b.owner_id.to_le_bytes());
        row[16..24].copy_from_slice(&b.price_per_day.to_le_bytes());
        row[24..32].copy_from_slice(&b.created_at.to_le_bytes());
        let words = [
            b.total_power_limit_w,
            images.get(&b.image),
            word(oc_start),
            word(b.oc.len()),
            word(references.len() / 4),
            word(b.env_keys.len()),
        ];
        for (chunk, w) in row[32..].chunks_exact_mut(4).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes());
        }
        out.extend_from_slice(&row);
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
        out[i * 4..i * 4 + 4].copy_from_slice(&word(count).to_le_bytes());
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

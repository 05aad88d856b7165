//! Typed bids from the byte buffer of contract 0.3.0 (`type book` in `wit/plugin.wit`).
//!
//! The market hands a plugin its candidates as one little-endian byte buffer, so that
//! lowering 1,000 bids is one copy. [`Bid`] is the author's view of one bid: its scalar
//! fields are read from the buffer, its image and environment-key names borrow from it,
//! and its per-GPU settings ([`GpuSettings`]) are decoded only when a plugin reads them.
//! Viewing a book costs three allocations per call (the views, the images and the key
//! names), none per bid.

use std::borrow::Cow;
use std::cell::OnceCell;
use std::fmt;
use std::ops::Deref;

/// A bid's settings for one GPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GpuOc {
    /// Power limit in watts (mandatory). The market treats it as the workload's power draw.
    pub power_limit_w: u32,
    /// Locked core clock in MHz.
    pub core_lock_mhz: Option<u32>,
    /// Locked memory clock in MHz.
    pub mem_lock_mhz: Option<u32>,
    /// Core clock offset in MHz.
    pub core_offset_mhz: Option<i32>,
    /// Memory clock offset in MHz.
    pub mem_offset_mhz: Option<i32>,
}

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
    /// One entry per GPU of the machine, in the machine's GPU order (a slice of
    /// [`GpuOc`], decoded on first use).
    pub oc: GpuSettings<'a>,
    /// Sum of the per-GPU power limits in watts.
    pub total_power_limit_w: u32,
    /// When the bid was created, in unix seconds.
    pub created_at: u64,
    /// The container image reference the bid wants to run.
    pub image: Cow<'a, str>,
    /// Names of the environment variables the bid sets (values are never shown to plugins).
    pub env_keys: &'a [&'a str],
}

/// A bid's per-GPU settings: dereferences to `[GpuOc]` (`bid.oc[0]`, `bid.oc.iter()`),
/// decoding them from the market's buffer the first time they are read, so a plugin that
/// never reads them never pays for them. [`GpuSettings::len`] needs no decoding.
#[derive(Clone)]
pub struct GpuSettings<'a> {
    source: Source<'a>,
    /// The decoded entries of an encoded source. It holds no borrow, so `Bid<'a>` stays
    /// covariant in `'a` (a `Bid<'static>` can be used where a shorter one is expected).
    decoded: OnceCell<Vec<GpuOc>>,
}

#[derive(Clone)]
enum Source<'a> {
    /// `count` entries as the book lays them out, from the bid's first (the slice may run
    /// on into the next bids' entries).
    Encoded {
        words: &'a [u8],
        count: usize,
    },
    Borrowed(&'a [GpuOc]),
    Owned(Vec<GpuOc>),
}

impl GpuSettings<'_> {
    /// Number of GPUs (one entry each).
    pub fn len(&self) -> usize {
        match &self.source {
            Source::Encoded { count, .. } => *count,
            Source::Borrowed(values) => values.len(),
            Source::Owned(values) => values.len(),
        }
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Deref for GpuSettings<'_> {
    type Target = [GpuOc];

    fn deref(&self) -> &[GpuOc] {
        match &self.source {
            Source::Encoded { words, count } => self.decoded.get_or_init(|| {
                let mut at = 0;
                (0..*count).map(|_| gpu_oc(words, &mut at)).collect()
            }),
            Source::Borrowed(values) => values,
            Source::Owned(values) => values,
        }
    }
}

impl PartialEq for GpuSettings<'_> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl fmt::Debug for GpuSettings<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl From<Vec<GpuOc>> for GpuSettings<'_> {
    fn from(values: Vec<GpuOc>) -> Self {
        GpuSettings {
            source: Source::Owned(values),
            decoded: OnceCell::new(),
        }
    }
}

impl<'a> From<&'a [GpuOc]> for GpuSettings<'a> {
    fn from(values: &'a [GpuOc]) -> Self {
        GpuSettings {
            source: Source::Borrowed(values),
            decoded: OnceCell::new(),
        }
    }
}

/// Bytes of the header and of one bid row.
const HEADER: usize = 32;
const ROW: usize = 56;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Decodes the per-GPU entry at byte `at` of `words` and moves `at` past it: power limit,
/// presence bits, then each setting present (1 core lock, 2 memory lock, 4 core offset,
/// 8 memory offset).
fn gpu_oc(words: &[u8], at: &mut usize) -> GpuOc {
    let mut next = || {
        let value = u32_at(words, *at);
        *at += 4;
        value
    };
    let power_limit_w = next();
    let present = next();
    let mut optional = |bit: u32| (present & bit != 0).then(&mut next);
    GpuOc {
        power_limit_w,
        core_lock_mhz: optional(1),
        mem_lock_mhz: optional(2),
        core_offset_mhz: optional(4).map(|v| v as i32),
        mem_offset_mhz: optional(8).map(|v| v as i32),
    }
}

/// The sections of a book, located from its header.
#[doc(hidden)]
pub struct Tables<'a> {
    rows: &'a [u8],
    oc: &'a [u8],
    images: Vec<&'a str>,
    /// Every bid's environment-key names, bid after bid.
    env: Vec<&'a str>,
}

/// Locates the sections of `book` and resolves its strings. The market always hands a
/// well-formed book; a malformed one panics (the call fails, nothing else).
#[doc(hidden)]
pub fn tables(book: &[u8]) -> Tables<'_> {
    let [n, w, e, i, k, s] = [0, 4, 8, 12, 16, 20].map(|at| u32_at(book, at) as usize);
    let (rows, rest) = book[HEADER..].split_at(n * ROW);
    let (oc, rest) = rest.split_at(w * 4);
    let (refs, rest) = rest.split_at(e * 4);
    let (spans, strings) = rest.split_at((i + k) * 8);
    assert_eq!(strings.len(), s, "the string area ends the book");
    let names: Vec<&str> = spans
        .chunks_exact(8)
        .map(|span| {
            let (at, len) = (u32_at(span, 0) as usize, u32_at(span, 4) as usize);
            std::str::from_utf8(&strings[at..at + len]).expect("the market sends UTF-8")
        })
        .collect();
    let env = refs
        .chunks_exact(4)
        .map(|r| names[i + u32_at(r, 0) as usize])
        .collect();
    let mut images = names;
    images.truncate(i);
    Tables {
        rows,
        oc,
        images,
        env,
    }
}

/// The views of the book's bids.
#[doc(hidden)]
pub fn bids<'a>(tables: &'a Tables<'a>) -> Vec<Bid<'a>> {
    tables
        .rows
        .chunks_exact(ROW)
        .map(|row| {
            let word = |at: usize| u32_at(row, at) as usize;
            let env = word(48)..word(48) + word(52);
            Bid {
                id: u64_at(row, 0),
                owner_id: u64_at(row, 8),
                price_per_day: u64_at(row, 16),
                created_at: u64_at(row, 24),
                total_power_limit_w: u32_at(row, 32),
                image: Cow::Borrowed(tables.images[u32_at(row, 36) as usize]),
                oc: GpuSettings {
                    source: Source::Encoded {
                        words: &tables.oc[word(40) * 4..],
                        count: word(44),
                    },
                    decoded: OnceCell::new(),
                },
                env_keys: &tables.env[env],
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn put(out: &mut Vec<u8>, words: &[u64], widths: &[usize]) {
        for (w, width) in words.iter().zip(widths) {
            out.extend_from_slice(&w.to_le_bytes()[..*width]);
        }
    }

    /// Three bids of two GPUs; images "a:1", "b:2"; keys "X", "Y".
    fn sample() -> Vec<u8> {
        let mut book = Vec::new();
        // Six entries: power limit 100 + i, a core offset of −50 on every other one.
        let mut entries = Vec::new();
        let mut starts = Vec::new();
        for i in 0..6u64 {
            starts.push(entries.len() as u64);
            entries.extend([100 + i, if i % 2 == 0 { 4 } else { 0 }]);
            if i % 2 == 0 {
                entries.push(u64::from((-50i32) as u32));
            }
        }
        put(
            &mut book,
            &[3, entries.len() as u64, 3, 2, 2, 8, 0, 0],
            &[4; 8],
        );
        for (id, image, gpu, env, env_count) in [(1, 1, 0, 0, 2), (2, 0, 2, 2, 0), (3, 1, 4, 2, 1)]
        {
            let row = [
                id,
                7,
                id * 100,
                1,
                600,
                image,
                starts[gpu],
                2,
                env,
                env_count,
            ];
            put(&mut book, &row, &[8, 8, 8, 8, 4, 4, 4, 4, 4, 4]);
        }
        put(&mut book, &entries, &vec![4; entries.len()]);
        put(&mut book, &[1, 0, 1], &[4; 3]);
        put(&mut book, &[0, 3, 3, 3, 6, 1, 7, 1], &[4; 8]);
        book.extend_from_slice(b"a:1b:2XY");
        book
    }

    #[test]
    fn views_resolve_every_field_and_table_reference() {
        let book = sample();
        let tables = tables(&book);
        let bids = bids(&tables);
        assert_eq!(bids.len(), 3);
        assert_eq!(bids[0].image, "b:2");
        assert_eq!(bids[0].env_keys, ["Y", "X"]);
        assert_eq!(bids[0].oc.len(), 2);
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
        assert_eq!(bids[2].oc[1].core_offset_mhz, None);
        assert_eq!(bids[2].price_per_day, 300);
        assert_eq!(bids[2].total_power_limit_w, 600);
    }

    /// `Bid` is covariant in its lifetime: a `'static` bid updates into a shorter one.
    #[test]
    fn a_static_bid_takes_a_borrowed_image() {
        fn with_image(image: &str) -> Bid<'_> {
            Bid {
                image: image.into(),
                ..crate::testing::bid(1, 100, 250, 4)
            }
        }
        let image = String::from("repo/app:2");
        assert_eq!(with_image(&image).image, "repo/app:2");
    }

    #[test]
    fn decoded_and_built_settings_compare_equal() {
        let book = sample();
        let tables = tables(&book);
        let bids = bids(&tables);
        let built: GpuSettings = vec![
            GpuOc {
                power_limit_w: 104,
                core_lock_mhz: None,
                mem_lock_mhz: None,
                core_offset_mhz: Some(-50),
                mem_offset_mhz: None,
            },
            GpuOc {
                power_limit_w: 105,
                core_lock_mhz: None,
                mem_lock_mhz: None,
                core_offset_mhz: None,
                mem_offset_mhz: None,
            },
        ]
        .into();
        assert_eq!(bids[2].oc, built);
        assert_ne!(bids[1].oc, built);
    }
}

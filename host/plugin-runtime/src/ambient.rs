//! The ambient WASI interfaces a guest of another language links in (clocks, randomness,
//! the filesystem), answered deterministically and without any capability: a fixed wall
//! clock and monotonic clock, a fixed-seed generator for every kind of randomness, and a
//! filesystem with no directory to open. Plugins must be pure functions of their
//! configuration and input (decisions replay offline), so nothing here reflects the host.

use wasmtime::component::{ComponentType, LinkerInstance, Lower, Resource};
use wasmtime::format_err;

use crate::guest_io::{InputStream, IoError, OutputStream, Pollable, resource};
use crate::sandbox::HostState;

/// What `wasi:clocks/wall-clock.now` answers: the unix epoch, 1970-01-01T00:00:00Z, in
/// seconds. A plugin has no wall clock; this says so plainly instead of a plausible date.
pub const FIXED_WALL_CLOCK_S: u64 = 0;

/// What `wasi:clocks/monotonic-clock.now` answers, in nanoseconds: time never passes in a
/// plugin, and every wait (a pollable of a clock) ends at once.
pub const FIXED_MONOTONIC_NS: u64 = 0;

/// The seed of the generator behind `wasi:random/random` and `wasi:random/insecure`, and
/// the pair `wasi:random/insecure-seed` answers: every instance draws the same sequence.
pub const FIXED_RANDOM_SEED: u64 = 0x6769_6761_7370_6f74; // "gigaspot"

/// Most random bytes one call may ask for; more is a trap (the guest's memory is capped
/// at 64 MiB anyway, and a huge request must not make the host allocate it).
const MAX_RANDOM_BYTES: u64 = 1 << 20;

/// `wasi:filesystem/types.descriptor`: never created (there is no preopened directory).
struct Descriptor;
/// `wasi:filesystem/types.directory-entry-stream`: never created.
struct DirectoryEntryStream;

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// A fixed-seed generator (SplitMix64): deterministic, and per instance, so a fresh
/// instance always draws the same sequence.
#[derive(Debug)]
pub(crate) struct FixedRandom(u64);

impl Default for FixedRandom {
    fn default() -> Self {
        FixedRandom(FIXED_RANDOM_SEED)
    }
}

impl FixedRandom {
    /// The next 64 bits of the sequence.
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The next `len` bytes of the sequence, or an error beyond [`MAX_RANDOM_BYTES`].
    fn bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        if len > MAX_RANDOM_BYTES {
            return Err(format_err!(
                "the plugin asked for {len} random bytes (at most {MAX_RANDOM_BYTES} per call)"
            ));
        }
        let mut out = Vec::with_capacity(len as usize);
        while (out.len() as u64) < len {
            let word = self.next_u64().to_le_bytes();
            let take = (len as usize - out.len()).min(8);
            out.extend_from_slice(&word[..take]);
        }
        Ok(out)
    }
}

/// Defines the answers of `interface` (a `wasi:clocks`, `wasi:random` or `wasi:filesystem`
/// interface of version 0.2.x) in `instance`; other interfaces are left alone (their
/// functions become traps).
pub(crate) fn define(
    instance: &mut LinkerInstance<'_, HostState>,
    interface: &str,
) -> wasmtime::Result<()> {
    match interface {
        "wasi:clocks/wall-clock" => {
            let fixed = Datetime {
                seconds: FIXED_WALL_CLOCK_S,
                nanoseconds: 0,
            };
            let resolution = Datetime {
                seconds: 1,
                nanoseconds: 0,
            };
            instance.func_wrap("now", move |_, ()| Ok((fixed,)))?;
            instance.func_wrap("resolution", move |_, ()| Ok((resolution,)))?;
        }
        "wasi:clocks/monotonic-clock" => {
            resource::<Pollable>(instance, "pollable")?;
            instance.func_wrap("now", |_, ()| Ok((FIXED_MONOTONIC_NS,)))?;
            instance.func_wrap("resolution", |_, ()| Ok((1_u64,)))?;
            for subscribe in ["subscribe-instant", "subscribe-duration"] {
                instance.func_wrap(subscribe, |_, (_,): (u64,)| {
                    Ok((Resource::<Pollable>::new_own(0),))
                })?;
            }
        }
        "wasi:random/random" => {
            instance.func_wrap("get-random-bytes", |mut store, (len,): (u64,)| {
                Ok((store.data_mut().random.bytes(len)?,))
            })?;
            instance.func_wrap("get-random-u64", |mut store, ()| {
                Ok((store.data_mut().random.next_u64(),))
            })?;
        }
        "wasi:random/insecure" => {
            instance.func_wrap("get-insecure-random-bytes", |mut store, (len,): (u64,)| {
                Ok((store.data_mut().random.bytes(len)?,))
            })?;
            instance.func_wrap("get-insecure-random-u64", |mut store, ()| {
                Ok((store.data_mut().random.next_u64(),))
            })?;
        }
        "wasi:random/insecure-seed" => {
            instance.func_wrap("insecure-seed", |_, ()| {
                Ok(((FIXED_RANDOM_SEED, FIXED_RANDOM_SEED.rotate_left(32)),))
            })?;
        }
        "wasi:filesystem/types" => {
            resource::<IoError>(instance, "error")?;
            resource::<InputStream>(instance, "input-stream")?;
            resource::<OutputStream>(instance, "output-stream")?;
            resource::<Descriptor>(instance, "descriptor")?;
            resource::<DirectoryEntryStream>(instance, "directory-entry-stream")?;
        }
        "wasi:filesystem/preopens" => {
            resource::<Descriptor>(instance, "descriptor")?;
            instance.func_wrap("get-directories", |_, ()| {
                Ok((Vec::<(Resource<Descriptor>, String)>::new(),))
            })?;
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_is_fixed_and_bounded() {
        let mut a = FixedRandom::default();
        let mut b = FixedRandom::default();
        let first: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        assert_eq!(first, (0..4).map(|_| b.next_u64()).collect::<Vec<_>>());
        assert_ne!(first[0], first[1]);
        let bytes = FixedRandom::default().bytes(11).unwrap();
        assert_eq!(&bytes[..8], &first[0].to_le_bytes());
        assert_eq!(&bytes[8..], &first[1].to_le_bytes()[..3]);
        assert!(a.bytes(MAX_RANDOM_BYTES + 1).is_err());
    }
}

//! The machine being cleared, decoded from contract 0.3.0's machine buffer (`type machine`
//! in `wit/plugin.wit`).

/// An inclusive range of unsigned values, `min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeU32 {
    /// Lower bound.
    pub min: u32,
    /// Upper bound.
    pub max: u32,
}

/// An inclusive range of signed values, `min <= max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeS32 {
    /// Lower bound.
    pub min: i32,
    /// Upper bound.
    pub max: i32,
}

/// One GPU of a machine and the ranges a bid's settings must respect on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gpu {
    /// Position of the GPU in the machine (0-based); a bid's `oc` list uses the same order.
    pub index: u32,
    /// Marketing model name as NVML reports it, e.g. "NVIDIA GeForce RTX 4090".
    pub model: String,
    /// Allowed power limit in watts: [card minimum, host ceiling].
    pub power_limit_w: RangeU32,
    /// Allowed locked core (graphics) clock in MHz; `None` when locks are not allowed.
    pub core_lock_mhz: Option<RangeU32>,
    /// Allowed locked memory clock in MHz; `None` when locks are not allowed.
    pub mem_lock_mhz: Option<RangeU32>,
    /// Allowed core clock offset in MHz; `None` when offsets are not allowed.
    pub core_offset_mhz: Option<RangeS32>,
    /// Allowed memory clock offset in MHz; `None` when offsets are not allowed.
    pub mem_offset_mhz: Option<RangeS32>,
}

/// The bid a machine is running now: the bid that won the interval before this one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Running {
    /// Id of the running bid.
    pub bid_id: u64,
    /// Account id of its owner.
    pub owner_id: u64,
    /// The price it pays now (its price when it last won), in CLORE base units per day.
    pub price_per_day: u64,
    /// Its total power limit in watts; `None` when the bid is no longer live (cancelled,
    /// expired or suspended), in which case it is not among the candidates either.
    pub total_power_limit_w: Option<u32>,
    /// How long it has run without interruption, in seconds.
    pub running_for_s: u64,
}

/// Everything a plugin knows about the machine being cleared.
#[derive(Debug, Clone, PartialEq)]
pub struct Machine {
    /// Machine id.
    pub id: u64,
    /// Account id of the host that owns the machine.
    pub host_id: u64,
    /// The machine's GPUs in order.
    pub gpus: Vec<Gpu>,
    /// The host's electricity price in USD per kWh.
    pub energy_price_usd_per_kwh: f64,
    /// The market's CLORE/USD rate: the price of one CLORE in USD.
    pub clore_usd: f64,
    /// The machine's minimum bid in CLORE base units per day (1 CLORE = 10^8 units): the
    /// larger of the host's reserve price and the energy floor.
    pub min_bid: u64,
    /// Length of one billing interval in seconds.
    pub billing_interval_s: u32,
    /// The machine's reliability: intervals served ÷ intervals assigned to a winner over
    /// the last 7 days, not counting those a bid failed by its own fault; 1.0 for a
    /// machine that has failed nobody. In [0, 1].
    pub reliability: f64,
    /// The bid running on the machine, if any.
    pub running: Option<Running>,
}

/// Bytes of the machine's fixed part and of one GPU entry.
const MACHINE: usize = 96;
const GPU: usize = 56;

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(bytes[at..at + 4].try_into().expect("four bytes"))
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(bytes[at..at + 8].try_into().expect("eight bytes"))
}

/// Decodes the machine buffer. The market always hands a well-formed one; a malformed
/// one panics (the call fails, nothing else).
#[doc(hidden)]
pub fn machine(bytes: &[u8]) -> Machine {
    let count = u32_at(bytes, 52) as usize;
    let (fixed, rest) = bytes.split_at(MACHINE);
    let (entries, strings) = rest.split_at(count * GPU);
    let running = u32_at(fixed, 56);
    let gpus = entries
        .chunks_exact(GPU)
        .map(|e| {
            let present = u32_at(e, 4);
            let words = |i: usize| (u32_at(e, 16 + i * 8), u32_at(e, 20 + i * 8));
            let unsigned = |i: usize, bit: u32| {
                (present & bit != 0).then(|| {
                    let (min, max) = words(i);
                    RangeU32 { min, max }
                })
            };
            let signed = |i: usize, bit: u32| {
                (present & bit != 0).then(|| {
                    let (min, max) = words(i);
                    RangeS32 {
                        min: min as i32,
                        max: max as i32,
                    }
                })
            };
            let (at, len) = (u32_at(e, 48) as usize, u32_at(e, 52) as usize);
            Gpu {
                index: u32_at(e, 0),
                model: std::str::from_utf8(&strings[at..at + len])
                    .expect("the market sends UTF-8")
                    .to_owned(),
                power_limit_w: RangeU32 {
                    min: u32_at(e, 8),
                    max: u32_at(e, 12),
                },
                core_lock_mhz: unsigned(0, 1),
                mem_lock_mhz: unsigned(1, 2),
                core_offset_mhz: signed(2, 4),
                mem_offset_mhz: signed(3, 8),
            }
        })
        .collect();
    Machine {
        id: u64_at(fixed, 0),
        host_id: u64_at(fixed, 8),
        gpus,
        energy_price_usd_per_kwh: f64::from_bits(u64_at(fixed, 16)),
        clore_usd: f64::from_bits(u64_at(fixed, 24)),
        min_bid: u64_at(fixed, 32),
        billing_interval_s: u32_at(fixed, 48),
        reliability: f64::from_bits(u64_at(fixed, 40)),
        running: (running & 1 != 0).then(|| Running {
            bid_id: u64_at(fixed, 64),
            owner_id: u64_at(fixed, 72),
            price_per_day: u64_at(fixed, 80),
            total_power_limit_w: (running & 2 != 0).then(|| u32_at(fixed, 60)),
            running_for_s: u64_at(fixed, 88),
        }),
    }
}

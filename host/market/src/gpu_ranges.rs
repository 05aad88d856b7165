//! The operator's table of clock lock and offset ranges per GPU model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::{RangeS32, RangeU32};

/// The clock settings a bid may request on one GPU model, in MHz.
///
/// A lock range of `[0, 0]` means the model accepts no lock of that kind: 0 MHz is never a
/// valid clock, and the Clore-compatible snapshot already writes `[0, 0]` for "not offered".
/// An offset range of `[0, 0]` allows only the no-op offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ClockRanges {
    /// Locked core (graphics) clock.
    pub core_lock: RangeU32,
    /// Locked memory clock.
    pub mem_lock: RangeU32,
    /// Core clock offset.
    pub core_offset: RangeS32,
    /// Memory clock offset.
    pub mem_offset: RangeS32,
}

/// Clock ranges by GPU model name (as NVML reports it). A model without an entry accepts
/// no locks or offsets.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GpuRangeTable {
    /// Ranges keyed by model name.
    pub models: BTreeMap<String, ClockRanges>,
}

const fn ranges(core: (u32, u32), mem: (u32, u32), core_off: i32, mem_off: i32) -> ClockRanges {
    ClockRanges {
        core_lock: RangeU32 {
            min: core.0,
            max: core.1,
        },
        mem_lock: RangeU32 {
            min: mem.0,
            max: mem.1,
        },
        core_offset: RangeS32 {
            min: -core_off,
            max: core_off,
        },
        mem_offset: RangeS32 {
            min: -mem_off,
            max: mem_off,
        },
    }
}

impl GpuRangeTable {
    /// The shipped defaults for common NVIDIA models: lock ranges span the cards' supported
    /// clocks, offsets a conservative window. Operators edit the table to taste.
    pub fn defaults() -> Self {
        let models = [
            (
                "NVIDIA GeForce RTX 4090",
                ranges((210, 3105), (405, 10501), 300, 1500),
            ),
            (
                "NVIDIA GeForce RTX 4080",
                ranges((210, 3105), (405, 11201), 300, 1500),
            ),
            (
                "NVIDIA GeForce RTX 3090",
                ranges((210, 2100), (405, 9751), 200, 1000),
            ),
            (
                "NVIDIA GeForce RTX 3080",
                ranges((210, 2100), (405, 9501), 200, 1000),
            ),
            (
                "NVIDIA RTX A6000",
                ranges((210, 2100), (405, 8001), 150, 500),
            ),
            ("NVIDIA L40S", ranges((210, 2520), (405, 9001), 150, 500)),
            // Data-centre cards: the driver refuses memory locks and offsets (measured on an
            // H100, docs/hardware-runs/), so the table offers neither.
            ("NVIDIA A100-SXM4-80GB", ranges((210, 1410), (0, 0), 0, 0)),
            ("NVIDIA H100 80GB HBM3", ranges((210, 1980), (0, 0), 0, 0)),
        ];
        GpuRangeTable {
            models: models
                .into_iter()
                .map(|(model, r)| (model.to_string(), r))
                .collect(),
        }
    }

    /// The ranges for `model`, if the operator allows clock settings on it.
    pub fn get(&self, model: &str) -> Option<&ClockRanges> {
        self.models.get(model)
    }

    /// Checks that every range is usable: `min <= max`, and a lock range either starts above
    /// 0 MHz or is `[0, 0]` ("not offered"). On failure: the offending field's path and why.
    pub fn validate(&self) -> Result<(), (String, String)> {
        for (model, r) in &self.models {
            let field = |name: &str| format!("models.{model}.{name}");
            for (name, range) in [("core_lock", r.core_lock), ("mem_lock", r.mem_lock)] {
                if range.min > range.max {
                    return Err((
                        field(name),
                        format!("min {} exceeds max {}", range.min, range.max),
                    ));
                }
                if range.min == 0 && range.max != 0 {
                    return Err((
                        field(name),
                        "a lock range starts above 0 MHz, or is [0, 0] for \"not offered\"".into(),
                    ));
                }
            }
            for (name, range) in [("core_offset", r.core_offset), ("mem_offset", r.mem_offset)] {
                if range.min > range.max {
                    return Err((
                        field(name),
                        format!("min {} exceeds max {}", range.min, range.max),
                    ));
                }
            }
        }
        Ok(())
    }
}

impl ClockRanges {
    /// The allowed locked core clock, or `None` when the model accepts no core lock.
    pub fn core_lock_range(&self) -> Option<RangeU32> {
        offered(self.core_lock)
    }

    /// The allowed locked memory clock, or `None` when the model accepts no memory lock.
    pub fn mem_lock_range(&self) -> Option<RangeU32> {
        offered(self.mem_lock)
    }
}

/// A lock range, unless it is the `[0, 0]` "not offered" marker.
fn offered(range: RangeU32) -> Option<RangeU32> {
    (range.max != 0).then_some(range)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_data_centre_cards_offer_no_memory_lock() {
        let table = GpuRangeTable::defaults();
        assert_eq!(table.validate(), Ok(()));
        for model in ["NVIDIA H100 80GB HBM3", "NVIDIA A100-SXM4-80GB"] {
            let r = table.get(model).unwrap();
            assert_eq!(r.mem_lock_range(), None, "{model}");
            assert!(r.core_lock_range().is_some(), "{model}");
        }
        let r = table.get("NVIDIA GeForce RTX 4090").unwrap();
        assert_eq!(
            r.mem_lock_range(),
            Some(RangeU32 {
                min: 405,
                max: 10501
            })
        );
    }

    #[test]
    fn inverted_or_zero_based_ranges_are_refused_with_their_field() {
        let mut table = GpuRangeTable::defaults();
        let r = table.models.get_mut("NVIDIA GeForce RTX 4090").unwrap();
        r.core_offset = RangeS32 { min: 10, max: -10 };
        assert_eq!(
            table.validate().unwrap_err().0,
            "models.NVIDIA GeForce RTX 4090.core_offset"
        );
        let mut table = GpuRangeTable::defaults();
        let r = table.models.get_mut("NVIDIA L40S").unwrap();
        r.mem_lock = RangeU32 { min: 0, max: 900 };
        assert_eq!(
            table.validate().unwrap_err().0,
            "models.NVIDIA L40S.mem_lock"
        );
        let mut table = GpuRangeTable::defaults();
        let r = table.models.get_mut("NVIDIA L40S").unwrap();
        r.core_lock = RangeU32 { min: 900, max: 800 };
        assert!(table.validate().unwrap_err().1.contains("exceeds"));
    }
}

//! The operator's table of clock lock and offset ranges per GPU model.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::context::{RangeS32, RangeU32};

/// The clock settings a bid may request on one GPU model, in MHz.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
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
            (
                "NVIDIA A100-SXM4-80GB",
                ranges((210, 1410), (1593, 1593), 0, 0),
            ),
            (
                "NVIDIA H100 80GB HBM3",
                ranges((210, 1980), (2619, 2619), 0, 0),
            ),
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
}

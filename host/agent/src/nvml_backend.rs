//! The NVML backend, on nvml-wrapper: the real GPUs of the machine.

use nvml_wrapper::Nvml;
use nvml_wrapper::enum_wrappers::device::Clock;
use nvml_wrapper::enums::device::GpuLockedClocksSetting;
use nvml_wrapper::error::NvmlError;

use crate::gpu_control::{GpuControl, GpuError, GpuInfo, Inventory};

/// The machine's NVIDIA GPUs through NVML.
pub struct NvmlGpus {
    nvml: Nvml,
}

impl NvmlGpus {
    /// Loads NVML. Without an NVIDIA driver this fails with [`GpuError::Unavailable`].
    pub fn init() -> Result<NvmlGpus, GpuError> {
        Nvml::init().map(|nvml| NvmlGpus { nvml }).map_err(|e| {
            GpuError::Unavailable(format!(
                "cannot load NVML ({e}); is the NVIDIA driver installed? Use --gpu simulated:<spec> on machines without NVIDIA GPUs"
            ))
        })
    }

    fn driver<T>(
        gpu: u32,
        operation: &'static str,
        result: Result<T, NvmlError>,
    ) -> Result<T, GpuError> {
        result.map_err(|e| match e {
            NvmlError::NotSupported => GpuError::Unsupported {
                gpu,
                what: operation,
            },
            other => GpuError::Driver {
                gpu,
                operation,
                message: other.to_string(),
            },
        })
    }
}

impl GpuControl for NvmlGpus {
    fn inventory(&self) -> Result<Inventory, GpuError> {
        let count = Self::driver(0, "device count", self.nvml.device_count())?;
        let mut gpus = Vec::with_capacity(count as usize);
        for index in 0..count {
            let device = Self::driver(index, "open device", self.nvml.device_by_index(index))?;
            let limits = Self::driver(
                index,
                "power limit constraints",
                device.power_management_limit_constraints(),
            )?;
            gpus.push(GpuInfo {
                index,
                model: Self::driver(index, "name", device.name())?,
                uuid: Self::driver(index, "uuid", device.uuid())?,
                min_power_w: limits.min_limit / 1000,
                max_power_w: limits.max_limit / 1000,
                default_power_w: Self::driver(
                    index,
                    "default power limit",
                    device.power_management_limit_default(),
                )? / 1000,
            });
        }
        let cuda = Self::driver(0, "CUDA version", self.nvml.sys_cuda_driver_version())?;
        Ok(Inventory {
            driver_version: Self::driver(0, "driver version", self.nvml.sys_driver_version())?,
            cuda_version: format!("{}.{}", cuda / 1000, cuda % 1000 / 10),
            gpus,
        })
    }

    fn set_power_limit(&mut self, gpu: u32, watts: u32) -> Result<(), GpuError> {
        let mut device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(
            gpu,
            "set power limit",
            device.set_power_management_limit(watts * 1000),
        )
    }

    fn power_limit(&self, gpu: u32) -> Result<u32, GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(gpu, "read power limit", device.power_management_limit()).map(|mw| mw / 1000)
    }

    fn lock_core_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError> {
        let mut device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        let setting = GpuLockedClocksSetting::Numeric {
            min_clock_mhz: mhz,
            max_clock_mhz: mhz,
        };
        Self::driver(
            gpu,
            "core clock lock",
            device.set_gpu_locked_clocks(setting),
        )
    }

    fn lock_mem_clock(&mut self, gpu: u32, mhz: u32) -> Result<(), GpuError> {
        let mut device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(
            gpu,
            "memory clock lock",
            device.set_mem_locked_clocks(mhz, mhz),
        )
    }

    fn set_core_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(
            gpu,
            "core clock offset",
            device.set_gpc_clock_vf_offset(mhz),
        )
    }

    fn set_mem_offset(&mut self, gpu: u32, mhz: i32) -> Result<(), GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(
            gpu,
            "memory clock offset",
            device.set_mem_clock_vf_offset(mhz),
        )
    }

    fn reset(&mut self, gpu: u32) -> Result<(), GpuError> {
        let mut device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(gpu, "reset core clocks", device.reset_gpu_locked_clocks())?;
        // Memory locks and offsets are not supported everywhere; a card without them has
        // nothing to reset.
        match device.reset_mem_locked_clocks() {
            Ok(()) | Err(NvmlError::NotSupported) => {}
            Err(e) => return Self::driver(gpu, "reset memory clocks", Err(e)),
        }
        // Offsets: cards without them (data-centre parts such as the H100) answer an
        // internal error rather than "not supported" even to a reset to 0 (seen on an H100
        // with driver 580), so an offset is only reset when it reads back non-zero.
        if device.gpc_clock_vf_offset().is_ok_and(|mhz| mhz != 0) {
            Self::driver(
                gpu,
                "reset core clock offset",
                device.set_gpc_clock_vf_offset(0),
            )?;
        }
        if device.mem_clock_vf_offset().is_ok_and(|mhz| mhz != 0) {
            Self::driver(
                gpu,
                "reset memory clock offset",
                device.set_mem_clock_vf_offset(0),
            )?;
        }
        let default = Self::driver(
            gpu,
            "default power limit",
            device.power_management_limit_default(),
        )?;
        Self::driver(
            gpu,
            "reset power limit",
            device.set_power_management_limit(default),
        )
    }

    fn power_usage(&self, gpu: u32) -> Result<u32, GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        Self::driver(gpu, "power usage", device.power_usage()).map(|mw| mw / 1000)
    }

    fn read_settings(&self, gpu: u32) -> Result<crate::gpu_control::ReadSettings, GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        // NVML reports no locked clock, only the current one, which equals a lock while
        // the card holds it; offsets read back where the driver supports them.
        Ok(crate::gpu_control::ReadSettings {
            core_clock_mhz: device.clock_info(Clock::Graphics).ok(),
            mem_clock_mhz: device.clock_info(Clock::Memory).ok(),
            core_offset_mhz: device.gpc_clock_vf_offset().ok(),
            mem_offset_mhz: device.mem_clock_vf_offset().ok(),
        })
    }

    fn clocks(&self, gpu: u32) -> Result<Option<(u32, u32)>, GpuError> {
        let device = Self::driver(gpu, "open device", self.nvml.device_by_index(gpu))?;
        let core = Self::driver(gpu, "core clock", device.clock_info(Clock::Graphics))?;
        let mem = Self::driver(gpu, "memory clock", device.clock_info(Clock::Memory))?;
        Ok(Some((core, mem)))
    }
}

//! What the agent reads about the server it runs on: CPU model, cores and threads from
//! `/proc/cpuinfo`, memory from `/proc/meminfo` (Linux).

use gigaspot_market::agent_protocol::HostInventory;

/// Reads the host's CPU and memory; `cuda` comes from the GPU driver. Unreadable files
/// give empty or zero values rather than an error: the facts are informational.
pub fn read(cuda: &str) -> HostInventory {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let (cpu, cores, threads) = parse_cpuinfo(&cpuinfo);
    HostInventory {
        cpu,
        cores,
        threads,
        ram_gib: parse_meminfo_gib(&meminfo),
        cuda: cuda.to_owned(),
    }
}

/// (model name, physical cores, hardware threads) from the text of `/proc/cpuinfo`.
pub fn parse_cpuinfo(text: &str) -> (String, u32, u32) {
    let mut model = String::new();
    let mut threads = 0u32;
    let mut cores = std::collections::BTreeSet::new();
    let mut physical = String::new();
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        match key {
            "processor" => threads += 1,
            "model name" if model.is_empty() => model = value.chars().take(128).collect(),
            "physical id" => physical = value.to_owned(),
            "core id" => {
                cores.insert((physical.clone(), value.to_owned()));
            }
            _ => {}
        }
    }
    // Without core ids (some virtual machines), every thread counts as a core.
    let cores = if cores.is_empty() {
        threads
    } else {
        cores.len() as u32
    };
    (model, cores, threads)
}

/// Total memory in GiB (rounded to the nearest) from the text of `/proc/meminfo`.
pub fn parse_meminfo_gib(text: &str) -> u32 {
    text.lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kib| ((kib + (1 << 19)) >> 20) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cores_threads_and_memory_are_read_from_proc() {
        let cpuinfo = "processor\t: 0\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                       processor\t: 1\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\ncore id\t\t: 0\n\n\
                       processor\t: 2\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 0\ncore id\t\t: 1\n\n\
                       processor\t: 3\nmodel name\t: AMD EPYC 7763 64-Core Processor\nphysical id\t: 1\ncore id\t\t: 0\n";
        assert_eq!(
            parse_cpuinfo(cpuinfo),
            ("AMD EPYC 7763 64-Core Processor".into(), 3, 4)
        );
        assert_eq!(parse_cpuinfo("processor : 0\nprocessor : 1\n").1, 2);
        assert_eq!(
            parse_meminfo_gib("MemTotal:       24575928 kB\nMemFree: 1 kB\n"),
            23
        );
        assert_eq!(parse_meminfo_gib(""), 0);
        // This machine has a /proc to read.
        let here = read("12.4");
        assert!(
            here.threads >= 1 && here.cores >= 1 && here.ram_gib >= 1,
            "{here:?}"
        );
        assert_eq!(here.cuda, "12.4");
    }
}

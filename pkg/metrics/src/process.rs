//! The process's own resource use, read from `/proc` and the cgroup at scrape time:
//! `process_resident_memory_bytes`, `process_cpu_seconds_total`, `process_open_fds` and, when
//! the container has one, `process_memory_limit_bytes` (so "near its memory limit" is one
//! division in a rule). Elsewhere than Linux these are simply absent.

use std::fs;

/// Kernel clock ticks per second in `/proc/<pid>/stat`: 100 on every Linux architecture the
/// platform builds for (`USER_HZ` is fixed by the kernel ABI, whatever `CONFIG_HZ` is).
const USER_HZ: f64 = 100.0;

/// A snapshot of what the kernel says about this process.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Usage {
    pub resident_bytes: Option<f64>,
    pub cpu_seconds: Option<f64>,
    pub open_fds: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
}

pub(crate) fn read() -> Usage {
    Usage {
        resident_bytes: fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| resident_bytes(&status)),
        cpu_seconds: fs::read_to_string("/proc/self/stat")
            .ok()
            .and_then(|stat| cpu_seconds(&stat)),
        open_fds: fs::read_dir("/proc/self/fd")
            .ok()
            .map(|entries| entries.count() as f64),
        memory_limit_bytes: [
            "/sys/fs/cgroup/memory.max",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
        ]
        .iter()
        .find_map(|path| fs::read_to_string(path).ok())
        .and_then(|raw| memory_limit(&raw)),
    }
}

/// `VmRSS:  1234 kB` from `/proc/self/status`.
fn resident_bytes(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024.0)
}

/// utime + stime (fields 14 and 15) of `/proc/self/stat`, in seconds. The command name (field
/// 2) may hold spaces and parentheses, so fields are counted after its closing parenthesis.
fn cpu_seconds(stat: &str) -> Option<f64> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    let mut fields = after_name.split_ascii_whitespace().skip(11);
    let user: f64 = fields.next()?.parse().ok()?;
    let system: f64 = fields.next()?.parse().ok()?;
    Some((user + system) / USER_HZ)
}

/// A cgroup memory limit; `max` (v2) or a near-2^63 value (v1) means none.
fn memory_limit(raw: &str) -> Option<f64> {
    let bytes: u64 = raw.trim().parse().ok()?;
    (bytes < 1 << 60).then_some(bytes as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_formats_are_read() {
        assert_eq!(
            resident_bytes("Name:\tplatform\nVmRSS:\t   2048 kB\nThreads: 9\n"),
            Some(2048.0 * 1024.0)
        );
        let stat = "4242 (odd (name) x) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9";
        assert_eq!(cpu_seconds(stat), Some(3.0));
        assert_eq!(memory_limit("max\n"), None);
        assert_eq!(memory_limit("9223372036854771712\n"), None);
        assert_eq!(memory_limit("536870912\n"), Some(536870912.0));
    }

    #[test]
    fn this_process_is_seen_on_linux() {
        if cfg!(target_os = "linux") {
            let usage = read();
            assert!(usage.resident_bytes.is_some_and(|b| b > 1e6), "{usage:?}");
            assert!(usage.cpu_seconds.is_some(), "{usage:?}");
            assert!(usage.open_fds.is_some_and(|n| n >= 3.0), "{usage:?}");
        }
    }
}

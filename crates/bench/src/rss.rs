//! Resident memory from `/proc/<pid>/status` (Linux): `VmHWM` is the peak
//! resident set size, `VmRSS` the current one. Values are in bytes.

use crate::BenchError;

fn status_field_kib(status: &str, field: &str) -> Option<u64> {
    status.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

fn read_field(pid: Option<u32>, field: &str) -> Result<u64, BenchError> {
    let path = match pid {
        Some(p) => format!("/proc/{p}/status"),
        None => "/proc/self/status".to_string(),
    };
    let status = std::fs::read_to_string(&path)?;
    status_field_kib(&status, field)
        .map(|kib| kib * 1024)
        .ok_or_else(|| BenchError::Parse {
            what: path,
            message: format!("no {field} line"),
        })
}

/// Peak RSS (VmHWM) of the current process, in bytes.
pub fn peak_rss() -> Result<u64, BenchError> {
    read_field(None, "VmHWM")
}

/// Current RSS (VmRSS) of the current process, in bytes.
pub fn current_rss() -> Result<u64, BenchError> {
    read_field(None, "VmRSS")
}

/// Resident anonymous memory (RssAnon) of the current process, in bytes: heap, KV cache,
/// compute buffers and any weights copied out of the file mapping.
pub fn anon_rss() -> Result<u64, BenchError> {
    read_field(None, "RssAnon")
}

/// Resident file-backed memory (RssFile) of the current process, in bytes: mapped weights
/// (page cache, shared and reclaimable) and the binary itself.
pub fn file_rss() -> Result<u64, BenchError> {
    read_field(None, "RssFile")
}

/// Peak RSS (VmHWM) of another live process (e.g. a `llama-server` child), in bytes.
pub fn peak_rss_of(pid: u32) -> Result<u64, BenchError> {
    read_field(Some(pid), "VmHWM")
}

/// Current RSS (VmRSS) of another live process, in bytes.
pub fn current_rss_of(pid: u32) -> Result<u64, BenchError> {
    read_field(Some(pid), "VmRSS")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_status_lines() {
        let s = "Name:\tx\nVmHWM:\t  12345 kB\nVmRSS:\t   100 kB\n";
        assert_eq!(status_field_kib(s, "VmHWM"), Some(12345));
        assert_eq!(status_field_kib(s, "VmRSS"), Some(100));
        assert_eq!(status_field_kib(s, "VmSwap"), None);
        let s = "RssAnon:\t  2048 kB\nRssFile:\t   512 kB\n";
        assert_eq!(status_field_kib(s, "RssAnon"), Some(2048));
        assert_eq!(status_field_kib(s, "RssFile"), Some(512));
    }

    #[test]
    fn own_rss_is_sane_and_peak_tracks_allocation() {
        let cur = current_rss().unwrap();
        let peak = peak_rss().unwrap(); // read after: other test threads may allocate meanwhile
        assert!(cur > 0 && peak >= cur, "peak {peak} cur {cur}");
        let me = std::process::id();
        let cur_of = current_rss_of(me).unwrap();
        assert!(peak_rss_of(me).unwrap() >= cur_of);
        // Touch 64 MiB: the peak must cover it.
        let mut v = vec![0u8; 64 << 20];
        for i in (0..v.len()).step_by(4096) {
            v[i] = 1;
        }
        std::hint::black_box(&v);
        assert!(peak_rss().unwrap() >= cur + (60 << 20));
    }
}

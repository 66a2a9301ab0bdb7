//! The address ranges where llama.cpp mapped a model file, and handing their pages back.
//!
//! Why: a model whose engine was evicted can stay parsed ("asleep", see [`crate::Model`]) so the
//! next engine starts without llama.cpp's ~150–600 ms load, but its weights must not stay
//! resident. llama.cpp maps the file read-only and never writes to it, so
//! `madvise(MADV_DONTNEED)` on those ranges drops the pages from this process; the next access
//! reads them again from the page cache (or the file), exactly as the kernel does on its own
//! under memory pressure. Nothing is lost.
//!
//! llama.cpp does not expose where it mapped the file, so the ranges are found in
//! `/proc/self/maps`: the mappings of the file's (device, inode) that appeared while it loaded
//! (loads are serialised, see `model::load`). Elsewhere than Linux nothing is found and a
//! model simply cannot sleep.

use std::collections::HashSet;
use std::path::Path;

/// A file's identity as `/proc/self/maps` prints it: `major:minor` (hex) and inode.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: String,
    inode: u64,
}

impl FileId {
    pub(crate) fn of(path: &Path) -> Option<Self> {
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(path).ok()?;
        let dev = m.dev();
        // glibc's `major`/`minor` encoding of `dev_t`.
        let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
        let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
        Some(Self {
            dev: format!("{major:02x}:{minor:02x}"),
            inode: m.ino(),
        })
    }
}

/// `(start, end)` of every mapping of `file` in `maps` (the text of `/proc/self/maps`).
fn ranges_in(maps: &str, file: &FileId) -> Vec<(usize, usize)> {
    maps.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let (range, _perms, _offset, dev, inode) = (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if dev != file.dev || inode.parse::<u64>().ok()? != file.inode {
                return None;
            }
            let (a, b) = range.split_once('-')?;
            Some((usize::from_str_radix(a, 16).ok()?, usize::from_str_radix(b, 16).ok()?))
        })
        .collect()
}

/// Mappings of `file` in this process now.
pub(crate) fn ranges(file: &FileId) -> Vec<(usize, usize)> {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| ranges_in(&m, file))
        .unwrap_or_default()
}

/// Ranges in `after` that were not in `before`.
pub(crate) fn new_ranges(before: &[(usize, usize)], after: Vec<(usize, usize)>) -> Vec<(usize, usize)> {
    let old: HashSet<_> = before.iter().collect();
    after.into_iter().filter(|r| !old.contains(r)).collect()
}

/// Drop this process's pages of `ranges`, which must be read-only mappings of a file that
/// stay mapped (see the module docs for why that loses nothing).
pub(crate) fn release(ranges: &[(usize, usize)]) {
    for &(start, end) in ranges {
        // SAFETY: the range is a live, read-only, file-backed mapping owned by a model that
        // the caller keeps alive; MADV_DONTNEED only makes later reads fault the file's pages in again.
        unsafe { libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED) };
    }
}

/// Bytes of `ranges` resident in this process (`Rss` in `/proc/self/smaps`).
pub(crate) fn resident_bytes(ranges: &[(usize, usize)]) -> u64 {
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    let wanted: HashSet<(usize, usize)> = ranges.iter().copied().collect();
    let mut inside = false;
    let mut kib = 0;
    for line in smaps.lines() {
        if let Some(rss) = line.strip_prefix("Rss:") {
            if inside {
                kib += rss.trim().trim_end_matches("kB").trim().parse::<u64>().unwrap_or(0);
            }
        } else if let Some((a, b)) = line.split_whitespace().next().and_then(|r| r.split_once('-')) {
            if let (Ok(a), Ok(b)) = (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16)) {
                inside = wanted.contains(&(a, b));
            }
        }
    }
    kib * 1024
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAPS: &str = "\
55d0c0a00000-55d0c0a21000 r--p 00000000 fd:01 1835 /usr/bin/rightsize
7f1c2a000000-7f1c30100000 r--s 00021000 fd:01 4242 /root/.cache/rightsize/models/smollm2-135m/model.gguf
7f1c30200000-7f1c30300000 r--s 00000000 fd:02 4242 /mnt/other/model.gguf
7f1c40000000-7f1c40021000 rw-p 00000000 00:00 0 
7f1c50000000-7f1c50001000 r--s 00000000 fd:01 4242 /root/.cache/rightsize/models/smollm2-135m/model.gguf (deleted)
";

    #[test]
    fn mappings_are_matched_by_device_and_inode() {
        let file = FileId {
            dev: "fd:01".into(),
            inode: 4242,
        };
        // The same inode on another device is another file; a deleted file is still mapped.
        assert_eq!(
            ranges_in(MAPS, &file),
            [(0x7f1c2a000000, 0x7f1c30100000), (0x7f1c50000000, 0x7f1c50001000)]
        );
        assert!(ranges_in(
            MAPS,
            &FileId {
                dev: "fd:01".into(),
                inode: 1
            }
        )
        .is_empty());
        assert!(ranges_in("garbage\n\n1-2 r\n", &file).is_empty());
    }

    #[test]
    fn only_ranges_that_appeared_are_new() {
        assert_eq!(new_ranges(&[(1, 2), (5, 9)], vec![(1, 2), (3, 4), (5, 9)]), [(3, 4)]);
        assert!(new_ranges(&[(1, 2)], vec![]).is_empty());
    }

    #[test]
    fn a_mapped_file_is_found_and_its_pages_given_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weights.bin");
        std::fs::write(&path, vec![7u8; 1 << 20]).unwrap();
        let id = FileId::of(&path).unwrap();
        let before = ranges(&id);
        let f = std::fs::File::open(&path).unwrap();
        use std::os::fd::AsRawFd;
        // SAFETY: a fresh read-only shared mapping of a 1 MiB file, unmapped below.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                1 << 20,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                f.as_raw_fd(),
                0,
            )
        };
        assert_ne!(addr, libc::MAP_FAILED);
        let found = new_ranges(&before, ranges(&id));
        assert_eq!(found, [(addr as usize, addr as usize + (1 << 20))]);
        assert_eq!(resident_bytes(&found), 1 << 20);
        release(&found);
        assert_eq!(resident_bytes(&found), 0);
        // Reading again brings the same bytes back from the file.
        let byte = unsafe { *(addr as *const u8).add(12345) };
        assert_eq!(byte, 7);
        unsafe { libc::munmap(addr, 1 << 20) };
    }
}

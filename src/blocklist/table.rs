//! Zeroed lookup tables for the rule sets, in memory of their own when large and backed by 2 MB pages where the
//! kernel has them: a lookup in a million-rule table lands on a random page, and on 4 KB pages nearly every
//! one misses the TLB (`cargo bench --bench lists`: 5-11 % faster lookups in 1M and 3M rules).
//!
//! A large table is mapped, advised `MADV_HUGEPAGE` before anything touches it, and unmapped when dropped. Advising
//! heap memory instead would outlive the table: the allocator keeps freed memory and hands it to small
//! allocations on the query threads, which would then take 2 MB page faults (the stall that made c2sink build
//! mimalloc with `no_thp`); and memory the allocator reuses is already touched, so the advice came too late.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Plain data whose all-zero bytes are a valid value: a fresh mapping is the table's initial contents.
///
/// # Safety
/// Implementors must be valid when every byte is zero, their `Default` must be that value (small tables start
/// from it), and they must not need dropping.
pub unsafe trait Zeroed: Copy + Default {}
// SAFETY: integers and arrays of them are valid as zero bytes and have no drop glue.
unsafe impl Zeroed for u64 {}
// SAFETY: as above.
unsafe impl Zeroed for [u64; 8] {}

/// Size of a huge page, and the size from which a table gets a mapping of its own.
const HUGE: usize = 2 << 20;

/// A fixed-length zeroed table (see the module docs for where its memory comes from).
pub struct Table<T: Zeroed> {
    ptr: NonNull<T>,
    len: usize,
    /// The table's own mapping (start, bytes), or bytes 0: a boxed slice on the heap, taken back on drop.
    map: (usize, usize),
}

// SAFETY: a table owns its memory alone, as a `Box<[T]>` does.
unsafe impl<T: Zeroed + Send> Send for Table<T> {}
// SAFETY: shared access only reads, as for `&[T]`.
unsafe impl<T: Zeroed + Sync> Sync for Table<T> {}

impl<T: Zeroed> Table<T> {
    /// A table of `len` zeroed entries.
    pub fn new(len: usize) -> Self {
        let bytes = len.saturating_mul(std::mem::size_of::<T>());
        if bytes >= HUGE
            && let Some(t) = Self::mapped(len, bytes)
        {
            return t;
        }
        let heap: Box<[T]> = vec![T::default(); len].into_boxed_slice();
        let ptr = NonNull::from(Box::leak(heap)).cast::<T>();
        Table {
            ptr,
            len,
            map: (0, 0),
        }
    }

    /// The table in a mapping of its own, 2 MB aligned so that every part of it can be a huge page; `None`
    /// when the kernel gives no mapping (the heap is tried instead).
    #[cfg(target_os = "linux")]
    fn mapped(len: usize, bytes: usize) -> Option<Self> {
        let want = bytes.checked_next_multiple_of(HUGE)?;
        let reserve = want.checked_add(HUGE)?;
        // SAFETY: a fresh private anonymous mapping; nothing else refers to it.
        let raw = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if raw == libc::MAP_FAILED {
            return None;
        }
        let base = raw as usize;
        let start = base.next_multiple_of(HUGE);
        // SAFETY: the head before `start` and the tail after `start + want` lie inside the mapping just made,
        // are page aligned (the mapping is, and HUGE is a multiple of any page size) and are not used.
        unsafe {
            if start > base {
                libc::munmap(raw, start - base);
            }
            let tail = base + reserve - (start + want);
            if tail > 0 {
                libc::munmap((start + want) as *mut libc::c_void, tail);
            }
            // Only advice: a kernel without transparent huge pages says EINVAL and the table works as before.
            libc::madvise(start as *mut libc::c_void, want, libc::MADV_HUGEPAGE);
        }
        Some(Table {
            ptr: NonNull::new(start as *mut T)?,
            len,
            map: (start, want),
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn mapped(_len: usize, _bytes: usize) -> Option<Self> {
        None
    }

    /// Bytes the table takes.
    pub fn bytes(&self) -> usize {
        if self.map.1 > 0 {
            self.map.1
        } else {
            self.len * std::mem::size_of::<T>()
        }
    }
}

impl<T: Zeroed> Default for Table<T> {
    fn default() -> Self {
        Table::new(0)
    }
}

impl<T: Zeroed> Deref for Table<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialized entries (zeroed, valid per `Zeroed`) owned by the table.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroed> DerefMut for Table<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes this the only reference.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroed> Drop for Table<T> {
    fn drop(&mut self) {
        let (start, bytes) = self.map;
        if bytes > 0 {
            // SAFETY: the table's own mapping, made in `mapped` and unmapped only here.
            #[cfg(target_os = "linux")]
            unsafe {
                libc::munmap(start as *mut libc::c_void, bytes);
            }
            #[cfg(not(target_os = "linux"))]
            let _ = start;
        } else {
            let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
            // SAFETY: the boxed slice leaked in `new`, taken back once.
            drop(unsafe { Box::from_raw(slice) });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The start and the flags (`VmFlags` in /proc/self/smaps) of the mapping that holds `addr`.
    #[cfg(target_os = "linux")]
    fn mapping_of(addr: usize) -> Option<(usize, String)> {
        let smaps = std::fs::read_to_string("/proc/self/smaps").ok()?;
        let mut inside = None;
        for line in smaps.lines() {
            let first = line.split_whitespace().next().unwrap_or("");
            if let Some((lo, hi)) = first.split_once('-')
                && let (Ok(lo), Ok(hi)) =
                    (usize::from_str_radix(lo, 16), usize::from_str_radix(hi, 16))
            {
                inside = (lo..hi).contains(&addr).then_some(lo);
            } else if let Some(lo) = inside
                && let Some(flags) = line.strip_prefix("VmFlags:")
            {
                return Some((lo, flags.trim().to_string()));
            }
        }
        None
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn a_large_table_has_its_own_aligned_mapping_advised_for_huge_pages() {
        let mut big: Table<u64> = Table::new(1_500_001);
        assert_eq!(big.len(), 1_500_001);
        assert!(big.iter().all(|&k| k == 0), "zeroed");
        big[1_500_000] = 7;
        big[0] = 1;
        assert_eq!((big[0], big[1_500_000]), (1, 7));
        let start = big.as_ptr() as usize;
        assert_eq!(start % HUGE, 0, "2 MB aligned");
        assert_eq!(big.bytes(), 12 << 20, "12,000,008 bytes in six huge pages");
        let (_, flags) = mapping_of(start + 4096).expect("the table's mapping");
        if std::path::Path::new("/sys/kernel/mm/transparent_hugepage/enabled").exists() {
            assert!(flags.split(' ').any(|f| f == "hg"), "flags {flags}");
        }
        let filter: Table<[u64; 8]> = Table::new(40_000);
        assert_eq!(filter.as_ptr() as usize % HUGE, 0, "a 2.4 MB filter too");
    }

    #[test]
    fn a_small_table_stays_on_the_heap() {
        let mut small: Table<[u64; 8]> = Table::new(1_000);
        assert_eq!(small.map, (0, 0));
        assert_eq!(small.bytes(), 64_000);
        small[999][7] = 3;
        assert_eq!(small.iter().map(|b| b.iter().sum::<u64>()).sum::<u64>(), 3);
        let empty: Table<u64> = Table::default();
        assert!(empty.is_empty());
    }
}

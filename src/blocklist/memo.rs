//! A per-thread memory of recent decisions of large lists: a name asked again (a beacon every few seconds,
//! the names a network asks all day) is decided from one line of a small table, where a million-rule set
//! reads filter and table lines spread over megabytes, each a memory miss by the time the name comes back.
//!
//! Lists are never changed in place (a reload builds new ones), so an entry is tagged with the name's
//! fingerprint mixed with the identity of the lists that decided it, and nothing ever needs to be forgotten.

use std::cell::RefCell;

/// Entries per thread, direct-mapped (16 bytes each: 64 KiB a thread, allocated on first use).
const SLOTS: usize = 4096;

/// The bit that marks a stored decision (an unused slot is all zero).
const STORED: u64 = 1 << 63;

thread_local! {
    static MEMO: RefCell<Vec<(u64, u64)>> = const { RefCell::new(Vec::new()) };
}

/// A decision as stored: no match, or the list's index, the matched suffix's length and the packed rule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Pass,
    Block {
        list: u16,
        suffix_len: u16,
        rule: u8,
    },
}

impl Decision {
    fn encode(self) -> u64 {
        match self {
            Decision::Pass => STORED,
            Decision::Block {
                list,
                suffix_len,
                rule,
            } => {
                STORED
                    | 1 << 62
                    | u64::from(list) << 32
                    | u64::from(rule) << 16
                    | u64::from(suffix_len)
            }
        }
    }

    fn decode(v: u64) -> Option<Decision> {
        if v & STORED == 0 {
            return None;
        }
        if v & (1 << 62) == 0 {
            return Some(Decision::Pass);
        }
        Some(Decision::Block {
            list: (v >> 32) as u16,
            suffix_len: v as u16,
            rule: (v >> 16) as u8,
        })
    }
}

fn slot(tag: u64) -> usize {
    // The fingerprint's high bits are as good as any; the low ones carry little for short names.
    (tag >> 40) as usize % SLOTS
}

/// The decision stored under `tag`, if this thread has one.
#[inline]
pub fn get(tag: u64) -> Option<Decision> {
    // `try_`: a thread tearing down its locals, or a borrow somehow held, is a miss, never a panic.
    MEMO.try_with(|m| {
        let m = m.try_borrow().ok()?;
        let &(t, v) = m.get(slot(tag))?;
        if t == tag { Decision::decode(v) } else { None }
    })
    .ok()
    .flatten()
}

/// Stores `d` under `tag` on this thread, in place of whatever shared its slot.
#[inline]
pub fn put(tag: u64, d: Decision) {
    let _ = MEMO.try_with(|m| {
        let Ok(mut m) = m.try_borrow_mut() else {
            return;
        };
        if m.is_empty() {
            m.resize(SLOTS, (0, 0));
        }
        if let Some(s) = m.get_mut(slot(tag)) {
            *s = (tag, d.encode());
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions_come_back_under_their_tag_only() {
        let block = Decision::Block {
            list: 3,
            suffix_len: 1004,
            rule: 0x1f,
        };
        let tag = 0xdead_beef_0000_1234_u64;
        assert_eq!(get(tag), None);
        put(tag, block);
        assert_eq!(get(tag), Some(block));
        // Another tag in the same slot takes it over.
        let rival = tag ^ 1;
        assert_eq!(slot(rival), slot(tag));
        assert_eq!(get(rival), None);
        put(rival, Decision::Pass);
        assert_eq!((get(rival), get(tag)), (Some(Decision::Pass), None));
        // Each thread has its own.
        std::thread::spawn(move || assert_eq!(get(rival), None))
            .join()
            .expect("other thread");
        // An unused slot is never taken for a tag of zero.
        assert_eq!(get(0), None);
    }
}

//! Scheduling hints, so that on a busy core a query never waits for background work: threads that answer
//! queries ask for a short time slice (a waking one preempts at once), log writers run at a lower priority.
//!
//! Linux's EEVDF scheduler (6.12 and later) takes a thread's slice from `sched_setattr`; older kernels ignore
//! it. A hint that cannot be applied (an old kernel, a seccomp filter, a real-time policy chosen by the
//! admin) is logged at debug level and the thread runs as before: nothing here is needed for correctness.

use std::io;

/// A query thread's slice: short enough that a query arriving while a log writer writes a batch is answered
/// within about this long (measured: blocked-name p99 at 30k qps, docs/performance.md).
pub const QUERY_SLICE_NS: u64 = 100_000;
/// How much lower a background thread's priority is than the process's own.
pub const BACKGROUND_NICE: i32 = 10;
const SCHED_OTHER: u32 = 0;
const MAX_NICE: i32 = 19;

/// The kernel's `struct sched_attr` (first version, 48 bytes).
#[repr(C)]
#[derive(Debug, Default, Clone, Copy)]
struct SchedAttr {
    size: u32,
    policy: u32,
    flags: u64,
    nice: i32,
    priority: u32,
    runtime: u64,
    deadline: u64,
    period: u64,
}

const ATTR_SIZE: u32 = std::mem::size_of::<SchedAttr>() as u32;

fn get() -> io::Result<SchedAttr> {
    let mut a = SchedAttr::default();
    // SAFETY: the kernel writes at most ATTR_SIZE bytes into `a`, which is that large and lives across the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_sched_getattr,
            0,
            &mut a as *mut SchedAttr,
            ATTR_SIZE,
            0,
        )
    };
    if r == 0 {
        Ok(a)
    } else {
        Err(io::Error::last_os_error())
    }
}

fn set(a: &SchedAttr) -> io::Result<()> {
    let a = SchedAttr {
        size: ATTR_SIZE,
        ..*a
    };
    // SAFETY: the kernel reads `a.size` bytes from `a`, which is that large and lives across the call.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &a as *const SchedAttr, 0) };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Applies `change` to the calling thread's normal-policy scheduling attributes; leaves any other policy alone.
fn adjust(what: &str, change: impl FnOnce(&mut SchedAttr)) {
    let r = get().and_then(|mut a| {
        if a.policy != SCHED_OTHER {
            return Ok(());
        }
        change(&mut a);
        set(&a)
    });
    if let Err(e) = r {
        tracing::debug!(thread = what, error = %e, "scheduling hint not applied");
    }
}

/// Called on each thread that answers queries: keeps its nice value, asks for a short slice.
pub fn query_thread() {
    adjust("query", |a| a.runtime = QUERY_SLICE_NS);
}

/// Called on each log writer: the default slice and a lower priority (it still gets its share on a saturated
/// core, so events are not starved into the drop counter).
pub fn background_thread() {
    adjust("background", |a| {
        a.runtime = 0;
        a.nice = (a.nice + BACKGROUND_NICE).min(MAX_NICE);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kernel_at_least(major: u32, minor: u32) -> bool {
        let Ok(release) = std::fs::read_to_string("/proc/sys/kernel/osrelease") else {
            return false;
        };
        let mut parts = release.trim().split(['.', '-']);
        let mut num = || {
            parts
                .next()
                .and_then(|p| p.parse::<u32>().ok())
                .unwrap_or(0)
        };
        (num(), num()) >= (major, minor)
    }

    #[test]
    fn query_threads_get_a_short_slice_and_keep_their_nice_value() {
        std::thread::spawn(|| {
            let before = get().expect("sched_getattr");
            query_thread();
            let after = get().expect("sched_getattr");
            assert_eq!(after.nice, before.nice);
            assert_eq!(after.policy, before.policy);
            if before.policy == SCHED_OTHER && kernel_at_least(6, 12) {
                assert_eq!(after.runtime, QUERY_SLICE_NS);
            }
        })
        .join()
        .expect("thread");
    }

    #[test]
    fn background_threads_run_at_a_lower_priority_with_the_default_slice() {
        std::thread::spawn(|| {
            query_thread();
            let before = get().expect("sched_getattr");
            background_thread();
            let after = get().expect("sched_getattr");
            if before.policy == SCHED_OTHER {
                assert_eq!(after.nice, (before.nice + BACKGROUND_NICE).min(MAX_NICE));
                assert_ne!(
                    after.runtime, QUERY_SLICE_NS,
                    "the short slice was not reset"
                );
            }
        })
        .join()
        .expect("thread");
    }
}

//! Room in the process's descriptor table, made once before the engine's threads start.
//!
//! A process started from a shell (or from `time`, `sh -c`, a service manager) usually begins with
//! a table of 64 descriptor slots. Linux grows it on demand, but in a process with more than one
//! thread each growth waits for an RCU grace period (`expand_fdtable` calls `synchronize_rcu`), and
//! every `open`, `socket` and `accept` of every thread waits with it. A batch of small files holds
//! well over 64 descriptors at once (16 sockets, the files being written, the files waiting for
//! their group's sync), so it crossed 64 and then 128 in the middle of its transfers: 1000 files of
//! 16 KiB took about 140 ms instead of 105 ms when `ferry batch` ran under `/usr/bin/time` rather
//! than straight from a Python parent whose table was already large.
//!
//! Making room while the process has one thread costs nothing. In an app that already has threads
//! it costs one grace period when the engine starts, instead of stalls during transfers.

/// Slots to make room for: a large batch's sockets and files in flight, with margin.
pub const SLOTS: usize = 1024;

/// Makes room for [`SLOTS`] descriptors (fewer when the soft `RLIMIT_NOFILE` is lower). Never
/// touches a descriptor in use: a placeholder takes the lowest free number at or above the target
/// and is closed at once. Does nothing where tables do not grow this way (Apple platforms).
pub fn reserve() {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    reserve_slots(SLOTS);
}

/// Makes room for `slots` descriptors, capped by the soft limit; whether a placeholder was placed.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn reserve_slots(slots: usize) -> bool {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: plain system calls on descriptors this function opens and closes itself.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return false;
        }
        #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on 32-bit Android
        let top = (slots as u64).min(limit.rlim_cur as u64).saturating_sub(1);
        if top < 64 {
            return false;
        }
        let base = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if base < 0 {
            return false;
        }
        let placeholder = libc::fcntl(base, libc::F_DUPFD_CLOEXEC, top as libc::c_int);
        libc::close(base);
        if placeholder < 0 {
            return false;
        }
        libc::close(placeholder);
        true
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    fn table_slots() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        let line = status.lines().find(|l| l.starts_with("FDSize:")).unwrap();
        line["FDSize:".len()..].trim().parse().unwrap()
    }

    /// The soft descriptor limit, raised to the hard one (at most 2^16) so that another test having
    /// started the engine (which reserves up to the soft limit) leaves room to grow.
    fn raised_soft_limit() -> usize {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        // SAFETY: getrlimit and setrlimit read and write the struct passed.
        unsafe {
            assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit), 0);
            limit.rlim_cur = limit.rlim_max.min(1 << 16);
            assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &limit), 0);
        }
        limit.rlim_cur as usize
    }

    #[test]
    fn the_table_grows_to_the_slots_asked_for() {
        // Ask for more than the table has now, so that the assertion is about this call.
        let want = (table_slots() * 2).min(raised_soft_limit());
        assert!(want > table_slots(), "the hard descriptor limit leaves no room to test with");
        assert!(reserve_slots(want));
        assert!(table_slots() >= want, "table has {} slots, wanted {want}", table_slots());
    }

    #[test]
    fn a_request_within_the_initial_table_does_nothing() {
        assert!(!reserve_slots(10));
    }
}

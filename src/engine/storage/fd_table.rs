//! Descriptors: the soft limit raised, and room in the process's table, made once before the
//! engine's threads start.
//!
//! The soft `RLIMIT_NOFILE` is often far below the hard one (1024 against 4096 or more on Linux
//! desktops, 256 on macOS and iOS). A batch holds a socket per connection, the file of every
//! running task and the files waiting for their group's sync, so at 64 descriptors a batch of 1000
//! small files had 913 fail with "Too many open files". The engine raises the soft limit to the
//! hard one, up to [`SOFT_LIMIT`], as Go and Node do at start. Where the hard limit itself is low,
//! the scheduler fits the transfers into what it leaves: the files waiting to publish
//! ([`publish_backlog`]), the tasks transferring ([`running_cap`]) and the connections per host
//! ([`connection_cap`]).
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

/// The soft descriptor limit the engine raises to, when the hard limit allows.
pub const SOFT_LIMIT: u64 = 4096;

/// Raises the soft descriptor limit (up to [`SOFT_LIMIT`]), then makes room for [`SLOTS`]
/// descriptors (fewer when the soft limit is lower). Never touches a descriptor in use: a
/// placeholder takes the lowest free number at or above the target and is closed at once. The
/// table is grown ahead only on Linux and Android; elsewhere tables do not grow this way.
pub fn reserve() {
    raise_soft_limit(SOFT_LIMIT);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    reserve_slots(SLOTS);
}

/// The soft and hard descriptor limits.
fn limits() -> Option<(u64, u64)> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return None;
    }
    #[allow(clippy::unnecessary_cast)] // rlim_t is 32 bits on 32-bit Android
    Some((limit.rlim_cur as u64, limit.rlim_max as u64))
}

/// Raises the soft descriptor limit to `want`, or to the hard limit if that is lower; never lowers
/// it. Returns the soft limit now in force.
pub fn raise_soft_limit(want: u64) -> Option<u64> {
    let (soft, hard) = limits()?;
    let target = want.min(hard);
    if target <= soft {
        return Some(soft);
    }
    // Both fit: `target` is at most `hard`, which came from an rlim_t.
    let limit = libc::rlimit { rlim_cur: target as libc::rlim_t, rlim_max: hard as libc::rlim_t };
    // SAFETY: setrlimit reads the struct passed.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Some(soft);
    }
    Some(target)
}

/// Descriptors left to the rest of the process: standard streams, the task table's files and lock,
/// the runtime's poll and wake-up descriptors, directory handles, and an app's own files.
const RESERVED: usize = 24;

/// The soft descriptor limit, read once: it is raised when the runtime starts, before any manager
/// dispatches.
fn soft_limit() -> usize {
    static SOFT: once_cell::sync::Lazy<usize> =
        once_cell::sync::Lazy::new(|| limits().map(|(soft, _)| soft.min(1 << 20) as usize).unwrap_or(1024));
    *SOFT
}

/// Descriptors the transfers may hold at once: sockets, files being written, files waiting for
/// their publish group.
fn transfer_budget(soft_limit: usize) -> usize {
    soft_limit.saturating_sub(RESERVED).max(6)
}

/// How many finished files may wait for their publish group at once: a quarter of the soft
/// descriptor limit (each holds its file open), at least 16 so that groups still form, and never
/// more than a third of the transfers' budget. (Tying it to the running-task limit instead, 4 per
/// task, slowed 1000 × 16 KiB by 15 %: a publisher that lags for a moment held back the next
/// downloads.)
pub fn publish_backlog() -> usize {
    backlog_for(soft_limit())
}

fn backlog_for(soft_limit: usize) -> usize {
    (soft_limit / 4).max(16).min(transfer_budget(soft_limit) / 3).max(2)
}

/// At most this many tasks transfer at once, whatever the limits ask for: a quarter of the
/// transfers' budget (a file and a socket each, with room for the files they hand to the
/// publisher). Only a descriptor limit below a few hundred makes it bind. Without it, a batch at a
/// hard limit of 48 opened sockets and files until every new one failed with "Too many open
/// files": 2 files of 1000 arrived, and the other 998 failed one after another.
pub fn running_cap() -> usize {
    running_cap_for(soft_limit())
}

fn running_cap_for(soft_limit: usize) -> usize {
    (transfer_budget(soft_limit) / 4).max(1)
}

/// At most this many connections to one host at once, whatever the limits ask for: a third of the
/// transfers' budget.
pub fn connection_cap() -> u32 {
    connection_cap_for(soft_limit())
}

fn connection_cap_for(soft_limit: usize) -> u32 {
    (transfer_budget(soft_limit) / 3).clamp(1, u32::MAX as usize) as u32
}

/// Makes room for `slots` descriptors, capped by the soft limit; whether a placeholder was placed.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub fn reserve_slots(slots: usize) -> bool {
    let Some((soft, _)) = limits() else { return false };
    let top = (slots as u64).min(soft).saturating_sub(1);
    if top < 64 {
        return false;
    }
    // SAFETY: plain system calls on descriptors this function opens and closes itself.
    unsafe {
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

    #[test]
    fn the_table_grows_to_the_slots_asked_for() {
        // Ask for more than the table has now, so that the assertion is about this call; the soft
        // limit is raised first, in case another test started the engine and filled it.
        let soft = raise_soft_limit(1 << 16).unwrap() as usize;
        let want = (table_slots() * 2).min(soft);
        assert!(want > table_slots(), "the hard descriptor limit leaves no room to test with");
        assert!(reserve_slots(want));
        assert!(table_slots() >= want, "table has {} slots, wanted {want}", table_slots());
    }

    #[test]
    fn a_request_within_the_initial_table_does_nothing() {
        assert!(!reserve_slots(10));
    }

    #[test]
    fn the_soft_limit_rises_to_the_hard_one_at_most_and_never_falls() {
        let (_, hard) = limits().unwrap();
        let now = raise_soft_limit(64).unwrap();
        assert!(now >= 64.min(hard));
        assert_eq!(raise_soft_limit(16), Some(now), "asking for less must not lower the limit");
        let raised = raise_soft_limit(1 << 16).unwrap();
        assert_eq!(raised, hard.min(1 << 16).max(now));
        assert_eq!(limits().unwrap().0, raised);
    }

    #[test]
    fn the_publish_backlog_follows_the_descriptor_limit() {
        assert_eq!(backlog_for(4096), 1024);
        assert_eq!(backlog_for(1024), 256);
        assert_eq!(backlog_for(96), 24);
        assert_eq!(backlog_for(48), 8);
        assert_eq!(backlog_for(24), 2);
    }

    #[test]
    fn transfers_fit_in_what_the_descriptor_limit_leaves() {
        // Ordinary limits leave the configured limits alone.
        assert!(running_cap_for(1024) >= 64 && connection_cap_for(1024) >= 64);
        for soft in [16, 24, 32, 48, 64, 96, 128, 256] {
            let (running, conns, backlog) = (running_cap_for(soft), connection_cap_for(soft) as usize, backlog_for(soft));
            assert!(running >= 1 && conns >= 1 && backlog >= 2, "{soft}");
            // A file per running task, every connection, every waiting file: within the budget
            // (at the smallest limits, within the floor of six).
            assert!(running + conns + backlog <= transfer_budget(soft).max(6) + 2, "{soft}: {running} {conns} {backlog}");
        }
    }
}

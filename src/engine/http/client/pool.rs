//! Idle connections kept per pool key (scheme, host and port, or the proxy), checked before
//! reuse, and reaped in the background.

use super::*;

#[derive(Default)]
pub(super) struct Pool {
    idle: Mutex<HashMap<String, Vec<Idle>>>,
    reaper: AtomicBool,
}

pub(super) struct Idle {
    conn: Conn,
    since: Instant,
}

impl Pool {
    pub(super) fn checkout(&self, key: &str) -> Option<Conn> {
        let mut idle = self.idle.lock();
        let list = idle.get_mut(key)?;
        let now = Instant::now();
        while let Some(mut c) = list.pop() {
            if now.duration_since(c.since) < IDLE_KEEP && c.conn.stream.usable() {
                return Some(c.conn);
            }
        }
        None
    }

    pub(super) fn checkin(self: &Arc<Self>, key: String, mut conn: Conn) {
        if conn.buf.capacity() > MAX_READ {
            conn.buf = BytesMut::new();
        }
        conn.max_read = MAX_READ;
        let mut idle = self.idle.lock();
        let list = idle.entry(key).or_default();
        if list.len() >= MAX_IDLE_PER_HOST {
            return;
        }
        list.push(Idle { conn, since: Instant::now() });
        if !self.reaper.swap(true, Ordering::AcqRel) {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(reap(Arc::downgrade(self)));
            } else {
                self.reaper.store(false, Ordering::Release);
            }
        }
    }

    /// Closes the connections idle for too long, or closed by their peer; whether none is left.
    pub(super) fn prune(&self) -> bool {
        let mut idle = self.idle.lock();
        let now = Instant::now();
        idle.retain(|_, list| {
            list.retain_mut(|c| now.duration_since(c.since) < IDLE_KEEP && c.conn.stream.usable());
            !list.is_empty()
        });
        let empty = idle.is_empty();
        if empty {
            self.reaper.store(false, Ordering::Release);
        }
        empty
    }
}

/// Closes idle connections in the background while there are any; ends with the pool.
pub(super) async fn reap(pool: Weak<Pool>) {
    loop {
        tokio::time::sleep(IDLE_KEEP / 4).await;
        match pool.upgrade() {
            Some(p) if !p.prune() => {}
            _ => return,
        }
    }
}

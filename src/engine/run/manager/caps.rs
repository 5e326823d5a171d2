//! Bandwidth caps changed while downloads run: the global cap lives in the runner environment, a
//! task's in its table entry, and every connection reads both on each chunk (see `run::rate`), so
//! a change reaches running transfers without restarting anything.

use super::*;

impl Manager {
    /// The cap on all downloads together, in bytes per second (`None`: none).
    pub fn rate_limit(&self) -> Option<u64> {
        self.inner.env.rate.get()
    }

    /// Caps all downloads together at `bytes_per_sec` (`None` or 0 lifts the cap). Running
    /// connections follow within a read.
    pub fn set_rate_limit(&self, bytes_per_sec: Option<u64>) {
        let rate = bytes_per_sec.filter(|&r| r > 0);
        self.inner.env.config.write().rate_limit = rate;
        self.inner.env.rate.set(rate);
    }

    /// A task's own cap, in bytes per second (`None`: none).
    pub fn task_rate_limit(&self, id: &str) -> Result<Option<u64>> {
        Ok(self.inner.entry(id)?.rate.get())
    }

    /// Caps one task at `bytes_per_sec` over all its connections (`None` or 0 lifts the cap), on
    /// top of the global cap. Stored with a file task, so it holds after a reopen and reaches
    /// another process that runs the task when that process next reads the table.
    pub fn set_task_rate_limit(&self, id: &str, bytes_per_sec: Option<u64>) -> Result<()> {
        let rate = bytes_per_sec.filter(|&r| r > 0);
        let e = self.inner.entry(id)?;
        if e.persisted {
            self.inner.env.store.set_rate_limit(id, rate)?;
        }
        e.rate.set(rate);
        Ok(())
    }
}

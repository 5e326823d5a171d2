//! A fresh start: the probe, and the plain stream a server without ranges gets.

use super::connection::verified::Unhashed;
use super::*;

impl Run {
    /// Probes the resource and transfers it from zero.
    pub(super) async fn fresh(&mut self) -> Result<Done, Step> {
        loop {
            let asked_range = !self.plain_only;
            let access = self.task.access();
            let (url, headers) = self.task.target(&access);
            let get =
                Get { url, headers, range: asked_range.then_some((0, None)), if_range: None, fresh: std::mem::take(&mut self.fresh_next) };
            let asked_at = Instant::now();
            let resp = match self.get(get).await {
                Ok(r) => r,
                Err(Step::Retry(e)) => {
                    self.backoff(e).await?;
                    continue;
                }
                Err(other) => return Err(other),
            };
            self.probe_latency = Some(asked_at.elapsed());
            let probe = match judge_probe(&resp.head, asked_range) {
                Ok(p) => p,
                Err(e) if e.is_retryable() || e.code() == ErrorCode::ProtocolError => {
                    self.backoff(e).await?;
                    continue;
                }
                Err(e) => return Err(Step::Fail(e)),
            };
            match probe {
                Probe::RetryWithoutRange => {
                    self.plain_only = true;
                    continue;
                }
                Probe::Empty => {
                    self.task.live.total.store(0, Ordering::Relaxed);
                    return Ok(Done { total: 0, hashed: None });
                }
                // Without a validator nothing proves that two answers carry the same bytes: a
                // server whose content changes between requests would have its versions stitched
                // together. One answer, start to end, is the only copy known to be whole.
                Probe::Ranged { total, body_end, validator: None } => {
                    if body_end < total {
                        self.plain_only = true;
                        continue;
                    }
                    self.check_memory_limit(Some(total))?;
                    self.record_resource(Some(total), None, None);
                    return Box::pin(self.transfer_whole(resp, Some(total))).await;
                }
                Probe::Ranged { total, body_end, validator } => {
                    self.check_memory_limit(Some(total))?;
                    let pieces = if body_end < total {
                        vec![(0, body_end), (body_end, total)]
                    } else {
                        match self.connection_mode() {
                            ConnectionMode::Fixed(n) => plan(total, n, self.config.min_split_bytes),
                            ConnectionMode::Auto(_) => plan(total, 1, 1),
                        }
                    };
                    let map = RangeMap::from_plan(total, &pieces);
                    self.record_resource(Some(total), validator.clone(), Some(&map));
                    let served_by = Some(resp.url.clone());
                    let seen = Identity::of(&resp.head);
                    return Box::pin(self.transfer_ranged(Ranged { total, validator, map, saved: false, served_by, seen }, Some(resp)))
                        .await;
                }
                Probe::Whole { total, .. } => {
                    self.check_memory_limit(total)?;
                    self.record_resource(total, None, None);
                    return Box::pin(self.transfer_whole(resp, total)).await;
                }
            }
        }
    }

    /// Remembers what the probe learned (in memory; the journal writes it with the first progress).
    pub(super) fn record_resource(&self, total: Option<u64>, validator: Option<Validator>, map: Option<&RangeMap>) {
        self.task.live.total.store(total.unwrap_or(UNKNOWN), Ordering::Relaxed);
        let rows = map.map(RangeMap::rows).unwrap_or_default();
        let mut g = self.task.inner.lock();
        g.resource = Resource { total, validator };
        g.journal = rows;
    }

    pub(super) fn hasher(&self, from_zero: bool) -> Option<(Sha256, u64)> {
        (self.task.spec.sha256.is_some() && from_zero).then(|| (Sha256::new(), 0))
    }

    /// One plain stream from offset zero (no range support, or unknown length). Only bytes whose
    /// framing is verified count (progress, the hash, the length at the end); a failure starts
    /// over from zero anyway.
    pub(super) async fn transfer_whole(&mut self, mut resp: Response, total: Option<u64>) -> Result<Done, Step> {
        if let Some(t) = total {
            self.ensure_room(t, t)?;
        }
        let mut hashed = self.hasher(true);
        let mut plain = Plain { unhashed: hashed.as_ref().map(|_| Unhashed::new(0)), ..Plain::default() };
        let task = self.task.clone();
        let _streaming = task.live.gauge();
        let throttle = self.env.throttle(&task);
        loop {
            if let Some(size) = throttle.read_size() {
                resp.limit_reads(size);
            }
            let next = tokio::select! {
                c = resp.chunk() => c,
                _ = self.stop.cancelled() => return Err(Step::Stopped),
                // A plain stream cannot resume, so there is nothing worth syncing.
                _ = self.flush.request.notified() => { self.flush.completed(); continue; }
            };
            let (chunk, end) = match next {
                Ok(Some(c)) => (Some(c), false),
                Ok(None) => (None, true),
                Err(e) => {
                    self.write_plain(&mut plain, resp.verified(), true, &mut hashed)?;
                    return Err(Step::Retry(e));
                }
            };
            if let Some(c) = chunk {
                tokio::select! {
                    _ = throttle.pass(c.len() as u64) => {}
                    _ = self.stop.cancelled() => return Err(Step::Stopped),
                }
                plain.pending += c.len() as u64;
                plain.bufs.push(c);
            }
            if plain.pending >= connection::FLUSH_BYTES || end {
                self.write_plain(&mut plain, resp.verified(), false, &mut hashed)?;
            }
            if end {
                let at = plain.verified;
                if let Some(t) = total {
                    if at != t {
                        return Err(Step::Retry(Error::new(ErrorCode::TruncatedBody, format!("body ended after {at} of {t} bytes"))));
                    }
                }
                self.task.live.total.store(at, Ordering::Relaxed);
                return Ok(Done { total: at, hashed });
            }
        }
    }

    /// Writes the buffered bytes of a plain stream (with `only_verified`, just the verified ones),
    /// then counts what `verified` (body bytes) covers.
    pub(super) fn write_plain(
        &mut self,
        plain: &mut Plain,
        verified: u64,
        only_verified: bool,
        hashed: &mut Option<(Sha256, u64)>,
    ) -> Result<(), Step> {
        if only_verified {
            let mut keep = verified.saturating_sub(plain.at);
            plain.bufs.retain_mut(|b| {
                let n = (b.len() as u64).min(keep);
                b.truncate(n as usize);
                keep -= n;
                n > 0
            });
            plain.pending = plain.bufs.iter().map(|b| b.len() as u64).sum();
        }
        if plain.pending > 0 {
            self.sink.write(plain.at, &plain.bufs)?;
            if let Some(u) = plain.unhashed.as_mut() {
                u.wrote(plain.at, &plain.bufs);
            }
            plain.at += plain.pending;
            plain.bufs.clear();
            plain.pending = 0;
        }
        let now = verified.min(plain.at);
        if now <= plain.verified {
            return Ok(());
        }
        plain.verified = now;
        if let Some(u) = plain.unhashed.as_mut() {
            u.verified(now, hashed.as_mut());
        }
        self.task.live.bytes.store(now, Ordering::Relaxed);
        if now > self.plain_high_water {
            // Bytes no earlier attempt delivered: real progress. Refetching the same prefix is not,
            // or a server that always breaks off at the same offset would be retried forever.
            self.plain_high_water = now;
            self.budget.refill();
            self.attempt = 0;
        }
        Ok(())
    }
}

/// A plain stream's bytes: buffered, written (`at`), verified.
#[derive(Default)]
pub(super) struct Plain {
    bufs: Vec<bytes::Bytes>,
    pending: u64,
    at: u64,
    verified: u64,
    unhashed: Option<Unhashed>,
}

//! A fresh start: the probe, and the plain stream a server without ranges gets.

use super::*;

impl Run {
    /// Probes the resource and transfers it from zero.
    pub(super) async fn fresh(&mut self) -> Result<Done, Step> {
        loop {
            let asked_range = !self.plain_only;
            let get =
                Get { url: &self.task.spec.url, headers: &self.task.spec.headers, range: asked_range.then_some((0, None)), if_range: None };
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
                Err(e) if e.is_retryable() => {
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

    /// One plain stream from offset zero (no range support, or unknown length).
    pub(super) async fn transfer_whole(&mut self, mut resp: Response, total: Option<u64>) -> Result<Done, Step> {
        if let Some(t) = total {
            self.ensure_room(t, t)?;
        }
        let mut hashed = self.hasher(true);
        let mut at = 0u64;
        let mut bufs = Vec::new();
        let mut pending = 0u64;
        let task = self.task.clone();
        let _streaming = task.live.gauge();
        loop {
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
                    self.write_plain(&mut at, &mut bufs, &mut pending, &mut hashed)?;
                    return Err(Step::Retry(e));
                }
            };
            if let Some(c) = chunk {
                pending += c.len() as u64;
                bufs.push(c);
            }
            if pending >= connection::FLUSH_BYTES || end {
                self.write_plain(&mut at, &mut bufs, &mut pending, &mut hashed)?;
            }
            if end {
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

    pub(super) fn write_plain(
        &mut self,
        at: &mut u64,
        bufs: &mut Vec<bytes::Bytes>,
        pending: &mut u64,
        hashed: &mut Option<(Sha256, u64)>,
    ) -> Result<(), Step> {
        if *pending == 0 {
            return Ok(());
        }
        self.sink.write(*at, bufs)?;
        if let Some((h, upto)) = hashed.as_mut() {
            bufs.iter().for_each(|b| h.update(b));
            *upto += *pending;
        }
        *at += *pending;
        self.task.live.bytes.store(*at, Ordering::Relaxed);
        if *at > self.plain_high_water {
            // Bytes no earlier attempt delivered: real progress. Refetching the same prefix is not,
            // or a server that always breaks off at the same offset would be retried forever.
            self.plain_high_water = *at;
            self.budget.refill();
            self.attempt = 0;
        }
        bufs.clear();
        *pending = 0;
        Ok(())
    }
}

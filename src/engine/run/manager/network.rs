//! The network the host reports, and the tasks it holds back.
//!
//! A task that may not run on the current network (none, or one its policy refuses) is parked in
//! the ready queue with its reason: still queued, still this process's, but never started, so it
//! spends no retries and opens no connection. A report that lets it run unparks it; a report that
//! takes the network from a running task stops its runner (journal and part file synced, as for
//! a pause) and parks it, so that it resumes from its bytes, never from zero. A task whose
//! connections failed just before the report arrived is parked as well instead of failing.
//!
//! Without any report, the engine may judge for itself (`Config::wait_when_unreachable`): a run
//! that failed to connect at all, after its whole retry budget, while no other task of the
//! manager had a connection, waits as `network_unreachable` and tries again after a backoff that
//! grows, instead of failing. Off by default, since a dead server looks the same from here.

use super::*;
use crate::engine::model::network::{NetworkPolicy, NetworkState, WaitReason};

impl Manager {
    /// Tells the engine the network's state (from `NWPathMonitor`, `ConnectivityManager`).
    /// Tasks the new network refuses stop and wait, queued, with the reason in their status;
    /// waiting tasks it allows start again, from their bytes. Until the first report the network
    /// counts as available, unmetered and unconstrained.
    pub fn set_network(&self, network: NetworkState) {
        {
            let mut s = self.inner.sched.lock();
            s.network = Some(network);
            self.inner.rejudge(&mut s);
        }
        self.inner.dispatch();
    }

    /// The network as last reported (the default when no host has reported).
    pub fn network(&self) -> NetworkState {
        self.inner.sched.lock().network.unwrap_or_default()
    }

    /// Changes which networks a task may use; it applies at once (a running task the current
    /// network no longer suits stops and waits; a waiting one it now suits starts).
    pub fn set_network_policy(&self, id: &str, policy: NetworkPolicy) -> Result<()> {
        {
            let mut s = self.inner.sched.lock();
            let e = self.inner.entry(id)?;
            if e.persisted {
                self.inner.env.store.set_network_policy(id, policy)?;
            }
            e.inner.lock().network_policy = policy;
            self.inner.rejudge(&mut s);
        }
        self.inner.dispatch();
        Ok(())
    }
}

impl Inner {
    /// Judges the parked and running tasks against the network: unparks those it allows, stops
    /// the runners of those it refuses (their exit parks them).
    fn rejudge(&self, s: &mut Sched) {
        let network = s.network.unwrap_or_default();
        for id in s.ready.parked() {
            let Some(e) = self.tasks.read().get(&id).cloned() else {
                s.ready.remove(&id);
                continue;
            };
            let mut g = e.inner.lock();
            // An engine-judged wait ends with its backoff, or with any report from a host.
            let judged = g.waiting == Some(WaitReason::NetworkUnreachable) && s.network.is_none();
            if judged {
                continue;
            }
            g.waiting = g.network_policy.wait_reason(network);
            if g.waiting.is_none() {
                s.ready.unpark(&id);
            }
        }
        let running: Vec<TaskId> = s.running.keys().filter(|id| !s.publishing.contains(*id)).cloned().collect();
        for id in running {
            let Some(e) = self.tasks.read().get(&id).cloned() else { continue };
            let reason = {
                let g = e.inner.lock();
                if g.state != TaskState::Running {
                    continue;
                }
                g.network_policy.wait_reason(network)
            };
            if let Some(reason) = reason {
                e.inner.lock().waiting = Some(reason);
                Self::stop_runner(&e, StopReason::Network);
            }
        }
    }

    /// Whether the network keeps a task picked by the scheduler from starting; if so it is parked
    /// with its reason, and whoever waits on it is woken (a budgeted run ends for it).
    pub(super) fn park_if_refused(&self, ready: &mut ReadyQueue, network: Option<NetworkState>, e: &TaskEntry, host: &str) -> bool {
        let (reason, priority) = {
            let g = e.inner.lock();
            (g.network_policy.wait_reason(network.unwrap_or_default()), g.priority)
        };
        let Some(reason) = reason else { return false };
        e.inner.lock().waiting = Some(reason);
        ready.park(e.spec.id.clone(), host.to_string(), priority, e.seq);
        e.state_tx.send_modify(|_| {});
        true
    }

    /// On a runner's exit with `error`: whether the task should wait for the network instead of
    /// failing, and why. The host's report decides when there is one; otherwise the engine's own
    /// judgement, when the configuration asks for it.
    pub(super) fn network_wait(&self, s: &Sched, e: &TaskEntry, error: &Error) -> Option<WaitReason> {
        if !error.is_retryable() {
            return None;
        }
        let policy = e.inner.lock().network_policy;
        match s.network {
            Some(network) => policy.wait_reason(network),
            None => {
                let judge = self.env.config.read().wait_when_unreachable;
                let others_connected = s
                    .running
                    .keys()
                    .filter(|id| **id != e.spec.id)
                    .any(|id| self.tasks.read().get(id).is_some_and(|o| o.live.connections.load(Ordering::Relaxed) > 0));
                (judge && error.code() == ErrorCode::ConnectFailed && !others_connected).then_some(WaitReason::NetworkUnreachable)
            }
        }
    }

    /// Parks a task whose runner ended for the network (it is queued again already), and for an
    /// engine-judged wait arms the timer that tries it again.
    pub(super) fn park_for_network(self: &Arc<Self>, s: &mut Sched, e: &Arc<TaskEntry>, reason: WaitReason) {
        let (priority, streak) = {
            let mut g = e.inner.lock();
            g.waiting = Some(reason);
            if reason == WaitReason::NetworkUnreachable {
                g.unreachable_streak += 1;
            }
            (g.priority, g.unreachable_streak)
        };
        s.ready.park(e.spec.id.clone(), e.spec.host_key(), priority, e.seq);
        e.state_tx.send_modify(|_| {});
        if reason != WaitReason::NetworkUnreachable {
            return;
        }
        let delay = self.env.config.read().retry.unreachable_delay(streak);
        tracing::info!(task = %e.spec.id, "no connection could be made; trying again in {delay:?}");
        let weak = Arc::downgrade(self);
        let id = e.spec.id.clone();
        runtime::handle().spawn(async move {
            tokio::time::sleep(delay).await;
            let Some(inner) = weak.upgrade() else { return };
            {
                let mut s = inner.sched.lock();
                let Some(e) = inner.find(id.as_str()) else { return };
                let mut g = e.inner.lock();
                if g.waiting != Some(WaitReason::NetworkUnreachable) || !s.ready.unpark(&id) {
                    return;
                }
                g.waiting = None;
            }
            inner.dispatch();
        });
    }
}

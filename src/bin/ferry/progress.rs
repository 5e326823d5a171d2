//! Following tasks to their end with a progress display; Ctrl-C (or SIGTERM) interrupts.
//!
//! The end is noticed the moment the scheduler goes idle ([`Manager::wait_idle`]) and no task
//! followed is still running in another process, not at the next tick of a poll: a batch of small files finishes in well under a second, and a poll interval
//! would be a visible share of it. The bar is redrawn on a slow tick, and never when quiet.

use ferry::engine::{Manager, TaskId, TaskState};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::time::Duration;

/// How following ended.
pub enum Outcome {
    /// Every task stopped moving (completed, failed, paused or cancelled).
    Settled,
    /// The user interrupted.
    Interrupted,
}

/// Waits for the tasks, drawing one bar for their combined bytes.
pub async fn follow(manager: &Manager, ids: &[TaskId], quiet: bool) -> Outcome {
    let bar = if quiet { ProgressBar::hidden() } else { ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr_with_hz(8)) };
    bar.set_style(
        ProgressStyle::with_template("{spinner} {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    let settled = async {
        manager.wait_idle().await;
        // A task another process runs (the same download started twice) ends there.
        for id in ids {
            let _ = manager.wait(id.as_str()).await;
        }
    };
    tokio::pin!(settled);
    let mut redraw = tokio::time::interval(Duration::from_millis(150));
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => { bar.abandon(); return Outcome::Interrupted; }
            _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {
                bar.abandon();
                return Outcome::Interrupted;
            }
            _ = &mut settled => {
                if !quiet {
                    draw(&bar, manager, ids);
                }
                bar.finish();
                return Outcome::Settled;
            }
            _ = redraw.tick(), if !quiet => draw(&bar, manager, ids),
        }
    }
}

fn draw(bar: &ProgressBar, manager: &Manager, ids: &[TaskId]) {
    let mut bytes = 0;
    let mut total = 0;
    let mut done = 0;
    let mut connections = 0;
    for id in ids {
        if let Ok(t) = manager.status(id.as_str()) {
            bytes += t.bytes;
            total += t.total.unwrap_or(t.bytes);
            connections += t.connections;
            if t.state == TaskState::Completed {
                done += 1;
            }
        }
    }
    bar.set_length(total.max(bytes));
    bar.set_position(bytes);
    if ids.len() == 1 {
        bar.set_message(format!("{connections} conn"));
    } else {
        bar.set_message(format!("{done}/{} files, {connections} conn", ids.len()));
    }
}

//! `ferry serve`: the loopback test server as a process, for the Swift, Kotlin and Python suites
//! and the benchmarks. Prints one JSON line (`url`, `sha256`, `size`), then serves until stdin
//! reaches end of file (so it never outlives the test that started it) or a signal arrives.

use super::Failure;
use ferry::engine::runtime;
use ferry::loopback::{content, Faults, LoopbackServer};
use std::io::Read;

#[derive(clap::Args, Debug)]
pub struct ServeArgs {
    /// Size of the served file in bytes.
    #[arg(long, default_value_t = 4 << 20)]
    size: u64,
    /// Port on 127.0.0.1 (0 = any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// Per-connection rate cap, bytes per second.
    #[arg(long)]
    rate: Option<u64>,
    /// Content seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Keep serving after stdin closes (until killed).
    #[arg(long)]
    forever: bool,
}

pub async fn run(a: ServeArgs) -> Result<u8, Failure> {
    let mut faults = Faults::new(a.size);
    faults.rate = a.rate;
    faults.seed = a.seed;
    let server = LoopbackServer::start(runtime::handle(), a.port, faults)
        .map_err(|e| Failure { code: 5, message: format!("cannot listen: {e}") })?;
    let line = serde_json::json!({
        "url": server.url(), "base": server.base(), "size": a.size, "sha256": content::sha256(a.seed, a.size),
    });
    println!("{line}");
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    if !a.forever {
        std::thread::spawn(move || {
            let mut sink = [0u8; 256];
            let mut stdin = std::io::stdin();
            while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
            let _ = tx.send(());
        });
    }
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    tokio::select! {
        _ = async { if a.forever { std::future::pending::<()>().await } else { let _ = rx.await; } } => {}
        _ = tokio::signal::ctrl_c() => {}
        _ = async { match term.as_mut() { Some(t) => { t.recv().await; } None => std::future::pending::<()>().await } } => {}
    }
    drop(server);
    Ok(0)
}

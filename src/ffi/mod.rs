//! The uniffi surface: the only module that names uniffi. Conversions, no decisions.
//!
//! - [`manager::DownloadManager`]: the object over one state directory.
//! - [`budget`]: runs bounded in time, for Android workers and jobs, and the stop they request.
//! - [`handoff`]: leases to the OS (iOS background sessions, Android jobs) and ingesting their chunks.
//! - [`network`]: the network the host reports, task network policies, why a task waits.
//! - [`seed`]: `download` / `status` / `cancel` on a default manager.
//! - [`callbacks`]: event listeners, stream sinks, the pull-style event stream.
//! - [`credentials`]: the host's refresh of expiring credentials, and replacing a task's URL or headers.
//! - [`testing`]: the loopback test server with its faults, for unit tests of app code.
//! - [`types`] and [`error`]: records, enums and the error with its stable codes.
//!
//! Panics never cross the boundary: uniffi catches them and raises an internal error in the
//! foreign language, and the engine itself does not panic on any input.

pub mod budget;
pub mod callbacks;
pub mod credentials;
pub mod error;
mod gate;
pub mod handoff;
pub mod manager;
pub mod network;
pub mod seed;
pub mod testing;
pub mod types;

uniffi::setup_scaffolding!("ferry");

//! The download engine: pure Rust, no FFI in sight.
//!
//! # Overview
//! A [`Manager`] owns one state directory: a SQLite task table with a per-range journal. Tasks move
//! through an explicit state machine; runners probe, split the download over connections, write at
//! offsets into a `.part` file, journal progress, judge every server answer, retry, and publish the
//! verified file with an atomic rename.
//!
//! # Layers
//! Each folder is one concern, and imports only the layers below it (`scripts/check-layout.py`
//! enforces this):
//!
//! | layer | decides | imports |
//! |---|---|---|
//! | [`model`] | ids, specs, states and transitions, input rules, errors, config, retry policy, events | nothing |
//! | [`ranges`] | the range map, `Content-Range`, the connection count | nothing |
//! | [`http`] | the transport, HTTP/1.1 framing, the verdict on every answer | model, ranges |
//! | [`storage`] | the task table, the journal, part files, publishing, durability | model, ranges |
//! | [`handoff`] | leases of byte ranges to the OS, and the chunks it fetched spliced back | model, ranges, http, storage |
//! | [`run`] | the manager, scheduling, runners, connections, sinks | all of the above |
//!
//! The CLI and `src/ffi` use only what this module re-exports.
//!
//! # Example
//! ```no_run
//! use ferry::engine::{Config, Manager, Request};
//! let manager = Manager::open("/tmp/ferry-state", Config::default())?;
//! let id = manager.enqueue(Request::file("http://127.0.0.1:8080/big.bin", "/tmp/big.bin"))?;
//! println!("{:?}", manager.status(id.as_str())?.progress());
//! # Ok::<(), ferry::engine::Error>(())
//! ```

pub mod handoff;
pub mod http;
pub mod model;
pub mod ranges;
pub mod run;
pub mod storage;

pub use handoff::judge::ChunkMeta;
pub use handoff::request::OsRequest;
pub use http::no_sigpipe::NoSigpipe;
pub use model::config::{Config, Limits};
pub use model::credentials::{CredentialSource, Credentials, RefreshCause};
pub use model::error::redact_url;
pub use model::error::{Error, ErrorCode, Result};
pub use model::events::{Event, ProgressEvent, StateEvent, Subscription};
pub use model::network::{NetworkPolicy, NetworkState, WaitReason};
pub use model::request::Request;
pub use model::retry::RetryPolicy;
pub use model::task::{part_path, ChunkSink, TaskError, TaskId, TaskInfo, TaskState};
pub use run::manager::{
    HandoffOptions, HandoffReport, IngestOutcome, Manager, OsTask, ReconcileReport, RunBudget, RunOutcome, StopCause, STALE_LEASE,
};
pub use run::runtime;

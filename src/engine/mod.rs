//! The download engine: pure Rust, no FFI in sight.
//!
//! # Overview
//! A [`Manager`] owns one state directory: a SQLite task table with a per-range journal. Tasks move
//! through an explicit state machine ([`task`]); runners ([`runner`]) probe, split the download over
//! connections ([`ranges`], [`controller`]), write at offsets into a `.part` file ([`part_file`]),
//! journal progress ([`journal`]), judge every server answer by the rules in [`verdict`], retry by
//! [`retry`], and publish the verified file with an atomic rename.
//!
//! # Example
//! ```no_run
//! use ferry::engine::{Config, Manager, Request};
//! let manager = Manager::open("/tmp/ferry-state", Config::default())?;
//! let id = manager.enqueue(Request::file("http://127.0.0.1:8080/big.bin", "/tmp/big.bin"))?;
//! println!("{:?}", manager.status(id.as_str())?.progress());
//! # Ok::<(), ferry::engine::Error>(())
//! ```

pub mod boot;
pub mod config;
pub mod connection;
pub mod content_range;
pub mod controller;
pub mod crash;
pub mod dir_lock;
pub mod dir_sync;
pub mod error;
pub mod events;
pub mod fd_table;
pub mod hash;
pub mod http1_body;
pub mod journal;
pub mod manager;
pub mod part_file;
pub mod plain_http;
pub mod publisher;
pub mod ranges;
pub mod request;
pub mod retry;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod sink;
pub mod store;
pub mod table;
pub mod task;
pub mod tls;
pub mod transport;
pub mod verdict;

pub use config::{Config, Limits};
pub use error::{Error, ErrorCode, Result};
pub use events::{Event, ProgressEvent, StateEvent, Subscription};
pub use manager::Manager;
pub use request::Request;
pub use retry::RetryPolicy;
pub use task::{ChunkSink, TaskError, TaskId, TaskInfo, TaskState};

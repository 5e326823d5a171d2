//! Running downloads: the layer that puts the others to work.
//!
//! Decides: the public face of a state directory ([`manager`]: enqueue, status, pause, resume,
//! cancel, remove, events); which task runs next and how many connections a host gets
//! ([`scheduler`]); the in-memory side of the task table ([`table`]); one run of one task from
//! probe to published file ([`runner`]); one connection of that run ([`connection`]); where the
//! bytes go ([`sink`]: part file, memory or a stream callback); how fast they may come ([`rate`]:
//! the global and per-task bandwidth caps); the engine's own tokio runtime ([`runtime`]).
//!
//! May import every other layer; nothing in the engine imports it.

pub mod chunk_copy;
pub mod connection;
pub mod manager;
pub mod rate;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod sink;
pub mod table;

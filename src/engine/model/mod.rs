//! The model: what a download is, before anything is fetched or stored.
//!
//! Decides: task ids, specs and states, and the one transition function ([`task::next_state`]);
//! what a caller may ask for ([`request`]: every input rule, each with its own code); errors and
//! their stable codes ([`error`]); configuration and its limits ([`config`]); the named roots that
//! destinations are stored relative to ([`roots`]); which failures are retried and how long to
//! wait ([`retry`]); the events a caller sees ([`events`]); which networks a task may use and why it
//! waits ([`network`]).
//!
//! May not touch: the network, the task table, the file system beyond reading what a request or
//! the configuration names, or any other layer of the engine. Everything above builds on these types.

pub mod config;
pub mod credentials;
pub mod error;
pub mod events;
pub mod hash;
pub mod network;
pub mod request;
pub mod retry;
pub mod roots;
pub mod task;

//! The model: what a download is, independent of how it is fetched or stored.
pub mod config;
pub mod error;
pub mod events;
pub mod hash;
pub mod request;
pub mod retry;
pub mod task;

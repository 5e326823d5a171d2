//! Ferry: a resumable, multi-connection HTTP download engine with a persistent task table.
//!
//! - [`engine`]: the engine, pure Rust (no FFI types).
//! - [`ffi`]: the uniffi surface used by the Swift, Kotlin and Python bindings; conversions only.
//!
//! See `ARCHITECTURE.md` for the layers, the task state diagram, the range map and the
//! durability rules.
#![deny(missing_docs)]

pub mod engine;
pub mod ffi;
#[cfg(feature = "loopback")]
pub mod loopback;

// uniffi's derives refer to `crate::UniFfiTag`; the scaffolding itself lives in `ffi`.
#[doc(hidden)]
pub use ffi::UniFfiTag;

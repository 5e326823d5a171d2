//! Byte ranges: how a download is cut up and who fetches which part.
//!
//! Decides: the range map of a download ([`map`]: segments tiling `[0, total)`, their written and
//! durable offsets, reservations, splits and owners, the engine's connections or a lease to the
//! OS); `Content-Range` parsing and `Range` formatting, where inclusive ends live
//! ([`content_range`]); how many connections a download gets ([`controller`]).
//!
//! May not touch: I/O of any kind, or any other layer of the engine. Pure data and arithmetic,
//! property-tested.

pub mod content_range;
pub mod controller;
pub mod map;

//! Byte ranges: the range map, `Content-Range`, and how many connections share a download.
pub mod content_range;
pub mod controller;
pub mod map;

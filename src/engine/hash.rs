//! Hash maps keyed by task ids, host names and paths.
//!
//! The engine looks such keys up about a dozen times per task (destination claims, the ready queue,
//! host slots, the task table). With std's SipHash a task id costs about 230 instructions to hash
//! and a path, hashed component by component, about 700: 8 % of the work of a batch of small
//! files. foldhash is several times cheaper and still seeded per process, so keys an app or a
//! server chooses cannot be aimed at one bucket.

/// A hash map with the engine's hasher.
pub type Map<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
/// A hash set with the engine's hasher.
pub type Set<K> = std::collections::HashSet<K, foldhash::fast::RandomState>;

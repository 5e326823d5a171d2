//! Storage: what survives the process, and in what order it reaches the disk.
//!
//! Decides: the SQLite task table and its recovery after a crash or reboot ([`store`], [`boot`]);
//! the group-committed journal of written offsets ([`journal`]); the part file, its identity and
//! the verified, atomic publish ([`part_file`]); the group commit of small files ([`publisher`]);
//! directory syncs and locks ([`dir_sync`], [`dir_lock`]); how many descriptors the engine may hold
//! ([`fd_table`]); named crash points for tests ([`crash`]); which process runs which task, and the
//! locks that say so across processes ([`owners`], [`locks`]).
//!
//! May not touch: the network or the scheduler. It imports the model and the ranges only; the
//! durability rules it keeps are listed in ARCHITECTURE.md.

pub mod boot;
pub mod crash;
pub mod dir_lock;
pub mod dir_sync;
pub mod fd_table;
pub mod journal;
pub mod locks;
pub mod owners;
pub mod part_file;
pub mod publisher;
pub mod store;

//! Storage: the task table, the journal, part files and publishing.
pub mod boot;
pub mod crash;
pub mod dir_lock;
pub mod dir_sync;
pub mod fd_table;
pub mod journal;
pub mod part_file;
pub mod publisher;
pub mod store;

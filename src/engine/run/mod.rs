//! Running downloads: the manager, the scheduler, runners and their connections.
pub mod connection;
pub mod manager;
pub mod runner;
pub mod runtime;
pub mod scheduler;
pub mod sink;
pub mod table;

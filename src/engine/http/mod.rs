//! HTTP: getting an answer from a server, and judging it.
//!
//! Decides: how a request is sent (the [`transport`]: client choice, timeouts, TLS roots in
//! [`tls`], redirects and proxies in [`redirect`]); where an HTTP/1.1 body ends ([`body`], the
//! lean client in [`client`]); what the engine reads of a response head ([`head`]); and whether
//! an answer may be written at all ([`verdict`]: the sans-I/O rules for probes and ranged answers,
//! which chunks fetched by the OS are judged by too).
//!
//! May not touch: the task table, part files or the scheduler. It imports the model and the
//! ranges only; what to do with an answer is the runner's business.

pub mod body;
pub mod client;
pub mod head;
pub mod redirect;
pub mod tls;
pub mod transport;
pub mod verdict;

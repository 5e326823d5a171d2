//! HTTP: getting an answer from a server, and judging it.
//!
//! Decides: how a request is sent (the [`transport`]: redirects in [`redirect`], proxies in
//! [`proxy`], timeouts, error codes; one HTTP/1.1 [`client`] of Ferry's own for `http://` and
//! `https://`, TLS roots in [`tls`]); whether a response head is a valid HTTP/1.1 message and
//! what the engine reads of it ([`head`]); where a body ends and how much of it is verified
//! ([`body`]); and whether an answer may be written at all ([`verdict`]: the sans-I/O rules for
//! probes and ranged answers, which chunks fetched by the OS are judged by too).
//!
//! May not touch: the task table, part files or the scheduler. It imports the model and the
//! ranges only; what to do with an answer is the runner's business.

pub mod body;
pub mod client;
pub mod head;
pub mod no_sigpipe;
pub mod proxy;
pub mod redirect;
pub mod tls;
pub mod transport;
pub mod verdict;

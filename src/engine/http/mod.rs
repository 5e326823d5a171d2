//! HTTP: the transport, HTTP/1.1 framing, and the judgement of every answer.
pub mod body;
pub mod client;
pub mod head;
pub mod redirect;
pub mod tls;
pub mod transport;
pub mod verdict;

//! Sockets written with `send`, never `writev`. On Linux, Rust's `TcpStream::write` passes
//! `MSG_NOSIGNAL`, but a vectored write is a `writev`, which raises SIGPIPE when the peer has
//! closed, and a host process that does not ignore SIGPIPE (an XCTest runner, an app embedding
//! the library) dies of it. rustls and hyper write vectored when a stream says it can; this
//! wrapper says it cannot, so they flatten into one `send`. (Apple platforms set `SO_NOSIGPIPE`
//! on every socket Rust opens.)

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A stream whose writes are never vectored.
#[derive(Debug)]
pub struct NoSigpipe<T>(pub T);

impl<T> NoSigpipe<T> {
    /// The stream inside.
    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for NoSigpipe<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for NoSigpipe<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_claims_vectored_writes() {
        let (a, _b) = tokio::io::duplex(64);
        assert!(!NoSigpipe(a).is_write_vectored());
    }
}

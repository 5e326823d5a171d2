//! A connection's byte stream: plain TCP, or TLS over TCP (directly, or inside a proxy's tunnel).
//!
//! Over TLS, the handshake is tokio-rustls's; after it the connection reads its ciphertext itself,
//! in reads as large as the plaintext it was asked for, and lets rustls decrypt from that buffer.
//! rustls reads a socket 4 KiB at a time (at most one record, 16 KiB, at once): on one 1 GiB
//! stream that was 65,000 `recvfrom` calls and as many wake-ups, where reads of up to 512 KiB take
//! about 2,000.

use bytes::{Buf, BytesMut};
use std::io::{self, BufRead, Write};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Plain or TLS.
pub(crate) enum Stream {
    Tcp(TcpStream),
    Tls(Box<Tls>),
}

/// A TLS connection after its handshake.
pub(crate) struct Tls {
    tcp: TcpStream,
    conn: rustls::ClientConnection,
    /// Ciphertext read from the socket, not yet handed to rustls.
    cipher: BytesMut,
    /// The socket reached its end.
    eof: bool,
}

impl Stream {
    /// A TLS stream whose handshake tokio-rustls completed.
    pub(crate) fn tls(done: tokio_rustls::client::TlsStream<crate::engine::http::no_sigpipe::NoSigpipe<TcpStream>>) -> Stream {
        let (tcp, conn) = done.into_inner();
        let tcp = tcp.into_inner();
        Stream::Tls(Box::new(Tls { tcp, conn, cipher: BytesMut::new(), eof: false }))
    }

    /// Reads into `out` (plaintext), at most `max` bytes; 0 at the end of the stream. Over TLS,
    /// an end without close_notify is an `UnexpectedEof` error (a body read to the close cannot
    /// prove its end without it), and a broken record an error carrying the rustls error.
    pub(crate) async fn read(&mut self, out: &mut BytesMut, max: usize) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => {
                if out.capacity() - out.len() < max / 2 {
                    out.reserve(max);
                }
                s.read_buf(out).await
            }
            Stream::Tls(t) => t.read(out, max).await,
        }
    }

    /// Writes all of `bytes`.
    pub(crate) async fn write_all(&mut self, bytes: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(bytes).await,
            Stream::Tls(t) => {
                t.conn.writer().write_all(bytes)?;
                t.flush().await
            }
        }
    }

    /// Whether an idle connection can carry a request: the peer has neither closed it nor sent
    /// anything unasked. Costs no system call while the runtime has seen no event on it. Over TLS
    /// the records that did arrive are processed: a session ticket is fine, a close_notify or data
    /// is not.
    pub(crate) fn usable(&mut self) -> bool {
        match self {
            Stream::Tcp(s) => {
                let mut probe = [0u8; 1];
                matches!(s.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
            }
            Stream::Tls(t) => t.usable(),
        }
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl Tls {
    async fn read(&mut self, out: &mut BytesMut, max: usize) -> io::Result<usize> {
        if out.capacity() - out.len() < max / 2 {
            out.reserve(max);
        }
        let mut got = 0;
        loop {
            let state = self.conn.process_new_packets().map_err(tls_error)?;
            if self.conn.wants_write() {
                // An alert, or the answer to a key update.
                self.flush().await?;
            }
            if state.plaintext_bytes_to_read() > 0 && got < max {
                // Straight from rustls's buffer (a read into `out` would zero it first).
                let mut reader = self.conn.reader();
                let chunk = reader.fill_buf()?;
                let n = chunk.len().min(max - got);
                out.extend_from_slice(&chunk[..n]);
                reader.consume(n);
                got += n;
                if got >= max {
                    return Ok(got);
                }
                continue;
            }
            if got > 0 && self.cipher.is_empty() {
                return Ok(got);
            }
            if state.peer_has_closed() && state.plaintext_bytes_to_read() == 0 {
                return Ok(got);
            }
            if !self.cipher.is_empty() {
                let mut rd: &[u8] = &self.cipher;
                let n = self.conn.read_tls(&mut rd)?;
                self.cipher.advance(n);
                continue;
            }
            if got > 0 {
                return Ok(got);
            }
            if self.eof {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the connection closed without TLS close_notify"));
            }
            // Room for about as much ciphertext as the plaintext asked for.
            if self.cipher.capacity() < max + 1024 {
                self.cipher.reserve(max + 1024);
            }
            if self.tcp.read_buf(&mut self.cipher).await? == 0 {
                self.eof = true;
                self.conn.read_tls(&mut io::empty())?;
            }
        }
    }

    /// Sends what rustls has to send.
    async fn flush(&mut self) -> io::Result<()> {
        while self.conn.wants_write() {
            let mut records = Vec::new();
            self.conn.write_tls(&mut records)?;
            self.tcp.write_all(&records).await?;
        }
        Ok(())
    }

    fn usable(&mut self) -> bool {
        if self.eof {
            return false;
        }
        self.cipher.reserve(4096);
        loop {
            match self.tcp.try_read_buf(&mut self.cipher) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Ok(0) | Err(_) => return false,
                Ok(_) => self.cipher.reserve(4096),
            }
        }
        while !self.cipher.is_empty() {
            let mut rd: &[u8] = &self.cipher;
            match self.conn.read_tls(&mut rd) {
                Ok(n) => self.cipher.advance(n),
                Err(_) => return false,
            }
            if self.conn.process_new_packets().is_err() {
                return false;
            }
        }
        match self.conn.process_new_packets() {
            Ok(state) => state.plaintext_bytes_to_read() == 0 && !state.peer_has_closed(),
            Err(_) => false,
        }
    }
}

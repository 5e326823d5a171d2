//! Opening a connection: TCP to the origin or the proxy (each address in turn), a `CONNECT`
//! tunnel for TLS through a proxy, then the TLS handshake. All of it within the connect timeout.

use super::stream::Stream;
use super::*;
use crate::engine::http::head::{holds_blank_line, parse_connect, MAX_HEAD};
use crate::engine::http::no_sigpipe::NoSigpipe;
use crate::engine::http::proxy::Proxy;
use rustls_pki_types::ServerName;
use tokio::time::Instant as Deadline;

impl Client {
    /// Opens a connection for `url` (through `proxy` when given).
    pub(super) async fn connect(&self, url: &url::Url, proxy: Option<&Proxy>) -> Result<Conn, Failure> {
        let deadline = Deadline::now() + self.connect_timeout;
        let tls = url.scheme() == "https";
        let tcp = match proxy {
            Some(p) => {
                let addr_host = match p.host.parse::<std::net::IpAddr>() {
                    Ok(ip) => Host::Ip(ip),
                    Err(_) => Host::Name(&p.host),
                };
                tcp(addr_host, p.port, deadline).await?
            }
            None => {
                let port = url.port_or_known_default().unwrap_or(80);
                let host = match url.host() {
                    Some(url::Host::Ipv4(a)) => Host::Ip(a.into()),
                    Some(url::Host::Ipv6(a)) => Host::Ip(a.into()),
                    Some(url::Host::Domain(d)) => Host::Name(d),
                    None => return Err(Failure::Connect { timed_out: false, detail: "the URL names no host".into() }),
                };
                tcp(host, port, deadline).await?
            }
        };
        let stream = if tls {
            let tcp = match proxy {
                Some(p) => tunnel(tcp, url, p, deadline).await?,
                None => tcp,
            };
            Stream::tls(self.handshake(tcp, url, deadline).await?)
        } else {
            Stream::Tcp(tcp)
        };
        Ok(Conn::new(stream))
    }

    async fn handshake(
        &self,
        tcp: TcpStream,
        url: &url::Url,
        deadline: Deadline,
    ) -> Result<tokio_rustls::client::TlsStream<NoSigpipe<TcpStream>>, Failure> {
        let name = match url.host() {
            Some(url::Host::Ipv4(a)) => ServerName::IpAddress(std::net::IpAddr::from(a).into()),
            Some(url::Host::Ipv6(a)) => ServerName::IpAddress(std::net::IpAddr::from(a).into()),
            Some(url::Host::Domain(d)) => {
                ServerName::try_from(d.to_string()).map_err(|_| Failure::Tls(format!("{d} is not a valid TLS server name")))?
            }
            None => return Err(Failure::Connect { timed_out: false, detail: "the URL names no host".into() }),
        };
        match tokio::time::timeout_at(deadline, self.tls.connect(name, NoSigpipe(tcp))).await {
            Err(_) => Err(Failure::Connect { timed_out: true, detail: "the TLS handshake took too long".into() }),
            Ok(Ok(s)) => Ok(s),
            Ok(Err(e)) => match tls_cause(&e) {
                Some(tls) => Err(Failure::Tls(tls)),
                None => Err(Failure::Connect { timed_out: false, detail: format!("TLS handshake: {e}") }),
            },
        }
    }
}

/// The rustls error inside an I/O error of the TLS stream, as text.
pub(crate) fn tls_cause(e: &std::io::Error) -> Option<String> {
    e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).map(ToString::to_string)
}

enum Host<'a> {
    Ip(std::net::IpAddr),
    Name(&'a str),
}

/// A TCP connection to `host:port`, trying its addresses in turn within the deadline (each attempt
/// gets an equal share of what is left).
async fn tcp(host: Host<'_>, port: u16, deadline: Deadline) -> Result<TcpStream, Failure> {
    let timed_out = |detail: String| Failure::Connect { timed_out: true, detail };
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
        Host::Name(d) => match tokio::time::timeout_at(deadline, tokio::net::lookup_host((d, port))).await {
            Err(_) => return Err(timed_out(format!("resolving {d} took too long"))),
            Ok(Err(e)) => return Err(Failure::Connect { timed_out: false, detail: format!("resolving {d}: {e}") }),
            Ok(Ok(a)) => a.collect(),
        },
    };
    let mut last = Failure::Connect { timed_out: false, detail: "the host has no address".into() };
    for (i, addr) in addrs.iter().enumerate() {
        let now = Deadline::now();
        if now >= deadline {
            return Err(timed_out(format!("connecting to {addr} took too long")));
        }
        let share = (deadline - now) / (addrs.len() - i) as u32;
        last = match tokio::time::timeout(share, TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => {
                tune(&stream);
                return Ok(stream);
            }
            Ok(Err(e)) => Failure::Connect { timed_out: e.kind() == std::io::ErrorKind::TimedOut, detail: format!("{addr}: {e}") },
            Err(_) => timed_out(format!("connecting to {addr} took too long")),
        };
    }
    Err(last)
}

/// Socket options of every connection: no Nagle delay, keep-alive probes, and (on Linux) a bound
/// on how long sent data may stay unacknowledged, so a dead peer is noticed.
fn tune(stream: &TcpStream) {
    let _ = stream.set_nodelay(true);
    let sock = socket2::SockRef::from(stream);
    let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(15));
    #[cfg(any(target_os = "linux", target_os = "android", target_vendor = "apple"))]
    let keepalive = keepalive.with_interval(Duration::from_secs(15)).with_retries(3);
    let _ = sock.set_tcp_keepalive(&keepalive);
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let _ = sock.set_tcp_user_timeout(Some(Duration::from_secs(30)));
}

/// Asks the proxy on `tcp` for a tunnel to the URL's host and port (`CONNECT`, RFC 9110 §9.3.6).
async fn tunnel(mut tcp: TcpStream, url: &url::Url, proxy: &Proxy, deadline: Deadline) -> Result<TcpStream, Failure> {
    let target = authority(url);
    let mut request = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(auth) = &proxy.authorization {
        request.push_str("Proxy-Authorization: ");
        request.push_str(auth);
        request.push_str("\r\n");
    }
    request.push_str("\r\n");
    let talk = async {
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| Failure::Connect { timed_out: false, detail: format!("proxy {}: {e}", proxy.shown) })?;
        let mut buf = BytesMut::with_capacity(1024);
        loop {
            let n = tcp
                .read_buf(&mut buf)
                .await
                .map_err(|e| Failure::Connect { timed_out: false, detail: format!("proxy {}: {e}", proxy.shown) })?;
            if n == 0 {
                return Err(Failure::Connect {
                    timed_out: false,
                    detail: format!("proxy {} closed the connection before answering CONNECT", proxy.shown),
                });
            }
            if !holds_blank_line(&buf) {
                if buf.len() >= MAX_HEAD {
                    return Err(Failure::Protocol(format!("proxy {}: an answer to CONNECT over {} KiB", proxy.shown, MAX_HEAD >> 10)));
                }
                continue;
            }
            let (status, len) = match parse_connect(&buf) {
                Ok(Some(s)) => s,
                Ok(None) => continue,
                Err(v) => return Err(Failure::Protocol(format!("proxy {}: {v}", proxy.shown))),
            };
            if !(200..300).contains(&status) {
                return Err(Failure::Proxy { status, detail: format!("proxy {} answered CONNECT with HTTP {status}", proxy.shown) });
            }
            if buf.len() > len {
                return Err(Failure::Protocol(format!("proxy {} sent bytes before the tunnel was used", proxy.shown)));
            }
            return Ok(());
        }
    };
    match tokio::time::timeout_at(deadline, talk).await {
        Err(_) => Err(Failure::Connect { timed_out: true, detail: format!("proxy {} did not open a tunnel in time", proxy.shown) }),
        Ok(Err(f)) => Err(f),
        Ok(Ok(())) => Ok(tcp),
    }
}

//! Opening a connection: TCP to the origin or the proxy (its addresses raced, RFC 8305), a `CONNECT`
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

/// How long an attempt on one address has before the next address is tried beside it (RFC 8305,
/// "Happy Eyeballs"): a host whose first address blackholes (an IPv6 route that is down, common on
/// mobile networks) would otherwise cost the connect timeout's share per connection.
const ATTEMPT_DELAY: Duration = Duration::from_millis(250);

/// A TCP connection to `host:port`: its addresses raced, each started [`ATTEMPT_DELAY`] after the
/// previous one or at once when the previous one failed, alternating address families; the first
/// to connect wins, all within the deadline.
async fn tcp(host: Host<'_>, port: u16, deadline: Deadline) -> Result<TcpStream, Failure> {
    let addrs: Vec<SocketAddr> = match host {
        Host::Ip(ip) => vec![SocketAddr::new(ip, port)],
        Host::Name(d) => match tokio::time::timeout_at(deadline, tokio::net::lookup_host((d, port))).await {
            Err(_) => return Err(Failure::Connect { timed_out: true, detail: format!("resolving {d} took too long") }),
            Ok(Err(e)) => return Err(Failure::Connect { timed_out: false, detail: format!("resolving {d}: {e}") }),
            Ok(Ok(a)) => a.collect(),
        },
    };
    race(interleave(addrs), deadline).await
}

/// Connects to the first of `addrs` that answers (see [`tcp`]).
async fn race(addrs: Vec<SocketAddr>, deadline: Deadline) -> Result<TcpStream, Failure> {
    use futures_util::stream::{FuturesUnordered, StreamExt};
    let Some(&first) = addrs.first() else {
        return Err(Failure::Connect { timed_out: false, detail: "the host has no address".into() });
    };
    let attempt = |addr: SocketAddr| async move { (addr, TcpStream::connect(addr).await) };
    let mut queue = addrs.into_iter();
    let mut pending = FuturesUnordered::new();
    pending.extend(queue.next().map(attempt));
    let mut next_start = Deadline::now() + ATTEMPT_DELAY;
    loop {
        let more = queue.len() > 0;
        tokio::select! {
            Some((addr, result)) = pending.next() => match result {
                Ok(stream) => {
                    tune(&stream);
                    return Ok(stream);
                }
                Err(e) => {
                    let failure = Failure::Connect { timed_out: e.kind() == std::io::ErrorKind::TimedOut, detail: format!("{addr}: {e}") };
                    match queue.next() {
                        Some(next) => {
                            pending.push(attempt(next));
                            next_start = Deadline::now() + ATTEMPT_DELAY;
                        }
                        // The last attempt's failure stands for all of them.
                        None if pending.is_empty() => return Err(failure),
                        None => {}
                    }
                }
            },
            _ = tokio::time::sleep_until(next_start), if more => {
                pending.extend(queue.next().map(attempt));
                next_start = Deadline::now() + ATTEMPT_DELAY;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let tried = if more || pending.len() > 1 { format!("{first} and the host's other addresses") } else { first.to_string() };
                return Err(Failure::Connect { timed_out: true, detail: format!("connecting to {tried} took too long") });
            }
        }
    }
}

/// The addresses alternating between the two families, starting with the family of the first
/// (the resolver's order, RFC 6724), each family in its own order (RFC 8305 §4).
fn interleave(addrs: Vec<SocketAddr>) -> Vec<SocketAddr> {
    let Some(v6_first) = addrs.first().map(SocketAddr::is_ipv6) else { return addrs };
    let (preferred, other): (Vec<_>, Vec<_>) = addrs.into_iter().partition(|a| a.is_ipv6() == v6_first);
    let (mut preferred, mut other) = (preferred.into_iter(), other.into_iter());
    let mut out = Vec::new();
    loop {
        match (preferred.next(), other.next()) {
            (None, None) => return out,
            (a, b) => out.extend(a.into_iter().chain(b)),
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(port: u16) -> SocketAddr {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), port)
    }

    fn v6(port: u16) -> SocketAddr {
        SocketAddr::new(Ipv6Addr::LOCALHOST.into(), port)
    }

    #[test]
    fn families_alternate_from_the_resolvers_first() {
        assert_eq!(interleave(vec![v6(1), v6(2), v6(3), v4(4)]), vec![v6(1), v4(4), v6(2), v6(3)]);
        assert_eq!(interleave(vec![v4(1), v6(2), v4(3), v6(4)]), vec![v4(1), v6(2), v4(3), v6(4)]);
        assert_eq!(interleave(vec![v4(1), v4(2)]), vec![v4(1), v4(2)]);
        assert!(interleave(vec![]).is_empty());
    }

    /// A listener on loopback whose accept queue is full: the kernel drops further SYNs, so a
    /// connect to it hangs like one to a blackholed address. Returns it with the connections
    /// that fill its queue (kept open), once a connect to it is seen to hang.
    async fn blackhole() -> (socket2::Socket, SocketAddr, Vec<TcpStream>) {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&v4(0).into()).unwrap();
        s.listen(0).unwrap();
        let addr = s.local_addr().unwrap().as_socket().unwrap();
        let mut fillers = Vec::new();
        for _ in 0..16 {
            match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
                Ok(Ok(c)) => fillers.push(c),
                Ok(Err(e)) => panic!("{e}"),
                Err(_) => return (s, addr, fillers),
            }
        }
        panic!("the listener's queue never filled");
    }

    #[tokio::test]
    async fn an_address_that_hangs_does_not_hold_the_connection_for_its_share_of_the_timeout() {
        let (_hole, hole, _fillers) = blackhole().await;
        let good = tokio::net::TcpListener::bind(v4(0)).await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let started = std::time::Instant::now();
        let stream = race(vec![hole, good_addr], Deadline::now() + Duration::from_secs(15)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        // The next address starts 250 ms after the first; the old order waited 7.5 s for it.
        assert!(started.elapsed() < Duration::from_secs(5), "took {:?}", started.elapsed());
    }

    #[tokio::test]
    async fn a_refused_address_moves_on_at_once_and_all_failing_is_the_last_error() {
        let closed = {
            let l = std::net::TcpListener::bind(v4(0)).unwrap();
            l.local_addr().unwrap()
        };
        let good = tokio::net::TcpListener::bind(v4(0)).await.unwrap();
        let good_addr = good.local_addr().unwrap();
        let stream = race(vec![closed, good_addr], Deadline::now() + Duration::from_secs(15)).await.unwrap();
        assert_eq!(stream.peer_addr().unwrap(), good_addr);
        match race(vec![closed, closed], Deadline::now() + Duration::from_secs(15)).await {
            Err(Failure::Connect { timed_out: false, detail }) => assert!(detail.contains(&closed.to_string()), "{detail}"),
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected to a closed port"),
        }
    }

    #[tokio::test]
    async fn only_addresses_that_hang_end_at_the_deadline() {
        let (_hole, hole, _fillers) = blackhole().await;
        let started = std::time::Instant::now();
        match race(vec![hole], Deadline::now() + Duration::from_millis(600)).await {
            Err(Failure::Connect { timed_out: true, .. }) => {}
            Err(other) => panic!("{other:?}"),
            Ok(_) => panic!("connected to a full queue"),
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }
}

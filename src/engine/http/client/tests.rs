//! Tests of the client over real loopback sockets.

use super::*;
use hyper::header::HeaderValue;

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

/// A server on loopback that answers the `i`-th request of every connection with
/// `answer(i)`: the bytes to send, and whether to close the connection afterwards. Returns its
/// URL and a counter of accepted connections.
async fn server(answer: fn(usize) -> (Vec<u8>, bool)) -> (url::Url, Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = url(&format!("http://{}/f", listener.local_addr().unwrap()));
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut seen = Vec::new();
                for i in 0.. {
                    while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                        let mut b = [0u8; 1024];
                        match s.read(&mut b).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => seen.extend_from_slice(&b[..n]),
                        }
                    }
                    let end = seen.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
                    seen.drain(..end);
                    let (bytes, close) = answer(i);
                    if s.write_all(&bytes).await.is_err() || close {
                        return;
                    }
                }
            });
        }
    });
    (at, accepted)
}

fn test_client() -> Client {
    with_config(&Config::default())
}

fn with_config(config: &Config) -> Client {
    Client::new(config, Arc::new(crate::engine::http::tls::bundled_roots_config(&[]).unwrap()))
}

/// GETs `at` and reads the whole body.
async fn fetch(c: &Client, at: &url::Url) -> Result<(u16, Vec<u8>), String> {
    let mut answer = c.get(at, &HeaderMap::new(), None, false).await.map_err(|e| format!("{e:?}"))?;
    let mut body = Vec::new();
    while let Some(chunk) = answer.body.next_chunk().await.map_err(|e| format!("{e:?}"))? {
        body.extend_from_slice(&chunk);
    }
    Ok((answer.head.status, body))
}

#[tokio::test]
async fn a_kept_alive_connection_carries_every_request_whatever_the_framing() {
    let (at, accepted) = server(|i| match i % 3 {
        0 => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
        1 => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".to_vec(), false),
        _ => (b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n".to_vec(), false),
    })
    .await;
    let c = test_client();
    for _ in 0..3 {
        assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"hello".to_vec()));
        assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"abc".to_vec()));
        assert_eq!(fetch(&c, &at).await.unwrap(), (204, Vec::new()), "the 100 is skipped");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_dropped_at_its_last_byte_still_returns_its_connection() {
    let (at, accepted) = server(|i| match i % 2 {
        0 => (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello".to_vec(), false),
        _ => (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n".to_vec(), false),
    })
    .await;
    let c = test_client();
    for _ in 0..4 {
        let mut answer = c.get(&at, &HeaderMap::new(), None, false).await.unwrap();
        assert_eq!(answer.body.next_chunk().await.unwrap().as_deref(), Some(&b"hello"[..]));
        drop(answer);
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "one connection carried every request");
    let mut answer = c.get(&at, &HeaderMap::new(), None, false).await.unwrap();
    drop(answer.body.next_chunk());
    drop(answer);
    let (at2, accepted2) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nhello".to_vec(), false)).await;
    let mut answer = c.get(&at2, &HeaderMap::new(), None, false).await.unwrap();
    assert_eq!(answer.body.next_chunk().await.unwrap().as_deref(), Some(&b"hello"[..]));
    drop(answer);
    drop(c.get(&at2, &HeaderMap::new(), None, false).await.unwrap());
    assert_eq!(accepted2.load(Ordering::SeqCst), 2, "a body dropped before its end closes its connection");
}

#[tokio::test]
async fn a_connection_the_server_closes_is_replaced_without_an_error() {
    // Keep-alive announced, then closed anyway (an idle timeout on the server's side).
    let (at, accepted) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), true)).await;
    let c = test_client();
    for _ in 0..4 {
        assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 4);
    // The same without the pause: the closed connection is found out by the exchange itself.
    for _ in 0..4 {
        assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
    }
}

#[tokio::test]
async fn connections_are_not_reused_after_close_http_1_0_or_a_body_read_to_the_close() {
    for answer in [
        (|_| (b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)) as fn(usize) -> (Vec<u8>, bool),
        |_| (b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec(), false),
        |_| (b"HTTP/1.1 200 OK\r\n\r\nok".to_vec(), true),
    ] {
        let (at, accepted) = server(answer).await;
        let c = test_client();
        for _ in 0..3 {
            assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 3);
    }
    let (at, accepted) = server(|_| (b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok".to_vec(), false)).await;
    let c = test_client();
    for _ in 0..3 {
        assert_eq!(fetch(&c, &at).await.unwrap(), (200, b"ok".to_vec()));
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1, "HTTP/1.0 with keep-alive is reused");
}

#[tokio::test]
async fn a_short_body_or_a_bad_head_is_an_error_and_the_connection_is_dropped() {
    let (at, _) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort".to_vec(), true)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("5 bytes before the end"));
    let (at, _) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab".to_vec(), false)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("conflicting Content-Length"));
    let (at, _) = server(|_| (b"HTTP/1.1 2000 Huh\r\n\r\n".to_vec(), false)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("Protocol(\"a malformed response head"));
    let (at, _) = server(|_| (Vec::new(), true)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("incomplete: true"));
    let (at, _) = server(|_| (b"HTTP/1.1 200 OK\r\nContent-Len".to_vec(), true)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("closed the connection inside the response head"), "a head cut off");
    let (at, _) =
        server(|_| (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nabc\r\n2\r\nuv\r\n0\r\n\r\n".to_vec(), false)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("not followed by CRLF"), "a chunk longer than its data");
}

#[tokio::test]
async fn a_head_arriving_byte_by_byte_is_read_whole() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = url(&format!("http://{}/f", listener.local_addr().unwrap()));
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        s.set_nodelay(true).unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b).await;
        let wire = b"HTTP/1.1 200 OK\r\nX-Pad: 0123456789\r\nContent-Length: 3\r\n\r\nabc";
        for byte in wire {
            if s.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        let _ = s.read(&mut b).await;
    });
    assert_eq!(fetch(&test_client(), &at).await.unwrap(), (200, b"abc".to_vec()));
}

#[tokio::test]
async fn a_head_that_does_not_finish_within_the_head_timeout_is_a_protocol_error_and_101_or_a_flood_of_100s_too() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let at = url(&format!("http://{}/f", listener.local_addr().unwrap()));
    tokio::spawn(async move {
        let (mut s, _) = listener.accept().await.unwrap();
        let mut b = [0u8; 1024];
        let _ = s.read(&mut b).await;
        let _ = s.write_all(b"HTTP/1.1 200 OK\r\nX-Slow: ").await;
        for _ in 0..100 {
            if s.write_all(b"a").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
    });
    let c = with_config(&Config { head_timeout: Duration::from_millis(300), ..Config::default() });
    let started = Instant::now();
    let e = fetch(&c, &at).await.unwrap_err();
    assert!(e.contains("not complete 0.3 s after its first byte"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());

    let (at, _) = server(|_| (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: h2c\r\n\r\n".to_vec(), false)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("101"));
    let (at, _) = server(|_| (b"HTTP/1.1 100 Continue\r\n\r\n".repeat(MAX_INFORMATIONAL + 1), false)).await;
    assert!(fetch(&test_client(), &at).await.unwrap_err().contains("informational"));
    let (at, _) = server(|_| {
        let mut w = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n".repeat(3);
        w.extend_from_slice(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
        (w, false)
    })
    .await;
    assert_eq!(fetch(&test_client(), &at).await.unwrap(), (200, b"ok".to_vec()), "a few 1xx are skipped");
}

#[test]
fn a_request_through_a_proxy_names_the_whole_url_and_the_proxy_credentials() {
    let p = Proxy::parse("http://u:p@proxy:3128").unwrap();
    let u = url("http://user:pw@example.com:8080/a?b#c");
    let wire = String::from_utf8(request_bytes(&u, Some(&p), &HeaderMap::new())).unwrap();
    assert_eq!(wire, "GET http://example.com:8080/a?b HTTP/1.1\r\nhost: example.com:8080\r\nproxy-authorization: Basic dTpw\r\n\r\n");
    let u = url("https://example.com/a");
    let wire = String::from_utf8(request_bytes(&u, Some(&p), &HeaderMap::new())).unwrap();
    assert_eq!(wire, "GET /a HTTP/1.1\r\nhost: example.com\r\n\r\n", "https goes through a tunnel: the proxy sees none of it");
    assert_eq!(
        pool_key(&url("http://a:1/"), Some(&p)),
        pool_key(&url("http://b:2/"), Some(&p)),
        "one pool for every origin behind the proxy"
    );
    assert_ne!(pool_key(&url("http://a/"), None), pool_key(&url("https://a:80/"), None));
}

#[test]
fn the_request_head_names_the_host_and_the_target() {
    let mut h = HeaderMap::new();
    h.insert(header::RANGE, HeaderValue::from_static("bytes=0-"));
    let u = url("http://example.com/a%20b?x=1#frag");
    let wire = String::from_utf8(request_bytes(&u, None, &h)).unwrap();
    assert_eq!(wire, "GET /a%20b?x=1 HTTP/1.1\r\nhost: example.com\r\nrange: bytes=0-\r\n\r\n");
    let u = url("http://[::1]:8080");
    let wire = String::from_utf8(request_bytes(&u, None, &HeaderMap::new())).unwrap();
    assert_eq!(wire, "GET / HTTP/1.1\r\nhost: [::1]:8080\r\n\r\n");
    let u = url("https://example.com:443/x");
    assert!(String::from_utf8(request_bytes(&u, None, &HeaderMap::new())).unwrap().contains("host: example.com\r\n"), "no default port");
    h.insert(header::HOST, HeaderValue::from_static("other"));
    let u = url("http://example.com/");
    assert!(String::from_utf8(request_bytes(&u, None, &h)).unwrap().contains("\r\nhost: other\r\n"), "the caller's Host wins");
}

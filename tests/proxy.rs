//! Proxies: `https://` through a `CONNECT` tunnel (TLS to the origin inside it), plain `http://`
//! in absolute form, credentials as `Proxy-Authorization` for the proxy only, exceptions that
//! bypass it, and a proxy that refuses. The proxy is given in the configuration: the environment
//! is the process's, and tests run in parallel (its rules are unit-tested on a lookup function).

mod support;

use ferry::engine::{Config, ErrorCode, Request};
use support::proxy::TestProxy;
use support::raw::{content, honest, RawServer, Scheme, SCHEMES};
use support::tls::trusting;
use support::*;

const SIZE: u64 = 500_000;
const SEED: u64 = 41;

fn via(proxy: &str, no_proxy: Option<&str>) -> Config {
    trusting(Config { proxy: Some(proxy.to_string()), no_proxy: no_proxy.map(str::to_string), ..test_config() })
}

#[test]
fn downloads_go_through_the_proxy_byte_exact_on_both_schemes() {
    for scheme in SCHEMES {
        let origin = RawServer::start_on(scheme, |req| honest(req, SEED, SIZE, "\"x\""));
        let proxy = TestProxy::start(None);
        let l = Local::with_config(via(&proxy.url(""), None));
        let req = Request { connections: Some(3), ..Request::file(format!("{}/f", origin.base()), l.out("f")) };
        l.completes("f", req, &content(SEED, 0, SIZE));
        let seen = proxy.seen();
        let port = origin.port();
        assert_eq!(seen.len(), origin.count(), "{scheme:?}: every request went through the proxy: {seen:?}");
        for s in &seen {
            match scheme {
                Scheme::Https => assert_eq!(s.line, format!("CONNECT 127.0.0.1:{port} HTTP/1.1"), "a tunnel to the origin"),
                Scheme::Http => assert_eq!(s.line, format!("GET http://127.0.0.1:{port}/f HTTP/1.1"), "absolute form"),
            }
        }
        assert!(origin.requests().iter().all(|r| r.target == "/f"), "{scheme:?}: the origin sees origin form");
        if scheme == Scheme::Https {
            assert_eq!(proxy.tunnels(), seen.len());
        }
    }
}

#[test]
fn proxy_credentials_go_to_the_proxy_only() {
    for scheme in SCHEMES {
        let origin = RawServer::start_on(scheme, |req| honest(req, SEED, SIZE, "\"x\""));
        // base64("user:pa ss")
        let proxy = TestProxy::start(Some("Basic dXNlcjpwYSBzcw=="));
        let l = Local::with_config(via(&proxy.url("user:pa%20ss@"), None));
        l.completes("f", Request::file(format!("{}/f", origin.base()), l.out("f")), &content(SEED, 0, SIZE));
        assert!(origin.requests().iter().all(|r| r.header("proxy-authorization").is_none()), "{scheme:?}");

        // Without them the proxy refuses with 407: a typed failure, not retried for a minute.
        let l = Local::with_config(via(&proxy.url(""), None));
        let before = proxy.seen().len();
        let info = l.fails("g", Request::file(format!("{}/g", origin.base()), l.out("g")), ErrorCode::HttpClientError);
        assert_eq!(info.error.unwrap().http_status, Some(407), "{scheme:?}");
        assert_eq!(proxy.seen().len() - before, 1, "{scheme:?}");
    }
}

#[test]
fn hosts_listed_in_no_proxy_bypass_it() {
    for scheme in SCHEMES {
        let origin = RawServer::start_on(scheme, |req| honest(req, SEED, SIZE, "\"x\""));
        let proxy = TestProxy::start(None);
        for exception in ["127.0.0.1", "127.0.0.0/8", &format!("127.0.0.1:{}", origin.port()), "*"] {
            let l = Local::with_config(via(&proxy.url(""), Some(&format!("example.com, {exception}"))));
            l.completes("f", Request::file(format!("{}/f", origin.base()), l.out("f")), &content(SEED, 0, SIZE));
        }
        assert!(proxy.seen().is_empty(), "{scheme:?}: {:?}", proxy.seen());
        // An exception for another port does not apply.
        let l = Local::with_config(via(&proxy.url(""), Some("127.0.0.1:1")));
        l.completes("g", Request::file(format!("{}/g", origin.base()), l.out("g")), &content(SEED, 0, SIZE));
        assert!(!proxy.seen().is_empty(), "{scheme:?}");
    }
}

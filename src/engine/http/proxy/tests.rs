//! Proxy selection from the configuration and from an environment given as a map.

use super::*;
use std::collections::HashMap;

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
    move |k: &str| map.get(k).cloned()
}

fn url(s: &str) -> url::Url {
    url::Url::parse(s).unwrap()
}

fn via(p: &Proxies, u: &str) -> Option<String> {
    p.for_url(&url(u)).unwrap().map(Proxy::authority)
}

#[test]
fn the_environment_names_a_proxy_per_scheme() {
    let p = Proxies::new(None, None, env(&[("http_proxy", "http://p1:3128"), ("HTTPS_PROXY", "p2:8080")])).unwrap();
    assert_eq!(via(&p, "http://example.com/f"), Some("p1:3128".into()));
    assert_eq!(via(&p, "https://example.com/f"), Some("p2:8080".into()));
    let p = Proxies::new(None, None, env(&[("ALL_PROXY", "http://all:1")])).unwrap();
    assert_eq!(via(&p, "http://h/"), Some("all:1".into()));
    assert_eq!(via(&p, "https://h/"), Some("all:1".into()));
    let p = Proxies::new(None, None, env(&[("http_proxy", "http://lower:1"), ("HTTP_PROXY", "http://upper:2")])).unwrap();
    assert_eq!(via(&p, "http://h/"), Some("lower:1".into()), "lower case first, as curl");
    let p = Proxies::new(None, None, env(&[("HTTP_PROXY", "http://upper:2"), ("REQUEST_METHOD", "GET")])).unwrap();
    assert_eq!(via(&p, "http://h/"), None, "HTTP_PROXY is not trusted in a CGI process");
    let p = Proxies::new(None, None, env(&[("http_proxy", " "), ("https_proxy", "")])).unwrap();
    assert!(!p.any(), "empty variables set nothing");
    let p = Proxies::new(None, None, env(&[("http_proxy", "http://p")])).unwrap();
    assert_eq!(via(&p, "http://h/"), Some("p:80".into()));
}

#[test]
fn the_configuration_beats_the_environment() {
    let e = env(&[("http_proxy", "http://envp:1"), ("no_proxy", "example.com")]);
    let p = Proxies::new(Some("http://cfg:9"), None, &e).unwrap();
    assert_eq!(via(&p, "http://example.com/"), Some("cfg:9".into()), "the environment's exceptions do not apply");
    assert_eq!(via(&p, "https://example.com/"), Some("cfg:9".into()));
    let p = Proxies::new(Some("http://cfg:9"), Some("example.com"), &e).unwrap();
    assert_eq!(via(&p, "http://example.com/"), None);
    for direct in ["none", "direct", ""] {
        assert!(!Proxies::new(Some(direct), None, &e).unwrap().any(), "{direct}");
    }
    assert_eq!(Proxies::new(Some("socks5://s:1080"), None, &e).unwrap_err().code(), ErrorCode::InvalidConfig);
    assert_eq!(Proxies::new(Some("http://"), None, &e).unwrap_err().code(), ErrorCode::InvalidConfig);
    // A broken proxy in the environment fails the requests it would carry, not the others.
    let p = Proxies::new(None, None, env(&[("https_proxy", "socks5://s:1")])).unwrap();
    assert_eq!(p.for_url(&url("https://h/")).unwrap_err().code(), ErrorCode::InvalidConfig);
    assert_eq!(via(&p, "http://h/"), None);
}

#[test]
fn exceptions_match_domains_addresses_networks_and_ports() {
    let p = Proxies::new(
        Some("http://p:1"),
        Some("example.com, .internal.test *.corp.test,10.0.0.0/8 192.168.1.7 [::1] fd00::/8 special.test:8080"),
        |_: &str| None,
    )
    .unwrap();
    for direct in [
        "http://example.com/",
        "http://EXAMPLE.com./",
        "http://a.b.example.com/",
        "http://internal.test/",
        "http://x.internal.test/",
        "http://x.corp.test/",
        "http://10.1.2.3/",
        "http://192.168.1.7:81/",
        "http://[::1]:8080/",
        "http://[fd12::1]/",
        "http://special.test:8080/",
    ] {
        assert_eq!(via(&p, direct), None, "{direct}");
    }
    for proxied in [
        "http://notexample.com/",
        "http://example.com.evil/",
        "http://11.0.0.1/",
        "http://192.168.1.8/",
        "http://[::2]/",
        "http://special.test/",
    ] {
        assert_eq!(via(&p, proxied), Some("p:1".into()), "{proxied}");
    }
    let all = Proxies::new(Some("http://p:1"), Some("*"), |_: &str| None).unwrap();
    assert_eq!(via(&all, "http://anything/"), None);
}

#[test]
fn credentials_become_basic_authorization() {
    let p = Proxy::parse("http://al%40ice:p%3Aw@proxy.test:3128").unwrap();
    assert_eq!(p.authorization.as_deref(), Some(format!("Basic {}", base64(b"al@ice:p:w")).as_str()));
    assert!(!p.shown.contains("ice") && !p.shown.contains("p%3Aw"), "{}", p.shown);
    assert_eq!(Proxy::parse("[::1]:8080").unwrap().authority(), "[::1]:8080");
    assert_eq!(basic_credentials(&url("http://alice:pw@h/")).as_deref(), Some("Basic YWxpY2U6cHc="));
    assert_eq!(basic_credentials(&url("http://h/")), None);
    for (plain, coded) in
        [(&b""[..], ""), (b"f", "Zg=="), (b"fo", "Zm8="), (b"foo", "Zm9v"), (b"foob", "Zm9vYg=="), (b"\xff\xfe\xfd", "//79")]
    {
        assert_eq!(base64(plain), coded);
    }
}

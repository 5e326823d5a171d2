//! How a redirect hop is followed: which answers redirect, and how the request changes on the way
//! (credentials stay with their origin, each hop names its `Referer`).

use hyper::header::{self, HeaderMap, HeaderValue};

/// Where a response redirects to, when it is a redirect the client follows (301, 302, 303, 307,
/// 308 with a `Location` that resolves against `at`). Any other response is the answer.
pub fn redirect_target(status: u16, location: Option<&str>, at: &url::Url) -> Option<url::Url> {
    if !matches!(status, 301 | 302 | 303 | 307 | 308) {
        return None;
    }
    at.join(location?.trim()).ok()
}

/// Headers a request must not carry to another origin.
const CREDENTIALS: [&str; 5] = ["authorization", "cookie", "cookie2", "proxy-authorization", "www-authenticate"];

/// Adjusts the headers for the next hop of a redirect: credentials stay with their origin (scheme,
/// host and port), and the hop names where it came from, without credentials or fragment, and not
/// at all from `https:` to `http:` (RFC 9110 §10.1.3). To another origin it names only the origin
/// (as browsers do by default, `strict-origin-when-cross-origin`): a signed URL's path and query
/// are a credential too.
pub fn prepare_redirect(headers: &mut HeaderMap, from: &url::Url, next: &url::Url) {
    let cross_origin = next.host_str() != from.host_str()
        || next.port_or_known_default() != from.port_or_known_default()
        || next.scheme() != from.scheme();
    if cross_origin {
        for name in CREDENTIALS {
            headers.remove(name);
        }
    }
    if from.scheme() == "https" && next.scheme() == "http" {
        headers.remove(header::REFERER);
        return;
    }
    let mut referer = from.clone();
    let _ = referer.set_username("");
    let _ = referer.set_password(None);
    referer.set_fragment(None);
    if cross_origin {
        referer.set_path("/");
        referer.set_query(None);
    }
    if let Ok(v) = HeaderValue::from_str(referer.as_str()) {
        headers.insert(header::REFERER, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(s: &str) -> url::Url {
        url::Url::parse(s).unwrap()
    }

    #[test]
    fn only_followed_statuses_with_a_resolvable_location_redirect() {
        let at = url("http://h/a/b");
        assert_eq!(redirect_target(302, None, &at), None, "no Location");
        for code in [301, 302, 303, 307, 308] {
            assert_eq!(redirect_target(code, Some(" ../c "), &at), Some(url("http://h/c")), "{code}");
        }
        for code in [300, 304, 305, 200] {
            assert_eq!(redirect_target(code, Some("../c"), &at), None, "{code}");
        }
    }

    #[test]
    fn credentials_stay_with_their_origin_and_the_referer_carries_none() {
        let from = url("http://u:p@h:8080/a?q=1#frag");
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_static("Bearer t"));
        h.insert(header::COOKIE, HeaderValue::from_static("s=1"));
        prepare_redirect(&mut h, &from, &url("http://h:8080/b"));
        assert!(h.contains_key(header::AUTHORIZATION) && h.contains_key(header::COOKIE), "same origin keeps them");
        assert_eq!(h.get(header::REFERER).unwrap(), "http://h:8080/a?q=1");
        for other in ["http://h:8081/b", "http://g:8080/b", "https://h:8080/b"] {
            let mut h2 = h.clone();
            prepare_redirect(&mut h2, &from, &url(other));
            assert!(!h2.contains_key(header::AUTHORIZATION) && !h2.contains_key(header::COOKIE), "{other}");
            assert_eq!(h2.get(header::REFERER).unwrap(), "http://h:8080/", "only the origin to {other}");
        }
        let mut h3 = h.clone();
        prepare_redirect(&mut h3, &url("https://h/a"), &url("http://h/b"));
        assert!(!h3.contains_key(header::REFERER), "no Referer from https to http");
    }
}

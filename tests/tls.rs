//! HTTPS: a TLS-terminating proxy with a private CA in front of the loopback server. With the CA
//! given as an extra root the download works (ranges and all); without it the error is typed.

mod support;

use ferry::engine::{runtime, Config, ErrorCode, Manager, Request, TaskState};
use ferry::loopback::{Faults, LoopbackServer};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::sync::Arc;
use support::*;

struct Tls {
    ca_pem: String,
    port: u16,
    /// TLS connections accepted.
    accepted: Arc<std::sync::atomic::AtomicUsize>,
    _stop: tokio_util::sync::CancellationToken,
}

fn tls_proxy(backend: std::net::SocketAddr) -> Tls {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, "Ferry test CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = Issuer::new(ca_params, ca_key);
    let leaf_key = KeyPair::generate().unwrap();
    let leaf =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
    let cert_der = rustls_pki_types::CertificateDer::from(leaf.der().to_vec());
    let key_der = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
    let config =
        tokio_rustls::rustls::ServerConfig::builder_with_provider(Arc::new(tokio_rustls::rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert_der], key_der)
            .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    std_listener.set_nonblocking(true).unwrap();
    let port = std_listener.local_addr().unwrap().port();
    let stop = tokio_util::sync::CancellationToken::new();
    let st = stop.clone();
    let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = accepted.clone();
    runtime::handle().spawn(async move {
        let listener = tokio::net::TcpListener::from_std(std_listener).unwrap();
        loop {
            let (tcp, _) = tokio::select! {
                r = listener.accept() => match r { Ok(x) => x, Err(_) => continue },
                _ = st.cancelled() => return,
            };
            count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let acceptor = acceptor.clone();
            let st = st.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else { return };
                let Ok(mut upstream) = tokio::net::TcpStream::connect(backend).await else { return };
                tokio::select! {
                    _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream) => {}
                    _ = st.cancelled() => {}
                }
            });
        }
    });
    Tls { ca_pem: ca_cert.pem(), port, accepted, _stop: stop }
}

#[test]
fn https_with_a_private_ca_downloads_and_without_it_fails_typed() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(3 << 20)).unwrap();
    let proxy = tls_proxy(server.addr());
    let url = format!("https://localhost:{}/file", proxy.port);
    let dir = tempfile::tempdir().unwrap();

    let trusting =
        Manager::open(dir.path().join("a"), Config { extra_root_certificates_pem: vec![proxy.ca_pem.clone()], ..test_config() }).unwrap();
    let out = dir.path().join("ok.bin");
    let id = trusting.enqueue(Request { connections: Some(3), ..Request::file(&url, &out) }).unwrap();
    let info = wait(&trusting, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());

    // The bundled Mozilla roots (Android's default) plus the private CA.
    let bundled_cfg = Config { bundled_tls_roots: true, extra_root_certificates_pem: vec![proxy.ca_pem.clone()], ..test_config() };
    let bundled = Manager::open(dir.path().join("c"), bundled_cfg).unwrap();
    let out = dir.path().join("bundled.bin");
    let id = bundled.enqueue(Request::file(&url, &out)).unwrap();
    let info = wait(&bundled, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());

    let plain = Manager::open(dir.path().join("b"), test_config()).unwrap();
    let out = dir.path().join("no.bin");
    let id = plain.enqueue(Request::file(&url, &out)).unwrap();
    let info = wait(&plain, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Failed);
    assert_eq!(info.error.unwrap().code, ErrorCode::Tls);
    assert!(!out.exists());
}

#[test]
fn a_plain_http_url_redirecting_to_https_continues_over_tls() {
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(2 << 20)).unwrap();
    let proxy = tls_proxy(server.addr());
    let target = format!("https://localhost:{}/file", proxy.port);
    let origin = support::raw::RawServer::start(move |_| {
        support::raw::reply(302, &[("Location", target.clone()), ("Content-Length", "0".into())], b"")
    });
    let dir = tempfile::tempdir().unwrap();
    let m =
        Manager::open(dir.path().join("s"), Config { extra_root_certificates_pem: vec![proxy.ca_pem.clone()], ..test_config() }).unwrap();
    let out = dir.path().join("f.bin");
    let id = m.enqueue(Request { connections: Some(2), ..Request::file(format!("{}/f", origin.base()), &out) }).unwrap();
    let info = wait(&m, id.as_str(), 60);
    assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
    assert_same(&read(&out), &server.expected());
    assert!(origin.count() >= 1);
}

#[test]
fn tls_connections_are_reused_from_one_download_to_the_next() {
    // Small files, one after another: each one's answer is read to its last byte, and its
    // connection carries the next request (a TLS handshake per file cost a batch of small files
    // three times its time).
    let server = LoopbackServer::start(runtime::handle(), 0, Faults::new(20_000)).unwrap();
    let proxy = tls_proxy(server.addr());
    let dir = tempfile::tempdir().unwrap();
    let m =
        Manager::open(dir.path().join("s"), Config { extra_root_certificates_pem: vec![proxy.ca_pem.clone()], ..test_config() }).unwrap();
    for i in 0..10 {
        let out = dir.path().join(format!("f{i}.bin"));
        let id = m.enqueue(Request::file(format!("https://localhost:{}/file", proxy.port), &out)).unwrap();
        let info = wait(&m, id.as_str(), 60);
        assert_eq!(info.state, TaskState::Completed, "{:?}", info.error);
        assert_same(&read(&out), &server.expected());
    }
    let accepted = proxy.accepted.load(std::sync::atomic::Ordering::SeqCst);
    assert!(accepted <= 2, "{accepted} TLS connections for 10 files");
}

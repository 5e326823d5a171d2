//! TLS configurations for the HTTP client: the platform's trust store, loaded on the first TLS
//! handshake, or Mozilla's bundled roots (Android, or on request); either plus extra PEM roots.
//! HTTP/1.1 is the only protocol offered (ALPN).
//!
//! Why lazy: on Linux the platform verifier reads and parses every certificate under /etc/ssl when
//! it is built, about 6 ms of CPU. Built with the client, every `ferry` command and every manager
//! opened paid it, even when all its URLs were plain http (3.5 % of the CPU of the
//! 1000-small-files benchmark).

use crate::engine::model::error::{Error, ErrorCode, Result};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::{DigitallySignedStruct, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use std::sync::{Arc, OnceLock};

/// *ring*'s suites, AES-128-GCM first. *ring* puts AES-256-GCM first, and servers that follow
/// the client's order (nginx and OpenSSL do for TLS 1.3) then spend 14 AES rounds per block
/// instead of 10, on both sides, for no security a download needs (AES-128-GCM is TLS 1.3's
/// mandatory suite and browsers' first choice).
fn provider() -> Arc<CryptoProvider> {
    use rustls::CipherSuite as S;
    let mut p = rustls::crypto::ring::default_provider();
    p.cipher_suites.sort_by_key(|suite| match suite.suite() {
        S::TLS13_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 => 1,
        S::TLS13_CHACHA20_POLY1305_SHA256 => 2,
        S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 3,
        _ => 4,
    });
    Arc::new(p)
}

fn parse_pems(extra_pem: &[String]) -> Result<Vec<CertificateDer<'static>>> {
    let mut out = Vec::new();
    for pem in extra_pem {
        for cert in CertificateDer::pem_slice_iter(pem.as_bytes()) {
            out.push(cert.map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("bad root certificate: {e}")))?);
        }
    }
    Ok(out)
}

fn finish(b: rustls::ConfigBuilder<rustls::ClientConfig, rustls::client::WantsClientCert>) -> rustls::ClientConfig {
    let mut config = b.with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn builder() -> Result<rustls::ConfigBuilder<rustls::ClientConfig, rustls::WantsVerifier>> {
    rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("TLS: {e}")))
}

/// Trusts the platform's store plus `extra_pem`; the store is read on the first handshake.
pub fn platform_config(extra_pem: &[String]) -> Result<rustls::ClientConfig> {
    let extra = parse_pems(extra_pem)?;
    let verifier = Arc::new(LazyPlatformVerifier { extra, provider: provider(), inner: OnceLock::new() });
    Ok(finish(builder()?.dangerous().with_custom_certificate_verifier(verifier)))
}

/// Trusts Mozilla's root store (bundled) plus `extra_pem`. Used where the platform's verifier
/// cannot be reached (Android).
pub fn bundled_roots_config(extra_pem: &[String]) -> Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::from_iter(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for cert in parse_pems(extra_pem)? {
        roots.add(cert).map_err(|e| Error::new(ErrorCode::InvalidConfig, format!("TLS roots: {e}")))?;
    }
    Ok(finish(builder()?.with_root_certificates(roots)))
}

/// The platform verifier, built on first use.
#[derive(Debug)]
struct LazyPlatformVerifier {
    extra: Vec<CertificateDer<'static>>,
    provider: Arc<CryptoProvider>,
    inner: OnceLock<std::result::Result<Arc<dyn ServerCertVerifier>, rustls::Error>>,
}

impl LazyPlatformVerifier {
    fn get(&self) -> std::result::Result<&Arc<dyn ServerCertVerifier>, rustls::Error> {
        self.inner
            .get_or_init(|| {
                #[cfg(any(all(unix, not(target_os = "android")), target_os = "windows"))]
                let v = rustls_platform_verifier::Verifier::new_with_extra_roots(self.extra.iter().cloned(), self.provider.clone());
                #[cfg(not(any(all(unix, not(target_os = "android")), target_os = "windows")))]
                let v = rustls_platform_verifier::Verifier::new(self.provider.clone());
                v.map(|v| Arc::new(v) as Arc<dyn ServerCertVerifier>)
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

impl ServerCertVerifier for LazyPlatformVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.get()?.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundled_roots_hold_mozillas_store_and_reject_a_broken_pem() {
        let config = bundled_roots_config(&[]).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"http/1.1".to_vec()]);
        assert!(bundled_roots_config(&["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into()]).is_err());
    }

    #[test]
    fn aes_128_gcm_is_offered_first_and_no_suite_is_dropped() {
        let p = provider();
        let names: Vec<_> = p.cipher_suites.iter().map(|s| s.suite()).collect();
        assert_eq!(names[0], rustls::CipherSuite::TLS13_AES_128_GCM_SHA256);
        assert_eq!(names.len(), rustls::crypto::ring::default_provider().cipher_suites.len());
    }

    #[test]
    fn the_platform_store_is_not_read_until_a_handshake_needs_it() {
        let extra = vec![];
        let v = LazyPlatformVerifier { extra, provider: provider(), inner: OnceLock::new() };
        assert!(!v.supported_verify_schemes().is_empty());
        assert!(v.inner.get().is_none());
        assert!(platform_config(&["-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into()]).is_err());
    }
}

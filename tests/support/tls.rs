//! A private CA and a server certificate for 127.0.0.1 and localhost, made once per test binary,
//! and the configuration that makes a manager trust it.

use ferry::engine::Config;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use std::sync::{Arc, OnceLock};

/// The CA's certificate and a server configuration presenting a certificate it signed.
pub struct TestCa {
    pub ca_pem: String,
    pub server: Arc<rustls::ServerConfig>,
}

/// The binary's test CA.
pub fn test_ca() -> &'static TestCa {
    static CA: OnceLock<TestCa> = OnceLock::new();
    CA.get_or_init(|| {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.distinguished_name.push(DnType::CommonName, "Ferry raw test CA");
        let ca_cert = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let leaf_key = KeyPair::generate().unwrap();
        let leaf =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap().signed_by(&leaf_key, &issuer).unwrap();
        let cert = rustls_pki_types::CertificateDer::from(leaf.der().to_vec());
        let key = rustls_pki_types::PrivateKeyDer::try_from(leaf_key.serialize_der()).unwrap();
        let server = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(vec![cert], key)
            .unwrap();
        TestCa { ca_pem: ca_cert.pem(), server: Arc::new(server) }
    })
}

/// `config`, trusting the test CA as well.
pub fn trusting(config: Config) -> Config {
    let mut roots = config.extra_root_certificates_pem.clone();
    roots.push(test_ca().ca_pem.clone());
    Config { extra_root_certificates_pem: roots, ..config }
}

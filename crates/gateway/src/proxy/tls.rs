//! HTTPS: the certificate for a handshake is chosen by SNI from the current table (exact name,
//! then a `*.` wildcard for one label), else the default one. Certificates are parsed when a
//! table arrives, never during a handshake, and a certificate unchanged from the last table is
//! not parsed again.

use std::collections::HashMap;
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::live::LiveCell;
use crate::Certificate;

/// Why a certificate cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum CertificateError {
    #[error("the certificate PEM does not parse")]
    CertificatePem(#[source] rustls_pki_types::pem::Error),
    #[error("no certificate in the certificate PEM")]
    NoCertificate,
    #[error("no private key in the key PEM, or it does not parse")]
    KeyPem(#[source] rustls_pki_types::pem::Error),
    #[error("the key is not supported or is not the certificate's")]
    Key(#[source] rustls::Error),
    #[error("cannot make a self-signed certificate")]
    SelfSigned(#[source] rcgen::Error),
}

/// The provider every TLS object of the gateway uses (the workspace builds ring, not aws-lc).
pub(crate) fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A certificate chain and its key, ready for handshakes.
pub(crate) fn certified_key(
    certificate: &Certificate,
    provider: &CryptoProvider,
) -> Result<Arc<CertifiedKey>, CertificateError> {
    let chain = CertificateDer::pem_slice_iter(certificate.cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(CertificateError::CertificatePem)?;
    if chain.is_empty() {
        return Err(CertificateError::NoCertificate);
    }
    let key = PrivateKeyDer::from_pem_slice(certificate.key_pem.as_bytes()).map_err(CertificateError::KeyPem)?;
    let key = CertifiedKey::from_der(chain, key, provider).map_err(CertificateError::Key)?;
    Ok(Arc::new(key))
}

/// A self-signed certificate for when none is configured, as Marathon-LB ships one: clients
/// that reach the gateway by a name no certificate covers still complete a handshake.
pub(crate) fn self_signed() -> Result<Certificate, CertificateError> {
    let made =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).map_err(CertificateError::SelfSigned)?;
    Ok(Certificate {
        source: "self-signed".to_owned(),
        hosts: Vec::new(),
        cert_pem: made.cert.pem(),
        key_pem: made.signing_key.serialize_pem(),
    })
}

/// The certificates of one table, by the names they serve.
#[derive(Default)]
pub(crate) struct CertStore {
    exact: HashMap<String, Arc<CertifiedKey>>,
    /// By the part after `*.`.
    wildcard: HashMap<String, Arc<CertifiedKey>>,
    /// Every certificate of the table, parsed or not, for the next table to reuse.
    parsed: Vec<(Certificate, Option<Arc<CertifiedKey>>)>,
    /// How many could not be used.
    pub rejected: usize,
}

impl CertStore {
    /// The certificates of `certificates`, reusing what `previous` parsed already. A broken
    /// certificate is logged (once, when it first appears) and skipped.
    pub fn build(certificates: &[Certificate], previous: &CertStore, provider: &CryptoProvider) -> CertStore {
        let mut store = CertStore::default();
        for certificate in certificates {
            let known = previous
                .parsed
                .iter()
                .find(|(c, _)| c == certificate)
                .map(|(_, k)| k.clone());
            let key = match known {
                Some(key) => key,
                None => match certified_key(certificate, provider) {
                    Ok(key) => Some(key),
                    Err(error) => {
                        tracing::warn!(
                            source = %certificate.source,
                            hosts = ?certificate.hosts,
                            error = &error as &dyn std::error::Error,
                            "certificate skipped: it cannot be served"
                        );
                        None
                    }
                },
            };
            match &key {
                Some(key) => {
                    for host in &certificate.hosts {
                        let host = host.to_ascii_lowercase();
                        let map = match host.strip_prefix("*.") {
                            Some(parent) => store.wildcard.entry(parent.to_owned()),
                            None => store.exact.entry(host),
                        };
                        // Two certificates for one name: the first in the table serves it.
                        map.or_insert_with(|| key.clone());
                    }
                }
                None => store.rejected += 1,
            }
            store.parsed.push((certificate.clone(), key));
        }
        store
    }

    /// The certificate for a server name (SNI), if one of the table covers it.
    pub fn find(&self, name: &str) -> Option<Arc<CertifiedKey>> {
        let lowered;
        let name = if name.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = name.to_ascii_lowercase();
            lowered.as_str()
        } else {
            name
        };
        let name = name.strip_suffix('.').unwrap_or(name);
        if let Some(key) = self.exact.get(name) {
            return Some(key.clone());
        }
        let (first, parent) = name.split_once('.')?;
        if first.is_empty() {
            return None;
        }
        self.wildcard.get(parent).cloned()
    }

    /// Whether a route's host name is served by a certificate of the table.
    pub fn covers(&self, host: &str) -> bool {
        match host.strip_prefix("*.") {
            Some(parent) => self.wildcard.contains_key(parent),
            None => self.find(host).is_some(),
        }
    }
}

/// Chooses the certificate of a handshake from the latest table.
pub(crate) struct SniResolver {
    pub live: Arc<LiveCell>,
    pub default: Arc<CertifiedKey>,
}

impl std::fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SniResolver").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = client_hello
            .server_name()
            .and_then(|name| self.live.load().certs.find(name));
        Some(found.unwrap_or_else(|| self.default.clone()))
    }
}

/// The TLS configuration of the HTTPS listener: HTTP/2 and HTTP/1.1 by ALPN, session tickets.
pub(crate) fn server_config(
    resolver: Arc<SniResolver>,
    provider: Arc<CryptoProvider>,
) -> Result<ServerConfig, rustls::Error> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ticketer = rustls::crypto::ring::Ticketer::new()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn certificate(source: &str, hosts: &[&str]) -> Certificate {
        let names: Vec<String> = hosts.iter().map(|h| h.to_string()).collect();
        let made = rcgen::generate_simple_self_signed(names.clone()).expect("rcgen");
        Certificate {
            source: source.to_owned(),
            hosts: names,
            cert_pem: made.cert.pem(),
            key_pem: made.signing_key.serialize_pem(),
        }
    }

    #[test]
    fn exact_then_one_label_wildcard_and_broken_ones_skipped() {
        let provider = provider();
        let shop = certificate("shop", &["shop.example.com"]);
        let wild = certificate("wild", &["*.example.com"]);
        let mut broken = certificate("broken", &["broken.example.com"]);
        broken.key_pem = certificate("other", &["other"]).key_pem;
        let store = CertStore::build(&[broken, shop.clone(), wild], &CertStore::default(), &provider);
        assert_eq!(store.rejected, 1);
        let shop_key = store.find("Shop.Example.com").expect("shop");
        let wild_key = store.find("api.example.com").expect("wildcard");
        assert!(!Arc::ptr_eq(&shop_key, &wild_key));
        assert!(store.find("a.b.example.com").is_none());
        assert!(store.find("example.com").is_none());
        // The broken certificate's host falls to the wildcard.
        assert!(Arc::ptr_eq(
            &store.find("broken.example.com").expect("wildcard"),
            &wild_key
        ));
        assert!(store.covers("*.example.com") && store.covers("shop.example.com") && !store.covers("example.org"));

        // An unchanged certificate is not parsed again.
        let again = CertStore::build(&[shop], &store, &provider);
        assert!(Arc::ptr_eq(&again.find("shop.example.com").expect("shop"), &shop_key));
    }
}

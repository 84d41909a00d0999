//! rustls configurations for node-to-node mutual TLS against the cluster CA.
//!
//! Every config is built with an explicit ring provider and advertises ALPN "h2" (the cluster
//! speaks gRPC). Clients always verify servers under [`SERVER_NAME`], which only server
//! certificates carry, so an agent certificate can never pose as a server. What a verified
//! peer is allowed to do is the caller's decision (see [`crate::identity_from_der`]).

use std::fmt;
use std::sync::{Arc, Mutex, RwLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, Resumption, WebPkiServerVerifier};
use rustls::crypto::CryptoProvider;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::{ClientConfig, DigitallySignedStruct, DistinguishedName, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

use crate::{all_cert_ders, cert_der_to_pem, first_cert_der, sha256_hex, CertifiedKey, PkiError};

/// The name every client uses to verify a server.
pub const SERVER_NAME: &str = crate::SERVER_DNS_NAME;

const ALPN_H2: &[u8] = b"h2";

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_err(context: &'static str) -> impl FnOnce(rustls::Error) -> PkiError {
    move |source| PkiError::Tls { context, source }
}

fn ca_roots(ca_cert_pem: &str) -> Result<Arc<RootCertStore>, PkiError> {
    let mut roots = RootCertStore::empty();
    for der in all_cert_ders(ca_cert_pem, "ca certificate")? {
        roots
            .add(der)
            .map_err(tls_err("cannot use ca certificate as trust anchor"))?;
    }
    Ok(Arc::new(roots))
}

/// The node's certificate chain (node cert, then the CA so peers get the whole path) and key.
fn node_chain(
    ca_cert_pem: &str,
    node: &CertifiedKey,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
    let mut chain = all_cert_ders(&node.cert_pem, "node certificate")?;
    let ca = first_cert_der(ca_cert_pem, "ca certificate")?;
    if !chain.contains(&ca) {
        chain.push(ca);
    }
    let key = PrivateKeyDer::from_pem_slice(node.key_pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "node key",
        reason: e.to_string(),
    })?;
    Ok((chain, key))
}

/// Server side: presents `[node cert, CA cert]`, ALPN "h2".
///
/// Client certificates are optional, so that a joining node without a certificate can reach
/// the join endpoint; when one is presented it must chain to the CA. Callers must therefore
/// check `peer_certificates()` on every request that needs an authenticated node.
pub fn server_config(ca_cert_pem: &str, node: &CertifiedKey) -> Result<Arc<ServerConfig>, PkiError> {
    let provider = provider();
    let client_verifier = WebPkiClientVerifier::builder_with_provider(ca_roots(ca_cert_pem)?, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|source| PkiError::Verifier {
            context: "cannot build client certificate verifier",
            source,
        })?;
    let (chain, key) = node_chain(ca_cert_pem, node)?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .with_client_cert_verifier(client_verifier)
        .with_single_cert(chain, key)
        .map_err(tls_err("cannot use node certificate and key"))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Client side with a known CA: the server must chain to the CA and be named [`SERVER_NAME`];
/// presents the node certificate if one is given. ALPN "h2".
pub fn client_config(ca_cert_pem: &str, node: Option<&CertifiedKey>) -> Result<Arc<ClientConfig>, PkiError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .with_root_certificates(ca_roots(ca_cert_pem)?);
    let mut config = match node {
        Some(node) => {
            let (chain, key) = node_chain(ca_cert_pem, node)?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(tls_err("cannot use node certificate and key"))?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok(Arc::new(config))
}

/// Client side for joining: no CA is known yet, only its pinned SHA-256 from the join token.
///
/// The server must present, among its intermediates, a certificate whose DER hashes to the pin,
/// and its end-entity certificate must verify (chain, validity, name [`SERVER_NAME`]) against
/// that certificate as the only root. On success the CA is stored into the returned
/// [`PinnedCa`]. Presents no client certificate. ALPN "h2".
pub fn pinned_client_config(ca_sha256: &str) -> Result<(Arc<ClientConfig>, PinnedCa), PkiError> {
    if ca_sha256.len() != 64 || !ca_sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(PkiError::Token("ca hash must be 64 hex characters".to_string()));
    }
    let provider = provider();
    let pinned = PinnedCa::default();
    let verifier = PinnedVerifier {
        pin: ca_sha256.to_ascii_lowercase(),
        provider: provider.clone(),
        found: pinned.clone(),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    // A resumed session would skip certificate verification and leave the handle empty.
    config.resumption = Resumption::disabled();
    config.alpn_protocols = vec![ALPN_H2.to_vec()];
    Ok((Arc::new(config), pinned))
}

fn server_name_of_servers() -> ServerName<'static> {
    ServerName::try_from(SERVER_NAME).expect("server.tepui is a valid DNS name")
}

const ALPN_HTTP1: &[u8] = b"http/1.1";

/// How an HTTPS client of the API (the CLI) trusts the cluster's servers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClusterTrust {
    /// The SHA-256 of the cluster CA's certificate, as join tokens carry it: the server sends
    /// the CA and proves its certificate chains to it.
    Pin(String),
    /// The cluster's CA certificates, PEM (a node's `ca.pem`).
    Bundle(String),
}

/// An HTTPS client config for the API that trusts only the cluster CA and verifies the server
/// as [`SERVER_NAME`] whatever address is dialled, so an agent's certificate (same CA) never
/// passes for a server's. ALPN "http/1.1".
pub fn api_client_config(trust: &ClusterTrust) -> Result<ClientConfig, PkiError> {
    let provider = provider();
    let verifier: Arc<dyn ServerCertVerifier> = match trust {
        ClusterTrust::Pin(pin) => {
            if pin.len() != 64 || !pin.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(PkiError::Token(format!(
                    "CA pin {pin:?} is not a SHA-256 (64 hex characters)"
                )));
            }
            Arc::new(PinnedVerifier {
                pin: pin.to_ascii_lowercase(),
                provider: provider.clone(),
                found: PinnedCa::default(),
            })
        }
        ClusterTrust::Bundle(pem) => Arc::new(ServersOfCa(
            WebPkiServerVerifier::builder_with_provider(ca_roots(pem)?, provider.clone())
                .build()
                .map_err(|e| PkiError::Certificate(format!("cannot build server verifier: {e}")))?,
        )),
    };
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// An HTTPS client config that trusts the CAs in `ca_pem` (an operator's, for a server started
/// with `--api-cert`) and checks the name dialled, as any HTTPS client does. ALPN "http/1.1".
pub fn roots_client_config(ca_pem: &str) -> Result<ClientConfig, PkiError> {
    let mut config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .with_root_certificates(ca_roots(ca_pem)?)
        .with_no_client_auth();
    config.alpn_protocols = vec![ALPN_HTTP1.to_vec()];
    Ok(config)
}

/// Verifies a server against known CAs under [`SERVER_NAME`], whatever name was dialled.
#[derive(Debug)]
struct ServersOfCa(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ServersOfCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .verify_server_cert(end_entity, intermediates, &server_name_of_servers(), ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// An HTTPS server config from an operator's certificate chain and key (`--api-cert`,
/// `--api-key`). ALPN "h2" and "http/1.1"; no client certificates.
pub fn operator_api_server_config(cert_chain_pem: &str, key_pem: &str) -> Result<Arc<ServerConfig>, PkiError> {
    let chain = all_cert_ders(cert_chain_pem, "API certificate")?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "API key",
        reason: e.to_string(),
    })?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(tls_err("cannot select tls versions"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(tls_err("cannot use the API certificate and key"))?;
    config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
    Ok(Arc::new(config))
}

/// Where [`pinned_client_config`] puts the CA it verified; empty until a handshake succeeds.
#[derive(Clone, Debug, Default)]
pub struct PinnedCa(Arc<Mutex<Option<String>>>);

impl PinnedCa {
    /// PEM of the cluster CA, once a server has proven it holds the pinned one.
    pub fn ca_pem(&self) -> Option<String> {
        // A poisoned lock only means another thread panicked mid-store of a plain String.
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn set(&self, pem: String) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(pem);
    }
}

struct PinnedVerifier {
    pin: String,
    provider: Arc<CryptoProvider>,
    found: PinnedCa,
}

impl fmt::Debug for PinnedVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PinnedVerifier")
            .field("pin", &self.pin)
            .finish_non_exhaustive()
    }
}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let Some(ca) = intermediates.iter().find(|c| sha256_hex(c.as_ref()) == self.pin) else {
            // Servers send the CA last; report its hash so the operator can compare.
            let actual = intermediates
                .last()
                .map(|c| sha256_hex(c.as_ref()))
                .unwrap_or_else(|| "no ca certificate".to_string());
            return Err(rustls::Error::General(format!(
                "cluster CA hash mismatch: the pin is {}, the server presented {actual}; \
                 check the token or pin and the address",
                self.pin
            )));
        };

        // The hash only proves the server sent the right CA; the real check is that its own
        // certificate chains to that CA, which the stock webpki verifier does for us.
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let inner = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
            .build()
            .map_err(|e| rustls::Error::General(format!("cannot verify against pinned ca: {e}")))?;
        let others: Vec<CertificateDer<'_>> = intermediates.iter().filter(|c| *c != ca).cloned().collect();
        // Whatever address the caller dialled, only a server's certificate carries this name
        // (an agent's, though signed by the same CA, cannot stand in for a server).
        let _ = server_name;
        let verified = inner.verify_server_cert(end_entity, &others, &server_name_of_servers(), ocsp_response, now)?;
        self.found.set(cert_der_to_pem(ca.as_ref()));
        Ok(verified)
    }

    // Same signature checks WebPkiServerVerifier performs, with the same provider algorithms.
    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider.signature_verification_algorithms.supported_schemes()
    }
}

/// What a node presents and whom it trusts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsMaterial {
    /// Every CA the node trusts, PEM: the signing CA, and during a rotation the old one too.
    pub ca_bundle_pem: String,
    pub node: CertifiedKey,
    /// Certificates sent after the node's own and the trusted CAs: a server's older CAs and
    /// their cross-certificates, so that a node joining with a token that pins an older CA can
    /// still verify the chain.
    pub extra_chain_pem: String,
}

/// A node's TLS identity and trust, swappable while it serves: configs built from it read the
/// current certificate and roots at every handshake, so a renewed certificate or a rotated CA
/// applies to new connections at once and leaves running ones alone.
#[derive(Clone)]
pub struct LiveTls {
    current: Arc<RwLock<Arc<Loaded>>>,
    provider: Arc<CryptoProvider>,
}

struct Loaded {
    material: TlsMaterial,
    certified: Arc<rustls::sign::CertifiedKey>,
    server_verifier: Arc<WebPkiServerVerifier>,
    client_verifier: Arc<dyn ClientCertVerifier>,
}

impl fmt::Debug for LiveTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LiveTls").finish_non_exhaustive()
    }
}

impl LiveTls {
    pub fn new(material: TlsMaterial) -> Result<LiveTls, PkiError> {
        let provider = provider();
        let loaded = load(&provider, material)?;
        Ok(LiveTls {
            current: Arc::new(RwLock::new(Arc::new(loaded))),
            provider,
        })
    }

    fn get(&self) -> Arc<Loaded> {
        self.current.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// What is in use now.
    pub fn material(&self) -> TlsMaterial {
        self.get().material.clone()
    }

    /// Swaps in new material; checked whole first, so a bad one leaves the old in place.
    pub fn set(&self, material: TlsMaterial) -> Result<(), PkiError> {
        let loaded = Arc::new(load(&self.provider, material)?);
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = loaded;
        Ok(())
    }

    /// A server config (client certificates optional, verified against the current roots when
    /// presented), ALPN "h2".
    pub fn server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let live = Arc::new(Live(self.clone()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err("cannot select tls versions"))?
            .with_client_cert_verifier(live.clone())
            .with_cert_resolver(live);
        // No resumption: a resumed session would skip verifying the peer against the current
        // roots, and a certificate of a dropped CA must stop working at once.
        config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
        config.send_tls13_tickets = 0;
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }

    /// An HTTPS server config for the API: the node's current certificate (signed by the
    /// cluster CA, renewed in place), no client certificates, ALPN "h2" and "http/1.1".
    pub fn api_server_config(&self) -> Result<Arc<ServerConfig>, PkiError> {
        let live = Arc::new(Live(self.clone()));
        let mut config = ServerConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err("cannot select tls versions"))?
            .with_no_client_auth()
            .with_cert_resolver(live);
        config.alpn_protocols = vec![ALPN_H2.to_vec(), ALPN_HTTP1.to_vec()];
        Ok(Arc::new(config))
    }

    /// A client config that verifies servers as [`SERVER_NAME`] against the current roots and
    /// presents the current certificate, ALPN "h2".
    pub fn client_config(&self) -> Result<Arc<ClientConfig>, PkiError> {
        let live = Arc::new(Live(self.clone()));
        let mut config = ClientConfig::builder_with_provider(self.provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(tls_err("cannot select tls versions"))?
            .dangerous()
            .with_custom_certificate_verifier(live.clone())
            .with_client_cert_resolver(live);
        config.resumption = Resumption::disabled();
        config.alpn_protocols = vec![ALPN_H2.to_vec()];
        Ok(Arc::new(config))
    }
}

fn load(provider: &Arc<CryptoProvider>, material: TlsMaterial) -> Result<Loaded, PkiError> {
    let roots = ca_roots(&material.ca_bundle_pem)?;
    let mut chain = all_cert_ders(&material.node.cert_pem, "node certificate")?;
    let more = [&material.ca_bundle_pem, &material.extra_chain_pem];
    for pem in more.into_iter().filter(|p| !p.trim().is_empty()) {
        for der in all_cert_ders(pem, "ca certificate")? {
            if !chain.contains(&der) {
                chain.push(der);
            }
        }
    }
    let key = PrivateKeyDer::from_pem_slice(material.node.key_pem.as_bytes()).map_err(|e| PkiError::Pem {
        what: "node key",
        reason: e.to_string(),
    })?;
    let signing_key = provider
        .key_provider
        .load_private_key(key)
        .map_err(tls_err("cannot use node key"))?;
    let certified = rustls::sign::CertifiedKey::new(chain, signing_key);
    certified
        .keys_match()
        .map_err(tls_err("the node key does not belong to the node certificate"))?;
    let server_verifier = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| PkiError::Certificate(format!("cannot build server verifier: {e}")))?;
    let client_verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .allow_unauthenticated()
        .build()
        .map_err(|source| PkiError::Verifier {
            context: "cannot build client certificate verifier",
            source,
        })?;
    Ok(Loaded {
        material,
        certified: Arc::new(certified),
        server_verifier,
        client_verifier,
    })
}

/// The rustls hooks of a [`LiveTls`]: each reads the current material.
struct Live(LiveTls);

impl fmt::Debug for Live {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Live {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.get().certified.clone())
    }
}

impl ResolvesClientCert for Live {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        Some(self.0.get().certified.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl ServerCertVerifier for Live {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0
            .get()
            .server_verifier
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for Live {
    fn offer_client_auth(&self) -> bool {
        true
    }

    /// Optional, so that a joining node without a certificate reaches `Join`; every other call
    /// checks the peer's identity.
    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: the roots change under this verifier, and a node has one certificate anyway.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .get()
            .client_verifier
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.provider.signature_verification_algorithms.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        ca_fingerprint, generate_ca, generate_csr, identity_from_der, issue_node_cert, sign_node_csr, NodeIdentity,
        Role,
    };
    use rustls::{ClientConnection, Connection, ServerConnection};
    use std::io::{Read, Write};
    use std::net::{IpAddr, Ipv4Addr};

    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn ident(id: u64, role: Role) -> NodeIdentity {
        NodeIdentity {
            id,
            role,
            name: format!("node-{id}"),
        }
    }

    /// Moves everything `from` wants to send into `to`. Returns whether anything moved.
    fn pump(from: &mut Connection, to: &mut Connection) -> Result<bool, rustls::Error> {
        let mut buf = Vec::new();
        while from.wants_write() {
            from.write_tls(&mut buf).expect("write to vec");
        }
        let mut rd = &buf[..];
        while !rd.is_empty() {
            to.read_tls(&mut rd).expect("read from slice");
            to.process_new_packets()?;
        }
        Ok(!buf.is_empty())
    }

    /// Drives a full in-memory handshake and one round of application data both ways.
    /// Errors are prefixed with the side that raised them.
    fn connect(
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
    ) -> Result<(ClientConnection, ServerConnection), String> {
        connect_to(SERVER_NAME, client, server)
    }

    fn connect_to(
        dialled: &str,
        client: Arc<ClientConfig>,
        server: Arc<ServerConfig>,
    ) -> Result<(ClientConnection, ServerConnection), String> {
        let name = ServerName::try_from(dialled.to_string()).unwrap();
        let mut c = Connection::Client(ClientConnection::new(client, name).unwrap());
        let mut s = Connection::Server(ServerConnection::new(server).unwrap());
        let exchange = |c: &mut Connection, s: &mut Connection| -> Result<(), String> {
            loop {
                let a = pump(c, s).map_err(|e| format!("server: {e}"))?;
                let b = pump(s, c).map_err(|e| format!("client: {e}"))?;
                if !a && !b {
                    return Ok(());
                }
            }
        };
        exchange(&mut c, &mut s)?;
        if c.is_handshaking() || s.is_handshaking() {
            return Err("handshake stalled".to_string());
        }
        c.writer().write_all(b"ping").unwrap();
        s.writer().write_all(b"pong").unwrap();
        exchange(&mut c, &mut s)?;
        let mut got = [0u8; 4];
        s.reader()
            .read_exact(&mut got)
            .map_err(|e| format!("server read: {e}"))?;
        assert_eq!(&got, b"ping");
        c.reader()
            .read_exact(&mut got)
            .map_err(|e| format!("client read: {e}"))?;
        assert_eq!(&got, b"pong");
        match (c, s) {
            (Connection::Client(c), Connection::Server(s)) => Ok((c, s)),
            _ => unreachable!(),
        }
    }

    #[test]
    fn mutual_tls_with_node_certs() {
        let ca = generate_ca("c1").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[LOOPBACK]).unwrap();
        // The client goes the joining way: own key, CSR, signed by the CA.
        let (key_pem, csr_pem) = generate_csr("agent").unwrap();
        let cert_pem = sign_node_csr(&ca, &csr_pem, &ident(7, Role::Agent), &[]).unwrap();
        let agent = CertifiedKey { cert_pem, key_pem };

        let (c, s) = connect(
            client_config(&ca.cert_pem, Some(&agent)).unwrap(),
            server_config(&ca.cert_pem, &server).unwrap(),
        )
        .unwrap();
        assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(s.alpn_protocol(), Some(&b"h2"[..]));

        let peer = s.peer_certificates().expect("client presented a cert");
        assert_eq!(identity_from_der(peer[0].as_ref()).unwrap(), ident(7, Role::Agent));
        let peer = c.peer_certificates().expect("server presented a cert");
        assert_eq!(peer.len(), 2, "server sends node cert and ca");
        assert_eq!(identity_from_der(peer[0].as_ref()).unwrap(), ident(1, Role::Server));
    }

    #[test]
    fn client_cert_from_another_ca_is_refused() {
        let ca = generate_ca("c1").unwrap();
        let other = generate_ca("c2").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let intruder = issue_node_cert(&other, &ident(1, Role::Server), &[]).unwrap();
        let err = connect(
            client_config(&ca.cert_pem, Some(&intruder)).unwrap(),
            server_config(&ca.cert_pem, &server).unwrap(),
        )
        .unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn client_without_cert_is_accepted_but_unauthenticated() {
        let ca = generate_ca("c1").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let (_, s) = connect(
            client_config(&ca.cert_pem, None).unwrap(),
            server_config(&ca.cert_pem, &server).unwrap(),
        )
        .unwrap();
        assert!(s.peer_certificates().is_none());
    }

    #[test]
    fn client_refuses_server_from_another_ca_or_an_agent() {
        let ca = generate_ca("c1").unwrap();
        let other = generate_ca("c2").unwrap();
        let foreign = issue_node_cert(&other, &ident(1, Role::Server), &[]).unwrap();
        let err = connect(
            client_config(&ca.cert_pem, None).unwrap(),
            server_config(&other.cert_pem, &foreign).unwrap(),
        )
        .unwrap_err();
        assert!(err.starts_with("client:") && err.contains("UnknownIssuer"), "{err}");

        // An agent certificate is CA-signed but not named server.tepui.
        let agent = issue_node_cert(&ca, &ident(2, Role::Agent), &[]).unwrap();
        let err = connect(
            client_config(&ca.cert_pem, None).unwrap(),
            server_config(&ca.cert_pem, &agent).unwrap(),
        )
        .unwrap_err();
        assert!(
            err.starts_with("client:") && err.contains("not valid for name"),
            "{err}"
        );
    }

    #[test]
    fn pinned_client_learns_the_ca() {
        let ca = generate_ca("c1").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[LOOPBACK]).unwrap();
        let (config, pinned) = pinned_client_config(&ca_fingerprint(&ca.cert_pem).unwrap()).unwrap();
        assert_eq!(pinned.ca_pem(), None);
        let (c, _) = connect(config, server_config(&ca.cert_pem, &server).unwrap()).unwrap();
        assert_eq!(c.alpn_protocol(), Some(&b"h2"[..]));
        assert_eq!(pinned.ca_pem().as_deref(), Some(ca.cert_pem.as_str()));
        // The learned CA is good enough for a normal client afterwards.
        let learned = pinned.ca_pem().unwrap();
        connect(
            client_config(&learned, None).unwrap(),
            server_config(&ca.cert_pem, &server).unwrap(),
        )
        .unwrap();
    }

    #[test]
    fn pinned_client_refuses_wrong_pin() {
        let ca = generate_ca("c1").unwrap();
        let other = generate_ca("c2").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let pin = ca_fingerprint(&other.cert_pem).unwrap();
        let (config, pinned) = pinned_client_config(&pin).unwrap();
        let err = connect(config, server_config(&ca.cert_pem, &server).unwrap()).unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
        assert!(err.contains("hash mismatch"), "{err}");
        assert!(err.contains(&pin), "{err}");
        assert!(err.contains(&ca_fingerprint(&ca.cert_pem).unwrap()), "{err}");
        assert_eq!(pinned.ca_pem(), None);
    }

    #[test]
    fn pinned_client_still_checks_the_chain() {
        // A server that sends the right CA but a certificate signed by someone else must fail
        // even though the pin matches.
        let ca = generate_ca("c1").unwrap();
        let other = generate_ca("c2").unwrap();
        let forged = issue_node_cert(&other, &ident(1, Role::Server), &[]).unwrap();
        // server_config appends the given CA to the chain; use the genuine one.
        let pin = ca_fingerprint(&ca.cert_pem).unwrap();
        let (config, pinned) = pinned_client_config(&pin).unwrap();
        let server = ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(
                vec![
                    first_cert_der(&forged.cert_pem, "n").unwrap(),
                    first_cert_der(&ca.cert_pem, "ca").unwrap(),
                ],
                PrivateKeyDer::from_pem_slice(forged.key_pem.as_bytes()).unwrap(),
            )
            .unwrap();
        let err = connect(config, Arc::new(server)).unwrap_err();
        assert!(err.starts_with("client:"), "{err}");
        assert!(!err.contains("hash mismatch"), "{err}");
        assert_eq!(pinned.ca_pem(), None);
    }

    fn material(ca_bundle: &str, node: &CertifiedKey, extra: &str) -> TlsMaterial {
        TlsMaterial {
            ca_bundle_pem: ca_bundle.to_string(),
            node: node.clone(),
            extra_chain_pem: extra.to_string(),
        }
    }

    #[test]
    fn a_live_config_presents_the_certificate_swapped_in() {
        let ca = generate_ca("c1").unwrap();
        let first = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let second = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let live = LiveTls::new(material(&ca.cert_pem, &first, "")).unwrap();
        let server = live.server_config().unwrap();
        let client = client_config(&ca.cert_pem, None).unwrap();
        let leaf = |c: &ClientConnection| c.peer_certificates().unwrap()[0].clone();
        let (c, _) = connect(client.clone(), server.clone()).unwrap();
        assert_eq!(leaf(&c), first_cert_der(&first.cert_pem, "n").unwrap());
        live.set(material(&ca.cert_pem, &second, "")).unwrap();
        // The same config object: new handshakes pick up the new certificate.
        let (c, _) = connect(client, server).unwrap();
        assert_eq!(leaf(&c), first_cert_der(&second.cert_pem, "n").unwrap());
        // A certificate with someone else's key is refused and changes nothing.
        let mixed = CertifiedKey {
            cert_pem: first.cert_pem.clone(),
            key_pem: second.key_pem.clone(),
        };
        assert!(live.set(material(&ca.cert_pem, &mixed, "")).is_err());
        assert_eq!(live.material().node.cert_pem, second.cert_pem);
    }

    #[test]
    fn a_live_client_presents_its_certificate_and_trusts_what_it_is_told() {
        let ca = generate_ca("c1").unwrap();
        let other = generate_ca("c2").unwrap();
        let server = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let agent = issue_node_cert(&ca, &ident(9, Role::Agent), &[]).unwrap();
        let live = LiveTls::new(material(&ca.cert_pem, &agent, "")).unwrap();
        let client = live.client_config().unwrap();
        let (_, s) = connect(client.clone(), server_config(&ca.cert_pem, &server).unwrap()).unwrap();
        let peer = s.peer_certificates().expect("the client presented its certificate");
        assert_eq!(identity_from_der(peer[0].as_ref()).unwrap(), ident(9, Role::Agent));
        // Trusting only another CA, the same config refuses the server.
        live.set(material(
            &other.cert_pem,
            &issue_node_cert(&other, &ident(9, Role::Agent), &[]).unwrap(),
            "",
        ))
        .unwrap();
        let err = connect(client, server_config(&ca.cert_pem, &server).unwrap()).unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    }

    #[test]
    fn after_a_rotation_old_pins_verify_new_chains_and_the_overlap_trusts_both() {
        let old = generate_ca("c1").unwrap();
        let rotated = crate::rotate_ca(&old, "c1", 2).unwrap();
        let new = rotated.ca.clone();
        let bundle = format!("{}{}", new.cert_pem, old.cert_pem);
        let extra = format!("{}{}", rotated.cross_cert_pem, old.cert_pem);
        let server_new = issue_node_cert(&new, &ident(1, Role::Server), &[]).unwrap();
        let server = LiveTls::new(material(&bundle, &server_new, &extra)).unwrap();

        // A joining node with a token that pins the old CA verifies the new chain.
        let (pinned_config, pinned) = pinned_client_config(&ca_fingerprint(&old.cert_pem).unwrap()).unwrap();
        connect(pinned_config, server.server_config().unwrap()).unwrap();
        assert_eq!(pinned.ca_pem().as_deref(), Some(old.cert_pem.as_str()));
        // And the join call that follows, trusting only the old CA, does too.
        connect(
            client_config(&old.cert_pem, None).unwrap(),
            server.server_config().unwrap(),
        )
        .unwrap();
        // A pin of the new CA works as well.
        let (pinned_config, _) = pinned_client_config(&ca_fingerprint(&new.cert_pem).unwrap()).unwrap();
        connect(pinned_config, server.server_config().unwrap()).unwrap();

        // During the overlap a node that has not renewed yet is still let in...
        let agent_old = issue_node_cert(&old, &ident(5, Role::Agent), &[]).unwrap();
        let (_, s) = connect(
            client_config(&bundle, Some(&agent_old)).unwrap(),
            server.server_config().unwrap(),
        )
        .unwrap();
        assert!(s.peer_certificates().is_some());
        // ...and once the old CA is dropped, it is not.
        server.set(material(&new.cert_pem, &server_new, &extra)).unwrap();
        let err = connect(
            client_config(&bundle, Some(&agent_old)).unwrap(),
            server.server_config().unwrap(),
        )
        .unwrap_err();
        assert!(err.starts_with("server:"), "{err}");
        assert!(crate::signed_by_any(&server_new.cert_pem, &bundle));
        assert!(!crate::signed_by_any(&agent_old.cert_pem, &new.cert_pem));
    }

    #[test]
    fn bad_inputs_are_reported() {
        assert!(pinned_client_config("abc").is_err());
        let ca = generate_ca("c1").unwrap();
        let node = issue_node_cert(&ca, &ident(1, Role::Server), &[]).unwrap();
        let err = server_config("nope", &node).unwrap_err();
        assert!(err.to_string().contains("ca certificate"), "{err}");
        let other = issue_node_cert(&ca, &ident(2, Role::Server), &[]).unwrap();
        let mixed = CertifiedKey {
            cert_pem: node.cert_pem,
            key_pem: other.key_pem,
        };
        assert!(server_config(&ca.cert_pem, &mixed).is_err());
        assert!(client_config(&ca.cert_pem, Some(&mixed)).is_err());
    }

    #[test]
    fn api_https_trusts_the_cluster_ca_by_pin_or_bundle_and_only_servers() {
        let ca = generate_ca("c1").unwrap();
        let server = LiveTls::new(material(
            &ca.cert_pem,
            &issue_node_cert(&ca, &ident(1, Role::Server), &[LOOPBACK]).unwrap(),
            "",
        ))
        .unwrap();
        let pin = ClusterTrust::Pin(ca_fingerprint(&ca.cert_pem).unwrap());
        let bundle = ClusterTrust::Bundle(ca.cert_pem.clone());
        for trust in [&pin, &bundle] {
            // Whatever the CLI dialled (an IP the certificate may not name, a DNS alias).
            for dialled in ["127.0.0.1", "api.example.test"] {
                let (c, _) = connect_to(
                    dialled,
                    Arc::new(api_client_config(trust).unwrap()),
                    server.api_server_config().unwrap(),
                )
                .unwrap_or_else(|e| panic!("{trust:?} {dialled}: {e}"));
                assert_eq!(c.alpn_protocol(), Some(&b"http/1.1"[..]));
            }
        }

        // An agent's certificate from the same CA does not pass for a server's.
        let agent = LiveTls::new(material(
            &ca.cert_pem,
            &issue_node_cert(&ca, &ident(2, Role::Agent), &[LOOPBACK]).unwrap(),
            "",
        ))
        .unwrap();
        for trust in [&pin, &bundle] {
            let err = connect_to(
                "127.0.0.1",
                Arc::new(api_client_config(trust).unwrap()),
                agent.api_server_config().unwrap(),
            )
            .unwrap_err();
            assert!(err.starts_with("client:"), "{err}");
        }

        // Another cluster's server: refused, and a pin mismatch names both hashes.
        let other = generate_ca("c2").unwrap();
        let stranger = LiveTls::new(material(
            &other.cert_pem,
            &issue_node_cert(&other, &ident(1, Role::Server), &[LOOPBACK]).unwrap(),
            "",
        ))
        .unwrap();
        let err = connect_to(
            "127.0.0.1",
            Arc::new(api_client_config(&pin).unwrap()),
            stranger.api_server_config().unwrap(),
        )
        .unwrap_err();
        assert!(err.contains("hash mismatch"), "{err}");
        assert!(connect_to(
            "127.0.0.1",
            Arc::new(api_client_config(&bundle).unwrap()),
            stranger.api_server_config().unwrap()
        )
        .is_err());

        assert!(api_client_config(&ClusterTrust::Pin("abc".into())).is_err());
    }

    #[test]
    fn api_https_with_an_operator_certificate() {
        let ca = generate_ca("corp").unwrap();
        let cert = issue_node_cert(&ca, &ident(1, Role::Server), &[LOOPBACK]).unwrap();
        let config = operator_api_server_config(&format!("{}{}", cert.cert_pem, ca.cert_pem), &cert.key_pem).unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        let mut roots = RootCertStore::empty();
        roots.add(first_cert_der(&ca.cert_pem, "ca").unwrap()).unwrap();
        let client = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        connect_to("localhost", Arc::new(client), config).unwrap();

        let other = generate_ca("other").unwrap();
        let err = operator_api_server_config(&cert.cert_pem, &other.key_pem).unwrap_err();
        assert!(err.to_string().contains("API certificate and key"), "{err}");
    }
}

//! The cluster's PKI and join tokens.
//!
//! A bootstrap server creates a cluster CA ([`generate_ca`]). A joining node makes its own key
//! and CSR ([`generate_csr`]) so that its private key never leaves it; the leader signs the CSR
//! ([`sign_node_csr`]) into a node certificate whose subject carries the node's identity. All
//! node-to-node traffic is mutual TLS against that CA ([`tls`]). A join token ([`token`]) pins
//! the CA by SHA-256, so a joining node can verify the cluster before it sends anything.
//!
//! This crate only turns keys, certificates and tokens into each other. It does not know where
//! any of them are stored, which tokens are valid, which node ids are taken, or whether a node
//! has been removed from the cluster: those decisions belong to the callers (servers check every
//! call's certificate identity against the replicated node list, which is how a removed node is
//! refused at once; there are no revocation lists). When to renew a certificate is decided here,
//! purely ([`renewal_time`]); a CA rotation makes a new CA cross-signed by the old one
//! ([`rotate_ca`]), so chains from the new CA still verify against a pin of the old.
//!
//! All crypto goes through `ring`, passed explicitly, so nothing here depends on a
//! process-wide default rustls provider.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PublicKeyData, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateSigningRequestDer};
use sha2::{Digest, Sha256};
use x509_parser::prelude::FromDer;

pub use tepui_common::Role;

pub mod tls;
pub mod token;

/// DNS name every server certificate carries; clients verify servers against it.
pub(crate) const SERVER_DNS_NAME: &str = "server.tepui";
/// DNS name every agent certificate carries.
const AGENT_DNS_NAME: &str = "agent.tepui";

const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 3600);
/// How long a node certificate lasts unless the signer says otherwise; nodes renew theirs two
/// thirds of the way through ([`renewal_time`]).
pub const NODE_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Certificates start being valid a little in the past so that a node whose clock is slightly
/// behind the signer's does not reject a certificate it was just handed: an hour, or a tenth of
/// a short lifetime.
const BACKDATE: Duration = Duration::from_secs(3600);
/// Prefix of the subject CN of node certificates: "tepui:<role>:<id>:<name>".
const IDENTITY_PREFIX: &str = "tepui";

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A join token that does not parse; the message says what is wrong with it.
    #[error("{0}")]
    Token(String),
    #[error("cannot read {what} pem: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("{context}: {source}")]
    Rcgen {
        context: &'static str,
        source: rcgen::Error,
    },
    #[error("invalid certificate signing request: {0}")]
    Csr(String),
    #[error("invalid certificate: {0}")]
    Certificate(String),
    #[error("certificate does not carry a tepui node identity: {0}")]
    Identity(String),
    #[error("the ca key does not belong to the ca certificate")]
    CaKeyMismatch,
    #[error("{context}: {source}")]
    Tls {
        context: &'static str,
        source: rustls::Error,
    },
    #[error("{context}: {source}")]
    Verifier {
        context: &'static str,
        source: rustls::server::VerifierBuilderError,
    },
    #[error("system clock is out of range: {0}")]
    Clock(String),
}

fn rcgen_err(context: &'static str) -> impl FnOnce(rcgen::Error) -> PkiError {
    move |source| PkiError::Rcgen { context, source }
}

/// A certificate together with its private key, both PEM encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertifiedKey {
    pub cert_pem: String,
    pub key_pem: String,
}

/// The authenticated identity carried in a node certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeIdentity {
    pub id: u64,
    pub role: Role,
    pub name: String,
}

impl NodeIdentity {
    /// The subject common name that encodes this identity.
    fn common_name(&self) -> String {
        format!("{IDENTITY_PREFIX}:{}:{}:{}", self.role.as_str(), self.id, self.name)
    }

    fn from_common_name(cn: &str) -> Result<NodeIdentity, PkiError> {
        // The name comes last and may itself contain ':', so split at most four ways.
        let mut parts = cn.splitn(4, ':');
        let (Some(prefix), Some(role), Some(id), Some(name)) = (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(PkiError::Identity(format!(
                "common name {cn:?} is not of the form tepui:<role>:<id>:<name>"
            )));
        };
        if prefix != IDENTITY_PREFIX {
            return Err(PkiError::Identity(format!(
                "common name {cn:?} does not start with {IDENTITY_PREFIX}:"
            )));
        }
        let role = Role::parse(role)
            .ok_or_else(|| PkiError::Identity(format!("unknown role {role:?} in common name {cn:?}")))?;
        let id = id
            .parse::<u64>()
            .map_err(|_| PkiError::Identity(format!("node id {id:?} in common name {cn:?} is not a number")))?;
        Ok(NodeIdentity {
            id,
            role,
            name: name.to_string(),
        })
    }
}

/// Lowercase hex SHA-256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Creates the self-signed cluster CA (ECDSA P-256, valid for 10 years).
pub fn generate_ca(cluster_id: &str) -> Result<CertifiedKey, PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("cannot generate ca key"))?;
    let params = ca_params(
        &format!("{CLUSTER_CA_PREFIX}{cluster_id}"),
        BasicConstraints::Constrained(0),
    )?;
    let cert = params
        .self_signed(&key)
        .map_err(rcgen_err("cannot self-sign the ca certificate"))?;
    Ok(CertifiedKey {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Whether the first certificate in `pem` is a tepui cluster CA (by the subject it is made
/// with), as opposed to an operator's or a public CA.
pub fn is_cluster_ca(pem: &str) -> bool {
    let Ok(der) = first_cert_der(pem, "ca certificate") else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let cn = cert.subject().iter_common_name().next().and_then(|cn| cn.as_str().ok());
    cert.is_ca() && cn.is_some_and(|cn| cn.starts_with(CLUSTER_CA_PREFIX))
}

const CLUSTER_CA_PREFIX: &str = "tepui cluster CA ";

fn ca_params(common_name: &str, constraints: BasicConstraints) -> Result<CertificateParams, PkiError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, common_name);
    // Path length 0: a CA only ever signs node certificates, never other CAs.
    params.is_ca = IsCa::Ca(constraints);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    set_validity(&mut params, CA_VALIDITY)?;
    params.serial_number = Some(random_serial());
    Ok(params)
}

/// What a CA rotation makes: the next CA, and a cross-certificate of it (same subject and key)
/// signed by the current one.
#[derive(Clone, Debug)]
pub struct RotatedCa {
    pub ca: CertifiedKey,
    pub cross_cert_pem: String,
}

/// Makes the CA that replaces `current` (generation `generation`, which goes into its name so
/// that the two subjects differ), and cross-signs it with `current`. A server that sends the
/// cross-certificate and the old CA after its own chain lets a node that pins the old CA (an
/// older join token) verify a certificate of the new one.
pub fn rotate_ca(current: &CertifiedKey, cluster_id: &str, generation: u64) -> Result<RotatedCa, PkiError> {
    let name = format!("tepui cluster CA {cluster_id} #{generation}");
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("cannot generate ca key"))?;
    let cert = ca_params(&name, BasicConstraints::Constrained(0))?
        .self_signed(&key)
        .map_err(rcgen_err("cannot self-sign the ca certificate"))?;
    // The cross-certificate sits between the old CA and node certificates, and may itself sit
    // under the cross-certificate of a later rotation: no path length limit.
    let issuer = ca_issuer(current)?;
    let cross = ca_params(&name, BasicConstraints::Unconstrained)?
        .signed_by(&key, &issuer)
        .map_err(rcgen_err("cannot cross-sign the new ca"))?;
    Ok(RotatedCa {
        ca: CertifiedKey {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        },
        cross_cert_pem: cross.pem(),
    })
}

/// When a certificate valid from `not_before` to `not_after` is due for renewal: two thirds into
/// its life, or at once if the CA that signs now did not sign it (a rotation is under way).
pub fn renewal_time(not_before: SystemTime, not_after: SystemTime, signed_by_current_ca: bool) -> SystemTime {
    if !signed_by_current_ca {
        return SystemTime::UNIX_EPOCH;
    }
    let life = not_after.duration_since(not_before).unwrap_or_default();
    not_before + life * 2 / 3
}

/// The validity period of the (first) certificate in `cert_pem`.
pub fn cert_validity(cert_pem: &str) -> Result<(SystemTime, SystemTime), PkiError> {
    let der = first_cert_der(cert_pem, "node certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| PkiError::Certificate(format!("cannot parse der: {e}")))?;
    let at = |t: i64| SystemTime::UNIX_EPOCH + Duration::from_secs(t.max(0) as u64);
    Ok((
        at(cert.validity().not_before.timestamp()),
        at(cert.validity().not_after.timestamp()),
    ))
}

/// The IP addresses among the (first) certificate's subject alternative names.
pub fn cert_ips(cert_pem: &str) -> Result<Vec<IpAddr>, PkiError> {
    let der = first_cert_der(cert_pem, "node certificate")?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
        .map_err(|e| PkiError::Certificate(format!("cannot parse der: {e}")))?;
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Ok(vec![]);
    };
    Ok(san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::IPAddress(b) => match b.len() {
                4 => Some(IpAddr::from(<[u8; 4]>::try_from(*b).ok()?)),
                16 => Some(IpAddr::from(<[u8; 16]>::try_from(*b).ok()?)),
                _ => None,
            },
            _ => None,
        })
        .collect())
}

/// Whether one of the CAs in `ca_pems` signed the (first) certificate in `cert_pem`.
pub fn signed_by_any(cert_pem: &str, ca_pems: &str) -> bool {
    let Ok(der) = first_cert_der(cert_pem, "certificate") else {
        return false;
    };
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return false;
    };
    let Ok(cas) = all_cert_ders(ca_pems, "ca certificate") else {
        return false;
    };
    cas.iter().any(|ca| {
        x509_parser::parse_x509_certificate(ca.as_ref())
            .is_ok_and(|(_, ca)| cert.verify_signature(Some(ca.public_key())).is_ok())
    })
}

/// The CA as rcgen's issuer, after checking that its key belongs to its certificate: signing
/// with another key would make certificates nobody can verify.
fn ca_issuer(ca: &CertifiedKey) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let ca_key = KeyPair::from_pem(&ca.key_pem).map_err(rcgen_err("cannot read ca key"))?;
    let ca_der = first_cert_der(&ca.cert_pem, "ca certificate")?;
    let (_, ca_x509) = x509_parser::parse_x509_certificate(ca_der.as_ref())
        .map_err(|e| PkiError::Certificate(format!("cannot parse ca certificate: {e}")))?;
    if ca_x509.public_key().raw != ca_key.subject_public_key_info().as_slice() {
        return Err(PkiError::CaKeyMismatch);
    }
    Issuer::from_ca_cert_der(&ca_der, ca_key).map_err(rcgen_err("cannot use ca certificate as issuer"))
}

/// Lowercase hex SHA-256 of the DER of the (first) certificate in `ca_cert_pem`; this is what
/// join tokens pin.
pub fn ca_fingerprint(ca_cert_pem: &str) -> Result<String, PkiError> {
    let der = first_cert_der(ca_cert_pem, "ca certificate")?;
    Ok(sha256_hex(&der))
}

/// Makes a fresh ECDSA P-256 key and a CSR for it. Returns `(key_pem, csr_pem)`.
///
/// `name` only goes into the CSR's subject for the benefit of humans reading it; the signer
/// decides the real identity.
pub fn generate_csr(name: &str) -> Result<(String, String), PkiError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("cannot generate node key"))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, name);
    let csr = params
        .serialize_request(&key)
        .map_err(rcgen_err("cannot create certificate signing request"))?;
    let csr_pem = csr
        .pem()
        .map_err(rcgen_err("cannot encode certificate signing request"))?;
    Ok((key.serialize_pem(), csr_pem))
}

/// Signs a CSR as a node certificate for `identity`, valid for one year.
///
/// The subject CN encodes the identity ("tepui:<role>:<id>:<name>") so peers can read it back
/// without any other lookup. SANs: DNS "server.tepui" for servers or "agent.tepui" for agents,
/// plus DNS "localhost" and every IP in `ips`. EKU is both serverAuth and clientAuth. Only the
/// CSR's public key is used; whatever subject, SANs or extensions the CSR asks for are ignored.
pub fn sign_node_csr(
    ca: &CertifiedKey,
    csr_pem: &str,
    identity: &NodeIdentity,
    ips: &[IpAddr],
) -> Result<String, PkiError> {
    sign_node_csr_for(ca, csr_pem, identity, ips, NODE_VALIDITY)
}

/// [`sign_node_csr`] with a lifetime of the signer's choosing.
pub fn sign_node_csr_for(
    ca: &CertifiedKey,
    csr_pem: &str,
    identity: &NodeIdentity,
    ips: &[IpAddr],
    validity: Duration,
) -> Result<String, PkiError> {
    let public_key = csr_public_key(csr_pem)?;
    sign_node_key(ca, &public_key, identity, ips, validity)
}

/// Convenience for the bootstrap server: key, CSR and signature in one go.
pub fn issue_node_cert(ca: &CertifiedKey, identity: &NodeIdentity, ips: &[IpAddr]) -> Result<CertifiedKey, PkiError> {
    issue_node_cert_for(ca, identity, ips, NODE_VALIDITY)
}

/// [`issue_node_cert`] with a lifetime of the signer's choosing.
pub fn issue_node_cert_for(
    ca: &CertifiedKey,
    identity: &NodeIdentity,
    ips: &[IpAddr],
    validity: Duration,
) -> Result<CertifiedKey, PkiError> {
    let (key_pem, csr_pem) = generate_csr(&identity.name)?;
    let cert_pem = sign_node_csr_for(ca, &csr_pem, identity, ips, validity)?;
    Ok(CertifiedKey { cert_pem, key_pem })
}

/// Reads the node identity from a DER certificate (as rustls hands out peer certificates).
///
/// This does not verify the certificate: call it only on certificates the TLS layer has
/// already checked against the cluster CA.
pub fn identity_from_der(cert_der: &[u8]) -> Result<NodeIdentity, PkiError> {
    let (_, cert) = x509_parser::parse_x509_certificate(cert_der)
        .map_err(|e| PkiError::Certificate(format!("cannot parse der: {e}")))?;
    let cn = cert
        .subject()
        .iter_common_name()
        .next()
        .ok_or_else(|| PkiError::Identity("subject has no common name".to_string()))?;
    let cn = cn
        .as_str()
        .map_err(|e| PkiError::Identity(format!("common name is not a string: {e}")))?;
    NodeIdentity::from_common_name(cn)
}

/// Reads the node identity from the (first) certificate in `cert_pem`. Does not verify it.
pub fn identity_from_pem(cert_pem: &str) -> Result<NodeIdentity, PkiError> {
    let der = first_cert_der(cert_pem, "node certificate")?;
    identity_from_der(&der)
}

/// First certificate in a PEM string.
pub(crate) fn first_cert_der(pem: &str, what: &'static str) -> Result<CertificateDer<'static>, PkiError> {
    CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| PkiError::Pem {
        what,
        reason: e.to_string(),
    })
}

/// Every certificate in a PEM string, in order; at least one.
pub(crate) fn all_cert_ders(pem: &str, what: &'static str) -> Result<Vec<CertificateDer<'static>>, PkiError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PkiError::Pem {
            what,
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(PkiError::Pem {
            what,
            reason: "no certificate found".to_string(),
        });
    }
    Ok(certs)
}

/// PEM encoding of one DER certificate, in the same layout rcgen writes (64-column lines, LF).
pub(crate) fn cert_der_to_pem(der: &[u8]) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::with_capacity(b64.len() + b64.len() / 64 + 60);
    out.push_str("-----BEGIN CERTIFICATE-----\n");
    // base64 output is ASCII, so splitting at byte offsets is safe.
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// A public key taken from a CSR, in the form rcgen needs to put it into a certificate.
struct CsrPublicKey {
    raw: Vec<u8>,
    alg: &'static SignatureAlgorithm,
}

impl PublicKeyData for CsrPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.raw
    }

    fn algorithm(&self) -> &'static SignatureAlgorithm {
        self.alg
    }
}

/// Parses a CSR, checks it is signed by its own key (proof the requester holds the key) and
/// extracts only the public key. Done by hand rather than with rcgen's CSR parser because that
/// one rejects CSRs carrying extensions it does not know, and we ignore them anyway.
fn csr_public_key(csr_pem: &str) -> Result<CsrPublicKey, PkiError> {
    use x509_parser::certification_request::X509CertificationRequest;
    use x509_parser::oid_registry::{OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_SIG_ED25519};

    let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes())
        .map_err(|e| PkiError::Csr(format!("cannot read pem: {e}")))?;
    let (rest, csr) = X509CertificationRequest::from_der(der.as_ref())
        .map_err(|e| PkiError::Csr(format!("cannot parse der: {e}")))?;
    if !rest.is_empty() {
        return Err(PkiError::Csr(format!(
            "{} trailing bytes after the request",
            rest.len()
        )));
    }
    csr.verify_signature()
        .map_err(|e| PkiError::Csr(format!("signature does not verify: {e}")))?;

    let spki = &csr.certification_request_info.subject_pki;
    let key_oid = &spki.algorithm.algorithm;
    let alg = if *key_oid == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or_else(|| PkiError::Csr("ec key without a named curve".to_string()))?;
        if curve == OID_EC_P256 {
            &rcgen::PKCS_ECDSA_P256_SHA256
        } else if curve == OID_NIST_EC_P384 {
            &rcgen::PKCS_ECDSA_P384_SHA384
        } else {
            return Err(PkiError::Csr(format!("unsupported ec curve {curve}")));
        }
    } else if *key_oid == OID_SIG_ED25519 {
        &rcgen::PKCS_ED25519
    } else {
        return Err(PkiError::Csr(format!(
            "unsupported key algorithm {key_oid} (use ecdsa p-256)"
        )));
    };
    Ok(CsrPublicKey {
        raw: spki.subject_public_key.data.to_vec(),
        alg,
    })
}

fn sign_node_key(
    ca: &CertifiedKey,
    public_key: &impl PublicKeyData,
    identity: &NodeIdentity,
    ips: &[IpAddr],
    validity: Duration,
) -> Result<String, PkiError> {
    let issuer = ca_issuer(ca)?;

    let role_name = match identity.role {
        Role::Server => SERVER_DNS_NAME,
        Role::Agent => AGENT_DNS_NAME,
    };
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::CommonName, identity.common_name());
    params.subject_alt_names = vec![dns_san(role_name)?, dns_san("localhost")?];
    params
        .subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth, ExtendedKeyUsagePurpose::ClientAuth];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, validity)?;
    params.serial_number = Some(random_serial());
    let cert = params
        .signed_by(public_key, &issuer)
        .map_err(rcgen_err("cannot sign node certificate"))?;
    Ok(cert.pem())
}

fn dns_san(name: &str) -> Result<SanType, PkiError> {
    let name = name
        .try_into()
        .map_err(rcgen_err("invalid dns name for subject alternative name"))?;
    Ok(SanType::DnsName(name))
}

fn set_validity(params: &mut CertificateParams, validity: Duration) -> Result<(), PkiError> {
    let now = SystemTime::now();
    let not_before = now
        .checked_sub(BACKDATE.min(validity / 10))
        .ok_or_else(|| PkiError::Clock("now minus one hour underflows".to_string()))?;
    let not_after = now
        .checked_add(validity)
        .ok_or_else(|| PkiError::Clock("certificate expiry overflows".to_string()))?;
    params.not_before = not_before.into();
    params.not_after = not_after.into();
    Ok(())
}

/// A random positive 128-bit serial, so that re-signing the same key never repeats a serial
/// (rcgen's default derives it from the public key).
fn random_serial() -> SerialNumber {
    let mut bytes: [u8; 16] = rand::random();
    // Keep the DER INTEGER positive and exactly 16 bytes long.
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn server_identity() -> NodeIdentity {
        NodeIdentity {
            id: 3,
            role: Role::Server,
            name: "node-a:with-colon".to_string(),
        }
    }

    #[test]
    fn ca_is_a_ca_and_fingerprint_matches_der() {
        let ca = generate_ca("c1").unwrap();
        let der = first_cert_der(&ca.cert_pem, "ca").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert!(x.is_ca());
        let cn = x.subject().iter_common_name().next().unwrap();
        assert_eq!(cn.as_str().unwrap(), "tepui cluster CA c1");
        let fp = ca_fingerprint(&ca.cert_pem).unwrap();
        assert_eq!(fp.len(), 64);
        assert_eq!(fp, sha256_hex(der.as_ref()));
        assert!(fp.chars().all(|c| c.is_ascii_digit() || ('a'..='f').contains(&c)));
        // Our own PEM encoder must agree byte for byte with rcgen's.
        assert_eq!(cert_der_to_pem(der.as_ref()), ca.cert_pem);
    }

    #[test]
    fn signed_csr_carries_identity_and_sans() {
        let ca = generate_ca("c1").unwrap();
        let (key_pem, csr_pem) = generate_csr("whatever-the-node-asks").unwrap();
        assert!(key_pem.contains("PRIVATE KEY"));
        let ips = [IpAddr::V4(Ipv4Addr::new(10, 0, 0, 7)), "::1".parse().unwrap()];
        let cert_pem = sign_node_csr(&ca, &csr_pem, &server_identity(), &ips).unwrap();
        assert_eq!(identity_from_pem(&cert_pem).unwrap(), server_identity());

        let der = first_cert_der(&cert_pem, "node").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        assert!(!x.is_ca());
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("server.tepui")), "{names:?}");
        assert!(names.iter().any(|n| n.contains("localhost")), "{names:?}");
        let ip_sans: Vec<&[u8]> = san
            .general_names
            .iter()
            .filter_map(|n| match n {
                x509_parser::extensions::GeneralName::IPAddress(b) => Some(*b),
                _ => None,
            })
            .collect();
        assert_eq!(ip_sans, vec![&[10, 0, 0, 7][..], &Ipv6Addr::LOCALHOST.octets()[..]]);
        let eku = x.extended_key_usage().unwrap().unwrap().value;
        assert!(eku.server_auth && eku.client_auth);
        let days = (x.validity().not_after.timestamp() - x.validity().not_before.timestamp()) / 86400;
        assert_eq!(days, 365);
        // The certificate must certify the key from the CSR, not some other key.
        let key = KeyPair::from_pem(&key_pem).unwrap();
        assert_eq!(x.public_key().raw, key.subject_public_key_info().as_slice());
        // And it must be signed by the CA.
        let ca_der = first_cert_der(&ca.cert_pem, "ca").unwrap();
        let (_, ca_x) = x509_parser::parse_x509_certificate(ca_der.as_ref()).unwrap();
        x.verify_signature(Some(ca_x.public_key())).unwrap();
    }

    #[test]
    fn agent_cert_is_named_agent() {
        let ca = generate_ca("c1").unwrap();
        let id = NodeIdentity {
            id: u64::MAX,
            role: Role::Agent,
            name: "agent-1".to_string(),
        };
        let node = issue_node_cert(&ca, &id, &[]).unwrap();
        assert_eq!(identity_from_pem(&node.cert_pem).unwrap(), id);
        let der = first_cert_der(&node.cert_pem, "node").unwrap();
        let (_, x) = x509_parser::parse_x509_certificate(der.as_ref()).unwrap();
        let san = x.subject_alternative_name().unwrap().unwrap().value;
        let names: Vec<String> = san.general_names.iter().map(|n| n.to_string()).collect();
        assert!(names.iter().any(|n| n.contains("agent.tepui")), "{names:?}");
        assert!(!names.iter().any(|n| n.contains("server.tepui")), "{names:?}");
    }

    #[test]
    fn garbage_csr_is_refused() {
        let ca = generate_ca("c1").unwrap();
        let err = sign_node_csr(&ca, "not a csr", &server_identity(), &[]).unwrap_err();
        assert!(
            err.to_string().starts_with("invalid certificate signing request"),
            "{err}"
        );

        let junk = "-----BEGIN CERTIFICATE REQUEST-----\naGVsbG8gd29ybGQ=\n-----END CERTIFICATE REQUEST-----\n";
        let err = sign_node_csr(&ca, junk, &server_identity(), &[]).unwrap_err();
        assert!(err.to_string().contains("cannot parse der"), "{err}");

        // A CSR whose signature was tampered with proves nothing about key possession.
        let (_, csr_pem) = generate_csr("n").unwrap();
        let der = CertificateSigningRequestDer::from_pem_slice(csr_pem.as_bytes()).unwrap();
        let mut bytes = der.as_ref().to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        let tampered = {
            use base64::Engine as _;
            format!(
                "-----BEGIN CERTIFICATE REQUEST-----\n{}\n-----END CERTIFICATE REQUEST-----\n",
                base64::engine::general_purpose::STANDARD.encode(&bytes)
            )
        };
        let err = sign_node_csr(&ca, &tampered, &server_identity(), &[]).unwrap_err();
        assert!(err.to_string().contains("signature"), "{err}");
    }

    #[test]
    fn mismatched_ca_key_is_refused() {
        let ca1 = generate_ca("c1").unwrap();
        let ca2 = generate_ca("c2").unwrap();
        let mixed = CertifiedKey {
            cert_pem: ca1.cert_pem,
            key_pem: ca2.key_pem,
        };
        let err = issue_node_cert(&mixed, &server_identity(), &[]).unwrap_err();
        assert!(matches!(err, PkiError::CaKeyMismatch), "{err}");
    }

    #[test]
    fn renewal_comes_two_thirds_in_or_at_once_after_a_rotation() {
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        assert_eq!(renewal_time(t(1000), t(1300), true), t(1200));
        assert_eq!(renewal_time(t(1000), t(1300), false), SystemTime::UNIX_EPOCH);
        // A certificate whose end is before its start is due at once.
        assert_eq!(renewal_time(t(1000), t(900), true), t(1000));
    }

    #[test]
    fn a_short_lifetime_is_backdated_a_little_and_keeps_its_ips() {
        let ca = generate_ca("c1").unwrap();
        let ips = [IpAddr::V4(Ipv4Addr::new(127, 0, 43, 1))];
        let node = issue_node_cert_for(&ca, &server_identity(), &ips, Duration::from_secs(30)).unwrap();
        let (from, to) = cert_validity(&node.cert_pem).unwrap();
        assert_eq!(to.duration_since(from).unwrap().as_secs(), 33);
        assert_eq!(cert_ips(&node.cert_pem).unwrap(), ips.to_vec());
        assert!(signed_by_any(&node.cert_pem, &ca.cert_pem));
        let other = generate_ca("c2").unwrap();
        assert!(!signed_by_any(&node.cert_pem, &other.cert_pem));
        assert!(signed_by_any(
            &node.cert_pem,
            &format!("{}{}", other.cert_pem, ca.cert_pem)
        ));
    }

    #[test]
    fn identity_parsing_rejects_foreign_names() {
        let ca = generate_ca("c1").unwrap();
        let err = identity_from_pem(&ca.cert_pem).unwrap_err();
        assert!(err.to_string().contains("tepui node identity"), "{err}");
        for cn in [
            "tepui:server:x:n",
            "tepui:boss:1:n",
            "other:server:1:n",
            "tepui:server:1",
        ] {
            assert!(NodeIdentity::from_common_name(cn).is_err(), "{cn}");
        }
        assert!(identity_from_der(b"junk").is_err());
    }
}

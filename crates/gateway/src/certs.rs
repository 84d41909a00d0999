//! Certificate bundles as the gateway keeps them: one PEM text with the chain (leaf first) and
//! the private key, as HAProxy's combined `.pem` files are. Checked when stored (the API) or
//! given (`--gateway-cert`), with the same rules the table's build applies, so a broken one is
//! refused up front instead of found by a client's handshake.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;

use crate::build::{self, BundleError as Why};
use crate::Certificate;

/// Why a bundle cannot be used: the part it is about (`cert` or `key`) and what is wrong.
pub type BundleError = (&'static str, String);

fn field(why: &Why) -> &'static str {
    match why {
        Why::NoKey | Why::SeveralKeys(_) | Why::UnusableKey(_) | Why::KeyMismatch => "key",
        _ => "cert",
    }
}

/// A bundle from `source` (a file's path, a secret's), ready to serve: its key is the leaf's.
pub fn read_bundle(source: &str, pem: &[u8]) -> Result<Certificate, BundleError> {
    build::certificate(source, Ok(pem.to_vec())).map_err(|why| (field(&why), why.to_string()))
}

/// Whether certificate name `pattern` (`shop.example.com`, `*.example.com`) covers `host`.
pub fn name_matches(pattern: &str, host: &str) -> bool {
    match pattern.strip_prefix("*.") {
        Some(suffix) => host
            .split_once('.')
            .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
        None => pattern == host,
    }
}

/// Checks a bundle to be stored for `host`: it reads as [`read_bundle`] does and its leaf
/// names the host. The names it will be chosen for.
pub fn check_bundle(host: &str, pem: &[u8]) -> Result<Vec<String>, BundleError> {
    let cert = read_bundle(&format!("secret:gateway/certs/{host}"), pem)?;
    let leaf = CertificateDer::pem_slice_iter(cert.cert_pem.as_bytes())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| ("cert", "no certificate in it".to_string()))?;
    let names = build::leaf_dns_names(&leaf).map_err(|why| (field(&why), why.to_string()))?;
    if !names.iter().any(|n| n == host || name_matches(n, host)) {
        let named = if names.is_empty() {
            "no DNS names".to_string()
        } else {
            names.join(", ")
        };
        return Err(("cert", format!("the certificate is not for {host:?}: it names {named}")));
    }
    Ok(cert.hosts)
}

/// The leaf's end of validity, if the PEM holds a certificate that parses.
pub fn not_after(cert_pem: &str) -> Option<String> {
    use x509_parser::prelude::{FromDer, X509Certificate};
    let leaf = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).next()?.ok()?;
    let (_, cert) = X509Certificate::from_der(leaf.as_ref()).ok()?;
    cert.validity().not_after.to_rfc2822().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn self_signed(names: &[&str]) -> (String, String) {
        let key = rcgen::KeyPair::generate().unwrap();
        let params = rcgen::CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
        let cert = params.self_signed(&key).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    #[test]
    fn a_bundle_for_its_host_is_accepted_with_its_names() {
        let (cert, key) = self_signed(&["shop.example.com", "www.shop.example.com"]);
        let hosts = check_bundle("shop.example.com", format!("{cert}{key}").as_bytes()).unwrap();
        assert_eq!(hosts, vec!["shop.example.com", "www.shop.example.com"]);
        assert!(not_after(&cert).is_some());
    }

    #[test]
    fn wildcards_cover_one_label() {
        assert!(name_matches("*.example.com", "a.example.com"));
        assert!(!name_matches("*.example.com", "a.b.example.com"));
        assert!(!name_matches("*.example.com", "example.com"));
        let (cert, key) = self_signed(&["*.example.com"]);
        let pem = format!("{cert}{key}");
        assert!(check_bundle("*.example.com", pem.as_bytes()).is_ok());
        assert!(check_bundle("a.example.com", pem.as_bytes()).is_ok());
    }

    #[test]
    fn broken_bundles_say_what_is_wrong() {
        let (cert, key) = self_signed(&["shop.example.com"]);
        let (_, other_key) = self_signed(&["shop.example.com"]);
        let (field, message) = check_bundle("shop.example.com", cert.as_bytes()).err().unwrap();
        assert_eq!(field, "key", "{message}");
        let (field, _) = check_bundle("shop.example.com", key.as_bytes()).err().unwrap();
        assert_eq!(field, "cert");
        let (field, message) = check_bundle("shop.example.com", format!("{cert}{other_key}").as_bytes())
            .err()
            .unwrap();
        assert_eq!(field, "key", "{message}");
        let (field, message) = check_bundle("other.example.com", format!("{cert}{key}").as_bytes())
            .err()
            .unwrap();
        assert!(field == "cert" && message.contains("shop.example.com"), "{message}");
        let garbage = "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
        assert!(check_bundle("shop.example.com", format!("{garbage}{key}").as_bytes()).is_err());
    }
}

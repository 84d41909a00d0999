//! The cluster's certificates on a server: following the CAs and the node list in the applied
//! state (for this server's TLS, its agents and the per-call identity checks), signing renewals,
//! and the operator's CA rotation.

use std::collections::BTreeSet;
use std::sync::Arc;

use tepui_api::{CaStatusView, NodeCertView};
use tepui_node::{now_ms, Error, ErrorKind};
use tepui_pki::{CertifiedKey, NodeIdentity};
use tepui_state::{Command, State};
use tepui_transport::Trust;
use tokio::sync::watch;

use crate::node::Inner;

/// What nodes trust now, from the state; none before the cluster is initialized.
pub(crate) fn trust_of(s: &State) -> Option<Trust> {
    let cluster = s.cluster.as_ref()?;
    Some(Trust {
        ca_bundle_pem: s.trusted_cas_pem(),
        signing_ca_pem: cluster.ca_cert_pem.clone(),
        extra_chain_pem: s.ca_chain_extra_pem(),
    })
}

/// Publishes the trust and the node ids whenever an applied command changes them.
pub(crate) async fn follow_state(
    inner: Arc<Inner>,
    trust: watch::Sender<Option<Trust>>,
    members: watch::Sender<BTreeSet<u64>>,
) {
    let mut applied = inner.state.subscribe();
    // (initialized, generation, rotating): what changes the trust, cheap to compare per write.
    let mut seen = None;
    loop {
        let key = inner
            .state
            .read(|s| (s.cluster.is_some(), s.pki.generation, s.pki.rotating()));
        if seen != Some(key) {
            seen = Some(key);
            trust.send_replace(inner.state.read(trust_of));
        }
        inner.state.read(|s| {
            members.send_if_modified(|m| {
                let same = m.len() == s.nodes.len() && m.iter().eq(s.nodes.keys());
                if !same {
                    *m = s.nodes.keys().copied().collect();
                }
                !same
            })
        });
        if applied.changed().await.is_err() {
            return;
        }
    }
}

/// The CA that signs now, with its SHA-256.
pub(crate) fn signing_ca(s: &State) -> Option<(CertifiedKey, String)> {
    let cluster = s.cluster.as_ref()?;
    let ca = CertifiedKey {
        cert_pem: cluster.ca_cert_pem.clone(),
        key_pem: cluster.ca_key_pem.clone(),
    };
    let sha = tepui_pki::ca_fingerprint(&ca.cert_pem).ok()?;
    Some((ca, sha))
}

/// Records which CA signed a node's new certificate (a rotation ends when every node has one
/// of the signing CA).
pub(crate) async fn record(inner: &Inner, id: u64, cert_pem: &str, ca_sha256: String) -> Result<(), Error> {
    let not_after = tepui_pki::cert_validity(cert_pem)
        .ok()
        .and_then(|(_, to)| to.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_millis() as u64)
        .unwrap_or_default();
    inner
        .write(Command::RecordCertificate {
            id,
            ca_sha256,
            not_after,
            now: now_ms(),
        })
        .await?;
    Ok(())
}

/// Signs a renewal for `who`, records it and returns the certificate and the CAs to trust.
pub(crate) async fn renew(
    inner: &Inner,
    who: &NodeIdentity,
    csr_pem: &str,
    ips: &[std::net::IpAddr],
) -> Result<(String, String), Error> {
    let (signing, bundle) = inner.state.read(|s| (signing_ca(s), s.trusted_cas_pem()));
    let (ca, sha) = signing.ok_or_else(|| Error::from(tepui_state::ApplyError::NotInitialized))?;
    let cert = tepui_pki::sign_node_csr_for(&ca, csr_pem, who, ips, inner.cert_lifetime)
        .map_err(|e| Error::new(ErrorKind::Invalid, "bad_csr", format!("bad certificate request: {e}")))?;
    record(inner, who.id, &cert, sha).await?;
    tracing::info!(node = who.id, name = %who.name, "certificate renewed for a node");
    Ok((cert, bundle))
}

pub(crate) fn status(s: &State) -> CaStatusView {
    let sha = |pem: &str| tepui_pki::ca_fingerprint(pem).unwrap_or_default();
    let ca_sha256 = s.cluster.as_ref().map(|c| sha(&c.ca_cert_pem)).unwrap_or_default();
    let name = |id: &u64| s.nodes.get(id).map(|n| n.name.clone()).unwrap_or_default();
    let pending = if s.pki.rotating() {
        s.pki.pending(s.nodes.keys()).map(|id| name(&id)).collect()
    } else {
        vec![]
    };
    CaStatusView {
        generation: s.pki.generation.max(1),
        ca_sha256,
        rotating: s.pki.rotating(),
        retiring_ca_sha256: s.pki.retiring_ca_pems.iter().map(|p| sha(p)).collect(),
        pending,
        certificates: s
            .nodes
            .keys()
            .map(|id| {
                let cert = s.pki.certs.get(id);
                NodeCertView {
                    id: *id,
                    name: name(id),
                    ca_sha256: cert.map(|c| c.ca_sha256.clone()).unwrap_or_default(),
                    not_after_ms: cert.map(|c| c.not_after),
                    issued_at_ms: cert.map(|c| c.issued_at),
                }
            })
            .collect(),
    }
}

/// Starts a CA rotation: a new CA, cross-signed by the current one, becomes the signing CA; the
/// current one stays trusted until every node renewed onto the new one.
pub(crate) async fn rotate(inner: &Inner) -> Result<CaStatusView, Error> {
    inner.linearize().await?;
    let (current, cluster_id, generation, rotating) = inner.state.read(|s| {
        (
            signing_ca(s),
            s.cluster.as_ref().map(|c| c.cluster_id.clone()).unwrap_or_default(),
            s.pki.generation.max(1),
            s.pki.rotating(),
        )
    });
    if rotating {
        return Err(tepui_state::ApplyError::RotationInProgress.into());
    }
    let (current, _) = current.ok_or_else(|| Error::from(tepui_state::ApplyError::NotInitialized))?;
    let internal = |e: tepui_pki::PkiError| Error::new(ErrorKind::Internal, "internal", e.to_string());
    let next = tepui_pki::rotate_ca(&current, &cluster_id, generation + 1).map_err(internal)?;
    let ca_sha256 = tepui_pki::ca_fingerprint(&next.ca.cert_pem).map_err(internal)?;
    inner
        .write(Command::RotateCa {
            ca_cert_pem: next.ca.cert_pem,
            ca_key_pem: next.ca.key_pem,
            ca_sha256: ca_sha256.clone(),
            cross_cert_pem: next.cross_cert_pem,
        })
        .await?;
    tracing::warn!(generation = generation + 1, ca = %ca_sha256, "CA rotation started");
    Ok(inner.state.read(status))
}

/// Stops trusting the retired CAs now; nodes that did not renew are locked out.
pub(crate) async fn finish(inner: &Inner) -> Result<CaStatusView, Error> {
    inner.write(Command::FinishCaRotation).await?;
    tracing::warn!("CA rotation finished by the operator");
    Ok(inner.state.read(status))
}

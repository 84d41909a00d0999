//! Keeping a node's certificate fresh: renewal two thirds into its life, or at once when a CA
//! rotation made another CA the signing one; and following the CAs the cluster trusts.
//!
//! When to renew is [`tepui_pki::renewal_time`]'s decision; this loop only sleeps until then
//! (or until the trust changes), asks the leader over the current certificate, keeps the answer
//! on disk and swaps it into the node's [`LiveTls`], so new connections use it and running ones
//! carry on.

use std::path::PathBuf;
use std::time::{Duration, SystemTime};

use tepui_pki::tls::{LiveTls, TlsMaterial};
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::RenewRequest;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::{channel, status_message, Identity};

/// The CAs a node trusts and the one that signs now, as the cluster says.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Trust {
    pub ca_bundle_pem: String,
    pub signing_ca_pem: String,
    /// Servers only: older CAs and their cross-certificates, sent after the chain.
    pub extra_chain_pem: String,
}

/// Where the leader is, when known: the cluster address renewals go to.
pub type LeaderFn = Box<dyn Fn() -> Option<String> + Send + Sync>;

pub struct Renewer {
    pub identity: Identity,
    /// The data dir that holds the identity.
    pub data_dir: PathBuf,
    pub tls: LiveTls,
    pub trust: watch::Receiver<Option<Trust>>,
    pub leader: LeaderFn,
}

#[derive(Debug, thiserror::Error)]
pub enum RenewError {
    #[error("certificate material")]
    Pki(#[from] tepui_pki::PkiError),
    #[error("the leader refused the renewal: {0}")]
    Refused(String),
    #[error("the leader answered with a certificate that does not fit: {0}")]
    BadAnswer(String),
    #[error("identity")]
    Identity(#[from] crate::IdentityError),
}

const FIRST_RETRY: Duration = Duration::from_secs(1);
const LAST_RETRY: Duration = Duration::from_secs(30);

impl Renewer {
    pub async fn run(mut self, stop: CancellationToken) {
        let mut retry = FIRST_RETRY;
        loop {
            let trust = self.trust.borrow_and_update().clone();
            if let Some(t) = &trust {
                if let Err(e) = self.follow(t) {
                    tracing::warn!(error = %tepui_common::error_chain(&e), "cannot apply the cluster's CAs");
                }
            }
            let due = self.due(trust.as_ref());
            let wait = due.duration_since(SystemTime::now()).unwrap_or_default();
            if !wait.is_zero() {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(wait) => {}
                    changed = self.trust.changed() => {
                        if changed.is_err() {
                            return;
                        }
                        continue;
                    }
                }
            }
            let outcome = match (self.leader)() {
                Some(addr) => self.renew(&addr).await.map_err(|e| tepui_common::error_chain(&e)),
                None => Err("no leader known yet".to_string()),
            };
            match outcome {
                Ok(()) => retry = FIRST_RETRY,
                Err(e) => {
                    tracing::warn!(error = %e, retry_in = ?retry, "certificate renewal failed");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(retry) => {}
                        changed = self.trust.changed() => if changed.is_err() { return },
                    }
                    retry = (retry * 2).min(LAST_RETRY);
                }
            }
        }
    }

    /// When the current certificate is due for renewal.
    fn due(&self, trust: Option<&Trust>) -> SystemTime {
        let signed_by_current = trust
            .filter(|t| !t.signing_ca_pem.is_empty())
            .is_none_or(|t| tepui_pki::signed_by_any(&self.identity.cert_pem, &t.signing_ca_pem));
        match tepui_pki::cert_validity(&self.identity.cert_pem) {
            Ok((from, to)) => tepui_pki::renewal_time(from, to, signed_by_current),
            Err(_) => SystemTime::UNIX_EPOCH,
        }
    }

    fn material(&self, extra_chain_pem: String) -> TlsMaterial {
        TlsMaterial {
            ca_bundle_pem: self.identity.ca_pem.clone(),
            node: self.identity.certified_key(),
            extra_chain_pem,
        }
    }

    /// Trusts what the cluster trusts now, on disk and for new connections.
    fn follow(&mut self, trust: &Trust) -> Result<(), RenewError> {
        if trust.ca_bundle_pem.trim().is_empty() {
            return Ok(());
        }
        let mut material = self.material(trust.extra_chain_pem.clone());
        material.ca_bundle_pem = trust.ca_bundle_pem.clone();
        if material == self.tls.material() {
            return Ok(());
        }
        self.tls.set(material)?;
        if self.identity.ca_pem != trust.ca_bundle_pem {
            self.identity.ca_pem = trust.ca_bundle_pem.clone();
            self.identity.save_certs(&self.data_dir)?;
            tracing::info!("now trusting the cluster's current CAs");
        }
        Ok(())
    }

    /// Asks the leader for a certificate of the same identity for a new key.
    async fn renew(&mut self, addr: &str) -> Result<(), RenewError> {
        let (key_pem, csr_pem) = tepui_pki::generate_csr(&self.identity.name)?;
        let ips = tepui_pki::cert_ips(&self.identity.cert_pem)?;
        let mut client = ClusterClient::new(channel(addr, self.tls.client_config()?));
        let mut req = tonic::Request::new(RenewRequest {
            csr_pem,
            ips: ips.iter().map(|ip| ip.to_string()).collect(),
        });
        req.set_timeout(Duration::from_secs(10));
        let answer = client
            .renew(req)
            .await
            .map_err(|s| RenewError::Refused(status_message(&s)))?
            .into_inner();
        let granted = tepui_pki::identity_from_pem(&answer.cert_pem)?;
        if granted != self.identity.node_identity() {
            return Err(RenewError::BadAnswer(format!("the certificate is for {granted:?}")));
        }
        if !tepui_pki::signed_by_any(&answer.cert_pem, &answer.ca_pem) {
            return Err(RenewError::BadAnswer("no CA of the answer signed it".into()));
        }
        let mut next = self.identity.clone();
        next.cert_pem = answer.cert_pem;
        next.key_pem = key_pem;
        next.ca_pem = answer.ca_pem;
        let extra = self.tls.material().extra_chain_pem;
        let material = TlsMaterial {
            ca_bundle_pem: next.ca_pem.clone(),
            node: next.certified_key(),
            extra_chain_pem: extra,
        };
        // Checked before it goes to disk, and on disk before it is used: a crash in between
        // restarts on the new certificate.
        tepui_pki::tls::LiveTls::new(material.clone())?;
        next.save_certs(&self.data_dir)?;
        self.tls.set(material)?;
        self.identity = next;
        let until = tepui_pki::cert_validity(&self.identity.cert_pem)
            .map(|(_, to)| humantime_secs(to))
            .unwrap_or_default();
        tracing::info!(
            node = self.identity.node_id,
            valid_until_unix = until,
            "certificate renewed"
        );
        Ok(())
    }
}

fn humantime_secs(t: SystemTime) -> u64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

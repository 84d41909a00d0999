use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tepui_pki::token::JoinToken;
use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::JoinRequest;
use tokio::net::TcpStream;

use crate::{channel, status_message, Identity};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach {addr}: {source}; check the address and that a tepui server listens there")]
    Unreachable { addr: String, source: std::io::Error },
    #[error("{addr} is not the cluster the token belongs to: {detail}")]
    WrongCluster { addr: String, detail: String },
    #[error("the server refused to join this node: {0}")]
    Refused(String),
    #[error("certificate material")]
    Pki(#[from] tepui_pki::PkiError),
    #[error("the server answered with a certificate that does not fit: {0}")]
    BadAnswer(String),
}

pub struct JoinParams {
    /// A server's cluster address, `host:port`.
    pub addr: String,
    pub token: JoinToken,
    pub name: String,
    /// Where this node's cluster port will listen (servers only).
    pub cluster_addr: String,
    pub http_addr: String,
    pub ips: Vec<IpAddr>,
}

/// Joins a cluster: checks that the server holds the CA the token pins before sending anything,
/// proves the token's secret, and gets a certificate for a key that never leaves this node.
pub async fn join(p: &JoinParams) -> Result<Identity, JoinError> {
    join_with_key(p).await.map(|(identity, _)| identity)
}

/// [`join`], and the cluster's secrets key the server gives a joining server (empty for
/// agents).
pub async fn join_with_key(p: &JoinParams) -> Result<(Identity, Vec<u8>), JoinError> {
    let (pinned_config, pinned) = tepui_pki::tls::pinned_client_config(&p.token.ca_sha256)?;
    let ca_pem = fetch_pinned_ca(&p.addr, pinned_config, pinned).await?;

    let (key_pem, csr_pem) = tepui_pki::generate_csr(&p.name)?;
    let config = tepui_pki::tls::client_config(&ca_pem, None)?;
    let mut client = ClusterClient::new(channel(&p.addr, config));
    let mut request = tonic::Request::new(JoinRequest {
        token_id: p.token.id.clone(),
        secret: p.token.secret.clone(),
        role: p.token.role.as_str().to_string(),
        name: p.name.clone(),
        csr_pem,
        cluster_addr: p.cluster_addr.clone(),
        http_addr: p.http_addr.clone(),
        ips: p.ips.iter().map(|ip| ip.to_string()).collect(),
    });
    // The leader refuses a release that cannot work beside the cluster's servers.
    crate::tell_versions(request.metadata_mut(), &tepui_common::version::Speaks::this());
    let resp = client
        .join(request)
        .await
        .map_err(|s| JoinError::Refused(status_message(&s)))?
        .into_inner();
    // The answer came over a connection verified against the pinned CA; after a CA rotation it
    // names the CAs trusted now, which need not include the pinned one any more.
    if !tepui_pki::signed_by_any(&resp.cert_pem, &resp.ca_pem) {
        return Err(JoinError::BadAnswer(
            "no CA in the answer signed the certificate it carries".into(),
        ));
    }
    let granted = tepui_pki::identity_from_pem(&resp.cert_pem)?;
    if granted.id != resp.node_id || granted.role != p.token.role {
        return Err(JoinError::BadAnswer(format!("certificate is for {granted:?}")));
    }
    let identity = Identity {
        node_id: resp.node_id,
        name: p.name.clone(),
        role: p.token.role,
        cluster_id: resp.cluster_id,
        servers: resp.servers,
        ca_pem: resp.ca_pem,
        cert_pem: resp.cert_pem,
        key_pem,
    };
    Ok((identity, resp.secrets_key))
}

/// A TLS handshake that only succeeds against the pinned CA; nothing is sent before it does.
async fn fetch_pinned_ca(
    addr: &str,
    config: Arc<rustls::ClientConfig>,
    pinned: tepui_pki::tls::PinnedCa,
) -> Result<String, JoinError> {
    let unreachable = |source| JoinError::Unreachable {
        addr: addr.to_string(),
        source,
    };
    let tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr))
        .await
        .map_err(|_| unreachable(std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")))?
        .map_err(unreachable)?;
    let name = rustls_pki_types::ServerName::try_from(tepui_pki::tls::SERVER_NAME)
        .expect("a valid DNS name")
        .to_owned();
    let handshake = tokio_rustls::TlsConnector::from(config).connect(name, tcp);
    match tokio::time::timeout(Duration::from_secs(10), handshake).await {
        Err(_) => Err(JoinError::WrongCluster {
            addr: addr.to_string(),
            detail: "TLS handshake timed out".into(),
        }),
        Ok(Err(e)) => {
            // The pinned verifier's own words, without rustls's "unexpected error: " prefix.
            let detail = match e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()) {
                Some(rustls::Error::General(msg)) => msg.clone(),
                Some(other) => other.to_string(),
                None => e
                    .get_ref()
                    .map(|inner| inner.to_string())
                    .unwrap_or_else(|| e.to_string()),
            };
            Err(JoinError::WrongCluster {
                addr: addr.to_string(),
                detail,
            })
        }
        Ok(Ok(_stream)) => pinned.ca_pem().ok_or_else(|| JoinError::WrongCluster {
            addr: addr.to_string(),
            detail: "no CA presented".into(),
        }),
    }
}

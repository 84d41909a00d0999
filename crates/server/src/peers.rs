//! Clients of other servers' cluster ports, one lazily connected channel per address; and the
//! news of other nodes' connections to this one's cluster port ending.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::{AddServerRequest, HttpChunk, HttpRequest, JoinRequest, JoinResponse};
use tepui_transport::{status_message, NetFilter, PeerInfo};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

#[derive(Clone)]
pub(crate) struct Peers {
    self_id: u64,
    tls: Arc<rustls::ClientConfig>,
    pub filter: NetFilter,
    clients: Arc<Mutex<HashMap<String, ClusterClient<Channel>>>>,
    closed_tx: mpsc::UnboundedSender<PeerInfo>,
    closed_rx: Arc<Mutex<Option<mpsc::UnboundedReceiver<PeerInfo>>>>,
    /// Cancelled when the node stops: its outgoing connections close too.
    stopped: CancellationToken,
}

/// Why a forwarded call got no answer.
#[derive(Debug)]
pub(crate) enum ForwardError {
    /// The request never left this node: the filter dropped it, or the leader's port refused
    /// the connection. Sending it elsewhere cannot run it twice.
    NotSent(tonic::Status),
    /// The leader may have received it, and may have carried it out.
    Failed(tonic::Status),
}

impl ForwardError {
    pub fn status(&self) -> &tonic::Status {
        match self {
            ForwardError::NotSent(s) | ForwardError::Failed(s) => s,
        }
    }
}

/// Whether a failed call's error says that the connection was refused, so nothing was sent.
fn refused(status: &tonic::Status) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(status);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = e.source();
    }
    false
}

impl Peers {
    pub fn new(self_id: u64, tls: Arc<rustls::ClientConfig>, filter: NetFilter) -> Peers {
        let (closed_tx, closed_rx) = mpsc::unbounded_channel();
        Peers {
            self_id,
            tls,
            filter,
            clients: Arc::default(),
            closed_tx,
            closed_rx: Arc::new(Mutex::new(Some(closed_rx))),
            stopped: CancellationToken::new(),
        }
    }

    /// Closes every connection to other servers, for good: the node is stopping.
    pub fn close(&self) {
        self.stopped.cancel();
    }

    /// Where the cluster port reports the peer of every connection that ended.
    pub fn closed_conns(&self) -> mpsc::UnboundedSender<PeerInfo> {
        self.closed_tx.clone()
    }

    /// The other end of [`Peers::closed_conns`], for the one loop that watches it.
    pub fn take_closed_conns(&self) -> Option<mpsc::UnboundedReceiver<PeerInfo>> {
        self.closed_rx.lock().unwrap_or_else(|e| e.into_inner()).take()
    }

    pub fn client(&self, addr: &str) -> ClusterClient<Channel> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_string())
            .or_insert_with(|| {
                ClusterClient::new(tepui_transport::channel_until(addr, self.tls.clone(), &self.stopped))
                    .max_decoding_message_size(512 << 20)
                    .max_encoding_message_size(512 << 20)
            })
            .clone()
    }

    /// Whether the test filter lets a message through to `to`.
    pub async fn admit(&self, to: u64) -> bool {
        self.filter.admit(self.self_id, to).await
    }

    pub async fn add_server(&self, addr: &str, id: u64, cluster_addr: &str) -> Result<(), String> {
        let mut req = tonic::Request::new(AddServerRequest {
            node_id: id,
            cluster_addr: cluster_addr.to_string(),
        });
        // Catching up a learner can take a while on a big state.
        req.set_timeout(Duration::from_secs(120));
        self.client(addr)
            .add_server(req)
            .await
            .map(|_| ())
            .map_err(|s| status_message(&s))
    }

    /// Sends an API call to the leader and waits for its answer's head (status and headers);
    /// the body streams after it. No deadline: a call may take long before it answers (an exec,
    /// a drain), and a followed log streams for as long as the caller reads. The caller gives
    /// up when the leader changes.
    pub async fn forward(
        &self,
        leader: u64,
        addr: &str,
        req: HttpRequest,
    ) -> Result<(HttpChunk, tonic::Streaming<HttpChunk>), ForwardError> {
        if !self.admit(leader).await {
            return Err(ForwardError::NotSent(tonic::Status::unavailable(
                "the leader is unreachable",
            )));
        }
        let sorted = |s: tonic::Status| {
            if refused(&s) {
                ForwardError::NotSent(s)
            } else {
                ForwardError::Failed(s)
            }
        };
        let mut chunks = self
            .client(addr)
            .forward_http(tonic::Request::new(req))
            .await
            .map_err(sorted)?
            .into_inner();
        match chunks.message().await {
            Ok(Some(head)) => Ok((head, chunks)),
            Ok(None) => Err(ForwardError::Failed(tonic::Status::unavailable("empty answer"))),
            Err(s) => Err(ForwardError::Failed(s)),
        }
    }

    /// Relays a join to the leader, with what the joining node said it speaks.
    pub async fn join(
        &self,
        leader: u64,
        addr: &str,
        req: JoinRequest,
        joiner: &tepui_common::version::Speaks,
    ) -> Result<JoinResponse, tonic::Status> {
        if !self.admit(leader).await {
            return Err(tonic::Status::unavailable("the leader is unreachable"));
        }
        let mut req = tonic::Request::new(req);
        tepui_transport::tell_versions(req.metadata_mut(), joiner);
        Ok(self.client(addr).join(req).await?.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tepui_pki::{NodeIdentity, Role};

    fn peers() -> Peers {
        let ca = tepui_pki::generate_ca("test").unwrap();
        let me = NodeIdentity {
            id: 2,
            role: Role::Server,
            name: "s2".into(),
        };
        let cert = tepui_pki::issue_node_cert(&ca, &me, &[[127, 0, 0, 1].into()]).unwrap();
        let tls = tepui_pki::tls::client_config(&ca.cert_pem, Some(&cert)).unwrap();
        Peers::new(2, tls, NetFilter::default())
    }

    fn request() -> HttpRequest {
        HttpRequest {
            method: "PUT".into(),
            path_and_query: "/v1/vars/k".into(),
            headers: Default::default(),
            body: b"{\"value\":\"v\"}".to_vec(),
        }
    }

    #[tokio::test]
    async fn a_forward_to_a_closed_port_was_not_sent() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        drop(listener);
        match peers().forward(1, &addr, request()).await {
            Err(ForwardError::NotSent(_)) => {}
            other => panic!("expected NotSent, got {:?}", other.map(|(h, _)| h)),
        }
    }

    #[tokio::test]
    async fn a_forward_the_filter_drops_was_not_sent() {
        let peers = peers();
        peers.filter.isolate(1);
        match peers.forward(1, "127.0.0.1:9", request()).await {
            Err(ForwardError::NotSent(_)) => {}
            other => panic!("expected NotSent, got {:?}", other.map(|(h, _)| h)),
        }
    }

    #[tokio::test]
    async fn only_a_refused_connection_counts_as_not_sent() {
        // A peer that accepts and hangs up: whether a request went out is not known from here,
        // so it counts as possibly carried out.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                drop(conn);
            }
        });
        match peers().forward(1, &addr, request()).await {
            Err(ForwardError::Failed(_)) => {}
            other => panic!("expected Failed, got {:?}", other.map(|(h, _)| h)),
        }
    }
}

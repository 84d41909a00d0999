//! Clients of other servers' cluster ports, one lazily connected channel per address.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tepui_proto::cluster_client::ClusterClient;
use tepui_proto::{AddServerRequest, HttpChunk, HttpRequest, JoinRequest, JoinResponse};
use tepui_transport::{status_message, NetFilter};
use tonic::transport::Channel;

#[derive(Clone)]
pub(crate) struct Peers {
    self_id: u64,
    tls: Arc<rustls::ClientConfig>,
    pub filter: NetFilter,
    clients: Arc<Mutex<HashMap<String, ClusterClient<Channel>>>>,
}

impl Peers {
    pub fn new(self_id: u64, tls: Arc<rustls::ClientConfig>, filter: NetFilter) -> Peers {
        Peers {
            self_id,
            tls,
            filter,
            clients: Arc::default(),
        }
    }

    pub fn client(&self, addr: &str) -> ClusterClient<Channel> {
        let mut clients = self.clients.lock().unwrap_or_else(|e| e.into_inner());
        clients
            .entry(addr.to_string())
            .or_insert_with(|| {
                ClusterClient::new(tepui_transport::channel(addr, self.tls.clone()))
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

    pub async fn forward_http(
        &self,
        leader: u64,
        addr: &str,
        req: HttpRequest,
    ) -> Result<tonic::Streaming<HttpChunk>, tonic::Status> {
        if !self.admit(leader).await {
            return Err(tonic::Status::unavailable("the leader is unreachable"));
        }
        // No deadline: a followed log or a long pull streams for as long as the caller reads.
        Ok(self
            .client(addr)
            .forward_http(tonic::Request::new(req))
            .await?
            .into_inner())
    }

    pub async fn join(&self, leader: u64, addr: &str, req: JoinRequest) -> Result<JoinResponse, tonic::Status> {
        if !self.admit(leader).await {
            return Err(tonic::Status::unavailable("the leader is unreachable"));
        }
        Ok(self.client(addr).join(req).await?.into_inner())
    }
}

//! A node with no Raft under it, for tests of features: commands are applied to the state at
//! once by the real `State::apply`, this node leads until a test says otherwise, and agents
//! are whatever streams the test attaches to the hub.

use std::sync::Arc;

use tepui_state::{Command, Response, State};
use tepui_store::DetachedState;
use tokio::sync::watch;

use crate::{BoxFuture, Consensus, Leadership, Node, NodeInfo, WriteError};

/// The test's side of a [`local_node`]: its state and its leadership.
#[derive(Clone)]
pub struct Local {
    state: Arc<DetachedState>,
    leadership: Arc<watch::Sender<Leadership>>,
}

impl Local {
    /// Applies a command directly, as if committed.
    pub fn apply(&self, cmd: &Command) -> Response {
        self.state.apply(cmd)
    }

    /// Makes `leader` the leader of `term` as this node sees it.
    pub fn set_leader(&self, leader: Option<u64>, term: u64) {
        self.leadership.send_replace(Leadership { leader, term });
    }
}

struct LocalConsensus {
    local: Local,
    id: u64,
}

impl Consensus for LocalConsensus {
    fn write(&self, cmds: Vec<Command>) -> BoxFuture<'_, Result<Vec<Response>, WriteError>> {
        Box::pin(async move {
            let leadership = *self.local.leadership.borrow();
            if leadership.leader != Some(self.id) {
                return Err(WriteError::NotLeader {
                    leader: leadership.leader,
                });
            }
            Ok(cmds.iter().map(|c| self.local.apply(c)).collect())
        })
    }

    fn linearize(&self) -> BoxFuture<'_, Result<(), WriteError>> {
        Box::pin(async move {
            let leadership = *self.local.leadership.borrow();
            if leadership.leader == Some(self.id) {
                Ok(())
            } else {
                Err(WriteError::NotLeader {
                    leader: leadership.leader,
                })
            }
        })
    }
}

/// Node 1, `s1`, leading term 1 over `state`.
pub fn local_node(state: State) -> (Node, Local) {
    let id = 1;
    let (leadership, watch) = watch::channel(Leadership {
        leader: Some(id),
        term: 1,
    });
    let local = Local {
        state: Arc::new(DetachedState::new(state)),
        leadership: Arc::new(leadership),
    };
    let info = NodeInfo {
        id,
        name: "s1".into(),
        cluster_addr: "127.0.0.1:5052".into(),
        http_addr: "127.0.0.1:5050".into(),
        started_at: 0,
    };
    let reader = local.state.reader();
    let node = Node::new(
        info,
        LocalConsensus {
            local: local.clone(),
            id,
        },
        reader,
        watch,
    );
    (node, local)
}

/// One request through `router` with a JSON body (or none): the status and the JSON answer
/// (`null` when empty, a string when not JSON).
pub async fn call_json(
    router: &axum::Router,
    method: &str,
    uri: &str,
    body: Option<serde_json::Value>,
) -> (u16, serde_json::Value) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json")
        .body(body.map(|b| axum::body::Body::from(b.to_string())).unwrap_or_default())
        .expect("a valid request");
    let resp = router.clone().oneshot(req).await.expect("the router answers");
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.expect("a whole body").to_bytes();
    let json = if bytes.is_empty() {
        serde_json::Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| serde_json::Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, json)
}

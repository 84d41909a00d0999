//! The agent's HTTP port: health, resources, and the gateway's counters (`/metrics`).

use std::sync::Arc;

pub(crate) struct HttpState {
    pub name: String,
    pub resources: tepui_proto::agent::Resources,
    pub gateway: Arc<crate::gateway::AgentGateway>,
}

pub(crate) fn router(state: Arc<HttpState>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::get;
    axum::Router::new()
        .route(
            "/v1/health",
            get(|State(s): State<Arc<HttpState>>| async move {
                axum::Json(tepui_api::Health {
                    status: "ok".into(),
                    node: s.name.clone(),
                    role: "agent".into(),
                    version: crate::VERSION.into(),
                })
            }),
        )
        .route(
            "/v1/agent/resources",
            get(|State(s): State<Arc<HttpState>>| async move { axum::Json(s.resources.clone()) }),
        )
        .route(
            "/metrics",
            get(|State(s): State<Arc<HttpState>>| async move {
                (
                    [(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")],
                    s.gateway.metrics(),
                )
            }),
        )
        .with_state(state)
}

//! The agent's HTTP port: health, resources, `/metrics` (the agent's tasks, images and status
//! updates, its gateway's counters, the process), and Mesos'
//! executor API for frameworks' executors (`/api/v1/executor`, see `executor_api`).

use std::sync::Arc;

pub(crate) struct HttpState {
    pub name: String,
    pub resources: tepui_proto::agent::Resources,
    pub gateway: Arc<crate::gateway::AgentGateway>,
    pub tasks: crate::TaskManager,
}

pub(crate) fn router(state: Arc<HttpState>) -> axum::Router {
    use axum::extract::State;
    use axum::routing::{get, post};
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
                    [(axum::http::header::CONTENT_TYPE, tepui_metrics::CONTENT_TYPE)],
                    crate::stats::render(&s),
                )
            }),
        )
        .route(
            "/api/v1/executor",
            post(
                |State(s): State<Arc<HttpState>>, headers: axum::http::HeaderMap, body: axum::body::Bytes| async move {
                    crate::executor_api::executor(s.tasks.clone(), headers, body).await
                },
            ),
        )
        .with_state(state)
}

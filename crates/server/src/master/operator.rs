//! The Mesos operator endpoints: `/master/*`, `/metrics/snapshot` and the v1 operator API.

use std::sync::Arc;

use axum::Router;

use crate::node::Inner;

pub(crate) fn routes() -> Router<Arc<Inner>> {
    Router::new()
}

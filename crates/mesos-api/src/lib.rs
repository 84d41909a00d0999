//! The Mesos HTTP APIs over tepui's two-level scheduling: the v1 scheduler API
//! (`POST /api/v1/scheduler`, JSON, RecordIO events), the operator endpoints (`/master/*`, the
//! v1 operator API at `POST /api/v1` with its event stream, `/metrics/snapshot`), and tepui's
//! own `/v1/frameworks` and `/v1/roles` that the CLI reads from the same model.
//!
//! Handlers translate between Mesos' wire shapes (tepui-mesos) and [`tepui_master::Master`]'s
//! in-process interface; errors are rendered as Mesos renders them ([`MesosError`]), except on
//! the `/v1` routes. Nothing here decides anything about scheduling.

mod operator;
mod scheduler;

use tepui_auth::Routes;
use tepui_master::Master;

pub use operator::MesosError;
/// Operator API event streams (SUBSCRIBE) open at once on a leader.
pub use operator::MAX_OPERATOR_SUBSCRIBERS;

/// tepui's version, as `git_tag` reports it.
const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The routes that run on the leader (a follower forwards them): the operator endpoints and
/// `/v1/frameworks`, `/v1/roles`.
pub fn leader_routes(master: Master) -> Routes {
    operator::routes(master)
}

/// The routes every server answers itself: the scheduler API (which redirects to the leader,
/// as Mesos does) and `/metrics/snapshot` (which says whether this server leads).
pub fn local_routes(master: Master) -> Routes {
    scheduler::routes(master.clone()).merge(operator::local_routes(master))
}

//! The legacy JSON endpoints: `/master/state`, `/master/state-summary`, `/master/tasks`,
//! `/master/frameworks`, `/master/slaves`, `/master/roles`.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use tepui_mesos::legacy;
use tepui_state::TaskRecord;

use super::model::{framework_id_of, secs, Model};
use super::{wire, Ctx, MesosError};
use tepui_master::Master;

type Params = Query<HashMap<String, String>>;

/// Runs `f` on the model of the cluster, after this leader has caught up with every write it
/// acknowledged.
pub(super) async fn with_model<T>(master: &Master, f: impl FnOnce(&Model) -> T) -> Result<T, MesosError> {
    master.node().linearize().await?;
    let view = master.view();
    Ok(master.node().read(|s| f(&Model::new(s, view.as_ref()))))
}

pub(super) async fn state(State(master): State<Master>, Extension(ctx): Extension<Arc<Ctx>>) -> Response {
    let leader = this_master(&master);
    json(
        with_model(&master, |m| {
            let agents = m.agents();
            legacy::State {
                version: wire::MESOS_VERSION.into(),
                git_sha: None,
                git_branch: None,
                git_tag: Some(format!("tepui-{}", crate::VERSION)),
                build_date: None,
                build_time: None,
                build_user: None,
                start_time: secs(ctx.started_ms),
                elected_time: None,
                id: format!("{}-{}", m.cluster_id(), master.node().id()),
                pid: leader.pid.clone(),
                hostname: master.node().info().name.clone(),
                capabilities: vec![],
                activated_slaves: agents.iter().filter(|a| a.active()).count() as f64,
                deactivated_slaves: agents.iter().filter(|a| !a.active()).count() as f64,
                unreachable_slaves: m.unreachable_agents() as f64,
                domain: None,
                leader: Some(leader.pid.clone()),
                leader_info: Some(leader),
                cluster: Some(m.cluster_id().to_string()),
                log_dir: None,
                external_log_file: None,
                flags: Default::default(),
                slaves: agents.iter().map(|a| wire::legacy_slave(a, false)).collect(),
                recovered_slaves: vec![],
                frameworks: m.frameworks().iter().map(|f| wire::legacy_framework(m, f)).collect(),
                completed_frameworks: m
                    .completed_frameworks()
                    .iter()
                    .map(|f| wire::legacy_framework(m, f))
                    .collect(),
                orphan_tasks: vec![],
                unregistered_frameworks: vec![],
            }
        })
        .await,
    )
}

/// This server, which leads (handlers run on the leader).
fn this_master(master: &Master) -> legacy::LeaderInfo {
    let port = master
        .node()
        .info()
        .http_addr
        .rsplit_once(':')
        .and_then(|(_, p)| p.parse().ok())
        .unwrap_or(5050);
    legacy::LeaderInfo {
        id: master.node().id().to_string(),
        pid: format!("master@{}", master.node().info().http_addr),
        port,
        hostname: master.node().info().name.clone(),
        domain: None,
    }
}

pub(super) async fn state_summary(State(master): State<Master>) -> Response {
    json(
        with_model(&master, |m| {
            let mut slaves = Vec::new();
            for a in m.agents() {
                let mut counts = legacy::TaskStateCounts::default();
                let mut frameworks = BTreeSet::new();
                for t in m.tasks().filter(|t| t.agent_id == a.node.id) {
                    counts.count(&tepui_mesos::v1::TaskState::from_name(t.state.as_str()));
                    frameworks.insert(framework_id_of(t).to_string());
                }
                slaves.push(legacy::SummarySlave {
                    slave: wire::legacy_slave(&a, false),
                    task_counts: counts,
                    framework_ids: frameworks.into_iter().collect(),
                });
            }
            let mut frameworks = Vec::new();
            for f in m.frameworks().iter().chain(m.completed_frameworks().iter()) {
                let mut counts = legacy::TaskStateCounts::default();
                let mut agents = BTreeSet::new();
                for t in &f.tasks {
                    counts.count(&tepui_mesos::v1::TaskState::from_name(t.state.as_str()));
                    agents.insert(t.agent_id.to_string());
                }
                frameworks.push(legacy::SummaryFramework {
                    summary: wire::legacy_framework_summary(f),
                    task_counts: counts,
                    slave_ids: agents.into_iter().collect(),
                });
            }
            legacy::StateSummary {
                hostname: master.node().info().name.clone(),
                cluster: Some(m.cluster_id().to_string()),
                slaves,
                frameworks,
            }
        })
        .await,
    )
}

/// The query of `/master/tasks`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct TaskQuery {
    pub framework_id: Option<String>,
    pub task_id: Option<String>,
    pub limit: usize,
    pub offset: usize,
    pub ascending: bool,
}

/// Mesos' default page size.
const DEFAULT_LIMIT: usize = 100;

pub(super) fn task_query(q: &HashMap<String, String>) -> Result<TaskQuery, String> {
    let number = |name: &str, default: usize| match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<usize>()
            .map_err(|_| format!("Failed to parse '{name}': {v:?} is not a non-negative integer")),
    };
    let ascending = match q.get("order").map(String::as_str) {
        None | Some("des") => false,
        Some("asc") => true,
        Some(other) => return Err(format!("Failed to parse 'order': {other:?} is not 'asc' or 'des'")),
    };
    let nonempty = |name: &str| q.get(name).filter(|v| !v.is_empty()).cloned();
    Ok(TaskQuery {
        framework_id: nonempty("framework_id"),
        task_id: nonempty("task_id"),
        limit: number("limit", DEFAULT_LIMIT)?,
        offset: number("offset", 0)?,
        ascending,
    })
}

/// The page of tasks the query asks for: filtered, ordered by when they were created (ties by
/// id), then `offset` skipped and at most `limit` kept.
pub(super) fn page<'a>(tasks: impl IntoIterator<Item = &'a TaskRecord>, q: &TaskQuery) -> Vec<&'a TaskRecord> {
    let mut list: Vec<&TaskRecord> = tasks
        .into_iter()
        .filter(|t| q.framework_id.as_deref().is_none_or(|f| framework_id_of(t) == f))
        .filter(|t| q.task_id.as_deref().is_none_or(|id| t.id == id))
        .collect();
    list.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
    if !q.ascending {
        list.reverse();
    }
    list.into_iter().skip(q.offset).take(q.limit).collect()
}

pub(super) async fn tasks(State(master): State<Master>, Query(q): Params) -> Response {
    let q = match task_query(&q) {
        Ok(q) => q,
        Err(e) => return MesosError::bad_request(e).into_response(),
    };
    json(
        with_model(&master, |m| legacy::Tasks {
            tasks: page(m.tasks(), &q)
                .into_iter()
                .map(|t| wire::legacy_task(m, t))
                .collect(),
        })
        .await,
    )
}

pub(super) async fn frameworks(State(master): State<Master>, Query(q): Params) -> Response {
    let only = q.get("framework_id").filter(|v| !v.is_empty()).cloned();
    json(
        with_model(&master, |m| {
            let keep = |id: &str| only.as_deref().is_none_or(|o| o == id);
            legacy::Frameworks {
                frameworks: m
                    .frameworks()
                    .iter()
                    .filter(|f| keep(&f.id))
                    .map(|f| wire::legacy_framework(m, f))
                    .collect(),
                completed_frameworks: m
                    .completed_frameworks()
                    .iter()
                    .filter(|f| keep(&f.id))
                    .map(|f| wire::legacy_framework(m, f))
                    .collect(),
                unregistered_frameworks: vec![],
            }
        })
        .await,
    )
}

pub(super) async fn slaves(State(master): State<Master>, Query(q): Params) -> Response {
    let only = q.get("slave_id").filter(|v| !v.is_empty()).cloned();
    json(
        with_model(&master, |m| legacy::Slaves {
            slaves: m
                .agents()
                .iter()
                .filter(|a| only.as_deref().is_none_or(|o| o == a.id()))
                .map(|a| wire::legacy_slave(a, true))
                .collect(),
            recovered_slaves: vec![],
        })
        .await,
    )
}

pub(super) async fn roles(State(master): State<Master>) -> Response {
    json(
        with_model(&master, |m| legacy::Roles {
            roles: m.roles().iter().map(wire::legacy_role).collect(),
        })
        .await,
    )
}

fn json<T: serde::Serialize>(r: Result<T, MesosError>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, Json(v)).into_response(),
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use tepui_state::TaskState;

    use super::super::model::tests_support::task;
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Result<TaskQuery, String> {
        task_query(&pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
    }

    #[test]
    fn the_query_has_mesos_defaults_and_refuses_nonsense() {
        let q = query(&[]).unwrap();
        assert_eq!((q.limit, q.offset, q.ascending), (100, 0, false));
        assert!(q.framework_id.is_none() && q.task_id.is_none());
        let q = query(&[("limit", "1"), ("offset", "2"), ("order", "asc"), ("framework_id", "f")]).unwrap();
        assert_eq!((q.limit, q.offset, q.ascending), (1, 2, true));
        assert_eq!(q.framework_id.as_deref(), Some("f"));
        assert!(query(&[("limit", "-1")]).unwrap_err().contains("limit"));
        assert!(query(&[("offset", "x")]).unwrap_err().contains("offset"));
        assert!(query(&[("order", "up")]).unwrap_err().contains("order"));
    }

    #[test]
    fn pages_are_ordered_by_creation_then_cut() {
        let tasks = [
            task("b", 1, "", TaskState::TaskRunning, 20),
            task("a", 1, "f1", TaskState::TaskFinished, 10),
            task("c", 1, "f1", TaskState::TaskRunning, 30),
            task("d", 1, "f1", TaskState::TaskRunning, 30),
        ];
        let ids = |q: TaskQuery| page(tasks.iter(), &q).iter().map(|t| t.id.clone()).collect::<Vec<_>>();
        assert_eq!(
            ids(query(&[]).unwrap()),
            ["d", "c", "b", "a"],
            "newest first by default"
        );
        assert_eq!(ids(query(&[("order", "asc")]).unwrap()), ["a", "b", "c", "d"]);
        assert_eq!(ids(query(&[("order", "asc"), ("limit", "1")]).unwrap()), ["a"]);
        assert_eq!(
            ids(query(&[("order", "asc"), ("limit", "2"), ("offset", "1")]).unwrap()),
            ["b", "c"]
        );
        assert_eq!(ids(query(&[("offset", "9")]).unwrap()), Vec::<String>::new());
        assert_eq!(ids(query(&[("limit", "0")]).unwrap()), Vec::<String>::new());
        assert_eq!(
            ids(query(&[("framework_id", "tepui")]).unwrap()),
            ["b"],
            "tepui's own tasks"
        );
        assert_eq!(
            ids(query(&[("framework_id", "f1"), ("order", "asc")]).unwrap()),
            ["a", "c", "d"]
        );
        assert_eq!(ids(query(&[("task_id", "c")]).unwrap()), ["c"]);
    }
}

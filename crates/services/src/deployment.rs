//! Deployments: how a change from one set of apps to another is carried out, in Marathon's
//! shape (`/v2/deployments`, the `deployment_*` events).
//!
//! A [`Deployment`] is planned from the apps before and after a change (the whole tree, so that
//! dependencies order it) and holds steps; the actions of a step run together, a step starts
//! when the one before it is done. The order, as in Marathon:
//! 1. apps that are removed, dependents first: `StopApplication`;
//! 2. apps that are new: `StartApplication` (stored, with nothing launched yet);
//! 3. level by level in dependency order, dependencies first: `ScaleApplication` for new apps
//!    and apps whose instance count alone changed, `RestartApplication` for apps whose
//!    configuration (or configuration version, after a restart) changed.
//!
//! Carrying out an action is the runtime's job: `ScaleApplication` and `RestartApplication`
//! drive [`crate::plan::step`] with [`Deployment::target_of`] until it reports `complete`;
//! `StopApplication` drives [`crate::plan::stop`] and then deletes the app. A deployment has a
//! deadline (10 minutes by default); a rollback is a new deployment back to the original apps.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::app::AppSpec;
use crate::group::{dependency_levels, Group};
use crate::path::PathId;
use crate::pod::PodSpec;
use crate::time::format_timestamp;
use crate::validate::ValidationErrors;

/// The default time a deployment may take before it is overdue: 10 minutes.
pub const DEFAULT_TIMEOUT_MS: u64 = 10 * 60 * 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ActionKind {
    StartApplication,
    ScaleApplication,
    RestartApplication,
    StopApplication,
    StartPod,
    ScalePod,
    RestartPod,
    StopPod,
}

impl ActionKind {
    pub fn is_pod(self) -> bool {
        matches!(
            self,
            ActionKind::StartPod | ActionKind::ScalePod | ActionKind::RestartPod | ActionKind::StopPod
        )
    }
}

/// One action of a step. `app` is the app's or the pod's id; in JSON it is `app` or `pod`, as
/// Marathon writes it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "ActionJson", from = "ActionJson")]
pub struct DeploymentAction {
    pub action: ActionKind,
    pub app: PathId,
}

#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ActionJson {
    action: ActionKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    app: Option<PathId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pod: Option<PathId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    readiness_check_results: Option<Vec<serde_json::Value>>,
}

impl ActionJson {
    fn new(action: ActionKind, id: PathId) -> ActionJson {
        let (app, pod) = if action.is_pod() {
            (None, Some(id))
        } else {
            (Some(id), None)
        };
        ActionJson {
            action,
            app,
            pod,
            readiness_check_results: None,
        }
    }

    fn id(&self) -> PathId {
        self.app
            .clone()
            .or_else(|| self.pod.clone())
            .unwrap_or_else(PathId::root)
    }
}

impl From<DeploymentAction> for ActionJson {
    fn from(a: DeploymentAction) -> ActionJson {
        ActionJson::new(a.action, a.app)
    }
}

impl From<ActionJson> for DeploymentAction {
    fn from(j: ActionJson) -> DeploymentAction {
        DeploymentAction {
            action: j.action,
            app: j.id(),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeploymentStep {
    pub actions: Vec<DeploymentAction>,
}

/// One deployment and where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Deployment {
    pub id: String,
    /// When it was created, as a Marathon timestamp.
    pub version: String,
    pub affected_apps: Vec<PathId>,
    pub steps: Vec<DeploymentStep>,
    /// Index of the step under way; `steps.len()` once finished.
    pub current_step: usize,
    /// Milliseconds.
    pub started_at: u64,
    /// Milliseconds; past it the deployment is overdue.
    pub deadline: u64,
    /// The affected apps before; an affected app missing here is new.
    pub original: Vec<AppSpec>,
    /// The affected apps after; an affected app missing here is removed.
    pub target: Vec<AppSpec>,
    /// The pod a `/v2/pods` change affects (a deployment changes apps or one pod).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub affected_pods: Vec<PathId>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub original_pods: Vec<PodSpec>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_pods: Vec<PodSpec>,
}

impl Deployment {
    /// Plans the change from `original` to `target` (all apps of the tree before and after).
    /// Fails only when the dependencies of either side have a cycle.
    pub fn plan(
        id: String,
        original: &[AppSpec],
        target: &[AppSpec],
        now: u64,
        timeout_ms: u64,
    ) -> Result<Deployment, ValidationErrors> {
        let before: BTreeMap<&PathId, &AppSpec> = original.iter().map(|a| (&a.id, a)).collect();
        let after: BTreeMap<&PathId, &AppSpec> = target.iter().map(|a| (&a.id, a)).collect();
        let removed: BTreeSet<&PathId> = before.keys().filter(|id| !after.contains_key(*id)).copied().collect();
        let added: BTreeSet<&PathId> = after.keys().filter(|id| !before.contains_key(*id)).copied().collect();
        let mut restarted = BTreeSet::new();
        let mut scaled = BTreeSet::new();
        for (id, new) in &after {
            if let Some(old) = before.get(id) {
                if new.is_config_change(old) || new.config_version() != old.config_version() {
                    restarted.insert(*id);
                } else if new.instances != old.instances {
                    scaled.insert(*id);
                }
            }
        }

        let mut steps = Vec::new();
        for level in dependency_levels(original)?.into_iter().rev() {
            push_step(
                &mut steps,
                level.iter().filter(|id| removed.contains(id)),
                ActionKind::StopApplication,
            );
        }
        push_step(&mut steps, added.iter().copied(), ActionKind::StartApplication);
        for level in dependency_levels(target)? {
            let actions = level
                .iter()
                .filter_map(|id| {
                    let kind = if restarted.contains(id) {
                        ActionKind::RestartApplication
                    } else if scaled.contains(id) || (added.contains(id) && after[id].instances > 0) {
                        ActionKind::ScaleApplication
                    } else {
                        return None;
                    };
                    Some(DeploymentAction {
                        action: kind,
                        app: id.clone(),
                    })
                })
                .collect::<Vec<_>>();
            if !actions.is_empty() {
                steps.push(DeploymentStep { actions });
            }
        }

        let affected: BTreeSet<&PathId> = removed
            .iter()
            .chain(&added)
            .chain(&restarted)
            .chain(&scaled)
            .copied()
            .collect();
        Ok(Deployment {
            id,
            version: format_timestamp(now),
            affected_apps: affected.iter().map(|id| (*id).clone()).collect(),
            steps,
            current_step: 0,
            started_at: now,
            deadline: now.saturating_add(timeout_ms),
            original: original.iter().filter(|a| affected.contains(&a.id)).cloned().collect(),
            target: target.iter().filter(|a| affected.contains(&a.id)).cloned().collect(),
            affected_pods: vec![],
            original_pods: vec![],
            target_pods: vec![],
        })
    }

    /// Plans the change of one pod from `original` to `target` (`None`: absent), as Marathon
    /// does: a removed pod stops; a new one starts, then scales to its instances; a changed
    /// configuration restarts it (a rolling replacement); a changed count scales it.
    pub fn plan_pod(
        id: String,
        original: Option<&PodSpec>,
        target: Option<&PodSpec>,
        now: u64,
        timeout_ms: u64,
    ) -> Deployment {
        let pod = target.or(original).map(|p| p.id.clone()).unwrap_or_else(PathId::root);
        let action = |kind| DeploymentStep {
            actions: vec![DeploymentAction {
                action: kind,
                app: pod.clone(),
            }],
        };
        let steps = match (original, target) {
            (None, None) => vec![],
            (Some(_), None) => vec![action(ActionKind::StopPod)],
            (None, Some(new)) if new.instances() == 0 => vec![action(ActionKind::StartPod)],
            (None, Some(_)) => vec![action(ActionKind::StartPod), action(ActionKind::ScalePod)],
            (Some(old), Some(new)) => {
                if new.is_config_change(old) || new.config_version() != old.config_version() {
                    vec![action(ActionKind::RestartPod)]
                } else if new.instances() != old.instances() {
                    vec![action(ActionKind::ScalePod)]
                } else {
                    vec![]
                }
            }
        };
        let affected = !steps.is_empty();
        Deployment {
            id,
            version: format_timestamp(now),
            affected_apps: vec![],
            steps,
            current_step: 0,
            started_at: now,
            deadline: now.saturating_add(timeout_ms),
            original: vec![],
            target: vec![],
            affected_pods: if affected { vec![pod] } else { vec![] },
            original_pods: original.filter(|_| affected).cloned().into_iter().collect(),
            target_pods: target.filter(|_| affected).cloned().into_iter().collect(),
        }
    }

    /// A deployment that changes nothing finishes at once.
    pub fn is_finished(&self) -> bool {
        self.current_step >= self.steps.len()
    }

    /// The actions under way (empty once finished).
    pub fn current_actions(&self) -> &[DeploymentAction] {
        self.steps
            .get(self.current_step)
            .map(|s| s.actions.as_slice())
            .unwrap_or(&[])
    }

    /// Marks the current step done; returns whether the deployment is now finished.
    pub fn advance(&mut self) -> bool {
        if !self.is_finished() {
            self.current_step += 1;
        }
        self.is_finished()
    }

    /// Past its deadline and not finished: time to fail it (and roll back).
    pub fn is_overdue(&self, now: u64) -> bool {
        !self.is_finished() && now >= self.deadline
    }

    /// The spec an affected app is deployed to; `None` when the deployment removes it.
    pub fn target_of(&self, app: &PathId) -> Option<&AppSpec> {
        self.target.iter().find(|a| &a.id == app)
    }

    /// The spec an affected pod is deployed to; `None` when the deployment removes it.
    pub fn target_pod(&self, pod: &PathId) -> Option<&PodSpec> {
        self.target_pods.iter().find(|p| &p.id == pod)
    }

    /// Whether this deployment changes any of `apps` (apps or pods: they share the ids).
    pub fn affects(&self, apps: &[PathId]) -> bool {
        apps.iter()
            .any(|a| self.affected_apps.contains(a) || self.affected_pods.contains(a))
    }

    /// The deployment that undoes this one: its original apps (or pod) become the target again
    /// (new ones are stopped, removed ones started, changed ones restarted with their old
    /// version).
    pub fn rollback(&self, id: String, now: u64, timeout_ms: u64) -> Result<Deployment, ValidationErrors> {
        if !self.affected_pods.is_empty() {
            return Ok(Deployment::plan_pod(
                id,
                self.target_pods.first(),
                self.original_pods.first(),
                now,
                timeout_ms,
            ));
        }
        Deployment::plan(id, &self.target, &self.original, now, timeout_ms)
    }

    /// The `/v2/deployments` entry.
    pub fn info(&self) -> DeploymentInfo {
        DeploymentInfo {
            id: self.id.clone(),
            version: self.version.clone(),
            affected_apps: self.affected_apps.clone(),
            affected_pods: self.affected_pods.iter().map(|p| p.to_string()).collect(),
            steps: self.steps.clone(),
            current_actions: self
                .current_actions()
                .iter()
                .map(|a| CurrentAction {
                    action: a.action,
                    app: a.app.clone(),
                    readiness_check_results: Vec::new(),
                })
                .collect(),
            current_step: (self.current_step + 1).min(self.steps.len()),
            total_steps: self.steps.len(),
            deadline: Some(crate::time::format_timestamp(self.deadline)),
        }
    }

    /// The `plan` object of the `deployment_*` events; `original` and `target` hold the affected
    /// apps only.
    pub fn plan_view(&self) -> DeploymentPlanView {
        DeploymentPlanView {
            id: self.id.clone(),
            original: Group::from_apps(self.original.iter().cloned()),
            target: Group::from_apps(self.target.iter().cloned()),
            steps: self.steps.clone(),
            version: self.version.clone(),
        }
    }
}

fn push_step<'a>(steps: &mut Vec<DeploymentStep>, ids: impl Iterator<Item = &'a PathId>, kind: ActionKind) {
    let actions: Vec<DeploymentAction> = ids
        .map(|id| DeploymentAction {
            action: kind,
            app: id.clone(),
        })
        .collect();
    if !actions.is_empty() {
        steps.push(DeploymentStep { actions });
    }
}

/// The deployments among `running` that change one of `apps`: a new deployment of those apps is
/// refused (409 in Marathon) unless forced, which cancels these.
pub fn conflicting<'a>(running: &'a [Deployment], apps: &[PathId]) -> Vec<&'a Deployment> {
    running.iter().filter(|d| d.affects(apps)).collect()
}

/// A deployment as `/v2/deployments` lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentInfo {
    pub id: String,
    pub version: String,
    pub affected_apps: Vec<PathId>,
    pub affected_pods: Vec<String>,
    pub steps: Vec<DeploymentStep>,
    pub current_actions: Vec<CurrentAction>,
    /// 1-based, as in Marathon.
    pub current_step: usize,
    pub total_steps: usize,
    /// tepui's: when the deployment rolls back if it is not done (not in Marathon's JSON;
    /// its clients ignore it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deadline: Option<String>,
}

/// An action under way; like [`DeploymentAction`], `app` is `pod` in JSON for a pod.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "ActionJson", from = "ActionJson")]
pub struct CurrentAction {
    pub action: ActionKind,
    pub app: PathId,
    pub readiness_check_results: Vec<serde_json::Value>,
}

impl From<CurrentAction> for ActionJson {
    fn from(a: CurrentAction) -> ActionJson {
        ActionJson {
            readiness_check_results: Some(a.readiness_check_results),
            ..ActionJson::new(a.action, a.app)
        }
    }
}

impl From<ActionJson> for CurrentAction {
    fn from(j: ActionJson) -> CurrentAction {
        CurrentAction {
            action: j.action,
            app: j.id(),
            readiness_check_results: j.readiness_check_results.clone().unwrap_or_default(),
        }
    }
}

/// The `plan` of the `deployment_info`, `deployment_success`, `deployment_failed` and
/// `deployment_step_*` events.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeploymentPlanView {
    pub id: String,
    pub original: Group,
    pub target: Group,
    pub steps: Vec<DeploymentStep>,
    pub version: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppDefinition;
    use crate::validate::validate_app;

    fn app(id: &str, instances: u32, cmd: &str, deps: &[&str]) -> AppSpec {
        let json = serde_json::json!({"id": id, "cmd": cmd, "instances": instances, "dependencies": deps}).to_string();
        validate_app(&AppDefinition::from_json(&json).unwrap(), &PathId::root(), 0).unwrap()
    }

    fn steps(d: &Deployment) -> Vec<Vec<(ActionKind, String)>> {
        d.steps
            .iter()
            .map(|s| s.actions.iter().map(|a| (a.action, a.app.to_string())).collect())
            .collect()
    }

    use ActionKind::*;

    #[test]
    fn new_apps_start_then_scale_in_dependency_order() {
        let target = [app("/app", 2, "x", &["/db"]), app("/db", 1, "x", &[])];
        let d = Deployment::plan("d1".into(), &[], &target, 1_000, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(
            steps(&d),
            [
                vec![(StartApplication, "/app".into()), (StartApplication, "/db".into())],
                vec![(ScaleApplication, "/db".into())],
                vec![(ScaleApplication, "/app".into())],
            ]
        );
        assert_eq!(d.affected_apps.len(), 2);
        assert_eq!(d.deadline, 1_000 + 600_000);
        assert_eq!(d.version, "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn removed_apps_stop_dependents_first() {
        let original = [app("/app", 2, "x", &["/db"]), app("/db", 1, "x", &[])];
        let d = Deployment::plan("d".into(), &original, &[], 0, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(
            steps(&d),
            [
                vec![(StopApplication, "/app".into())],
                vec![(StopApplication, "/db".into())]
            ]
        );
        assert_eq!(d.target_of(&PathId::parse("/app").unwrap()), None);
    }

    #[test]
    fn scale_restart_and_unchanged() {
        let original = [app("/a", 1, "x", &[]), app("/b", 1, "x", &[]), app("/c", 1, "x", &[])];
        let target = [app("/a", 3, "x", &[]), app("/b", 1, "y", &[]), app("/c", 1, "x", &[])];
        let d = Deployment::plan("d".into(), &original, &target, 0, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(
            steps(&d),
            [vec![(ScaleApplication, "/a".into()), (RestartApplication, "/b".into())]]
        );
        assert_eq!(
            d.affected_apps,
            [PathId::parse("/a").unwrap(), PathId::parse("/b").unwrap()]
        );
        assert_eq!(d.original.len(), 2);
    }

    #[test]
    fn a_restart_is_a_new_config_version() {
        let original = [app("/a", 2, "x", &[])];
        let target = [original[0].restarted(5_000)];
        let d = Deployment::plan("d".into(), &original, &target, 5_000, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(steps(&d), [vec![(RestartApplication, "/a".into())]]);
    }

    #[test]
    fn nothing_to_do_finishes_at_once() {
        let apps = [app("/a", 1, "x", &[])];
        let d = Deployment::plan("d".into(), &apps, &apps, 0, DEFAULT_TIMEOUT_MS).unwrap();
        assert!(d.is_finished());
        assert!(d.current_actions().is_empty());
    }

    #[test]
    fn advances_and_expires() {
        let mut d = Deployment::plan("d".into(), &[], &[app("/a", 1, "x", &[])], 0, 1_000).unwrap();
        assert_eq!(d.current_actions()[0].action, StartApplication);
        assert!(!d.is_overdue(999));
        assert!(d.is_overdue(1_000));
        assert!(!d.advance());
        assert_eq!(d.current_actions()[0].action, ScaleApplication);
        assert!(d.advance());
        assert!(d.advance(), "advancing a finished deployment is harmless");
        assert!(!d.is_overdue(5_000));
    }

    #[test]
    fn rollback_targets_the_previous_versions() {
        let original = [app("/a", 1, "x", &[]), app("/gone", 1, "x", &[])];
        let target = [app("/a", 1, "y", &[]), app("/new", 1, "x", &[])];
        let d = Deployment::plan("d".into(), &original, &target, 0, DEFAULT_TIMEOUT_MS).unwrap();
        let r = d.rollback("r".into(), 10, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(
            steps(&r),
            [
                vec![(StopApplication, "/new".into())],
                vec![(StartApplication, "/gone".into())],
                vec![(RestartApplication, "/a".into()), (ScaleApplication, "/gone".into())],
            ]
        );
        assert_eq!(
            r.target_of(&PathId::parse("/a").unwrap()).unwrap().cmd.as_deref(),
            Some("x")
        );
    }

    #[test]
    fn cycles_are_refused() {
        let target = [app("/a", 1, "x", &["/b"]), app("/b", 1, "x", &["/a"])];
        assert!(Deployment::plan("d".into(), &[], &target, 0, DEFAULT_TIMEOUT_MS).is_err());
    }

    #[test]
    fn info_and_conflicts() {
        let d = Deployment::plan("d".into(), &[], &[app("/a", 1, "x", &[])], 0, DEFAULT_TIMEOUT_MS).unwrap();
        let info = serde_json::to_value(d.info()).unwrap();
        assert_eq!(info["currentStep"], 1);
        assert_eq!(info["totalSteps"], 2);
        assert_eq!(info["affectedApps"][0], "/a");
        assert_eq!(info["steps"][0]["actions"][0]["action"], "StartApplication");
        assert_eq!(info["currentActions"][0]["app"], "/a");
        assert_eq!(
            info["currentActions"][0]["readinessCheckResults"],
            serde_json::json!([])
        );
        let view = serde_json::to_value(d.plan_view()).unwrap();
        assert_eq!(view["target"]["apps"][0]["id"], "/a");
        assert_eq!(view["original"]["id"], "/");
        let running = [d];
        assert_eq!(conflicting(&running, &[PathId::parse("/a").unwrap()]).len(), 1);
        assert!(conflicting(&running, &[PathId::parse("/b").unwrap()]).is_empty());
    }

    fn pod(id: &str, instances: u32, shell: &str, min_health: f64, over: f64) -> PodSpec {
        let json = serde_json::json!({"id": id, "scaling": {"kind": "fixed", "instances": instances},
            "scheduling": {"upgrade": {"minimumHealthCapacity": min_health, "maximumOverCapacity": over}},
            "containers": [{"name": "main", "exec": {"command": {"shell": shell}}}]});
        let def: crate::pod::PodDefinition = serde_json::from_value(json).unwrap();
        crate::pod::validate_pod(&def, &PathId::root(), 0).unwrap()
    }

    #[test]
    fn pods_start_scale_restart_and_stop_like_apps() {
        let v1 = pod("/p", 2, "x", 1.0, 1.0);
        let d = Deployment::plan_pod("d".into(), None, Some(&v1), 0, DEFAULT_TIMEOUT_MS);
        assert_eq!(
            steps(&d),
            vec![vec![(StartPod, "/p".into())], vec![(ScalePod, "/p".into())]]
        );
        assert_eq!(d.target_pod(&v1.id), Some(&v1));
        assert!(d.affects(&[v1.id.clone()]));
        let mut scaled = v1.clone();
        scaled.scaling.instances = 3;
        scaled.stamp(Some(&v1), 1_000);
        let d = Deployment::plan_pod("d".into(), Some(&v1), Some(&scaled), 1_000, DEFAULT_TIMEOUT_MS);
        assert_eq!(steps(&d), vec![vec![(ScalePod, "/p".into())]]);
        let mut changed = scaled.clone();
        changed.containers[0].exec.as_mut().unwrap().command = crate::pod::MesosCommand::Shell { shell: "y".into() };
        changed.stamp(Some(&scaled), 2_000);
        let d = Deployment::plan_pod("d".into(), Some(&scaled), Some(&changed), 2_000, DEFAULT_TIMEOUT_MS);
        assert_eq!(steps(&d), vec![vec![(RestartPod, "/p".into())]]);
        // Rolling back restarts the old configuration.
        let back = d.rollback("r".into(), 3_000, DEFAULT_TIMEOUT_MS).unwrap();
        assert_eq!(steps(&back), vec![vec![(RestartPod, "/p".into())]]);
        assert_eq!(back.target_pod(&v1.id), Some(&scaled));
        let d = Deployment::plan_pod("d".into(), Some(&changed), None, 3_000, DEFAULT_TIMEOUT_MS);
        assert_eq!(steps(&d), vec![vec![(StopPod, "/p".into())]]);
        assert!(Deployment::plan_pod("d".into(), Some(&v1), Some(&v1), 0, DEFAULT_TIMEOUT_MS).is_finished());
        // Marathon names a pod's actions `pod`, not `app`.
        let info = serde_json::to_value(d.info()).unwrap();
        assert_eq!(info["affectedPods"][0], "/p");
        assert_eq!(info["steps"][0]["actions"][0]["action"], "StopPod");
        assert_eq!(info["steps"][0]["actions"][0]["pod"], "/p");
        assert!(info["steps"][0]["actions"][0].get("app").is_none());
        assert_eq!(info["currentActions"][0]["pod"], "/p");
        let stored: Deployment = serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
        assert_eq!(stored, d);
    }

    #[test]
    fn a_pods_rolling_update_keeps_its_upgrade_strategy() {
        use crate::instance::{Health, Instance, InstanceState};
        use crate::plan::step_with;
        // Two instances, at least one healthy, at most one extra: one new instance at a time.
        let old = pod("/p", 2, "x", 0.5, 0.5);
        let mut new = old.clone();
        new.containers[0].exec.as_mut().unwrap().command = crate::pod::MesosCommand::Shell { shell: "y".into() };
        new.stamp(Some(&old), 5_000);
        let running = |id: &str, version: &str| Instance {
            id: id.into(),
            version: version.into(),
            state: InstanceState::Running,
            health: Health::NoChecks,
            agent: None,
            started_at: Some(1),
            unreachable_since: None,
        };
        let a = running("a", old.config_version());
        let b = running("b", old.config_version());
        let d = step_with(&new.policy(), &[a.clone(), b.clone()], 6_000);
        // 2 + floor(0.5 * 2) = 3 at most: one launch; ceil(0.5 * 2) = 1 healthy at least: one kill.
        assert_eq!(d.launch, 1);
        assert_eq!(d.kill.len(), 1);
        assert!(!d.complete);
        let c = running("c", new.config_version());
        let d = running("d", new.config_version());
        let done = step_with(&new.policy(), &[c, d], 7_000);
        assert!(done.complete);
    }
}

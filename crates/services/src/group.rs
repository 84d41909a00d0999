//! Groups: the tree of apps under path ids, Marathon's `/v2/groups` shape, and the dependency
//! order in which apps are started, scaled and upgraded.
//!
//! A dependency names an app or a group; a group stands for every app below it. A group's own
//! `dependencies` apply to every app inside it. Apps are ordered in levels: level 0 depends on
//! nothing in the set, level `k` on something in level `k - 1` at most. A cycle is a validation
//! error that names it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::app::{AppDefinition, AppSpec};
use crate::path::PathId;
use crate::validate::{validate_app, ValidationErrors, ID_PATTERN};

/// Why an app cannot be put into a group.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    #[error("app {app} is not inside group {group}")]
    OutsideGroup { app: PathId, group: PathId },
}

/// A group and everything below it, apps and groups sorted by id. Serializes as Marathon's group
/// JSON (`{id, apps, groups, dependencies, version}`).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub id: PathId,
    #[serde(default)]
    pub apps: Vec<AppSpec>,
    #[serde(default)]
    pub groups: Vec<Group>,
    #[serde(default)]
    pub dependencies: Vec<PathId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

impl Group {
    pub fn new(id: PathId) -> Group {
        Group { id, ..Group::default() }
    }

    /// The root group holding `apps`, with the groups their ids need.
    pub fn from_apps(apps: impl IntoIterator<Item = AppSpec>) -> Group {
        let mut root = Group::new(PathId::root());
        for app in apps {
            // Every id is below the root.
            let _ = root.put_app(app);
        }
        root
    }

    /// Adds or replaces an app, creating the groups between. Returns the app it replaced.
    pub fn put_app(&mut self, app: AppSpec) -> Result<Option<AppSpec>, GroupError> {
        if app.id == self.id || !self.id.contains(&app.id) {
            return Err(GroupError::OutsideGroup {
                app: app.id.clone(),
                group: self.id.clone(),
            });
        }
        let group = self.group_mut_or_create(&app.id.parent());
        match group.apps.binary_search_by(|a| a.id.cmp(&app.id)) {
            Ok(i) => Ok(Some(std::mem::replace(&mut group.apps[i], app))),
            Err(i) => {
                group.apps.insert(i, app);
                Ok(None)
            }
        }
    }

    /// Removes an app; the groups it was in stay.
    pub fn remove_app(&mut self, id: &PathId) -> Option<AppSpec> {
        let group = self.group_mut(&id.parent())?;
        let i = group.apps.iter().position(|a| &a.id == id)?;
        Some(group.apps.remove(i))
    }

    pub fn app(&self, id: &PathId) -> Option<&AppSpec> {
        self.group(&id.parent())?.apps.iter().find(|a| &a.id == id)
    }

    /// The group `id`, which is `self` or below it.
    pub fn group(&self, id: &PathId) -> Option<&Group> {
        if &self.id == id {
            return Some(self);
        }
        self.groups.iter().find(|g| g.id.contains(id))?.group(id)
    }

    fn group_mut(&mut self, id: &PathId) -> Option<&mut Group> {
        if &self.id == id {
            return Some(self);
        }
        self.groups.iter_mut().find(|g| g.id.contains(id))?.group_mut(id)
    }

    fn group_mut_or_create(&mut self, id: &PathId) -> &mut Group {
        if &self.id == id {
            return self;
        }
        let child_id = id.prefix(self.id.segments().len() + 1);
        let i = match self.groups.binary_search_by(|g| g.id.cmp(&child_id)) {
            Ok(i) => i,
            Err(i) => {
                self.groups.insert(i, Group::new(child_id));
                i
            }
        };
        self.groups[i].group_mut_or_create(id)
    }

    /// Every app in this group and below, sorted by id.
    pub fn transitive_apps(&self) -> Vec<&AppSpec> {
        let mut out: Vec<&AppSpec> = self.apps.iter().collect();
        for g in &self.groups {
            out.extend(g.transitive_apps());
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Every group below this one (not itself), sorted by id.
    pub fn transitive_groups(&self) -> Vec<&Group> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.push(g);
            out.extend(g.transitive_groups());
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        out
    }

    /// Whole-tree rules: an app and a group never share an id, every dependency names an app
    /// or group of the tree, and dependencies have no cycle.
    pub fn validate(&self) -> Result<(), ValidationErrors> {
        let mut e = ValidationErrors::new();
        let group_ids: BTreeSet<&PathId> = self.transitive_groups().into_iter().map(|g| &g.id).collect();
        let apps = self.transitive_apps();
        for app in &apps {
            if group_ids.contains(&app.id) {
                e.add(
                    "/",
                    format!("Groups and Applications may not have the same identifier: {}", app.id),
                );
            }
        }
        let exists = |d: &PathId| *d == self.id || group_ids.contains(d) || apps.iter().any(|a| &a.id == d);
        for app in &apps {
            for d in app.dependencies.iter().filter(|d| !exists(d)) {
                e.add("/", format!("dependency {d} of app {} does not exist", app.id));
            }
        }
        for g in std::iter::once(self).chain(self.transitive_groups()) {
            for d in g.dependencies.iter().filter(|d| !exists(d)) {
                e.add("/", format!("dependency {d} of group {} does not exist", g.id));
            }
        }
        if e.is_empty() {
            self.dependency_levels()?;
        }
        e.into_result(())
    }

    /// The apps of the tree in dependency levels, with group dependencies applied to every app
    /// inside the group.
    pub fn dependency_levels(&self) -> Result<Vec<Vec<PathId>>, ValidationErrors> {
        let apps = self.transitive_apps();
        let ids: Vec<&PathId> = apps.iter().map(|a| &a.id).collect();
        let mut nodes = Vec::new();
        for app in &apps {
            let mut deps = app.dependencies.clone();
            let mut g = Some(self);
            while let Some(group) = g {
                if group.id.contains(&app.id) {
                    deps.extend(group.dependencies.iter().cloned());
                }
                g = group.groups.iter().find(|c| c.id.contains(&app.id));
            }
            nodes.push((app.id.clone(), expand(&deps, &app.id, &ids)));
        }
        levels(nodes)
    }
}

/// The apps of `apps` in dependency levels; dependencies outside `apps` are ignored.
pub fn dependency_levels(apps: &[AppSpec]) -> Result<Vec<Vec<PathId>>, ValidationErrors> {
    let ids: Vec<&PathId> = apps.iter().map(|a| &a.id).collect();
    levels(
        apps.iter()
            .map(|a| (a.id.clone(), expand(&a.dependencies, &a.id, &ids)))
            .collect(),
    )
}

/// The apps of `apps` in an order where every app comes after what it depends on (level by
/// level, by id within a level).
pub fn dependency_order(apps: &[AppSpec]) -> Result<Vec<PathId>, ValidationErrors> {
    Ok(dependency_levels(apps)?.into_iter().flatten().collect())
}

/// The apps a list of dependencies names: each app or every app below each group.
fn expand(deps: &[PathId], me: &PathId, ids: &[&PathId]) -> BTreeSet<PathId> {
    ids.iter()
        .filter(|id| *id != &me && deps.iter().any(|d| d.contains(id)))
        .map(|id| (*id).clone())
        .collect()
}

/// Kahn's algorithm in rounds: each round is one level, in id order.
fn levels(nodes: Vec<(PathId, BTreeSet<PathId>)>) -> Result<Vec<Vec<PathId>>, ValidationErrors> {
    let mut pending: BTreeMap<PathId, BTreeSet<PathId>> = nodes.into_iter().collect();
    let mut out = Vec::new();
    while !pending.is_empty() {
        let ready: Vec<PathId> = pending
            .iter()
            .filter(|(_, deps)| deps.iter().all(|d| !pending.contains_key(d)))
            .map(|(id, _)| id.clone())
            .collect();
        if ready.is_empty() {
            return Err(ValidationErrors::single(
                "/",
                format!("Dependency graph has cyclic dependencies: {}", describe_cycle(&pending)),
            ));
        }
        for id in &ready {
            pending.remove(id);
        }
        out.push(ready);
    }
    Ok(out)
}

/// One cycle among `pending` (where every node waits on another), as `/a -> /b -> /a`.
fn describe_cycle(pending: &BTreeMap<PathId, BTreeSet<PathId>>) -> String {
    let mut path: Vec<&PathId> = Vec::new();
    let mut current = pending.keys().next().expect("a cycle has nodes");
    loop {
        if let Some(start) = path.iter().position(|p| *p == current) {
            let mut cycle: Vec<String> = path[start..].iter().map(ToString::to_string).collect();
            cycle.push(current.to_string());
            return cycle.join(" -> ");
        }
        path.push(current);
        current = pending[current]
            .iter()
            .find(|d| pending.contains_key(*d))
            .expect("every pending node waits on one");
    }
}

/// What a change of a group deploys: apps put whole and apps removed, as one deployment.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct GroupChange {
    pub put: Vec<AppSpec>,
    pub remove: Vec<PathId>,
}

/// The apps of `group` and below with the dependencies of the groups they sit in (from `group`
/// down) added to their own: tepui keeps a group as the apps inside it, so a group's
/// dependencies live on on its apps.
pub fn apps_with_group_dependencies(group: &Group) -> Vec<AppSpec> {
    fn walk(g: &Group, inherited: &[PathId], out: &mut Vec<AppSpec>) {
        let mut deps: Vec<PathId> = inherited.to_vec();
        deps.extend(g.dependencies.iter().cloned());
        for app in &g.apps {
            let mut app = app.clone();
            for d in &deps {
                if !app.dependencies.contains(d) && !d.contains(&app.id) {
                    app.dependencies.push(d.clone());
                }
            }
            out.push(app);
        }
        for child in &g.groups {
            walk(child, &deps, out);
        }
    }
    let mut out = Vec::new();
    walk(group, &[], &mut out);
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Marathon's group update onto the tree `current`: `update` replaces the group of its id (or
/// creates it). Apps or subgroups the client left out (`None` in the definition, told by
/// `apps_given`/`groups_given`) stay as they are; apps of the old group that the new one no
/// longer holds are removed.
pub fn replace_group(current: &Group, mut update: Group, apps_given: bool, groups_given: bool) -> GroupChange {
    let old = current.group(&update.id);
    if let Some(old) = old {
        if !apps_given {
            update.apps = old.apps.clone();
        }
        if !groups_given {
            update.groups = old.groups.clone();
        }
    }
    let put = apps_with_group_dependencies(&update);
    let remove = old
        .map(|old| {
            old.transitive_apps()
                .into_iter()
                .filter(|a| !put.iter().any(|p| p.id == a.id))
                .map(|a| a.id.clone())
                .collect()
        })
        .unwrap_or_default();
    GroupChange { put, remove }
}

/// Every app of the group `id` scaled by `factor` (Marathon's `scaleBy`), rounded up.
pub fn scale_group(current: &Group, id: &PathId, factor: f64) -> Option<GroupChange> {
    let group = current.group(id)?;
    let put = group
        .transitive_apps()
        .into_iter()
        .map(|a| {
            let mut a = a.clone();
            a.instances = (f64::from(a.instances) * factor).ceil().clamp(0.0, f64::from(u32::MAX)) as u32;
            a
        })
        .collect();
    Some(GroupChange { put, remove: vec![] })
}

/// Every app of the group `id` and below removed; `None` when there is no such group.
pub fn remove_group(current: &Group, id: &PathId) -> Option<GroupChange> {
    let group = current.group(id)?;
    let remove = group.transitive_apps().into_iter().map(|a| a.id.clone()).collect();
    Some(GroupChange { put: vec![], remove })
}

/// The tree `current` after `change`, for the whole-tree rules ([`Group::validate`]).
pub fn tree_after(current: &Group, change: &GroupChange) -> Group {
    let mut tree = Group::from_apps(
        current
            .transitive_apps()
            .into_iter()
            .filter(|a| !change.remove.contains(&a.id) && !change.put.iter().any(|p| p.id == a.id))
            .cloned(),
    );
    for app in &change.put {
        // Every id is below the root.
        let _ = tree.put_app(app.clone());
    }
    tree
}

/// A group as a client sends it to `/v2/groups`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupDefinition {
    pub id: Option<String>,
    pub apps: Option<Vec<AppDefinition>>,
    pub groups: Option<Vec<GroupDefinition>>,
    pub dependencies: Option<Vec<String>>,
    /// A version of the group to go back to (`PUT`); tepui keeps versions per app only.
    pub version: Option<String>,
    /// `PUT`: every app below the group scaled by this factor, nothing else changed.
    pub scale_by: Option<f64>,
}

/// Validates a group definition: its id resolved against `base` (no id means `base` itself),
/// app ids relative to the group, each app and group a direct child. Existence of dependencies
/// and cycles are whole-tree rules: check them with [`Group::validate`] on the tree after the
/// group is put in.
pub fn validate_group(def: &GroupDefinition, base: &PathId, now: u64) -> Result<Group, ValidationErrors> {
    let mut e = ValidationErrors::new();
    let id = match def.id.as_deref().filter(|s| !s.is_empty()) {
        None => base.clone(),
        Some(raw) => PathId::resolve(base, raw).unwrap_or_else(|_| {
            e.add("/id", ID_PATTERN);
            base.clone()
        }),
    };
    let mut group = Group::new(id.clone());
    for (i, app_def) in def.apps.iter().flatten().enumerate() {
        match validate_app(app_def, &id, now) {
            Ok(app) if app.id.parent() != id => e.add(
                &format!("/apps({i})/id"),
                format!("must be a direct child of group {id}"),
            ),
            Ok(app) if group.apps.iter().any(|a| a.id == app.id) => {
                e.add(&format!("/apps({i})/id"), format!("duplicate app id {}", app.id))
            }
            Ok(app) => group.apps.push(app),
            Err(errors) => e.extend_prefixed(&format!("/apps({i})"), errors),
        }
    }
    for (i, group_def) in def.groups.iter().flatten().enumerate() {
        match validate_group(group_def, &id, now) {
            Ok(child) if child.id.parent() != id || child.id == id => e.add(
                &format!("/groups({i})/id"),
                format!("must be a direct child of group {id}"),
            ),
            Ok(child) if group.groups.iter().any(|g| g.id == child.id) => {
                e.add(&format!("/groups({i})/id"), format!("duplicate group id {}", child.id))
            }
            Ok(child) => group.groups.push(child),
            Err(errors) => e.extend_prefixed(&format!("/groups({i})"), errors),
        }
    }
    for (i, raw) in def.dependencies.iter().flatten().enumerate() {
        match PathId::resolve(&id.parent(), raw) {
            Ok(d) => group.dependencies.push(d),
            Err(_) => e.add(&format!("/dependencies({i})"), ID_PATTERN),
        }
    }
    group.apps.sort_by(|a, b| a.id.cmp(&b.id));
    group.groups.sort_by(|a, b| a.id.cmp(&b.id));
    group.version = Some(crate::time::format_timestamp(now));
    e.into_result(group)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(id: &str, deps: &[&str]) -> AppSpec {
        let json = serde_json::json!({"id": id, "cmd": "x", "dependencies": deps}).to_string();
        validate_app(&AppDefinition::from_json(&json).unwrap(), &PathId::root(), 0).unwrap()
    }

    fn p(s: &str) -> PathId {
        PathId::parse(s).unwrap()
    }

    fn names(levels: &[Vec<PathId>]) -> Vec<Vec<String>> {
        levels
            .iter()
            .map(|l| l.iter().map(ToString::to_string).collect())
            .collect()
    }

    #[test]
    fn a_groups_dependencies_live_on_on_its_apps() {
        let mut g = Group::new(p("/prod"));
        g.dependencies = vec![p("/db")];
        let mut web = Group::new(p("/prod/web"));
        web.dependencies = vec![p("/cache")];
        web.apps.push(app("/prod/web/front", &[]));
        g.groups.push(web);
        g.apps.push(app("/prod/api", &["/auth"]));
        let apps = apps_with_group_dependencies(&g);
        let deps: Vec<(String, Vec<String>)> = apps
            .iter()
            .map(|a| {
                (
                    a.id.to_string(),
                    a.dependencies.iter().map(ToString::to_string).collect(),
                )
            })
            .collect();
        assert_eq!(
            deps,
            vec![
                ("/prod/api".to_string(), vec!["/auth".to_string(), "/db".to_string()]),
                (
                    "/prod/web/front".to_string(),
                    vec!["/db".to_string(), "/cache".to_string()]
                ),
            ]
        );
    }

    #[test]
    fn a_group_update_replaces_what_it_gives_and_keeps_what_it_leaves_out() {
        let current = Group::from_apps([
            app("/prod/a", &[]),
            app("/prod/b", &[]),
            app("/prod/sub/c", &[]),
            app("/other", &[]),
        ]);
        let mut update = Group::new(p("/prod"));
        update.apps.push(app("/prod/a", &[]));
        update.apps.push(app("/prod/new", &[]));
        // Apps given, groups left out: /prod/b goes, /prod/sub/c stays, /other is not touched.
        let change = replace_group(&current, update.clone(), true, false);
        let put: Vec<String> = change.put.iter().map(|a| a.id.to_string()).collect();
        assert_eq!(put, ["/prod/a", "/prod/new", "/prod/sub/c"]);
        assert_eq!(change.remove, vec![p("/prod/b")]);
        // Groups given as none: the subgroup goes too.
        let change = replace_group(&current, update, true, true);
        let mut removed: Vec<String> = change.remove.iter().map(ToString::to_string).collect();
        removed.sort();
        assert_eq!(removed, ["/prod/b", "/prod/sub/c"]);
        let after = tree_after(&current, &change);
        assert!(after.app(&p("/other")).is_some());
        assert!(after.app(&p("/prod/new")).is_some());
        assert!(after.app(&p("/prod/b")).is_none());
    }

    #[test]
    fn scaling_and_removing_a_group_reach_every_app_below_it() {
        let mut three = app("/prod/sub/c", &[]);
        three.instances = 3;
        let current = Group::from_apps([app("/prod/a", &[]), three, app("/other", &[])]);
        let scaled = scale_group(&current, &p("/prod"), 1.5).unwrap();
        let counts: Vec<(String, u32)> = scaled.put.iter().map(|a| (a.id.to_string(), a.instances)).collect();
        assert_eq!(counts, [("/prod/a".to_string(), 2), ("/prod/sub/c".to_string(), 5)]);
        assert_eq!(
            remove_group(&current, &p("/prod")).unwrap().remove,
            vec![p("/prod/a"), p("/prod/sub/c")]
        );
        assert!(remove_group(&current, &p("/nothing")).is_none());
        assert!(scale_group(&current, &p("/nothing"), 2.0).is_none());
    }

    #[test]
    fn builds_a_tree_and_finds_things() {
        let mut root = Group::from_apps([app("/prod/web", &[]), app("/prod/db/main", &[]), app("/tools", &[])]);
        assert_eq!(root.apps.len(), 1);
        assert_eq!(root.groups[0].id, p("/prod"));
        assert_eq!(root.group(&p("/prod/db")).unwrap().apps[0].id, p("/prod/db/main"));
        assert!(root.app(&p("/prod/web")).is_some());
        assert!(root.app(&p("/prod/nope")).is_none());
        let ids: Vec<String> = root.transitive_apps().iter().map(|a| a.id.to_string()).collect();
        assert_eq!(ids, ["/prod/db/main", "/prod/web", "/tools"]);
        let replaced = root.put_app(app("/prod/web", &[])).unwrap();
        assert!(replaced.is_some());
        assert!(root.remove_app(&p("/prod/web")).is_some());
        assert!(root.app(&p("/prod/web")).is_none());
        assert!(root.group(&p("/prod")).is_some(), "groups stay");
        let mut prod = Group::new(p("/prod"));
        assert!(prod.put_app(app("/other/x", &[])).is_err());
    }

    #[test]
    fn orders_by_dependencies() {
        // app -> db -> cache; web independent.
        let apps = [
            app("/app", &["/db"]),
            app("/db", &["/cache"]),
            app("/cache", &[]),
            app("/web", &[]),
        ];
        let levels = dependency_levels(&apps).unwrap();
        assert_eq!(names(&levels), [vec!["/cache", "/web"], vec!["/db"], vec!["/app"]]);
        let order: Vec<String> = dependency_order(&apps)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(order, ["/cache", "/web", "/db", "/app"]);
    }

    #[test]
    fn a_group_dependency_covers_its_apps() {
        let apps = [
            app("/front/web", &["/back"]),
            app("/back/db", &[]),
            app("/back/api", &["db"]),
        ];
        let levels = dependency_levels(&apps).unwrap();
        assert_eq!(
            names(&levels),
            [vec!["/back/db"], vec!["/back/api"], vec!["/front/web"]]
        );
    }

    #[test]
    fn group_level_dependencies_apply_to_members() {
        let mut root = Group::from_apps([app("/front/web", &[]), app("/back/db", &[])]);
        root.groups[1].dependencies.push(p("/back"));
        assert_eq!(root.groups[1].id, p("/front"));
        let levels = root.dependency_levels().unwrap();
        assert_eq!(names(&levels), [vec!["/back/db"], vec!["/front/web"]]);
    }

    #[test]
    fn a_cycle_is_named() {
        let apps = [
            app("/a", &["/b"]),
            app("/b", &["/c"]),
            app("/c", &["/a"]),
            app("/d", &[]),
        ];
        let e = dependency_levels(&apps).unwrap_err();
        assert_eq!(e.details[0].path, "/");
        assert_eq!(
            e.details[0].errors[0],
            "Dependency graph has cyclic dependencies: /a -> /b -> /c -> /a"
        );
    }

    #[test]
    fn validate_checks_the_whole_tree() {
        let root = Group::from_apps([app("/a", &["/missing"]), app("/g/x", &[]), app("/g", &[])]);
        let e = root.validate().unwrap_err();
        assert!(e.has("/", "Groups and Applications may not have the same identifier: /g"));
        assert!(e.has("/", "dependency /missing of app /a does not exist"));
        let cyclic = Group::from_apps([app("/a", &["/b"]), app("/b", &["/a"])]);
        assert!(cyclic.validate().unwrap_err().details[0].errors[0].contains("/a -> /b -> /a"));
        assert!(Group::from_apps([app("/a", &["/g"]), app("/g/x", &[])])
            .validate()
            .is_ok());
    }

    #[test]
    fn group_definitions_resolve_relative_ids() {
        let def: GroupDefinition = serde_json::from_str(
            r#"{"id":"/prod","apps":[{"id":"web","cmd":"x","dependencies":["db"]},{"id":"db","cmd":"y"}],
                "groups":[{"id":"tools","apps":[{"id":"cron","cmd":"z"}]}],"dependencies":["/base"]}"#,
        )
        .unwrap();
        let g = validate_group(&def, &PathId::root(), 0).unwrap();
        assert_eq!(g.id, p("/prod"));
        assert_eq!(g.apps[0].id, p("/prod/db"));
        assert_eq!(g.apps[1].dependencies, [p("/prod/db")]);
        assert_eq!(g.groups[0].apps[0].id, p("/prod/tools/cron"));
        assert_eq!(g.dependencies, [p("/base")]);
        let json = serde_json::to_value(&g).unwrap();
        assert_eq!(json["groups"][0]["id"], "/prod/tools");
        assert_eq!(json["apps"][0]["id"], "/prod/db");
    }

    #[test]
    fn group_definition_errors_carry_their_position() {
        let def: GroupDefinition = serde_json::from_str(
            r#"{"id":"/prod","apps":[{"id":"web","cmd":"x","cpus":-1},{"id":"/elsewhere/x","cmd":"x"},{"id":"web","cmd":"x"}],
                "groups":[{"id":"sub","apps":[{"id":"a"}]}]}"#,
        )
        .unwrap();
        let e = validate_group(&def, &PathId::root(), 0).unwrap_err();
        assert!(e.has("/apps(0)/cpus", "got -1, expected 0.001 or more"));
        assert!(e.has("/apps(1)/id", "must be a direct child of group /prod"));
        assert!(e.has("/groups(0)/apps(0)", crate::validate::CMD_ARGS_OR_CONTAINER));
    }
}

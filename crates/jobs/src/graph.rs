//! Dependent jobs (Chronos' `parents`, Metronome's `dependencies`): the graph must name only
//! jobs that exist and have no cycle, and a child is ready once every parent has succeeded
//! since the child last ran. Which parents have succeeded is kept in the replicated state, so
//! a change of leader between two parents' runs loses nothing.

use std::collections::{BTreeMap, BTreeSet};

/// Why a set of jobs' parents is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GraphError {
    #[error("job {job:?} names parent {parent:?}, which does not exist")]
    UnknownParent { job: String, parent: String },
    #[error("job {job:?} would depend on itself: {}", cycle.join(" -> "))]
    Cycle { job: String, cycle: Vec<String> },
}

/// Checks jobs by name with their parents: every parent exists, and no job depends on itself
/// through any path. The first problem found, in name order.
pub fn check(parents: &BTreeMap<String, Vec<String>>) -> Result<(), GraphError> {
    for (job, ps) in parents {
        if let Some(p) = ps.iter().find(|p| !parents.contains_key(*p)) {
            return Err(GraphError::UnknownParent {
                job: job.clone(),
                parent: p.clone(),
            });
        }
    }
    // Depth-first with colours: grey on the path, black done.
    #[derive(Clone, Copy, PartialEq)]
    enum Colour {
        Grey,
        Black,
    }
    let mut colour: BTreeMap<&str, Colour> = BTreeMap::new();
    for start in parents.keys() {
        if colour.contains_key(start.as_str()) {
            continue;
        }
        let mut path: Vec<(&str, usize)> = vec![(start.as_str(), 0)];
        colour.insert(start.as_str(), Colour::Grey);
        while let Some((job, next)) = path.last_mut() {
            let ps = &parents[*job];
            if *next == ps.len() {
                colour.insert(job, Colour::Black);
                path.pop();
                continue;
            }
            let p = ps[*next].as_str();
            *next += 1;
            match colour.get(p) {
                Some(Colour::Grey) => {
                    let from = path.iter().position(|(j, _)| *j == p).unwrap_or(0);
                    let mut cycle: Vec<String> = path[from..].iter().map(|(j, _)| j.to_string()).collect();
                    cycle.push(p.to_string());
                    return Err(GraphError::Cycle {
                        job: p.to_string(),
                        cycle,
                    });
                }
                Some(Colour::Black) => {}
                None => {
                    colour.insert(p, Colour::Grey);
                    path.push((p, 0));
                }
            }
        }
    }
    Ok(())
}

/// Whether a child with `parents` is ready: each of them has succeeded since the child last
/// ran (`succeeded` is that set, as the state keeps it).
pub fn ready(parents: &[String], succeeded: &BTreeSet<String>) -> bool {
    !parents.is_empty() && parents.iter().all(|p| succeeded.contains(p))
}

/// What a job's children get when it is deleted, as in Chronos: its parents in its place (or,
/// for a child left with none, the deleted job's schedule, which the caller applies).
pub fn without(parents: &BTreeMap<String, Vec<String>>, deleted: &str) -> BTreeMap<String, Vec<String>> {
    let inherited = parents.get(deleted).cloned().unwrap_or_default();
    parents
        .iter()
        .filter(|(job, _)| job.as_str() != deleted)
        .map(|(job, ps)| {
            let mut out: Vec<String> = Vec::new();
            for p in ps {
                let replaced: Vec<String> = if p == deleted {
                    inherited.clone()
                } else {
                    vec![p.clone()]
                };
                for r in replaced {
                    if !out.contains(&r) {
                        out.push(r);
                    }
                }
            }
            (job.clone(), out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn g(edges: &[(&str, &[&str])]) -> BTreeMap<String, Vec<String>> {
        edges
            .iter()
            .map(|(j, ps)| (j.to_string(), ps.iter().map(|p| p.to_string()).collect()))
            .collect()
    }

    #[test]
    fn unknown_parents_and_cycles_are_refused() {
        assert_eq!(check(&g(&[("a", &[]), ("b", &["a"]), ("c", &["a", "b"])])), Ok(()));
        assert_eq!(
            check(&g(&[("a", &[]), ("b", &["x"])])),
            Err(GraphError::UnknownParent {
                job: "b".into(),
                parent: "x".into()
            })
        );
        let e = check(&g(&[("a", &["c"]), ("b", &["a"]), ("c", &["b"])])).unwrap_err();
        assert!(matches!(&e, GraphError::Cycle { cycle, .. } if cycle.len() == 4), "{e}");
        assert!(e.to_string().contains("->"), "{e}");
        assert!(matches!(check(&g(&[("a", &["a"])])), Err(GraphError::Cycle { .. })));
    }

    #[test]
    fn a_child_waits_for_every_parent() {
        let parents = vec!["a".to_string(), "b".to_string()];
        let mut done = BTreeSet::new();
        assert!(!ready(&parents, &done));
        done.insert("a".to_string());
        assert!(!ready(&parents, &done));
        done.insert("b".to_string());
        assert!(ready(&parents, &done));
        assert!(!ready(&[], &done), "a job without parents is scheduled, never 'ready'");
    }

    #[test]
    fn deleting_a_parent_hands_its_children_its_parents() {
        let after = without(&g(&[("a", &[]), ("b", &["a"]), ("c", &["b"]), ("d", &["b", "a"])]), "b");
        assert_eq!(after, g(&[("a", &[]), ("c", &["a"]), ("d", &["a"])]));
        assert_eq!(check(&after), Ok(()));
    }
}

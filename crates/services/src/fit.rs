//! Whether an offer fits one instance of an app, which host ports the instance gets, and if it
//! does not fit, every reason why (for [`crate::why`]).
//!
//! An offer is seen as plain quantities per role ([`OfferSummary`]); the allocator's exact
//! resource model stays in the allocator, and the runtime converts. Only resources of the app's
//! `acceptedResourceRoles` count (all roles when it has none).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use crate::app::{AppSpec, NetworkMode};
use crate::constraints::{check_all, AgentInfo, ConstraintViolation};
use crate::pod::PodSpec;

/// Resources of one role in an offer. Port ranges are inclusive.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RoleResources {
    pub role: String,
    pub cpus: f64,
    /// MiB.
    pub mem: f64,
    /// MiB.
    pub disk: f64,
    pub gpus: u32,
    pub ports: Vec<(u16, u16)>,
}

/// An offer as the services scheduler sees it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct OfferSummary {
    pub agent: AgentInfo,
    pub resources: Vec<RoleResources>,
    /// The agent is draining or scheduled for maintenance.
    pub maintenance: bool,
}

/// Why an offer cannot take an instance. The names are Marathon's `processedOffersSummary`
/// reasons.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "reason")]
pub enum Rejection {
    UnfulfilledRole {
        accepted: Vec<String>,
        offered: Vec<String>,
    },
    UnfulfilledConstraint(ConstraintViolation),
    AgentMaintenance,
    InsufficientCpus {
        needed: f64,
        offered: f64,
    },
    InsufficientMemory {
        needed: f64,
        offered: f64,
    },
    InsufficientDisk {
        needed: f64,
        offered: f64,
    },
    InsufficientGpus {
        needed: u32,
        offered: u32,
    },
    /// `missing` lists required host ports (`requirePorts`, fixed `hostPort`s) not offered.
    InsufficientPorts {
        needed: usize,
        offered: usize,
        missing: Vec<u16>,
    },
}

/// Marathon's reason names in the order offers are filtered.
pub const REASONS: [&str; 8] = [
    "UnfulfilledRole",
    "UnfulfilledConstraint",
    "AgentMaintenance",
    "InsufficientCpus",
    "InsufficientMemory",
    "InsufficientDisk",
    "InsufficientGpus",
    "InsufficientPorts",
];

impl Rejection {
    pub fn reason(&self) -> &'static str {
        REASONS[self.rank()]
    }

    /// Position in [`REASONS`].
    pub fn rank(&self) -> usize {
        match self {
            Rejection::UnfulfilledRole { .. } => 0,
            Rejection::UnfulfilledConstraint(_) => 1,
            Rejection::AgentMaintenance => 2,
            Rejection::InsufficientCpus { .. } => 3,
            Rejection::InsufficientMemory { .. } => 4,
            Rejection::InsufficientDisk { .. } => 5,
            Rejection::InsufficientGpus { .. } => 6,
            Rejection::InsufficientPorts { .. } => 7,
        }
    }
}

/// An offer that fits: the host ports, in the order of the app's port definitions (or of its
/// port mappings that have a host port).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fit {
    pub host_ports: Vec<u16>,
}

/// Evaluates `offer` for one instance of `spec`, given the agents of the app's other active
/// instances (for constraints). Every failing check is reported, in [`REASONS`] order.
pub fn evaluate(spec: &AppSpec, offer: &OfferSummary, placed: &[&AgentInfo]) -> Result<Fit, Vec<Rejection>> {
    let demand = Demand {
        cpus: spec.cpus,
        mem: spec.mem,
        disk: spec.disk,
        gpus: spec.gpus,
        accepted_resource_roles: spec.accepted_resource_roles.as_deref(),
        constraints: &spec.constraints,
        ports: requested_ports(spec),
    };
    evaluate_demand(&demand, offer, placed)
}

/// Evaluates `offer` for one instance of a pod: its containers' and executor's resources
/// together, a host port for each endpoint that asks for one (in the pod's endpoint order).
pub fn evaluate_pod(pod: &PodSpec, offer: &OfferSummary, placed: &[&AgentInfo]) -> Result<Fit, Vec<Rejection>> {
    let r = pod.instance_resources();
    let roles = &pod.scheduling.placement.accepted_resource_roles;
    let demand = Demand {
        cpus: r.cpus,
        mem: r.mem,
        disk: r.disk,
        gpus: r.gpus,
        accepted_resource_roles: (!roles.is_empty()).then_some(roles.as_slice()),
        constraints: &pod.scheduling.placement.constraints,
        ports: requested_pod_ports(pod),
    };
    evaluate_demand(&demand, offer, placed)
}

/// The host ports a pod instance needs, by endpoint with a host port: `Some(p)` fixed, `None`
/// any.
pub fn requested_pod_ports(pod: &PodSpec) -> Vec<Option<u16>> {
    pod.endpoints()
        .iter()
        .filter_map(|(_, e)| e.host_port)
        .map(|p| (p != 0).then_some(p))
        .collect()
}

/// What one instance asks of an offer.
struct Demand<'a> {
    cpus: f64,
    mem: f64,
    disk: f64,
    gpus: u32,
    accepted_resource_roles: Option<&'a [String]>,
    constraints: &'a [crate::constraints::Constraint],
    ports: Vec<Option<u16>>,
}

fn evaluate_demand(spec: &Demand, offer: &OfferSummary, placed: &[&AgentInfo]) -> Result<Fit, Vec<Rejection>> {
    const EPSILON: f64 = 1e-9;
    let mut rejections = Vec::new();
    let usable: Vec<&RoleResources> = offer
        .resources
        .iter()
        .filter(|r| {
            spec.accepted_resource_roles
                .as_ref()
                .is_none_or(|roles| roles.contains(&r.role))
        })
        .collect();
    if let Some(accepted) = &spec.accepted_resource_roles {
        if usable.is_empty() {
            let offered: BTreeSet<String> = offer.resources.iter().map(|r| r.role.clone()).collect();
            rejections.push(Rejection::UnfulfilledRole {
                accepted: accepted.to_vec(),
                offered: offered.into_iter().collect(),
            });
        }
    }
    if let Err(v) = check_all(spec.constraints, &offer.agent, placed) {
        rejections.push(Rejection::UnfulfilledConstraint(v));
    }
    if offer.maintenance {
        rejections.push(Rejection::AgentMaintenance);
    }
    let cpus: f64 = usable.iter().map(|r| r.cpus).sum();
    let mem: f64 = usable.iter().map(|r| r.mem).sum();
    let disk: f64 = usable.iter().map(|r| r.disk).sum();
    let gpus: u32 = usable.iter().map(|r| r.gpus).sum();
    if cpus + EPSILON < spec.cpus {
        rejections.push(Rejection::InsufficientCpus {
            needed: spec.cpus,
            offered: cpus,
        });
    }
    if mem + EPSILON < spec.mem {
        rejections.push(Rejection::InsufficientMemory {
            needed: spec.mem,
            offered: mem,
        });
    }
    if disk + EPSILON < spec.disk {
        rejections.push(Rejection::InsufficientDisk {
            needed: spec.disk,
            offered: disk,
        });
    }
    if gpus < spec.gpus {
        rejections.push(Rejection::InsufficientGpus {
            needed: spec.gpus,
            offered: gpus,
        });
    }
    let ranges: Vec<(u16, u16)> = usable.iter().flat_map(|r| r.ports.iter().copied()).collect();
    let host_ports = match assign_ports(&spec.ports, &ranges) {
        Ok(ports) => ports,
        Err(rejection) => {
            rejections.push(rejection);
            Vec::new()
        }
    };
    if rejections.is_empty() {
        Ok(Fit { host_ports })
    } else {
        Err(rejections)
    }
}

/// The host ports an instance needs: `Some(p)` a fixed port, `None` any port.
pub fn requested_ports(spec: &AppSpec) -> Vec<Option<u16>> {
    match spec.network_mode() {
        NetworkMode::Host => spec
            .port_definitions
            .iter()
            .map(|p| (spec.require_ports && p.port != 0).then_some(p.port))
            .collect(),
        NetworkMode::Bridge => spec
            .port_mappings()
            .iter()
            .filter_map(|m| m.host_port)
            .map(|p| (p != 0).then_some(p))
            .collect(),
    }
}

/// Picks host ports from `ranges`: fixed ones as asked, the others the lowest free ones.
fn assign_ports(requested: &[Option<u16>], ranges: &[(u16, u16)]) -> Result<Vec<u16>, Rejection> {
    let mut ranges: Vec<(u16, u16)> = ranges.iter().copied().filter(|(b, e)| b <= e).collect();
    ranges.sort_unstable();
    let offered_count: usize = {
        // Overlapping ranges count once.
        let mut count = 0usize;
        let mut next = 0u32;
        for &(b, e) in &ranges {
            let start = u32::from(b).max(next);
            if start <= u32::from(e) {
                count += (u32::from(e) - start + 1) as usize;
                next = u32::from(e) + 1;
            }
        }
        count
    };
    let offered = |p: u16| ranges.iter().any(|&(b, e)| b <= p && p <= e);
    let fixed: BTreeSet<u16> = requested.iter().flatten().copied().collect();
    let missing: Vec<u16> = fixed.iter().copied().filter(|p| !offered(*p)).collect();
    let mut taken = fixed.clone();
    let mut free = ranges.iter().flat_map(|&(b, e)| b..=e).filter(|p| !fixed.contains(p));
    let mut out = Vec::with_capacity(requested.len());
    let mut short = false;
    for r in requested {
        match r {
            Some(p) => out.push(*p),
            None => match free.by_ref().find(|p| taken.insert(*p)) {
                Some(p) => out.push(p),
                None => {
                    short = true;
                    break;
                }
            },
        }
    }
    if missing.is_empty() && !short {
        Ok(out)
    } else {
        Err(Rejection::InsufficientPorts {
            needed: requested.len(),
            offered: offered_count,
            missing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppDefinition;
    use crate::path::PathId;
    use crate::validate::validate_app;

    fn spec(json: &str) -> AppSpec {
        validate_app(&AppDefinition::from_json(json).unwrap(), &PathId::root(), 0).unwrap()
    }

    fn offer(role: &str, cpus: f64, mem: f64, ports: Vec<(u16, u16)>) -> OfferSummary {
        OfferSummary {
            agent: AgentInfo::new("a1", "host-a"),
            resources: vec![RoleResources {
                role: role.into(),
                cpus,
                mem,
                disk: 1000.0,
                gpus: 0,
                ports,
            }],
            maintenance: false,
        }
    }

    #[test]
    fn fitting_offer_gets_the_lowest_ports() {
        let s = spec(r#"{"id":"/a","cmd":"x","cpus":1,"mem":128,"portDefinitions":[{"port":0},{"port":0}]}"#);
        let fit = evaluate(&s, &offer("*", 2.0, 256.0, vec![(31000, 31001), (31005, 31010)]), &[]).unwrap();
        assert_eq!(fit.host_ports, [31000, 31001]);
    }

    #[test]
    fn required_and_fixed_ports() {
        let s = spec(r#"{"id":"/a","cmd":"x","requirePorts":true,"portDefinitions":[{"port":80},{"port":0}]}"#);
        let fit = evaluate(&s, &offer("*", 2.0, 256.0, vec![(79, 81)]), &[]).unwrap();
        assert_eq!(fit.host_ports, [80, 79]);
        let err = evaluate(&s, &offer("*", 2.0, 256.0, vec![(31000, 32000)]), &[]).unwrap_err();
        assert_eq!(
            err,
            [Rejection::InsufficientPorts {
                needed: 2,
                offered: 1001,
                missing: vec![80]
            }]
        );
        // Without requirePorts a non-zero port is a service port: any host port will do.
        let loose = spec(r#"{"id":"/a","cmd":"x","portDefinitions":[{"port":80}]}"#);
        assert_eq!(
            evaluate(&loose, &offer("*", 2.0, 256.0, vec![(31000, 31000)]), &[])
                .unwrap()
                .host_ports,
            [31000]
        );
        let bridge = spec(
            r#"{"id":"/a","container":{"docker":{"image":"i"},"portMappings":[{"containerPort":80,"hostPort":8080},{"containerPort":81}]},"networks":[{"mode":"container/bridge"}]}"#,
        );
        assert_eq!(
            evaluate(&bridge, &offer("*", 2.0, 256.0, vec![(8080, 8081)]), &[])
                .unwrap()
                .host_ports,
            [8080, 8081]
        );
    }

    #[test]
    fn too_few_ports() {
        let s = spec(r#"{"id":"/a","cmd":"x","portDefinitions":[{"port":0},{"port":0},{"port":0}]}"#);
        let err = evaluate(&s, &offer("*", 2.0, 256.0, vec![(31000, 31001), (31001, 31001)]), &[]).unwrap_err();
        assert_eq!(
            err,
            [Rejection::InsufficientPorts {
                needed: 3,
                offered: 2,
                missing: vec![]
            }]
        );
        let none = spec(r#"{"id":"/a","cmd":"x","portDefinitions":[]}"#);
        assert_eq!(
            evaluate(&none, &offer("*", 2.0, 256.0, vec![]), &[])
                .unwrap()
                .host_ports,
            Vec::<u16>::new()
        );
    }

    #[test]
    fn every_reason_is_reported_in_order() {
        let s = spec(
            r#"{"id":"/a","cmd":"x","cpus":4,"mem":512,"disk":10,"gpus":1,"constraints":[["hostname","UNIQUE"]]}"#,
        );
        let mut o = offer("*", 2.0, 256.0, vec![]);
        o.resources[0].disk = 1.0;
        o.maintenance = true;
        let placed = AgentInfo::new("a1", "host-a");
        let err = evaluate(&s, &o, &[&placed]).unwrap_err();
        let reasons: Vec<&str> = err.iter().map(Rejection::reason).collect();
        assert_eq!(
            reasons,
            [
                "UnfulfilledConstraint",
                "AgentMaintenance",
                "InsufficientCpus",
                "InsufficientMemory",
                "InsufficientDisk",
                "InsufficientGpus",
                "InsufficientPorts"
            ]
        );
        assert_eq!(
            err[2],
            Rejection::InsufficientCpus {
                needed: 4.0,
                offered: 2.0
            }
        );
    }

    #[test]
    fn only_accepted_roles_count() {
        let s = spec(r#"{"id":"/a","cmd":"x","acceptedResourceRoles":["slave_public"],"portDefinitions":[]}"#);
        let err = evaluate(&s, &offer("*", 8.0, 4096.0, vec![]), &[]).unwrap_err();
        assert_eq!(
            err[0],
            Rejection::UnfulfilledRole {
                accepted: vec!["slave_public".into()],
                offered: vec!["*".into()]
            }
        );
        let mut both = offer("*", 8.0, 4096.0, vec![]);
        both.resources.push(RoleResources {
            role: "slave_public".into(),
            cpus: 1.0,
            mem: 128.0,
            ..Default::default()
        });
        assert!(evaluate(&s, &both, &[]).is_ok());
        both.resources[1].cpus = 0.5;
        assert_eq!(
            evaluate(&s, &both, &[]).unwrap_err(),
            [Rejection::InsufficientCpus {
                needed: 1.0,
                offered: 0.5
            }]
        );
    }

    #[test]
    fn rejections_serialize_with_their_reason() {
        let json = serde_json::to_value(Rejection::InsufficientGpus { needed: 1, offered: 0 }).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"reason": "InsufficientGpus", "needed": 1, "offered": 0})
        );
    }
}

//! Between the replicated state's resource fields and the allocator's resource model.

use tepui_allocator::{
    AttributeValue, Attributes, Ranges, Reservation, ReservationKind, Resource, ResourceName, Resources, Scalar,
    ValueSet,
};
use tepui_state::{AgentInfo, TaskRecord};

/// Reads resources stored in the allocator's text form; empty text is no resources.
pub fn parse(text: &str) -> Resources {
    if text.trim().is_empty() || text.trim() == "{}" {
        return Resources::new();
    }
    text.parse().unwrap_or_else(|e| {
        tracing::error!(resources = text, error = %e, "stored resources do not parse; ignoring them");
        Resources::new()
    })
}

/// The text form stored in the state: empty for no resources.
pub fn text(r: &Resources) -> String {
    if r.is_empty() {
        String::new()
    } else {
        r.to_string()
    }
}

/// What an agent brings, with its dynamic reservations (`reserved`, text form) carved out of
/// the unreserved part.
pub fn agent_total(info: &AgentInfo, reserved: Option<&str>) -> Resources {
    let r = &info.resources;
    let mut total = Resources::new();
    total.push(Resource::scalar(ResourceName::CPUS, Scalar::from_milli(r.cpus_milli)));
    total.push(Resource::scalar(ResourceName::MEM, Scalar::from_units(r.mem_mb)));
    if r.disk_mb > 0 {
        total.push(Resource::scalar(ResourceName::DISK, Scalar::from_units(r.disk_mb)));
    }
    if let Ok(ports) = Ranges::from_pairs(r.ports.iter().map(|&(lo, hi)| (lo as u64, hi as u64))) {
        if !ports.is_empty() {
            total.push(Resource::ranges(ResourceName::PORTS, ports));
        }
    }
    let mut reserved = reserved.map(parse).unwrap_or_default();
    // Static ones from the agent's flags; only reservations to a role count.
    reserved.add(&parse(&r.reserved).filter(|e| e.reservation.is_some()));
    if reserved.is_empty() {
        return total;
    }
    match total.checked_sub(&reserved.strip_reservations()) {
        Some(mut rest) => {
            rest.add(&reserved);
            rest
        }
        None => {
            tracing::warn!(%reserved, %total, "an agent's reservations exceed its resources; ignoring them");
            total
        }
    }
}

/// Agent attributes: numbers become scalars, `[a-b]` ranges, `{a,b}` sets, anything else text.
pub fn attributes(info: &AgentInfo) -> Attributes {
    let mut out = Attributes::new();
    for (k, v) in &info.attributes {
        let value = if let Ok(n) = v.parse::<f64>() {
            Scalar::from_f64(n)
                .map(AttributeValue::Scalar)
                .unwrap_or_else(|| AttributeValue::Text(v.clone()))
        } else if let Some(set) = v.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
            AttributeValue::Set(ValueSet::from_items(set.split(',').map(str::trim)))
        } else {
            AttributeValue::Text(v.clone())
        };
        out = out.with(k.clone(), value);
    }
    out
}

/// Exactly what a task holds: its recorded resources, or those its definition names.
pub fn task_resources(t: &TaskRecord) -> Resources {
    if !t.resources.is_empty() {
        return parse(&t.resources);
    }
    let mut r = Resources::new();
    r.push(Resource::scalar(
        ResourceName::CPUS,
        Scalar::from_milli(t.def.cpus_milli),
    ));
    r.push(Resource::scalar(ResourceName::MEM, Scalar::from_units(t.def.mem_mb)));
    if t.def.disk_mb > 0 {
        r.push(Resource::scalar(ResourceName::DISK, Scalar::from_units(t.def.disk_mb)));
    }
    let pairs: Vec<(u64, u64)> = t
        .def
        .ports
        .iter()
        .map(|p| (p.host_port as u64, p.host_port as u64))
        .collect();
    if let Ok(ports) = Ranges::from_pairs(pairs) {
        if !ports.is_empty() {
            r.push(Resource::ranges(ResourceName::PORTS, ports));
        }
    }
    r
}

/// The whole-unit amount of a scalar in `r`, rounded up (mem and disk are whole MB).
pub fn units(r: &Resources, name: &ResourceName) -> u64 {
    r.scalar_sum(name).milli().div_ceil(1000)
}

/// Only the dynamically reserved part.
pub fn dynamic_part(r: &Resources) -> Resources {
    r.filter(|e| {
        matches!(
            e.reservation,
            Some(Reservation {
                kind: ReservationKind::Dynamic,
                ..
            })
        )
    })
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn info() -> AgentInfo {
        AgentInfo {
            resources: tepui_state::Resources {
                cpus_milli: 4000,
                mem_mb: 2048,
                disk_mb: 0,
                reserved: String::new(),
                ports: vec![(31000, 31009)],
            },
            attributes: BTreeMap::from([
                ("rack".to_string(), "r1".to_string()),
                ("gen".to_string(), "3".to_string()),
            ]),
            http_addr: String::new(),
            version: String::new(),
            registered_at: 0,
        }
    }

    #[test]
    fn reservations_are_carved_out_of_the_total() {
        let total = agent_total(&info(), Some("cpus(eng,dynamic):1.5;mem(eng,dynamic):512"));
        assert_eq!(
            total.to_string(),
            "cpus:2.5;cpus(eng,dynamic):1.5;mem:1536;mem(eng,dynamic):512;ports:[31000-31009]"
        );
        assert_eq!(
            text(&dynamic_part(&total)),
            "cpus(eng,dynamic):1.5;mem(eng,dynamic):512"
        );
        assert_eq!(parse(&text(&total)), total);
        assert!(parse("").is_empty());
    }

    #[test]
    fn static_reservations_from_the_agent_are_carved_out_too() {
        let mut i = info();
        i.resources.reserved = "cpus(eng):1;mem(eng):256".into();
        let total = agent_total(&i, Some("cpus(eng,dynamic):0.5"));
        assert_eq!(
            total.to_string(),
            "cpus:2.5;cpus(eng):1;cpus(eng,dynamic):0.5;mem:1792;mem(eng):256;ports:[31000-31009]"
        );
        assert_eq!(
            text(&dynamic_part(&total)),
            "cpus(eng,dynamic):0.5",
            "only dynamic ones are stored"
        );
    }

    #[test]
    fn attributes_keep_their_kinds() {
        let a = attributes(&info());
        assert!(matches!(a.get("gen"), Some(AttributeValue::Scalar(_))));
        assert!(matches!(a.get("rack"), Some(AttributeValue::Text(_))));
    }
}

//! Marathon's event stream (`/v2/events`, server-sent events): the event types, spelled as
//! Marathon spells them (`eventType`, `timestamp` and camelCase fields), and their SSE framing.
//! Timestamps are Marathon strings; build them with [`crate::time::format_timestamp`].

use serde::{Deserialize, Serialize};

use crate::app::{AppSpec, HealthCheck};
use crate::deployment::{DeploymentAction, DeploymentPlanView};
use crate::path::PathId;

/// One event. Serializes with its `eventType` tag. The large payloads are boxed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "eventType")]
pub enum Event {
    #[serde(rename = "api_post_event")]
    ApiPost(Box<ApiPostEvent>),
    #[serde(rename = "deployment_info")]
    DeploymentInfo(Box<DeploymentStepEvent>),
    #[serde(rename = "deployment_success")]
    DeploymentSuccess(Box<DeploymentResultEvent>),
    #[serde(rename = "deployment_failed")]
    DeploymentFailed(Box<DeploymentResultEvent>),
    #[serde(rename = "deployment_step_success")]
    DeploymentStepSuccess(Box<DeploymentStepEvent>),
    #[serde(rename = "deployment_step_failure")]
    DeploymentStepFailure(Box<DeploymentStepEvent>),
    #[serde(rename = "status_update_event")]
    StatusUpdate(StatusUpdateEvent),
    #[serde(rename = "instance_changed_event")]
    InstanceChanged(InstanceChangedEvent),
    #[serde(rename = "health_status_changed_event")]
    HealthStatusChanged(HealthStatusChangedEvent),
    #[serde(rename = "failed_health_check_event")]
    FailedHealthCheck(FailedHealthCheckEvent),
    #[serde(rename = "unhealthy_instance_kill_event")]
    UnhealthyInstanceKill(UnhealthyInstanceKillEvent),
    #[serde(rename = "app_terminated_event")]
    AppTerminated(AppTerminatedEvent),
    #[serde(rename = "instance_health_changed_event")]
    InstanceHealthChanged(InstanceHealthChangedEvent),
}

impl Event {
    /// The `eventType`, also the SSE `event:` name and the `/v2/events?event_type=` filter.
    pub fn event_type(&self) -> &'static str {
        match self {
            Event::ApiPost(_) => "api_post_event",
            Event::DeploymentInfo(_) => "deployment_info",
            Event::DeploymentSuccess(_) => "deployment_success",
            Event::DeploymentFailed(_) => "deployment_failed",
            Event::DeploymentStepSuccess(_) => "deployment_step_success",
            Event::DeploymentStepFailure(_) => "deployment_step_failure",
            Event::StatusUpdate(_) => "status_update_event",
            Event::InstanceChanged(_) => "instance_changed_event",
            Event::HealthStatusChanged(_) => "health_status_changed_event",
            Event::FailedHealthCheck(_) => "failed_health_check_event",
            Event::UnhealthyInstanceKill(_) => "unhealthy_instance_kill_event",
            Event::AppTerminated(_) => "app_terminated_event",
            Event::InstanceHealthChanged(_) => "instance_health_changed_event",
        }
    }

    pub fn timestamp(&self) -> &str {
        match self {
            Event::ApiPost(e) => &e.timestamp,
            Event::DeploymentInfo(e) | Event::DeploymentStepSuccess(e) | Event::DeploymentStepFailure(e) => {
                &e.timestamp
            }
            Event::DeploymentSuccess(e) | Event::DeploymentFailed(e) => &e.timestamp,
            Event::StatusUpdate(e) => &e.timestamp,
            Event::InstanceChanged(e) => &e.timestamp,
            Event::HealthStatusChanged(e) => &e.timestamp,
            Event::FailedHealthCheck(e) => &e.timestamp,
            Event::UnhealthyInstanceKill(e) => &e.timestamp,
            Event::AppTerminated(e) => &e.timestamp,
            Event::InstanceHealthChanged(e) => &e.timestamp,
        }
    }

    /// The JSON body.
    pub fn to_json(&self) -> String {
        // Serializing these types cannot fail: every map key is a string.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// One SSE message: `event: <type>\ndata: <json>\n\n`, as Marathon frames it.
    pub fn to_sse(&self) -> String {
        format!("event: {}\ndata: {}\n\n", self.event_type(), self.to_json())
    }
}

/// A change through the API (`api_post_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiPostEvent {
    pub timestamp: String,
    pub client_ip: String,
    pub uri: String,
    pub app_definition: AppSpec,
}

/// `deployment_info`, `deployment_step_success` and `deployment_step_failure`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentStepEvent {
    pub timestamp: String,
    pub plan: DeploymentPlanView,
    pub current_step: CurrentStep,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CurrentStep {
    pub actions: Vec<DeploymentAction>,
}

/// `deployment_success` and `deployment_failed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeploymentResultEvent {
    pub timestamp: String,
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<DeploymentPlanView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A task's status changed (`status_update_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StatusUpdateEvent {
    pub timestamp: String,
    pub slave_id: String,
    pub task_id: String,
    /// A Mesos task state name, such as `TASK_RUNNING`.
    pub task_status: String,
    #[serde(default)]
    pub message: String,
    pub app_id: PathId,
    pub host: String,
    #[serde(default)]
    pub ip_addresses: Vec<IpAddress>,
    #[serde(default)]
    pub ports: Vec<u16>,
    pub version: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct IpAddress {
    pub ip_address: String,
    /// `IPv4` or `IPv6`.
    pub protocol: String,
}

/// An instance changed its condition (`instance_changed_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceChangedEvent {
    pub timestamp: String,
    pub instance_id: String,
    /// Marathon's condition name, such as `Running`, `Unreachable` or `Killed`.
    pub condition: String,
    pub run_spec_id: PathId,
    pub agent_id: String,
    pub host: String,
    pub run_spec_version: String,
}

/// The health of an instance changed (`health_status_changed_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct HealthStatusChangedEvent {
    pub timestamp: String,
    pub app_id: PathId,
    pub instance_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_id: Option<String>,
    pub version: String,
    pub alive: bool,
}

/// A health check failed (`failed_health_check_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FailedHealthCheckEvent {
    pub timestamp: String,
    pub app_id: PathId,
    pub task_id: String,
    pub instance_id: String,
    pub health_check: HealthCheck,
}

/// An instance was killed for failing its health checks (`unhealthy_instance_kill_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UnhealthyInstanceKillEvent {
    pub timestamp: String,
    pub app_id: PathId,
    pub task_id: String,
    pub instance_id: String,
    pub version: String,
    pub reason: String,
    pub host: String,
    pub slave_id: String,
}

/// An app was deleted and all its instances are gone (`app_terminated_event`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AppTerminatedEvent {
    pub timestamp: String,
    pub app_id: PathId,
}

/// The combined health of an instance changed (`instance_health_changed_event`); `healthy` is
/// absent while unknown.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct InstanceHealthChangedEvent {
    pub timestamp: String,
    pub instance_id: String,
    pub run_spec_id: PathId,
    pub run_spec_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::AppDefinition;
    use crate::deployment::{Deployment, DEFAULT_TIMEOUT_MS};
    use crate::time::format_timestamp;
    use crate::validate::validate_app;

    const TS: &str = "2014-03-01T23:29:30.158Z";

    fn p(s: &str) -> PathId {
        PathId::parse(s).unwrap()
    }

    #[test]
    fn status_update_has_marathons_fields() {
        let e = Event::StatusUpdate(StatusUpdateEvent {
            timestamp: TS.into(),
            slave_id: "20140909-054127-177048842-5050-1494-0".into(),
            task_id: "my-app_0-1396592784349".into(),
            task_status: "TASK_RUNNING".into(),
            message: String::new(),
            app_id: p("/my-app"),
            host: "slave-1234.acme.org".into(),
            ip_addresses: vec![IpAddress {
                ip_address: "10.0.0.1".into(),
                protocol: "IPv4".into(),
            }],
            ports: vec![31372],
            version: "2014-04-04T06:26:23.051Z".into(),
        });
        let json: serde_json::Value = serde_json::from_str(&e.to_json()).unwrap();
        assert_eq!(json["eventType"], "status_update_event");
        assert_eq!(json["timestamp"], TS);
        assert_eq!(json["slaveId"], "20140909-054127-177048842-5050-1494-0");
        assert_eq!(json["taskStatus"], "TASK_RUNNING");
        assert_eq!(json["appId"], "/my-app");
        assert_eq!(json["ports"][0], 31372);
        assert_eq!(json["ipAddresses"][0]["ipAddress"], "10.0.0.1");
        let back: Event = serde_json::from_value(json).unwrap();
        assert_eq!(back, e);
    }

    #[test]
    fn sse_framing() {
        let e = Event::AppTerminated(AppTerminatedEvent {
            timestamp: TS.into(),
            app_id: p("/a"),
        });
        assert_eq!(
            e.to_sse(),
            format!("event: app_terminated_event\ndata: {{\"eventType\":\"app_terminated_event\",\"timestamp\":\"{TS}\",\"appId\":\"/a\"}}\n\n")
        );
        assert_eq!(e.timestamp(), TS);
    }

    #[test]
    fn health_events() {
        let e = Event::HealthStatusChanged(HealthStatusChangedEvent {
            timestamp: TS.into(),
            app_id: p("/my-app"),
            instance_id: "my-app.instance-c7c311a4".into(),
            task_id: None,
            version: TS.into(),
            alive: true,
        });
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["eventType"], "health_status_changed_event");
        assert_eq!(json["instanceId"], "my-app.instance-c7c311a4");
        assert_eq!(json["alive"], true);
        assert!(json.get("taskId").is_none());
        let changed = Event::InstanceHealthChanged(InstanceHealthChangedEvent {
            timestamp: TS.into(),
            instance_id: "i".into(),
            run_spec_id: p("/a"),
            run_spec_version: TS.into(),
            healthy: None,
        });
        let json = serde_json::to_value(&changed).unwrap();
        assert_eq!(json["eventType"], "instance_health_changed_event");
        assert_eq!(json["runSpecId"], "/a");
        assert!(json.get("healthy").is_none());
    }

    #[test]
    fn failed_health_check_and_api_post_carry_definitions() {
        let app = validate_app(
            &AppDefinition::from_json(r#"{"id":"/my-app","cmd":"sleep 30","healthChecks":[{"path":"/health"}]}"#)
                .unwrap(),
            &PathId::root(),
            0,
        )
        .unwrap();
        let failed = Event::FailedHealthCheck(FailedHealthCheckEvent {
            timestamp: TS.into(),
            app_id: app.id.clone(),
            task_id: "t".into(),
            instance_id: "i".into(),
            health_check: app.health_checks[0].clone(),
        });
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(json["healthCheck"]["path"], "/health");
        assert_eq!(json["healthCheck"]["protocol"], "HTTP");
        assert_eq!(json["healthCheck"]["maxConsecutiveFailures"], 3);
        let post = Event::ApiPost(Box::new(ApiPostEvent {
            timestamp: TS.into(),
            client_ip: "0:0:0:0:0:0:0:1".into(),
            uri: "/v2/apps/my-app".into(),
            app_definition: app,
        }));
        let json = serde_json::to_value(&post).unwrap();
        assert_eq!(json["eventType"], "api_post_event");
        assert_eq!(json["clientIp"], "0:0:0:0:0:0:0:1");
        assert_eq!(json["appDefinition"]["id"], "/my-app");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), post);
    }

    #[test]
    fn deployment_events() {
        let app = validate_app(
            &AppDefinition::from_json(r#"{"id":"/my-app","cmd":"x"}"#).unwrap(),
            &PathId::root(),
            0,
        )
        .unwrap();
        let d = Deployment::plan("867ed450".into(), &[], &[app], 1_000, DEFAULT_TIMEOUT_MS).unwrap();
        let info = Event::DeploymentInfo(Box::new(DeploymentStepEvent {
            timestamp: format_timestamp(1_000),
            plan: d.plan_view(),
            current_step: CurrentStep {
                actions: d.current_actions().to_vec(),
            },
        }));
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["eventType"], "deployment_info");
        assert_eq!(json["plan"]["id"], "867ed450");
        assert_eq!(json["plan"]["target"]["apps"][0]["id"], "/my-app");
        assert_eq!(json["plan"]["steps"][0]["actions"][0]["action"], "StartApplication");
        assert_eq!(json["currentStep"]["actions"][0]["app"], "/my-app");
        let ok = Event::DeploymentSuccess(Box::new(DeploymentResultEvent {
            timestamp: TS.into(),
            id: d.id.clone(),
            plan: None,
            reason: None,
        }));
        assert_eq!(
            serde_json::to_value(&ok).unwrap(),
            serde_json::json!({"eventType": "deployment_success", "timestamp": TS, "id": "867ed450"})
        );
        let failed = Event::DeploymentFailed(Box::new(DeploymentResultEvent {
            timestamp: TS.into(),
            id: d.id.clone(),
            plan: Some(d.plan_view()),
            reason: Some("deadline passed".into()),
        }));
        assert_eq!(failed.event_type(), "deployment_failed");
        let json = serde_json::to_value(&failed).unwrap();
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), failed);
    }
}

//! The v1 executor API (`POST /api/v1/executor` on an agent): calls from a framework's
//! executor and the events the agent streams back (RecordIO-framed), as
//! `mesos/v1/executor/executor.proto` defines them.
//!
//! The same "union" layout as the scheduler API: a `type` and the one body field it names.
//! [`Call::validate`] checks what Mesos' agent checks before it looks at the call (its words,
//! from `validateExecutorCall`).

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::v1::{
    AgentInfo, ContainerId, ExecutorId, ExecutorInfo, FrameworkId, FrameworkInfo, KillPolicy, TaskGroupInfo, TaskId,
    TaskInfo, TaskState, TaskStatus, TaskStatusSource,
};
use crate::Bytes;

open_enum! {
    /// `executor.Call.Type`.
    pub enum CallType {
        Subscribe = "SUBSCRIBE",
        Update = "UPDATE",
        Message = "MESSAGE",
        Heartbeat = "HEARTBEAT",
    }
}

/// A call from an executor. Every call names its executor and its framework.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Call {
    pub executor_id: ExecutorId,
    pub framework_id: FrameworkId,
    #[serde(rename = "type")]
    pub kind: CallType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribe: Option<Subscribe>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update: Option<Update>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
}

/// SUBSCRIBE: the first call, answered with the event stream. An executor that reconnects
/// lists what the agent has not acknowledged to it yet.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Subscribe {
    /// Tasks none of whose updates was acknowledged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_tasks: Vec<TaskInfo>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unacknowledged_updates: Vec<Update>,
}

/// UPDATE: a status update of one of the executor's tasks; the agent answers ACKNOWLEDGED.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Update {
    pub status: TaskStatus,
}

/// MESSAGE (call and event): opaque bytes between the executor and its scheduler.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub data: Bytes,
}

/// What is wrong with a call, in Mesos' words.
#[derive(Clone, Debug, PartialEq, Eq, Error)]
pub enum CallError {
    #[error("Expecting 'type' to be present")]
    UnknownType(String),
    #[error("Expecting 'executor_id' to be present")]
    NoExecutorId,
    #[error("Expecting 'framework_id' to be present")]
    NoFrameworkId,
    #[error("Expecting '{0}' to be present")]
    MissingBody(&'static str),
    #[error("Expecting 'uuid' to be present")]
    NoUuid,
    #[error("Invalid UUID: {len} bytes, a UUID has 16")]
    BadUuid { len: usize },
    #[error("ExecutorID in Call: {call} does not match ExecutorID in TaskStatus: {status}")]
    ExecutorIdMismatch { call: String, status: String },
    #[error("Received Call from executor {executor} of framework {framework} with invalid source, expecting 'SOURCE_EXECUTOR'")]
    BadSource { executor: String, framework: String },
    #[error("Received TASK_STAGING from executor {executor} of framework {framework} which is not allowed")]
    Staging { executor: String, framework: String },
}

impl Call {
    fn of(framework_id: FrameworkId, executor_id: ExecutorId, kind: CallType) -> Call {
        Call {
            executor_id,
            framework_id,
            kind,
            subscribe: None,
            update: None,
            message: None,
        }
    }

    pub fn subscribe(framework_id: FrameworkId, executor_id: ExecutorId, subscribe: Subscribe) -> Call {
        Call {
            subscribe: Some(subscribe),
            ..Call::of(framework_id, executor_id, CallType::Subscribe)
        }
    }

    pub fn update(framework_id: FrameworkId, executor_id: ExecutorId, status: TaskStatus) -> Call {
        Call {
            update: Some(Update { status }),
            ..Call::of(framework_id, executor_id, CallType::Update)
        }
    }

    pub fn message(framework_id: FrameworkId, executor_id: ExecutorId, data: Bytes) -> Call {
        Call {
            message: Some(Message { data }),
            ..Call::of(framework_id, executor_id, CallType::Message)
        }
    }

    /// What Mesos' agent checks of a call before anything else.
    pub fn validate(&self) -> Result<(), CallError> {
        if self.executor_id.value.is_empty() {
            return Err(CallError::NoExecutorId);
        }
        if self.framework_id.value.is_empty() {
            return Err(CallError::NoFrameworkId);
        }
        match &self.kind {
            CallType::Subscribe if self.subscribe.is_none() => Err(CallError::MissingBody("subscribe")),
            CallType::Message if self.message.is_none() => Err(CallError::MissingBody("message")),
            CallType::Update => {
                let status = &self.update.as_ref().ok_or(CallError::MissingBody("update"))?.status;
                let uuid = status.uuid.as_ref().ok_or(CallError::NoUuid)?;
                if uuid.as_slice().len() != 16 {
                    return Err(CallError::BadUuid {
                        len: uuid.as_slice().len(),
                    });
                }
                if let Some(id) = status
                    .executor_id
                    .as_ref()
                    .filter(|id| id.value != self.executor_id.value)
                {
                    return Err(CallError::ExecutorIdMismatch {
                        call: self.executor_id.value.clone(),
                        status: id.value.clone(),
                    });
                }
                if status.source != Some(TaskStatusSource::Executor) {
                    return Err(CallError::BadSource {
                        executor: self.executor_id.value.clone(),
                        framework: self.framework_id.value.clone(),
                    });
                }
                if status.state == TaskState::Staging {
                    return Err(CallError::Staging {
                        executor: self.executor_id.value.clone(),
                        framework: self.framework_id.value.clone(),
                    });
                }
                Ok(())
            }
            CallType::Unknown(t) => Err(CallError::UnknownType(t.clone())),
            _ => Ok(()),
        }
    }
}

open_enum! {
    /// `executor.Event.Type`.
    pub enum EventType {
        Subscribed = "SUBSCRIBED",
        Launch = "LAUNCH",
        LaunchGroup = "LAUNCH_GROUP",
        Kill = "KILL",
        Acknowledged = "ACKNOWLEDGED",
        Message = "MESSAGE",
        Error = "ERROR",
        Shutdown = "SHUTDOWN",
        Heartbeat = "HEARTBEAT",
    }
}

/// An event on an executor's subscription stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "type")]
    pub kind: EventType,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subscribed: Option<Subscribed>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acknowledged: Option<Acknowledged>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch: Option<Launch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub launch_group: Option<LaunchGroup>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill: Option<Kill>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<Message>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorEvent>,
}

/// SUBSCRIBED: the first event of a subscription.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Subscribed {
    pub executor_info: ExecutorInfo,
    pub framework_info: FrameworkInfo,
    pub agent_info: AgentInfo,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub container_id: Option<ContainerId>,
}

/// LAUNCH: a task for the executor to run; it answers with UPDATEs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Launch {
    pub task: TaskInfo,
}

/// LAUNCH_GROUP: tasks to run as one unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LaunchGroup {
    pub task_group: TaskGroupInfo,
}

/// KILL: the scheduler wants the task stopped; the executor answers with a terminal UPDATE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Kill {
    pub task_id: TaskId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_policy: Option<KillPolicy>,
}

/// ACKNOWLEDGED: the agent has the update with this uuid; the executor stops resending it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acknowledged {
    pub task_id: TaskId,
    pub uuid: Bytes,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorEvent {
    pub message: String,
}

impl Event {
    fn of(kind: EventType) -> Event {
        Event {
            kind,
            subscribed: None,
            acknowledged: None,
            launch: None,
            launch_group: None,
            kill: None,
            message: None,
            error: None,
        }
    }

    pub fn subscribed(subscribed: Subscribed) -> Event {
        Event {
            subscribed: Some(subscribed),
            ..Event::of(EventType::Subscribed)
        }
    }

    pub fn launch(task: TaskInfo) -> Event {
        Event {
            launch: Some(Launch { task }),
            ..Event::of(EventType::Launch)
        }
    }

    pub fn launch_group(task_group: TaskGroupInfo) -> Event {
        Event {
            launch_group: Some(LaunchGroup { task_group }),
            ..Event::of(EventType::LaunchGroup)
        }
    }

    pub fn kill(task_id: TaskId, kill_policy: Option<KillPolicy>) -> Event {
        Event {
            kill: Some(Kill { task_id, kill_policy }),
            ..Event::of(EventType::Kill)
        }
    }

    pub fn acknowledged(task_id: TaskId, uuid: Bytes) -> Event {
        Event {
            acknowledged: Some(Acknowledged { task_id, uuid }),
            ..Event::of(EventType::Acknowledged)
        }
    }

    pub fn message(data: Bytes) -> Event {
        Event {
            message: Some(Message { data }),
            ..Event::of(EventType::Message)
        }
    }

    pub fn error(message: impl Into<String>) -> Event {
        Event {
            error: Some(ErrorEvent {
                message: message.into(),
            }),
            ..Event::of(EventType::Error)
        }
    }

    pub fn shutdown() -> Event {
        Event::of(EventType::Shutdown)
    }

    pub fn heartbeat() -> Event {
        Event::of(EventType::Heartbeat)
    }
}

/// The environment variable with the token an agent gives its executor; the executor's calls
/// carry it as `Authorization: Bearer <token>`.
pub const TOKEN_ENV: &str = "MESOS_EXECUTOR_AUTHENTICATION_TOKEN";

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The SUBSCRIBE and UPDATE examples of Mesos' executor-http-api.md, as written there.
    #[test]
    fn the_documented_calls_parse_and_validate() {
        let subscribe: Call = serde_json::from_value(json!({
            "type": "SUBSCRIBE",
            "executor_id": {"value": "387aa966-8fc5-4428-a794-5a868a60d3eb"},
            "framework_id": {"value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"},
            "subscribe": {
                "unacknowledged_tasks": [{
                    "name": "dummy-task",
                    "task_id": {"value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"},
                    "agent_id": {"value": "f1c9cdc5-195e-41a7-a0d7-adaa9af07f81"},
                    "command": {"value": "ls", "arguments": ["-l", "/tmp"]}
                }],
                "unacknowledged_updates": [{
                    "framework_id": {"value": "49154f1b-8cf6-4421-bf13-8bd11dccd1f1"},
                    "status": {
                        "source": "SOURCE_EXECUTOR",
                        "task_id": {"value": "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"},
                        "state": "TASK_RUNNING",
                        "uuid": "ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg=="
                    }
                }]
            }
        }))
        .unwrap();
        assert_eq!(subscribe.kind, CallType::Subscribe);
        subscribe.validate().unwrap();
        let s = subscribe.subscribe.unwrap();
        assert_eq!(
            s.unacknowledged_tasks[0].task_id.value,
            "d40f3f3e-bbe3-44af-a230-4cb1eae72f67"
        );
        assert_eq!(s.unacknowledged_updates[0].status.state, TaskState::Running);

        let mut update: Call = serde_json::from_value(json!({
            "executor_id": {"value": "387aa966-8fc5-4428-a794-5a868a60d3eb"},
            "framework_id": {"value": "9aaa9d0d-e00d-444f-bfbd-23dd197939a0-0000"},
            "type": "UPDATE",
            "update": {"status": {
                "executor_id": {"value": "387aa966-8fc5-4428-a794-5a868a60d3eb"},
                "source": "SOURCE_EXECUTOR",
                "state": "TASK_RUNNING",
                "task_id": {"value": "66724cec-2609-4fa0-8d93-c5fb2099d0f8"},
                "uuid": "AAECAwQFBgcICQoLDA0ODw=="
            }}
        }))
        .unwrap();
        update.validate().unwrap();
        // The documentation's own uuid is 37 bytes of text, not a UUID: Mesos refuses it.
        update.update.as_mut().unwrap().status.uuid =
            Some(Bytes::from_base64("ZDQwZjNmM2UtYmJlMy00NGFmLWEyMzAtNGNiMWVhZTcyZjY3Cg==").unwrap());
        assert_eq!(update.validate(), Err(CallError::BadUuid { len: 37 }));
    }

    #[test]
    fn bad_updates_are_refused_in_mesos_words() {
        let status = |state: TaskState, source: Option<TaskStatusSource>| {
            let mut s = TaskStatus::new("t", state);
            s.source = source;
            s.uuid = Some(Bytes::new([7u8; 16].to_vec()));
            s
        };
        let call = |s: TaskStatus| Call::update(FrameworkId::new("f"), ExecutorId::new("e"), s);
        assert!(call(status(TaskState::Running, Some(TaskStatusSource::Executor)))
            .validate()
            .is_ok());
        let staging = call(status(TaskState::Staging, Some(TaskStatusSource::Executor)));
        assert_eq!(
            staging.validate().unwrap_err().to_string(),
            "Received TASK_STAGING from executor e of framework f which is not allowed"
        );
        let agent = call(status(TaskState::Running, Some(TaskStatusSource::Agent)));
        assert!(matches!(agent.validate(), Err(CallError::BadSource { .. })));
        let mut other = status(TaskState::Running, Some(TaskStatusSource::Executor));
        other.executor_id = Some(ExecutorId::new("x"));
        assert!(matches!(
            call(other).validate(),
            Err(CallError::ExecutorIdMismatch { .. })
        ));
        let mut no_uuid = status(TaskState::Running, Some(TaskStatusSource::Executor));
        no_uuid.uuid = None;
        assert_eq!(call(no_uuid).validate(), Err(CallError::NoUuid));
        let mut empty = Call::message(FrameworkId::new("f"), ExecutorId::new(""), Bytes::default());
        assert_eq!(empty.validate(), Err(CallError::NoExecutorId));
        empty.executor_id = ExecutorId::new("e");
        empty.message = None;
        assert_eq!(empty.validate(), Err(CallError::MissingBody("message")));
    }

    #[test]
    fn events_have_the_union_layout() {
        let e = Event::acknowledged(TaskId::new("t"), Bytes::new(b"0123456789abcdef".to_vec()));
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            json!({"type": "ACKNOWLEDGED", "acknowledged": {"task_id": {"value": "t"}, "uuid": "MDEyMzQ1Njc4OWFiY2RlZg=="}})
        );
        assert_eq!(
            serde_json::to_value(Event::shutdown()).unwrap(),
            json!({"type": "SHUTDOWN"})
        );
        let kill = Event::kill(TaskId::new("t"), None);
        assert_eq!(
            serde_json::to_value(&kill).unwrap(),
            json!({"type": "KILL", "kill": {"task_id": {"value": "t"}}})
        );
        let back: Event = serde_json::from_value(serde_json::to_value(&kill).unwrap()).unwrap();
        assert_eq!(back, kill);
    }
}

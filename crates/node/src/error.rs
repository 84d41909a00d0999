//! The one error of feature operations, whatever API they are called from.
//!
//! An [`Error`] says what kind of refusal it is, a stable code, a message a person can act on,
//! and the field at fault when there is one. It knows no HTTP: each API dialect renders it in
//! its own shape (`/v1` as `{code, message, field}` by [`axum::response::IntoResponse`] here,
//! Mesos as plain text, Marathon as `{message}`), and maps Raft's and the state's refusals
//! only once, here.

use tepui_state::ApplyError;

use crate::WriteError;

/// What kind of refusal an [`Error`] is; each dialect maps it to its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request cannot be read (malformed JSON, a bad query).
    BadRequest,
    /// The request is read but a field is wrong.
    Invalid,
    Unauthenticated,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// It conflicts with the current state (exists already, locked, no room).
    Conflict,
    TooLarge,
    UnsupportedMediaType,
    /// This server does not lead and cannot answer for the leader.
    NotLeader,
    /// Try again soon (no leader yet, an agent not connected).
    Unavailable,
    /// Something this server relies on (an agent) answered badly.
    BadGateway,
    Internal,
}

impl ErrorKind {
    /// The HTTP status the `/v1` dialect answers with.
    pub fn status(self) -> u16 {
        match self {
            ErrorKind::BadRequest => 400,
            ErrorKind::Unauthenticated => 401,
            ErrorKind::Forbidden => 403,
            ErrorKind::NotFound => 404,
            ErrorKind::MethodNotAllowed => 405,
            ErrorKind::Conflict => 409,
            ErrorKind::TooLarge => 413,
            ErrorKind::UnsupportedMediaType => 415,
            ErrorKind::Invalid => 422,
            ErrorKind::Internal => 500,
            ErrorKind::BadGateway => 502,
            ErrorKind::NotLeader | ErrorKind::Unavailable => 503,
        }
    }
}

/// A refused operation.
#[derive(Clone, Debug, thiserror::Error)]
#[error("{message}")]
pub struct Error {
    pub kind: ErrorKind,
    /// Stable, lower_snake_case: scripts match on it.
    pub code: String,
    pub message: String,
    /// The path of the field at fault (`ports[0].protocol`).
    pub field: Option<String>,
    /// Structured detail a dialect may render (Marathon's validation errors, the deployments
    /// that lock an app).
    pub detail: Option<serde_json::Value>,
}

impl Error {
    pub fn new(kind: ErrorKind, code: &str, message: impl Into<String>) -> Error {
        Error {
            kind,
            code: code.to_string(),
            message: message.into(),
            field: None,
            detail: None,
        }
    }

    /// Names the field at fault.
    pub fn field(mut self, path: impl Into<String>) -> Error {
        self.field = Some(path.into());
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Error {
        self.detail = Some(detail);
        self
    }

    /// A field with a wrong value (422).
    pub fn invalid(field: &str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Invalid, "invalid_field", message).field(field)
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::BadRequest, code, message)
    }

    pub fn not_found(code: &str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::NotFound, code, message)
    }

    pub fn conflict(code: &str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Conflict, code, message)
    }

    pub fn unavailable(code: &str, message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Unavailable, code, message)
    }

    pub fn internal(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::Internal, "internal", message)
    }

    /// This server does not lead (and the operation must run on the leader).
    pub fn not_leader() -> Error {
        Error::new(
            ErrorKind::NotLeader,
            "no_leader",
            "leadership is changing; retry in a moment",
        )
    }
}

impl From<WriteError> for Error {
    fn from(e: WriteError) -> Error {
        match e {
            WriteError::NotLeader { .. } => Error::not_leader(),
            WriteError::Raft(e) => Error::unavailable("raft_unavailable", e),
            WriteError::Rejected(e) => e.into(),
        }
    }
}

impl From<ApplyError> for Error {
    fn from(e: ApplyError) -> Error {
        use ErrorKind::*;
        let (kind, code) = match &e {
            ApplyError::AlreadyInitialized => (Conflict, "already_initialized"),
            ApplyError::NotInitialized => (Unavailable, "not_initialized"),
            ApplyError::TokenExists { .. } => (Conflict, "token_exists"),
            ApplyError::UnknownToken { .. } => (NotFound, "unknown_token"),
            ApplyError::WrongSecret { .. } => (Forbidden, "wrong_secret"),
            ApplyError::TokenRevoked { .. } => (Forbidden, "token_revoked"),
            ApplyError::TokenExpired { .. } => (Forbidden, "token_expired"),
            ApplyError::NameInUse { .. } => (Conflict, "name_in_use"),
            ApplyError::UnknownNode { .. } => (NotFound, "unknown_node"),
            ApplyError::NotAnAgent { .. } => (Conflict, "not_an_agent"),
            ApplyError::CasFailed { .. } => (Conflict, "cas_failed"),
            ApplyError::UnknownVar { .. } => (NotFound, "unknown_var"),
            ApplyError::UnknownSecret { .. } => (NotFound, "unknown_secret"),
            ApplyError::JobExists { .. } => (Conflict, "job_exists"),
            ApplyError::UnknownJob { .. } => (NotFound, "unknown_job"),
            ApplyError::JobRunExists { .. } => (Conflict, "job_run_exists"),
            ApplyError::ScheduleHandled { .. } => (Conflict, "schedule_handled"),
            ApplyError::JobNotReady { .. } => (Conflict, "job_not_ready"),
            ApplyError::UnknownJobRun { .. } => (NotFound, "unknown_job_run"),
            ApplyError::TaskExists { .. } => (Conflict, "task_exists"),
            ApplyError::UnknownTask { .. } => (NotFound, "unknown_task"),
            ApplyError::Placement(_) => (Conflict, "no_room"),
            ApplyError::UnknownFramework { .. } => (NotFound, "unknown_framework"),
            ApplyError::StaleAcknowledgement { .. } => (Conflict, "stale_acknowledgement"),
            ApplyError::InvalidRole { .. } => (Invalid, "invalid_role"),
            ApplyError::InvalidApp { .. } => (Invalid, "invalid_app"),
            ApplyError::UnknownDeployment { .. } => (NotFound, "unknown_deployment"),
            ApplyError::RotationInProgress => (Conflict, "rotation_in_progress"),
            ApplyError::NoRotation => (Conflict, "no_rotation"),
            ApplyError::AclBootstrapped => (Conflict, "acl_bootstrapped"),
            ApplyError::AclTokenExists { .. } => (Conflict, "acl_token_exists"),
            ApplyError::UnknownAclToken { .. } => (NotFound, "unknown_acl_token"),
            ApplyError::UnknownPolicy { .. } => (NotFound, "unknown_policy"),
            ApplyError::BadPolicyName { .. } => (Invalid, "bad_policy_name"),
            ApplyError::PolicyInUse { .. } => (Conflict, "policy_in_use"),
            ApplyError::PackageRepoExists { .. } => (Conflict, "package_repo_exists"),
            ApplyError::UnknownPackageRepo { .. } => (NotFound, "unknown_package_repo"),
            ApplyError::PackageInstalled { .. } => (Conflict, "package_installed"),
            ApplyError::UnknownPackageInstall { .. } => (NotFound, "unknown_package_install"),
            ApplyError::ExecutorIncompatible { .. } => (Invalid, "executor_incompatible"),
            ApplyError::ExecutorMismatch { .. } => (Invalid, "executor_mismatch"),
            ApplyError::EmptyTaskGroup => (Invalid, "empty_task_group"),
        };
        Error::new(kind, code, e.to_string())
    }
}

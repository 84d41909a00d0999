//! Requests the leader makes on behalf of an API caller (logs, exec, images), answered on the
//! agent stream as `Reply` messages: zero or more `Data`/`Progress` parts, then one `Done` or
//! `Error` with a stable code.
//!
//! Each request runs as its own task, keyed by its `req_id`, so requests run concurrently and
//! `Cancel` stops one. They belong to the connection they came on: when it ends, they stop
//! (the leader's ids mean nothing on the next connection). Replies are sent on the stream's
//! own bounded channel, so a slow reader slows the request, not the agent.
//!
//! Error codes: `unknown_task`, `task_not_running`, `exec_failed`, `bad_request`, `not_found`,
//! `refused`, `insecure_registry`, `unreachable`, `registry_error`, `bad_reference`,
//! `bad_image`, `bad_archive`, `digest_mismatch`, `in_use`, `upload_incomplete`, `internal`.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine;
use futures::StreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tepui_image::{BlobKind, Image, ImageConfig, Progress, PullState};
use tepui_proto::agent::{AgentToServer, Reply, Request};
use tepui_proto::Envelope;
use tepui_runtime::{ExecSpec, LogStream};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::task::AbortHandle;

use tepui_common::error_chain;

use crate::files::{FilesError, Owners, SandboxFiles};
use crate::gateway::AgentGateway;
use crate::tasks::{Phase, TaskManager};
use crate::updates::valid_task_id;

/// Bytes of log per `Data` reply (before base64).
const LOG_CHUNK: usize = 32 * 1024;
/// Exec output kept per stream; the rest is read and dropped (`truncated` says so).
const EXEC_OUTPUT_CAP: usize = 1024 * 1024;

/// An image as requests report it (`PullImage`, `ListImages`, `RemoveImage`, `ImportImage`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSummary {
    /// Normalized (`docker.io/library/busybox:latest`).
    pub reference: String,
    /// The config digest.
    pub id: String,
    pub manifest_digest: String,
    /// Bytes of manifest, config and layer blobs.
    pub size: u64,
    pub created: Option<String>,
    pub layers: usize,
    pub config: ImageConfig,
}

impl From<&Image> for ImageSummary {
    fn from(i: &Image) -> Self {
        ImageSummary {
            reference: i.reference.clone(),
            id: i.config_digest.to_string(),
            manifest_digest: i.manifest_digest.to_string(),
            size: i.size,
            created: i.created.clone(),
            layers: i.layers.len(),
            config: i.config.clone(),
        }
    }
}

/// A pull progress event as `Progress` replies carry it.
pub fn progress_json(p: &Progress) -> Value {
    let kind = match p.kind {
        BlobKind::Manifest => "manifest",
        BlobKind::Config => "config",
        BlobKind::Layer => "layer",
    };
    let state = match p.state {
        PullState::Waiting => "waiting",
        PullState::Downloading => "downloading",
        PullState::Verifying => "verifying",
        PullState::Exists => "exists",
        PullState::Extracting => "extracting",
        PullState::Done => "done",
    };
    json!({"digest": p.digest.to_string(), "kind": kind, "state": state, "done": p.done, "total": p.total})
}

#[derive(Debug)]
struct ReqError {
    code: &'static str,
    message: String,
}

fn err(code: &'static str, message: impl Into<String>) -> ReqError {
    ReqError {
        code,
        message: message.into(),
    }
}

fn image_err(e: &tepui_image::Error) -> ReqError {
    use tepui_image::Error as E;
    let code = match e {
        E::InvalidReference { .. } => "bad_reference",
        E::NotFound { .. } | E::NotInStore { .. } => "not_found",
        E::AuthRequired { .. } | E::AuthDenied { .. } => "refused",
        E::Unreachable { .. } => "unreachable",
        E::InsecureRegistry { .. } => "insecure_registry",
        E::Registry { .. } => "registry_error",
        E::DigestMismatch { .. } => "digest_mismatch",
        E::BadArchive { .. } | E::AmbiguousArchive { .. } | E::UnnamedImage { .. } => "bad_archive",
        E::UnsupportedMediaType { .. } | E::PlatformNotFound { .. } | E::BadImage { .. } | E::BadLayer { .. } => {
            "bad_image"
        }
        E::InUse { .. } => "in_use",
        _ => "internal",
    };
    err(code, error_chain(e))
}

fn runtime_err(e: &tepui_runtime::Error) -> ReqError {
    use tepui_runtime::Error as E;
    let code = match e {
        E::NotFound(_) | E::NotRunning(_) => "task_not_running",
        E::Exec { .. } => "exec_failed",
        E::InvalidSpec(_) => "bad_request",
        _ => "internal",
    };
    err(code, error_chain(e))
}

/// Where replies go: the stream's outgoing channel.
#[derive(Clone)]
struct Out {
    tx: mpsc::Sender<Envelope>,
    req_id: u64,
}

/// The stream is gone; stop.
struct Gone;

impl Out {
    async fn send(&self, reply: Reply) -> Result<(), Gone> {
        let m = AgentToServer::Reply {
            req_id: self.req_id,
            reply,
        };
        self.tx.send(crate::session::envelope(&m)).await.map_err(|_| Gone)
    }
}

struct Upload {
    b64: String,
    last: bool,
}

struct Running {
    abort: AbortHandle,
    upload: Option<mpsc::Sender<Upload>>,
}

/// The requests of one connection: each runs as its own task and replies on `tx` (the
/// stream's outgoing channel). Dropping it stops them all.
pub struct Requests {
    tasks: TaskManager,
    gateway: Arc<AgentGateway>,
    tx: mpsc::Sender<Envelope>,
    running: HashMap<u64, Running>,
}

impl Requests {
    pub fn new(tasks: TaskManager, gateway: Arc<AgentGateway>, tx: mpsc::Sender<Envelope>) -> Requests {
        Requests {
            tasks,
            gateway,
            tx,
            running: HashMap::new(),
        }
    }

    /// Starts a request; a request id still running is stopped first.
    pub fn start(&mut self, req_id: u64, request: Request) {
        self.running.retain(|_, r| !r.abort.is_finished());
        if let Some(old) = self.running.remove(&req_id) {
            tracing::warn!(req_id, "a request id in use came again; the older request is stopped");
            old.abort.abort();
        }
        if let Request::GatewayRoutes = request {
            // Answered from memory, at once.
            let reply = match self.gateway.live() {
                Some(result) => Reply::Done { result },
                None => Reply::Error {
                    code: "gateway_off".into(),
                    message: "this agent runs no gateway (it was started without --gateway-http or --gateway-https)"
                        .into(),
                },
            };
            let out = Out {
                tx: self.tx.clone(),
                req_id,
            };
            tokio::spawn(async move {
                let _ = out.send(reply).await;
            });
            return;
        }
        let (upload_tx, upload_rx) = match request {
            Request::ImportImage { .. } | Request::ExecStream { .. } => {
                let (t, r) = mpsc::channel(8);
                (Some(t), Some(r))
            }
            _ => (None, None),
        };
        let out = Out {
            tx: self.tx.clone(),
            req_id,
        };
        let tasks = self.tasks.clone();
        tracing::debug!(req_id, ?request, "request");
        let abort = self.tasks.spawn(async move {
            let result = serve(&tasks, &out, request, upload_rx).await;
            let reply = match result {
                Ok(Some(v)) => Reply::Done { result: v },
                Ok(None) => return,
                Err(e) => {
                    tracing::debug!(req_id = out.req_id, code = e.code, message = %e.message, "request failed");
                    Reply::Error {
                        message: e.message,
                        code: e.code.to_string(),
                    }
                }
            };
            let _ = out.send(reply).await;
        });
        self.running.insert(
            req_id,
            Running {
                abort,
                upload: upload_tx,
            },
        );
    }

    /// A chunk of the upload of an `ImportImage` request.
    pub async fn upload(&mut self, req_id: u64, b64: String, last: bool) {
        let Some(tx) = self.running.get(&req_id).and_then(|r| r.upload.clone()) else {
            tracing::debug!(req_id, "upload for no import in progress: ignored");
            return;
        };
        if tx.send(Upload { b64, last }).await.is_err() {
            tracing::debug!(req_id, "upload for an import that ended: ignored");
        }
        if last {
            if let Some(r) = self.running.get_mut(&req_id) {
                r.upload = None;
            }
        }
    }

    /// Stops a request; it sends nothing more.
    pub fn cancel(&mut self, req_id: u64) {
        if let Some(r) = self.running.remove(&req_id) {
            tracing::debug!(req_id, "request cancelled");
            r.abort.abort();
        }
    }
}

impl Drop for Requests {
    fn drop(&mut self) {
        for r in self.running.values() {
            r.abort.abort();
        }
    }
}

/// Runs a request; `Ok(None)` when the stream went away and nothing more can be said.
async fn serve(
    tasks: &TaskManager,
    out: &Out,
    request: Request,
    upload: Option<mpsc::Receiver<Upload>>,
) -> Result<Option<Value>, ReqError> {
    match request {
        Request::Logs {
            task_id,
            stderr,
            tail,
            follow,
        } => logs(tasks, out, &task_id, stderr, tail, follow).await,
        Request::Exec { task_id, cmd } => exec(tasks, &task_id, cmd).await.map(Some),
        Request::ExecStream { task_id, cmd, tty } => {
            let upload = upload.ok_or_else(|| err("internal", "no input channel"))?;
            exec_stream(tasks, out, &task_id, cmd, tty, upload).await.map(Some)
        }
        Request::PullImage { reference } => pull(tasks, out, &reference).await,
        Request::ListImages => {
            let list: Vec<ImageSummary> = tasks.images().list().iter().map(ImageSummary::from).collect();
            Ok(Some(json!(list)))
        }
        Request::RemoveImage { reference } => {
            let in_use = tasks.images_in_use();
            let removed = tasks
                .blocking(move |images| images.remove(&reference, &in_use))
                .await
                .map_err(|e| image_err(&e))?;
            Ok(Some(json!(ImageSummary::from(&removed))))
        }
        Request::ImportImage { reference } => {
            let upload = upload.ok_or_else(|| err("internal", "no upload channel"))?;
            import(tasks, out.req_id, upload, reference).await.map(Some)
        }
        Request::GatewayRoutes => Err(err("internal", "gateway routes are answered when asked")),
        Request::BrowseFiles { task_id, path } => browse_files(tasks, &task_id, path).await.map(Some),
        Request::ReadFile {
            task_id,
            path,
            offset,
            length,
        } => read_file(tasks, out, &task_id, path, offset, length).await,
    }
}

/// The files of a task's sandbox, while its sandbox is on this agent (also after it ended).
fn sandbox_files(tasks: &TaskManager, task_id: &str) -> Result<SandboxFiles, ReqError> {
    let none = || err("not_found", format!("task {task_id} has no sandbox on this agent"));
    if !valid_task_id(task_id) {
        return Err(none());
    }
    let dir = tasks.runtime().sandbox_dir(task_id);
    if !dir.is_dir() {
        return Err(none());
    }
    Ok(SandboxFiles::new(dir))
}

fn files_err(e: FilesError) -> ReqError {
    err(e.code(), e.to_string())
}

async fn browse_files(tasks: &TaskManager, task_id: &str, path: String) -> Result<Value, ReqError> {
    let files = sandbox_files(tasks, task_id)?;
    let entries = tokio::task::spawn_blocking(move || files.browse(&path, &Owners::of_host()))
        .await
        .map_err(|e| err("internal", format!("listing the sandbox: {e}")))?
        .map_err(files_err)?;
    Ok(json!(entries))
}

async fn read_file(
    tasks: &TaskManager,
    out: &Out,
    task_id: &str,
    path: String,
    offset: u64,
    length: u64,
) -> Result<Option<Value>, ReqError> {
    let files = sandbox_files(tasks, task_id)?;
    let (data, size) = tokio::task::spawn_blocking(move || files.read(&path, offset, length))
        .await
        .map_err(|e| err("internal", format!("reading the sandbox: {e}")))?
        .map_err(files_err)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    for piece in data.chunks(LOG_CHUNK) {
        if out.send(Reply::Data { b64: b64.encode(piece) }).await.is_err() {
            return Ok(None);
        }
    }
    Ok(Some(json!({ "size": size })))
}

async fn logs(
    tasks: &TaskManager,
    out: &Out,
    task_id: &str,
    stderr: bool,
    tail: Option<usize>,
    follow: bool,
) -> Result<Option<Value>, ReqError> {
    let unknown = || err("unknown_task", format!("task {task_id} is not on this agent"));
    let mut phase = tasks.watch_phase(task_id).ok_or_else(unknown)?;
    let _follower = match follow {
        false => None,
        true => Some(tasks.log_follower().ok_or_else(|| {
            err(
                "too_many_followers",
                format!(
                    "this agent already streams {} followed logs; stop one, or read without following",
                    crate::tasks::MAX_LOG_FOLLOWERS
                ),
            )
        })?),
    };
    // A task that never got a container (bad id, failed pull) has no logs.
    if !valid_task_id(task_id) {
        return Ok(Some(Value::Null));
    }
    let rt = tasks.runtime();
    if !rt.sandbox_dir(task_id).is_dir() {
        if !follow {
            return Ok(Some(Value::Null));
        }
        // Still pulling or preparing: its logs start with its container.
        let _ = phase.wait_for(|p| *p != Phase::Starting).await;
        if !rt.sandbox_dir(task_id).is_dir() {
            return Ok(Some(Value::Null));
        }
    }
    let stream = if stderr { LogStream::Stderr } else { LogStream::Stdout };
    let mut chunks = rt
        .logs(task_id, stream, tail, follow)
        .await
        .map_err(|e| runtime_err(&e))?;
    let b64 = base64::engine::general_purpose::STANDARD;
    while let Some(chunk) = chunks.next().await {
        let chunk = chunk.map_err(|e| err("internal", format!("reading the log of {task_id}: {e}")))?;
        for piece in chunk.chunks(LOG_CHUNK) {
            if out.send(Reply::Data { b64: b64.encode(piece) }).await.is_err() {
                return Ok(None);
            }
        }
    }
    Ok(Some(Value::Null))
}

async fn read_capped(r: Option<impl AsyncRead + Unpin>) -> std::io::Result<(Vec<u8>, bool)> {
    let Some(mut r) = r else { return Ok((Vec::new(), false)) };
    let mut out = Vec::new();
    let mut truncated = false;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = r.read(&mut buf).await?;
        if n == 0 {
            return Ok((out, truncated));
        }
        let room = EXEC_OUTPUT_CAP - out.len();
        out.extend_from_slice(&buf[..n.min(room)]);
        truncated |= n > room;
    }
}

async fn exec(tasks: &TaskManager, task_id: &str, cmd: Vec<String>) -> Result<Value, ReqError> {
    let phase = tasks
        .phase(task_id)
        .ok_or_else(|| err("unknown_task", format!("task {task_id} is not on this agent")))?;
    if cmd.is_empty() {
        return Err(err("bad_request", "exec needs a command"));
    }
    if phase != Phase::Running {
        return Err(err("task_not_running", format!("task {task_id} is not running")));
    }
    let spec = ExecSpec {
        args: cmd,
        ..ExecSpec::default()
    };
    let mut s = tasks
        .runtime()
        .exec_stream(task_id, &spec)
        .await
        .map_err(|e| runtime_err(&e))?;
    drop(s.stdin.take());
    let (o, e) = tokio::join!(read_capped(s.stdout.take()), read_capped(s.stderr.take()));
    let io = |x: std::io::Error| err("internal", format!("reading the output of the exec: {x}"));
    let ((stdout, t1), (stderr, t2)) = (o.map_err(io)?, e.map_err(io)?);
    let exit_code = s.wait().await.map_err(|e| runtime_err(&e))?;
    Ok(json!({
        "exit_code": exit_code,
        "stdout": String::from_utf8_lossy(&stdout),
        "stderr": String::from_utf8_lossy(&stderr),
        "truncated": t1 || t2,
    }))
}

type Input = Box<dyn tokio::io::AsyncWrite + Send + Unpin>;
/// An output stream of an exec; the flag says stderr.
type Output = Box<dyn AsyncRead + Send + Unpin>;

/// An interactive exec: input from the caller's upload chunks, output streamed back as it
/// comes, the exit code at the end.
async fn exec_stream(
    tasks: &TaskManager,
    out: &Out,
    task_id: &str,
    cmd: Vec<String>,
    tty: bool,
    mut input: mpsc::Receiver<Upload>,
) -> Result<Value, ReqError> {
    let phase = tasks
        .phase(task_id)
        .ok_or_else(|| err("unknown_task", format!("task {task_id} is not on this agent")))?;
    if cmd.is_empty() {
        return Err(err("bad_request", "exec needs a command"));
    }
    if phase != Phase::Running {
        return Err(err("task_not_running", format!("task {task_id} is not running")));
    }
    let spec = ExecSpec {
        args: cmd,
        tty,
        ..ExecSpec::default()
    };
    let mut s = tasks
        .runtime()
        .exec_stream(task_id, &spec)
        .await
        .map_err(|e| runtime_err(&e))?;
    let b64 = |bytes: &[u8]| base64::engine::general_purpose::STANDARD.encode(bytes);

    // Where input goes and where output comes from: one terminal, or three pipes.
    let (mut writer, readers): (Input, Vec<(bool, Output)>) = match s.pty.take() {
        Some(pty) => {
            let read_side = pty
                .try_clone()
                .map_err(|e| err("internal", format!("cannot share the terminal: {e}")))?;
            (
                Box::new(tokio::fs::File::from_std(std::fs::File::from(pty))),
                vec![(
                    false,
                    Box::new(tokio::fs::File::from_std(std::fs::File::from(read_side))),
                )],
            )
        }
        None => {
            let stdin = s.stdin.take().ok_or_else(|| err("internal", "the exec has no stdin"))?;
            let mut readers: Vec<(bool, Output)> = vec![];
            if let Some(o) = s.stdout.take() {
                readers.push((false, Box::new(o)));
            }
            if let Some(e) = s.stderr.take() {
                readers.push((true, Box::new(e)));
            }
            (Box::new(stdin), readers)
        }
    };
    let feeding = async move {
        while let Some(chunk) = input.recv().await {
            if let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(chunk.b64) {
                if writer.write_all(&bytes).await.is_err() {
                    break;
                }
                let _ = writer.flush().await;
            }
            if chunk.last {
                break;
            }
        }
        // Dropping the writer closes stdin (pipes); a terminal stays open until the process ends.
    };
    let pumping = futures::future::join_all(readers.into_iter().map(|(is_err, mut r)| async move {
        let mut buf = vec![0u8; LOG_CHUNK];
        loop {
            match r.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let reply = if is_err {
                        Reply::Stderr { b64: b64(&buf[..n]) }
                    } else {
                        Reply::Data { b64: b64(&buf[..n]) }
                    };
                    if out.send(reply).await.is_err() {
                        break;
                    }
                }
            }
        }
    }));
    let waiting = s.wait();
    tokio::pin!(feeding);
    tokio::pin!(waiting);
    tokio::pin!(pumping);
    let (mut fed, mut pumped) = (false, false);
    // Output is relayed as it comes (an interactive shell answers each line), not after the end.
    let exit = loop {
        tokio::select! {
            _ = &mut feeding, if !fed => fed = true,
            _ = &mut pumping, if !pumped => pumped = true,
            code = &mut waiting => break code,
        }
    };
    let exit_code = exit.map_err(|e| runtime_err(&e))?;
    // Output still in the pipes after the exit; a terminal reports an error once drained.
    if !pumped {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), pumping).await;
    }
    Ok(json!({ "exit_code": exit_code }))
}

async fn pull(tasks: &TaskManager, out: &Out, reference: &str) -> Result<Option<Value>, ReqError> {
    let (ptx, mut prx) = mpsc::unbounded_channel::<Value>();
    let pulling = async move {
        let report = move |p: &Progress| {
            let _ = ptx.send(progress_json(p));
        };
        tasks.pull_image(reference, &report).await
    };
    let forwarding = async {
        let mut gone = false;
        while let Some(event) = prx.recv().await {
            if !gone && out.send(Reply::Progress { event }).await.is_err() {
                gone = true;
            }
        }
        gone
    };
    let (image, gone) = tokio::join!(pulling, forwarding);
    let image = image.map_err(|e| image_err(&e))?;
    if gone {
        return Ok(None);
    }
    Ok(Some(json!(ImageSummary::from(&image))))
}

/// Removes the upload's temporary file however the import ends.
struct TempFile(PathBuf);

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Stores the uploaded archive's images, under `reference` when given (see
/// [`tepui_image::ImageStore::import`]).
async fn import(
    tasks: &TaskManager,
    req_id: u64,
    mut upload: mpsc::Receiver<Upload>,
    reference: Option<String>,
) -> Result<Value, ReqError> {
    let path = tasks
        .uploads_dir()
        .join(format!("import-{req_id}-{:016x}.tar", rand::random::<u64>()));
    let temp = TempFile(path.clone());
    let io = |e: std::io::Error| err("internal", format!("writing the upload to {}: {e}", path.display()));
    let mut file = tokio::fs::File::create(&path).await.map_err(io)?;
    let b64 = base64::engine::general_purpose::STANDARD;
    loop {
        let Some(chunk) = upload.recv().await else {
            return Err(err("upload_incomplete", "the upload ended before its last chunk"));
        };
        let bytes = b64
            .decode(chunk.b64.as_bytes())
            .map_err(|e| err("bad_request", format!("an upload chunk is not base64: {e}")))?;
        file.write_all(&bytes).await.map_err(io)?;
        if chunk.last {
            break;
        }
    }
    file.flush().await.map_err(io)?;
    drop(file);
    let p = temp.0.clone();
    let images = tasks
        .blocking(move |images| images.import(&p, reference.as_deref()))
        .await
        .map_err(|e| match &e {
            // The upload's temporary path means nothing to the person who sent the file.
            tepui_image::Error::BadArchive { reason, .. } => err(
                "bad_archive",
                format!("not a docker save archive or OCI layout: {reason}"),
            ),
            tepui_image::Error::UnnamedImage { what, .. } => err(
                "bad_archive",
                format!(
                    "the archive gives image {what} no repository name: give a reference to import it as \
                     (tepui image import --as REF)"
                ),
            ),
            tepui_image::Error::AmbiguousArchive { names, .. } => err(
                "bad_archive",
                format!(
                    "the archive holds several images ({names}); name the one to import (tepui image import --as REF)"
                ),
            ),
            _ => image_err(&e),
        })?;
    drop(temp);
    let list: Vec<ImageSummary> = images.iter().map(ImageSummary::from).collect();
    Ok(json!(list))
}

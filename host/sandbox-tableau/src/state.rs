//! The sandbox's in-memory site: sessions, projects, data sources (each a
//! `.hyper` file on disk), upload sessions, jobs, webhooks and the RequestID
//! memory; plus how each renders as a response element.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use mlc_common::time::civil_from_days;

use crate::render::Node;

/// Microseconds since the Unix epoch, now.
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Tableau's timestamp form: `2025-03-01T10:00:00Z`.
pub fn tableau_time(micros: i64) -> String {
    let secs = micros.div_euclid(1_000_000);
    let days = i32::try_from(secs.div_euclid(86_400)).unwrap_or(0);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

/// A new LUID.
pub fn luid() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// The one site.
#[derive(Clone, Debug)]
pub struct Site {
    /// LUID.
    pub id: String,
    /// Display name.
    pub name: String,
    /// URL name used at sign-in.
    pub content_url: String,
}

/// The PAT owner.
#[derive(Clone, Debug)]
pub struct User {
    /// LUID.
    pub id: String,
    /// User name.
    pub name: String,
}

/// A project.
#[derive(Clone, Debug)]
pub struct Project {
    /// LUID.
    pub id: String,
    /// Name (unique per parent).
    pub name: String,
    /// Description.
    pub description: String,
    /// Parent LUID for nested projects.
    pub parent_id: Option<String>,
    /// Created, µs since epoch.
    pub created_at: i64,
}

impl Project {
    /// The list/get element.
    pub fn node(&self, owner_id: &str) -> Node {
        Node::new("project")
            .attr("id", self.id.clone())
            .attr("name", self.name.clone())
            .attr("description", self.description.clone())
            .attr_opt("parentProjectId", self.parent_id.clone())
            .attr("createdAt", tableau_time(self.created_at))
            .attr("updatedAt", tableau_time(self.created_at))
            .attr("contentPermissions", "ManagedByOwner")
            .attr_bool("topLevelProject", self.parent_id.is_none())
            .attr_bool("writeable", true)
            .child(Node::new("owner").attr("id", owner_id))
    }
}

/// A signed-in session.
#[derive(Clone, Debug)]
pub struct Session {
    /// Which PAT signed in.
    pub pat_name: String,
    /// Site LUID.
    pub site_id: String,
    /// User LUID.
    pub user_id: String,
    /// When the session ends.
    pub expires: Instant,
    /// Fault epoch at sign-in.
    pub epoch: u64,
}

/// A published data source.
#[derive(Clone, Debug)]
pub struct Datasource {
    /// LUID.
    pub id: String,
    /// Name (unique per project).
    pub name: String,
    /// URL name.
    pub content_url: String,
    /// Project LUID.
    pub project_id: String,
    /// Description.
    pub description: String,
    /// Certified flag.
    pub certified: bool,
    /// Certification note.
    pub certification_note: Option<String>,
    /// The stored `.hyper`.
    pub file: PathBuf,
    /// The upload's file name.
    pub filename: String,
    /// File size in bytes.
    pub size: u64,
    /// The single connection's LUID.
    pub connection_id: String,
    /// Created, µs.
    pub created_at: i64,
    /// Updated, µs.
    pub updated_at: i64,
    /// Serialises file operations on this data source.
    pub lock: Arc<tokio::sync::Mutex<()>>,
    /// Runs this data source's jobs one after another, in submission order.
    pub queue: JobQueue,
}

/// A per-data-source FIFO of jobs: each job waits for the one submitted
/// before it to finish.
#[derive(Clone, Debug, Default)]
pub struct JobQueue(Arc<std::sync::Mutex<Option<tokio::sync::watch::Receiver<bool>>>>);

impl JobQueue {
    /// Takes the next place in the queue (call when the job is submitted).
    pub fn enqueue(&self) -> Turn {
        let (done, rx) = tokio::sync::watch::channel(false);
        let previous = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .replace(rx);
        Turn { previous, done }
    }
}

/// A job's place in a [`JobQueue`]; dropping it lets the next job run.
#[derive(Debug)]
pub struct Turn {
    previous: Option<tokio::sync::watch::Receiver<bool>>,
    done: tokio::sync::watch::Sender<bool>,
}

impl Turn {
    /// Waits until every job submitted earlier has finished.
    pub async fn wait(&mut self) {
        if let Some(previous) = &mut self.previous {
            // An error means the earlier job is gone: its turn is over too.
            let _ = previous.wait_for(|finished| *finished).await;
        }
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.done.send(true);
    }
}

impl Datasource {
    /// The list/get/publish element.
    pub fn node(
        &self,
        project: Option<&Project>,
        owner: &User,
        server_url: &str,
        site: &Site,
    ) -> Node {
        let mut project_node = Node::new("project").attr("id", self.project_id.clone());
        if let Some(p) = project {
            project_node = project_node.attr("name", p.name.clone());
        }
        Node::new("datasource")
            .attr("id", self.id.clone())
            .attr("name", self.name.clone())
            .attr("contentUrl", self.content_url.clone())
            .attr("type", "dataengine")
            .attr("description", self.description.clone())
            .attr("createdAt", tableau_time(self.created_at))
            .attr("updatedAt", tableau_time(self.updated_at))
            .attr_bool("isCertified", self.certified)
            .attr_opt("certificationNote", self.certification_note.clone())
            .attr("size", (self.size.div_ceil(1024 * 1024)).to_string())
            .attr_bool("hasExtracts", true)
            .attr_bool("encryptExtracts", false)
            .attr_bool("useRemoteQueryAgent", false)
            .attr(
                "webpageUrl",
                format!(
                    "{server_url}/#/site/{}/datasources/{}",
                    site.content_url, self.content_url
                ),
            )
            .child(project_node)
            .child(
                Node::new("owner")
                    .attr("id", owner.id.clone())
                    .attr("name", owner.name.clone()),
            )
            .child(Node::list("tags", Vec::new()))
    }

    /// The `<connection>` element.
    pub fn connection_node(&self) -> Node {
        Node::new("connection")
            .attr("id", self.connection_id.clone())
            .attr("type", "hyper")
            .attr("serverAddress", "")
            .attr("serverPort", "")
            .attr("userName", "")
            .attr_bool("embedPassword", false)
            .attr_bool("queryTaggingEnabled", false)
            .child(
                Node::new("datasource")
                    .attr("id", self.id.clone())
                    .attr("name", self.name.clone()),
            )
    }
}

/// A chunked-upload session.
#[derive(Clone, Debug)]
pub struct Upload {
    /// The opaque id (`7720:170f...-1:0`).
    pub id: String,
    /// Where the chunks accumulate.
    pub file: PathBuf,
    /// Bytes so far.
    pub bytes: u64,
}

impl Upload {
    /// The `<fileUpload>` element (`fileSize` in whole MB).
    pub fn node(&self) -> Node {
        Node::new("fileUpload")
            .attr("uploadSessionId", self.id.clone())
            .attr("fileSize", (self.bytes / (1024 * 1024)).to_string())
    }
}

/// Job types.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobKind {
    /// `PublishDatasource` (publish with `asJob=true`).
    Publish,
    /// `UpdateUploadedFile` (Update Data in Hyper).
    Update,
    /// `RefreshExtract`.
    Refresh,
}

/// An asynchronous job.
#[derive(Clone, Debug)]
pub struct Job {
    /// LUID.
    pub id: String,
    /// Type.
    pub kind: JobKind,
    /// Created, µs.
    pub created_at: i64,
    /// Started, µs.
    pub started_at: Option<i64>,
    /// Completed, µs.
    pub completed_at: Option<i64>,
    /// 0..=100.
    pub progress: u8,
    /// 0 success, 1 failed.
    pub finish_code: Option<u8>,
    /// Failure notes.
    pub notes: Option<String>,
    /// Data source LUID (known once published).
    pub datasource_id: Option<String>,
    /// Data source name.
    pub datasource_name: String,
    /// Connection LUID (update jobs).
    pub connection_id: Option<String>,
}

impl Job {
    /// A new queued job.
    pub fn new(kind: JobKind, datasource_id: Option<String>, datasource_name: String) -> Self {
        Self {
            id: luid(),
            kind,
            created_at: now_micros(),
            started_at: None,
            completed_at: None,
            progress: 0,
            finish_code: None,
            notes: None,
            datasource_id,
            datasource_name,
            connection_id: None,
        }
    }

    /// The `<job>` element.
    pub fn node(&self) -> Node {
        let type_name = match self.kind {
            JobKind::Publish => "PublishDatasource",
            JobKind::Update => "UpdateUploadedFile",
            JobKind::Refresh => "RefreshExtract",
        };
        let mut job = Node::new("job")
            .attr("id", self.id.clone())
            .attr("mode", "Asynchronous")
            .attr("type", type_name)
            .attr("progress", self.progress.to_string())
            .attr("createdAt", tableau_time(self.created_at))
            .attr_opt("startedAt", self.started_at.map(tableau_time))
            .attr_opt("completedAt", self.completed_at.map(tableau_time))
            .attr_opt("finishCode", self.finish_code.map(|c| c.to_string()));
        let mut datasource = Node::new("datasource").attr("name", self.datasource_name.clone());
        if let Some(id) = &self.datasource_id {
            datasource
                .attrs
                .insert(0, ("id".to_owned(), id.clone().into()));
        }
        let detail_name = match self.kind {
            JobKind::Publish => "publishDatasourceJob",
            JobKind::Update => "updateUploadedFileJob",
            JobKind::Refresh => "extractRefreshJob",
        };
        let mut detail = Node::new(detail_name).child(datasource);
        if let Some(connection) = &self.connection_id {
            detail = detail.child(Node::new("connectionLuid").text(connection.clone()));
        }
        if let Some(notes) = &self.notes {
            detail = detail.child(Node::new("notes").text(notes.clone()));
        }
        job = job.child(detail);
        job
    }
}

/// A registered webhook.
#[derive(Clone, Debug)]
pub struct Webhook {
    /// LUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// API event name (`DatasourceRefreshSucceeded`).
    pub event: &'static str,
    /// Destination URL.
    pub url: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Why it was disabled (empty while enabled).
    pub status_change_reason: String,
    /// Created, µs.
    pub created_at: i64,
}

/// API event names and their `<webhook-source>` element names.
pub const WEBHOOK_EVENTS: &[(&str, &str)] = &[
    (
        "DatasourceCreated",
        "webhook-source-event-datasource-created",
    ),
    (
        "DatasourceUpdated",
        "webhook-source-event-datasource-updated",
    ),
    (
        "DatasourceDeleted",
        "webhook-source-event-datasource-deleted",
    ),
    (
        "DatasourceRefreshStarted",
        "webhook-source-event-datasource-refresh-started",
    ),
    (
        "DatasourceRefreshSucceeded",
        "webhook-source-event-datasource-refresh-succeeded",
    ),
    (
        "DatasourceRefreshFailed",
        "webhook-source-event-datasource-refresh-failed",
    ),
    ("WorkbookCreated", "webhook-source-event-workbook-created"),
    ("WorkbookUpdated", "webhook-source-event-workbook-updated"),
    ("WorkbookDeleted", "webhook-source-event-workbook-deleted"),
    (
        "WorkbookRefreshStarted",
        "webhook-source-event-workbook-refresh-started",
    ),
    (
        "WorkbookRefreshSucceeded",
        "webhook-source-event-workbook-refresh-succeeded",
    ),
    (
        "WorkbookRefreshFailed",
        "webhook-source-event-workbook-refresh-failed",
    ),
    ("LabelCreated", "webhook-source-event-label-created"),
    ("LabelUpdated", "webhook-source-event-label-updated"),
    ("LabelDeleted", "webhook-source-event-label-LabelDeleted"),
    ("SiteCreated", "webhook-source-event-site-created"),
    ("SiteUpdated", "webhook-source-event-site-updated"),
    ("SiteDeleted", "webhook-source-event-site-deleted"),
    ("UserDeleted", "webhook-source-event-user-deleted"),
    ("ViewDeleted", "webhook-source-event-view-deleted"),
    ("AdminPromoted", "webhook-event-user-promoted-admin"),
    ("AdminDemoted", "webhook-event-user-demoted-admin"),
];

/// Finds an event by API name or `<webhook-source>` element name.
pub fn find_event(name: &str) -> Option<(&'static str, &'static str)> {
    WEBHOOK_EVENTS
        .iter()
        .find(|(api, element)| *api == name || *element == name)
        .copied()
}

impl Webhook {
    /// The `<webhook>` element.
    pub fn node(&self, owner: &User) -> Node {
        let element = find_event(self.event).map(|(_, e)| e).unwrap_or("");
        Node::new("webhook")
            .attr("id", self.id.clone())
            .attr("name", self.name.clone())
            .attr_bool("isEnabled", self.enabled)
            .attr("statusChangeReason", self.status_change_reason.clone())
            .attr("event", self.event)
            .attr("createdAt", tableau_time(self.created_at))
            .attr("updatedAt", tableau_time(self.created_at))
            .child(Node::new("webhook-source").child(Node::new(element)))
            .child(
                Node::new("webhook-destination").child(
                    Node::new("webhook-destination-http")
                        .attr("method", "POST")
                        .attr("url", self.url.clone()),
                ),
            )
            .child(
                Node::new("owner")
                    .attr("id", owner.id.clone())
                    .attr("name", owner.name.clone()),
            )
    }
}

/// Everything that changes while the sandbox runs. `Debug` shows counts
/// only: session keys are bearer tokens and PATs are secrets.
#[derive(Default)]
pub struct Inner {
    /// PAT name → secret.
    pub pats: HashMap<String, mlc_common::Secret>,
    /// Token → session.
    pub sessions: HashMap<String, Session>,
    /// Data sources in publish order.
    pub datasources: Vec<Datasource>,
    /// Upload id → upload.
    pub uploads: HashMap<String, Upload>,
    /// Job id → job.
    pub jobs: HashMap<String, Job>,
    /// Webhooks in creation order.
    pub webhooks: Vec<Webhook>,
    /// RequestID → (job id, first seen).
    pub request_ids: HashMap<String, (String, Instant)>,
    /// Counter inside upload ids.
    pub upload_counter: u64,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("pats", &self.pats.len())
            .field("sessions", &self.sessions.len())
            .field("datasources", &self.datasources.len())
            .field("uploads", &self.uploads.len())
            .field("jobs", &self.jobs.len())
            .field("webhooks", &self.webhooks.len())
            .field("request_ids", &self.request_ids.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_shows_tokens() {
        let mut inner = Inner::default();
        inner.sessions.insert(
            "tok3n|secret".to_owned(),
            Session {
                pat_name: "p".into(),
                site_id: "s".into(),
                user_id: "u".into(),
                expires: Instant::now(),
                epoch: 0,
            },
        );
        let text = format!("{inner:?}");
        assert!(!text.contains("tok3n"), "{text}");
        assert!(text.contains("sessions: 1"), "{text}");
    }
}

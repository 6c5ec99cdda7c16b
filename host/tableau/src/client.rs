//! The publishing client of one tenant: finds the project, publishes a data
//! source from a full `.hyper` extract (one request when small, a chunked
//! file upload above the chunk size), keeps it current with *Update Data in
//! Hyper Data Source* upserts and deletes, polls the resulting jobs, and
//! registers the tenant's webhooks.
//!
//! Never a doubled row: every update request carries a `RequestID` derived
//! only from the batch id (`<batch>` for a one-part batch, `<batch>-<n>` for
//! part n of a split one; see [`request_id`]), so a replayed batch — by this
//! process after an ambiguous failure, or by a fresh process after a crash
//! before the job was seen — is recognised by Tableau as a duplicate; and
//! the action is an `upsert` keyed on the pipeline's key columns, which
//! cannot add a second row for a key even when it is applied again. Only
//! after a job *failed* (nothing applied) does the next attempt get a new
//! base, `<batch>.a<n>`, so a server remembering the failed id cannot
//! swallow the retry.
//!
//! Payload contract (the caller writes these files, e.g. with `mlc-hyper`):
//! a full extract has its rows in `"Extract"."Extract"`; an update payload
//! has the changed rows, with the target's columns, in `"Extract"."changes"`
//! and the keys of deleted rows (key columns only) in `"Extract"."deleted"`.
//! Each payload file must stay under the update payload limit (default 100 MB);
//! a batch bigger than that is written as several parts.
//!
//! Failure handling: `429` waits for `Retry-After`; `5xx` and connection
//! failures are retried with bounded backoff only where repeating is
//! harmless; a `401` (expired or superseded session) signs in again and
//! replays once. A chunk `PUT` is never replayed after a 5xx or a lost
//! answer (Tableau reports `concurrent_write` for that): the whole upload
//! starts over in a new upload session instead.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::header::{ACCEPT, CONTENT_TYPE};
use reqwest::{RequestBuilder, StatusCode};
use tokio::io::AsyncReadExt;
use tokio::sync::OnceCell;
use tokio::time::Instant;

use crate::auth::{AUTH_HEADER, Session, SessionManager};
use crate::config::TableauConfig;
use crate::error::{Ctx, ErrorKind, TableauError};
use crate::http::{Answer, Http, excerpt};
use crate::model::{
    Datasource, FileUpload, Job, Pagination, Part, Project, Webhook, WebhookEvent, filter_eq,
    multipart_mixed, publish_payload_xml, update_actions, upload_chunk_body, webhook_create_xml,
};

/// How a full extract is published.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PublishMode {
    /// Create the data source; fails with `403007` when the name exists.
    CreateNew,
    /// Create it, or replace the same-named one's content entirely
    /// (`overwrite=true`): the first publish, a schema change, a rebuild.
    Overwrite,
}

/// One payload file of an update batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PayloadPart {
    /// The `.hyper` file.
    pub path: PathBuf,
    /// It has `"Extract"."changes"`: rows to upsert.
    pub upserts: bool,
    /// It has `"Extract"."deleted"`: keys of rows to delete.
    pub deletes: bool,
}

/// One batch of changes for a published data source.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UpdateBatch {
    /// The data source's LUID.
    pub datasource_id: String,
    /// Its name, for errors and logs.
    pub datasource_name: String,
    /// The batch id: with `failed_attempts` the only input of the
    /// RequestIDs, so a replay of the batch sends the same ones.
    pub batch_id: String,
    /// How many earlier attempts of this batch ended in a *failed* job
    /// (finishCode 1: nothing applied). 0 for the first attempt and for any
    /// replay after an ambiguous failure or a crash; see [`request_id`].
    pub failed_attempts: u32,
    /// The pipeline's key columns (upsert and delete match on all of them).
    pub key_columns: Vec<String>,
    /// Payload files in order; each under the update payload limit.
    pub parts: Vec<PayloadPart>,
}

/// An update request Tableau accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SubmittedUpdate {
    /// The `RequestID` sent.
    pub request_id: String,
    /// The job Tableau started, when it answered with one.
    pub job_id: Option<String>,
}

/// How one part of a batch ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PartOutcome {
    /// The `RequestID` sent.
    pub request_id: String,
    /// The finished job, when Tableau started one.
    pub job: Option<Job>,
    /// True when the poll that found the job finished was made at once
    /// because a webhook said the data source changed ([`TableauClient::hint`]).
    pub seen_after_webhook: bool,
}

/// The `RequestID` of part `index` (0-based) of a batch split into `parts`.
///
/// The base is the batch id itself, or `<batch>.a<n>` after `n` attempts
/// whose jobs definitively failed (a failed job changed nothing, and a
/// server may remember its RequestID, so the next attempt must not reuse
/// it); a single part uses the base, part `i` of several `<base>-<i>`
/// (1-based). Nothing else goes in, so a replay after an ambiguous failure
/// or a crash sends the same ids.
pub fn request_id(batch_id: &str, failed_attempts: u32, index: usize, parts: usize) -> String {
    let base = if failed_attempts == 0 {
        batch_id.to_owned()
    } else {
        format!("{batch_id}.a{failed_attempts}")
    };
    if parts <= 1 {
        base
    } else {
        format!("{base}-{}", index + 1)
    }
}

/// How many parts of at most `limit` bytes (with a 10% margin for the file's
/// fixed overhead) a payload of `size` bytes needs; at least 1.
pub fn parts_needed(size: u64, limit: u64) -> usize {
    let usable = (limit - limit / 10).max(1);
    usize::try_from(size.div_ceil(usable).max(1)).unwrap_or(usize::MAX)
}

/// Progress of a file upload, reported after each chunk is stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadProgress {
    /// The file being uploaded.
    pub path: PathBuf,
    /// Chunks stored so far in the current upload session (1-based).
    pub chunk: u64,
    /// Chunks in the file.
    pub chunks: u64,
    /// Bytes stored so far in the current upload session.
    pub bytes_sent: u64,
    /// File size.
    pub total_bytes: u64,
    /// How often the upload was started over so far.
    pub restarts: u32,
}

/// A callback receiving [`UploadProgress`] (e.g. for a progress bar).
pub type UploadProgressFn = Arc<dyn Fn(&UploadProgress) + Send + Sync>;

/// A chunk upload failure: worth starting the upload over, or not.
enum UploadFailure {
    Restart(TableauError),
    Fatal(TableauError),
}

struct Inner {
    tenant: String,
    config: Arc<TableauConfig>,
    http: Arc<Http>,
    sessions: SessionManager,
    project_id: OnceCell<String>,
    progress: std::sync::RwLock<Option<UploadProgressFn>>,
    /// Per data source id: wakes a job wait to poll now (a webhook hint).
    hints: std::sync::Mutex<std::collections::HashMap<String, Arc<tokio::sync::Notify>>>,
}

/// The Tableau client of one tenant. Cheap to clone; clones share the
/// session, so every pipeline of the tenant should use clones of one client.
#[derive(Clone)]
pub struct TableauClient {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TableauClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TableauClient")
            .field("tenant", &self.inner.tenant)
            .field("server_url", &self.inner.config.server_url)
            .finish_non_exhaustive()
    }
}

impl TableauClient {
    /// A client for `tenant`; nothing is sent until the first call.
    pub fn new(tenant: impl Into<String>, config: TableauConfig) -> Result<Self, TableauError> {
        let tenant = tenant.into();
        let ctx = Ctx::new(&tenant, "configure");
        config
            .validate()
            .map_err(|m| ctx.err(ErrorKind::Config(m)))?;
        let config = Arc::new(config);
        let http = Arc::new(Http::new(&config, &ctx)?);
        let sessions = SessionManager::new(&tenant, config.clone(), http.clone());
        Ok(Self {
            inner: Arc::new(Inner {
                tenant,
                config,
                http,
                sessions,
                project_id: OnceCell::new(),
                progress: std::sync::RwLock::new(None),
                hints: std::sync::Mutex::new(std::collections::HashMap::new()),
            }),
        })
    }

    /// The tenant this client serves.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The configuration in use.
    pub fn config(&self) -> &TableauConfig {
        &self.inner.config
    }

    /// The session manager (shared by all clones).
    pub fn sessions(&self) -> &SessionManager {
        &self.inner.sessions
    }

    /// Reports every stored chunk of every upload (publish and update
    /// payloads) to `callback`; replaces any earlier callback.
    pub fn set_upload_progress(&self, callback: UploadProgressFn) {
        let mut slot = self
            .inner
            .progress
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *slot = Some(callback);
    }

    fn report_progress(&self, progress: UploadProgress) {
        let callback = self
            .inner
            .progress
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        if let Some(callback) = callback {
            callback(&progress);
        }
    }

    /// Signs in now instead of on the first call; returns the session.
    pub async fn sign_in(&self) -> Result<Arc<Session>, TableauError> {
        self.inner.sessions.session().await
    }

    /// Signs out; call on shutdown.
    pub async fn shutdown(&self) -> Result<(), TableauError> {
        self.inner.sessions.sign_out().await
    }

    fn ctx(&self, operation: &'static str) -> Ctx {
        Ctx::new(&self.inner.tenant, operation)
    }

    fn timeout(&self) -> Duration {
        Duration::from_secs(self.inner.config.request_timeout_secs)
    }

    fn upload_timeout(&self) -> Duration {
        Duration::from_secs(self.inner.config.upload_timeout_secs)
    }

    /// Sends an authenticated request. On a `401` (expired or superseded
    /// session: `401002`, `401000`) signs in again and replays it once; the
    /// server refused the first try, so replaying is safe for any request.
    async fn call<F>(&self, ctx: &Ctx, idempotent: bool, build: F) -> Result<Answer, TableauError>
    where
        F: Fn(&Session) -> RequestBuilder + Send + Sync,
    {
        let session = self.inner.sessions.session().await?;
        let answer = self.send_with(&session, ctx, idempotent, &build).await?;
        if answer.status != StatusCode::UNAUTHORIZED {
            return Ok(answer);
        }
        let code = answer.api_code();
        if !matches!(code.as_deref(), None | Some("401000") | Some("401002")) {
            return Ok(answer);
        }
        tracing::info!(tenant = %ctx.tenant, operation = ctx.operation, code = code.as_deref().unwrap_or("401"), "Tableau session no longer valid; signing in again and replaying once");
        let session = self.inner.sessions.renew(&session).await?;
        self.send_with(&session, ctx, idempotent, &build).await
    }

    async fn send_with<F>(
        &self,
        session: &Session,
        ctx: &Ctx,
        idempotent: bool,
        build: &F,
    ) -> Result<Answer, TableauError>
    where
        F: Fn(&Session) -> RequestBuilder + Send + Sync,
    {
        let token = session.auth_header().ok_or_else(|| {
            ctx.err(ErrorKind::Response(
                "session token is not a valid header value".into(),
            ))
        })?;
        self.inner
            .http
            .send(ctx, idempotent, &|| {
                build(session)
                    .header(AUTH_HEADER, token.clone())
                    .header(ACCEPT, "application/xml")
            })
            .await
    }

    // ------------------------------------------------------------ projects

    /// The LUID of the configured project (looked up once, then cached).
    /// Among same-named projects a top-level one wins.
    pub async fn project_id(&self) -> Result<String, TableauError> {
        self.inner
            .project_id
            .get_or_try_init(|| self.lookup_project())
            .await
            .cloned()
    }

    async fn lookup_project(&self) -> Result<String, TableauError> {
        let ctx = self.ctx("find project");
        let name = self.inner.config.project.clone();
        let filter = (!name.contains([',', ':'])).then(|| filter_eq("name", &name));
        let mut found: Vec<Project> = Vec::new();
        self.paged(&ctx, "projects", filter.as_deref(), "project", |e| {
            if let Some(p) = Project::from_xml(e)
                && p.name == name
            {
                found.push(p);
            }
        })
        .await?;
        found.sort_by_key(|p| p.parent_project_id.is_some());
        found
            .into_iter()
            .next()
            .map(|p| p.id)
            .ok_or_else(|| ctx.err(ErrorKind::ProjectNotFound(name)))
    }

    /// Walks every page of a site-scoped list, handing each `item` element
    /// to `each`.
    async fn paged(
        &self,
        ctx: &Ctx,
        path: &str,
        filter: Option<&str>,
        item: &str,
        mut each: impl FnMut(&crate::model::Element),
    ) -> Result<(), TableauError> {
        let mut page: u32 = 1;
        loop {
            let timeout = self.timeout();
            let answer = self
                .call(ctx, true, |s| {
                    let mut query = vec![
                        ("pageSize", "1000".to_owned()),
                        ("pageNumber", page.to_string()),
                    ];
                    if let Some(f) = filter {
                        query.push(("filter", f.to_owned()));
                    }
                    self.inner
                        .http
                        .client
                        .get(s.site_url(path))
                        .timeout(timeout)
                        .query(&query)
                })
                .await?
                .success(ctx)?;
            let root = answer.xml(ctx, path)?;
            let mut seen = 0;
            visit(&root, item, &mut |e| {
                seen += 1;
                each(e)
            });
            match Pagination::from_xml(&root) {
                Some(p) if p.has_more() && seen > 0 => page += 1,
                _ => return Ok(()),
            }
        }
    }

    // --------------------------------------------------------- data sources

    /// The data source of this name in the configured project, if any.
    pub async fn find_datasource(&self, name: &str) -> Result<Option<Datasource>, TableauError> {
        let ctx = self.ctx("find data source").ds(name);
        let project_id = self.project_id().await?;
        let filter = (!name.contains([',', ':'])).then(|| filter_eq("name", name));
        let mut found = None;
        self.paged(&ctx, "datasources", filter.as_deref(), "datasource", |e| {
            if let Some(d) = Datasource::from_xml(e)
                && d.name == name
                && d.project_id.as_deref() == Some(project_id.as_str())
                && found.is_none()
            {
                found = Some(d);
            }
        })
        .await?;
        Ok(found)
    }

    /// A data source by LUID.
    pub async fn get_datasource(&self, id: &str) -> Result<Datasource, TableauError> {
        let ctx = self.ctx("get data source").ds(id);
        let path = format!("datasources/{id}");
        let timeout = self.timeout();
        let answer = self
            .call(&ctx, true, |s| {
                self.inner
                    .http
                    .client
                    .get(s.site_url(&path))
                    .timeout(timeout)
            })
            .await?;
        if answer.status == StatusCode::NOT_FOUND {
            return Err(ctx.err(ErrorKind::DatasourceNotFound));
        }
        let answer = answer.success(&ctx)?;
        let root = answer.xml(&ctx, "datasource")?;
        root.find("datasource")
            .and_then(Datasource::from_xml)
            .ok_or_else(|| {
                ctx.err(ErrorKind::Response(format!(
                    "no datasource/@id in {}",
                    excerpt(&answer.text())
                )))
            })
    }

    /// Deletes a data source.
    pub async fn delete_datasource(&self, id: &str) -> Result<(), TableauError> {
        let ctx = self.ctx("delete data source").ds(id);
        let path = format!("datasources/{id}");
        let timeout = self.timeout();
        self.call(&ctx, true, |s| {
            self.inner
                .http
                .client
                .delete(s.site_url(&path))
                .timeout(timeout)
        })
        .await?
        .success(&ctx)?;
        Ok(())
    }

    /// Publishes the full extract at `path` (rows in `"Extract"."Extract"`)
    /// as data source `name` in the configured project: one request when the
    /// file fits in a chunk, else a chunked upload. With `publish_as_job`,
    /// waits for the publish job. Returns the published data source.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, datasource = %name, ?mode))]
    pub async fn publish(
        &self,
        name: &str,
        path: &Path,
        mode: PublishMode,
    ) -> Result<Datasource, TableauError> {
        let ctx = self.ctx("publish").ds(name);
        let project_id = self.project_id().await?;
        let size = file_size(&ctx, path).await?;
        let chunked = size > self.inner.config.effective_chunk_size();
        let upload_id = if chunked {
            Some(self.upload_file(&ctx, path).await?)
        } else {
            None
        };
        let file = match upload_id {
            Some(_) => None,
            None => Some(Bytes::from(tokio::fs::read(path).await.map_err(
                |source| {
                    ctx.err(ErrorKind::Io {
                        path: path.to_owned(),
                        source,
                    })
                },
            )?)),
        };
        let mut query: Vec<(&str, String)> = vec![("datasourceType", "hyper".into())];
        if mode == PublishMode::Overwrite {
            query.push(("overwrite", "true".into()));
        }
        if self.inner.config.publish_as_job {
            query.push(("asJob", "true".into()));
        }
        if let Some(id) = &upload_id {
            query.push(("uploadSessionId", id.clone()));
        }
        let payload = publish_payload_xml(name, &project_id);
        let filename = ascii_filename(name);
        let boundary = boundary();
        let body = Bytes::from(match &file {
            Some(bytes) => multipart_mixed(
                &boundary,
                &[
                    Part {
                        name: "request_payload",
                        filename: None,
                        content_type: "text/xml",
                        body: payload.as_bytes(),
                    },
                    Part {
                        name: "tableau_datasource",
                        filename: Some(&filename),
                        content_type: "application/octet-stream",
                        body: bytes,
                    },
                ],
            ),
            None => multipart_mixed(
                &boundary,
                &[Part {
                    name: "request_payload",
                    filename: None,
                    content_type: "text/xml",
                    body: payload.as_bytes(),
                }],
            ),
        });
        drop(file);
        let content_type = format!("multipart/mixed; boundary={boundary}");
        let timeout = self.upload_timeout();
        tracing::info!(size, chunked, "publishing data source");
        let answer = self
            .call(&ctx, mode == PublishMode::Overwrite, |s| {
                self.inner
                    .http
                    .client
                    .post(s.site_url("datasources"))
                    .timeout(timeout)
                    .query(&query)
                    .header(CONTENT_TYPE, content_type.clone())
                    .body(body.clone())
            })
            .await?
            .success(&ctx)?;
        let root = answer.xml(&ctx, "datasource or job")?;
        if let Some(ds) = root.find("datasource").and_then(Datasource::from_xml)
            && root.find("job").is_none()
        {
            tracing::info!(datasource_id = %ds.id, "published data source");
            return Ok(ds);
        }
        let job = Job::from_xml(&root).ok_or_else(|| {
            ctx.err(ErrorKind::Response(format!(
                "publish answered neither a datasource nor a job: {}",
                excerpt(&answer.text())
            )))
        })?;
        let job = self.wait_for_job(&job.id, name).await?;
        let ds = match &job.datasource_id {
            Some(id) => self.get_datasource(id).await?,
            None => self.find_published(&ctx, name).await?,
        };
        tracing::info!(datasource_id = %ds.id, job_id = %job.id, "published data source (as job)");
        Ok(ds)
    }

    /// Finds a data source just published by a job that did not name it.
    /// The search index may lag behind a publish, so a miss is retried a
    /// few times before it counts.
    async fn find_published(&self, ctx: &Ctx, name: &str) -> Result<Datasource, TableauError> {
        for attempt in 0..5u32 {
            if let Some(ds) = self.find_datasource(name).await? {
                return Ok(ds);
            }
            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
        }
        Err(ctx.err(ErrorKind::DatasourceNotFound))
    }

    // ------------------------------------------------------------- uploads

    /// Uploads a file through a file upload session, chunk by chunk in
    /// order; returns the upload session id. A failed chunk restarts the
    /// whole upload in a new session (bounded), never re-sends that chunk.
    async fn upload_file(&self, ctx: &Ctx, path: &Path) -> Result<String, TableauError> {
        let size = file_size(ctx, path).await?;
        let mut restarts = 0;
        loop {
            match self.upload_once(ctx, path, size, restarts).await {
                Ok(id) => return Ok(id),
                Err(UploadFailure::Restart(e))
                    if restarts < self.inner.config.retry.upload_restarts =>
                {
                    restarts += 1;
                    tracing::warn!(tenant = %ctx.tenant, operation = ctx.operation, restarts, error = %e, "chunked upload failed; starting it over in a new upload session");
                    tokio::time::sleep(Duration::from_millis(
                        self.inner.config.retry.initial_backoff_ms,
                    ))
                    .await;
                }
                Err(UploadFailure::Restart(e) | UploadFailure::Fatal(e)) => return Err(e),
            }
        }
    }

    async fn upload_once(
        &self,
        ctx: &Ctx,
        path: &Path,
        size: u64,
        restarts: u32,
    ) -> Result<String, UploadFailure> {
        let timeout = self.timeout();
        let answer = self
            .call(ctx, true, |s| {
                self.inner
                    .http
                    .client
                    .post(s.site_url("fileUploads"))
                    .timeout(timeout)
            })
            .await
            .map_err(UploadFailure::Restart)?
            .success(ctx)
            .map_err(UploadFailure::Fatal)?;
        let root = answer
            .xml(ctx, "fileUpload")
            .map_err(UploadFailure::Fatal)?;
        let upload_id = FileUpload::from_xml(&root)
            .ok_or_else(|| {
                UploadFailure::Fatal(ctx.err(ErrorKind::Response(format!(
                    "no fileUpload/@uploadSessionId in {}",
                    excerpt(&answer.text())
                ))))
            })?
            .upload_session_id;
        let chunk_size = self.inner.config.effective_chunk_size();
        let mut file = tokio::fs::File::open(path).await.map_err(|source| {
            UploadFailure::Fatal(ctx.err(ErrorKind::Io {
                path: path.to_owned(),
                source,
            }))
        })?;
        let chunks = size.div_ceil(chunk_size).max(1);
        let put_path = format!("fileUploads/{}", urlencode_path(&upload_id));
        let timeout = self.upload_timeout();
        let boundary = boundary();
        let content_type = format!("multipart/mixed; boundary={boundary}");
        for index in 0..chunks {
            let want = usize::try_from(chunk_size.min(size - index * chunk_size)).unwrap_or(0);
            let (body, file_range) = upload_chunk_body(&boundary, want);
            let mut body = body;
            file.read_exact(&mut body[file_range])
                .await
                .map_err(|source| {
                    UploadFailure::Fatal(ctx.err(ErrorKind::Io {
                        path: path.to_owned(),
                        source,
                    }))
                })?;
            let body = Bytes::from(body);
            let answer = self
                .call(ctx, false, |s| {
                    self.inner
                        .http
                        .client
                        .put(s.site_url(&put_path))
                        .timeout(timeout)
                        .header(CONTENT_TYPE, content_type.clone())
                        .body(body.clone())
                })
                .await
                .map_err(UploadFailure::Restart)?;
            tracing::debug!(tenant = %ctx.tenant, chunk = index + 1, chunks, status = answer.status.as_u16(), "uploaded chunk");
            if answer.status.is_success() {
                self.report_progress(UploadProgress {
                    path: path.to_owned(),
                    chunk: index + 1,
                    chunks,
                    bytes_sent: (index * chunk_size + want as u64).min(size),
                    total_bytes: size,
                    restarts,
                });
                continue;
            }
            // A 5xx may or may not have stored the chunk; a 404 or a second
            // 401 means the upload session did not outlive the old sign-in;
            // a 409 is a write conflict. Start over in a new session rather
            // than resend the chunk. A 400 or 413 would only repeat.
            let restart = !matches!(answer.status.as_u16(), 400 | 413);
            let error = answer.into_error(ctx);
            return Err(if restart {
                UploadFailure::Restart(error)
            } else {
                UploadFailure::Fatal(error)
            });
        }
        tracing::info!(tenant = %ctx.tenant, operation = ctx.operation, size, chunks, "file uploaded");
        Ok(upload_id)
    }

    // ------------------------------------------------------------- updates

    /// Applies a batch: each part is uploaded, sent as one *Update Data in
    /// Hyper* request with its deterministic `RequestID`, and its job is
    /// waited for before the next part goes out. Every part file is checked
    /// against the payload limit before anything is sent.
    #[tracing::instrument(skip_all, fields(tenant = %self.inner.tenant, datasource = %batch.datasource_name, batch = %batch.batch_id))]
    pub async fn update_data(&self, batch: &UpdateBatch) -> Result<Vec<PartOutcome>, TableauError> {
        let ctx = self.ctx("update data").ds(&batch.datasource_name);
        if batch.key_columns.is_empty() {
            return Err(ctx.err(ErrorKind::InvalidRequest(
                "no key columns: an upsert without keys could double rows".into(),
            )));
        }
        if batch.parts.is_empty() {
            return Err(ctx.err(ErrorKind::InvalidRequest("no payload parts".into())));
        }
        if batch.batch_id.is_empty() {
            return Err(ctx.err(ErrorKind::InvalidRequest("empty batch id".into())));
        }
        let limit = self.inner.config.update_payload_limit;
        for (i, part) in batch.parts.iter().enumerate() {
            if !part.upserts && !part.deletes {
                return Err(ctx.err(ErrorKind::InvalidRequest(format!(
                    "part {} has neither changes nor deletions",
                    i + 1
                ))));
            }
            let size = file_size(&ctx, &part.path).await?;
            if size > limit {
                return Err(ctx.err(ErrorKind::PayloadTooLarge {
                    part: i + 1,
                    size,
                    limit,
                }));
            }
        }
        let n = batch.parts.len();
        let mut outcomes = Vec::with_capacity(n);
        for (i, part) in batch.parts.iter().enumerate() {
            let request_id = request_id(&batch.batch_id, batch.failed_attempts, i, n);
            let submitted = self
                .submit_update(
                    &batch.datasource_id,
                    &batch.datasource_name,
                    &request_id,
                    &batch.key_columns,
                    part,
                )
                .await?;
            let (job, seen_after_webhook) = match &submitted.job_id {
                Some(job_id) => {
                    let hint = self.hint_for(&batch.datasource_id);
                    let (job, hinted) = self
                        .wait_job(job_id, &batch.datasource_name, Some(&hint))
                        .await?;
                    (Some(job), hinted)
                }
                None => (None, false),
            };
            outcomes.push(PartOutcome {
                request_id,
                job,
                seen_after_webhook,
            });
        }
        Ok(outcomes)
    }

    /// Uploads one payload and sends one *Update Data in Hyper* request with
    /// the given `RequestID`; does not wait for the job. The request is
    /// repeated on 5xx or a lost answer, which the `RequestID` makes safe.
    pub async fn submit_update(
        &self,
        datasource_id: &str,
        datasource_name: &str,
        request_id: &str,
        key_columns: &[String],
        part: &PayloadPart,
    ) -> Result<SubmittedUpdate, TableauError> {
        let ctx = self.ctx("update data").ds(datasource_name);
        let upload_id = self.upload_file(&ctx, &part.path).await?;
        let actions = update_actions(key_columns, part.upserts, part.deletes);
        let body = Bytes::from(actions.to_string());
        let path = format!("datasources/{datasource_id}/data");
        let timeout = self.timeout();
        let answer = self
            .call(&ctx, true, |s| {
                self.inner
                    .http
                    .client
                    .patch(s.site_url(&path))
                    .timeout(timeout)
                    .query(&[("uploadSessionId", upload_id.as_str())])
                    .header("RequestID", request_id)
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone())
            })
            .await?;
        if answer.status == StatusCode::PAYLOAD_TOO_LARGE {
            let size = file_size(&ctx, &part.path).await.unwrap_or(0);
            tracing::warn!(
                request_id,
                size,
                "Tableau refused the update payload as too large (413)"
            );
            return Err(answer.into_error(&ctx));
        }
        let answer = answer.success(&ctx)?;
        let job_id = if answer.body.is_empty() {
            None
        } else {
            let root = answer.xml(&ctx, "job")?;
            Job::from_xml(&root).map(|j| j.id)
        };
        tracing::info!(
            request_id,
            job_id = job_id.as_deref().unwrap_or("-"),
            status = answer.status.as_u16(),
            "update submitted"
        );
        Ok(SubmittedUpdate {
            request_id: request_id.to_owned(),
            job_id,
        })
    }

    // ---------------------------------------------------------------- jobs

    /// The current state of a job.
    pub async fn get_job(&self, job_id: &str) -> Result<Job, TableauError> {
        let ctx = self.ctx("query job");
        self.fetch_job(&ctx, job_id).await
    }

    async fn fetch_job(&self, ctx: &Ctx, job_id: &str) -> Result<Job, TableauError> {
        let path = format!("jobs/{job_id}");
        let timeout = self.timeout();
        let answer = self
            .call(ctx, true, |s| {
                self.inner
                    .http
                    .client
                    .get(s.site_url(&path))
                    .timeout(timeout)
            })
            .await?
            .success(ctx)?;
        let root = answer.xml(ctx, "job")?;
        Job::from_xml(&root).ok_or_else(|| {
            ctx.err(ErrorKind::Response(format!(
                "no job/@id in {}",
                excerpt(&answer.text())
            )))
        })
    }

    /// Polls a job with exponential backoff until it completes. A failed or
    /// cancelled job becomes an error carrying Tableau's `<notes>`.
    pub async fn wait_for_job(&self, job_id: &str, datasource: &str) -> Result<Job, TableauError> {
        self.wait_job(job_id, datasource, None)
            .await
            .map(|(job, _)| job)
    }

    /// Tells a job wait on data source `datasource_id` to poll now instead
    /// of at its next backoff step: a webhook said the data source changed.
    /// The job's state is still read over REST; a hint with no wait running
    /// makes the next wait's first sleep end at once (harmless).
    pub fn hint(&self, datasource_id: &str) {
        self.hint_for(datasource_id).notify_one();
    }

    fn hint_for(&self, datasource_id: &str) -> Arc<tokio::sync::Notify> {
        let mut hints = self.inner.hints.lock().unwrap_or_else(|p| p.into_inner());
        hints.entry(datasource_id.to_owned()).or_default().clone()
    }

    /// [`Self::wait_for_job`], waking early on `hint`; also says whether
    /// the poll that found the job finished followed a hint.
    async fn wait_job(
        &self,
        job_id: &str,
        datasource: &str,
        hint: Option<&tokio::sync::Notify>,
    ) -> Result<(Job, bool), TableauError> {
        let ctx = self.ctx("wait for job").ds(datasource);
        let mut hinted = false;
        let poll = &self.inner.config.job_poll;
        let started = Instant::now();
        let deadline = Duration::from_secs(poll.timeout_secs);
        let mut wait = Duration::from_millis(poll.initial_ms.max(1));
        let max_wait = Duration::from_millis(poll.max_ms.max(poll.initial_ms).max(1));
        loop {
            let job = self.fetch_job(&ctx, job_id).await?;
            if job.is_done() {
                return match job.finish_code {
                    None | Some(0) | Some(3) => {
                        tracing::info!(tenant = %ctx.tenant, datasource, job_id, job_type = %job.job_type, after_webhook = hinted, "job succeeded");
                        Ok((job, hinted))
                    }
                    Some(2) => Err(ctx.err(ErrorKind::JobCancelled {
                        job_id: job.id,
                        notes: job.notes,
                    })),
                    Some(code) => {
                        tracing::warn!(tenant = %ctx.tenant, datasource, job_id, finish_code = code, notes = job.notes.as_deref().unwrap_or(""), "job failed");
                        Err(ctx.err(ErrorKind::JobFailed {
                            job_id: job.id,
                            finish_code: code,
                            notes: job.notes,
                        }))
                    }
                };
            }
            if started.elapsed() >= deadline {
                return Err(ctx.err(ErrorKind::JobTimeout {
                    job_id: job_id.to_owned(),
                    waited_secs: started.elapsed().as_secs(),
                }));
            }
            let pause = tokio::time::sleep(wait.min(deadline.saturating_sub(started.elapsed())));
            hinted = match hint {
                Some(h) => tokio::select! {
                    _ = pause => false,
                    _ = h.notified() => {
                        tracing::debug!(tenant = %ctx.tenant, datasource, job_id, "a webhook said the data source changed: polling the job now");
                        true
                    }
                },
                None => {
                    pause.await;
                    false
                }
            };
            wait = (wait * 2).min(max_wait);
        }
    }

    // ------------------------------------------------------------ webhooks

    /// Every webhook on the site.
    pub async fn list_webhooks(&self) -> Result<Vec<Webhook>, TableauError> {
        let ctx = self.ctx("list webhooks");
        let mut hooks = Vec::new();
        self.paged(&ctx, "webhooks", None, "webhook", |e| {
            if let Some(w) = Webhook::from_xml(e) {
                hooks.push(w);
            }
        })
        .await?;
        Ok(hooks)
    }

    /// Makes sure the site has a webhook per connector event
    /// ([`WebhookEvent::ALL`]) posting to `url`: lists first and creates only
    /// the missing ones, so calling it again changes nothing. Returns the
    /// webhooks (existing and created) for `url`.
    pub async fn ensure_webhooks(&self, url: &str) -> Result<Vec<Webhook>, TableauError> {
        let ctx = self.ctx("register webhooks");
        let existing = self.list_webhooks().await?;
        let mut result = Vec::new();
        for event in WebhookEvent::ALL {
            if let Some(hook) = existing
                .iter()
                .find(|w| w.event == Some(event) && w.url == url)
            {
                if !hook.enabled {
                    tracing::warn!(tenant = %ctx.tenant, webhook = %hook.id, event = event.api_name(), "webhook exists but is disabled on the site");
                }
                result.push(hook.clone());
                continue;
            }
            let name = format!("ml-connector {} {}", self.inner.tenant, event.api_name());
            let body = webhook_create_xml(&name, event, url);
            let timeout = self.timeout();
            let answer = self
                .call(&ctx, false, |s| {
                    self.inner
                        .http
                        .client
                        .post(s.site_url("webhooks"))
                        .timeout(timeout)
                        .header(CONTENT_TYPE, "text/xml")
                        .body(body.clone())
                })
                .await?
                .success(&ctx)?;
            let root = answer.xml(&ctx, "webhook")?;
            let hook = root
                .find("webhook")
                .and_then(Webhook::from_xml)
                .ok_or_else(|| {
                    ctx.err(ErrorKind::Response(format!(
                        "no webhook/@id in {}",
                        excerpt(&answer.text())
                    )))
                })?;
            tracing::info!(tenant = %ctx.tenant, webhook = %hook.id, event = event.api_name(), "registered webhook");
            result.push(hook);
        }
        Ok(result)
    }
}

/// Calls `each` for every element named `item` under `root`, at any depth.
fn visit(root: &crate::model::Element, item: &str, each: &mut dyn FnMut(&crate::model::Element)) {
    for child in &root.children {
        if child.name == item {
            each(child);
        } else {
            visit(child, item, each);
        }
    }
}

async fn file_size(ctx: &Ctx, path: &Path) -> Result<u64, TableauError> {
    tokio::fs::metadata(path)
        .await
        .map(|m| m.len())
        .map_err(|source| {
            ctx.err(ErrorKind::Io {
                path: path.to_owned(),
                source,
            })
        })
}

fn boundary() -> String {
    format!("mlc-{}", uuid::Uuid::new_v4().simple())
}

/// An ASCII file name for the publish part (Tableau wants ASCII names).
fn ascii_filename(name: &str) -> String {
    let stem: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{}.hyper", if stem.is_empty() { "extract" } else { &stem })
}

/// Percent-encodes an opaque id for use as one path segment (upload ids
/// contain `:`; that is legal in a path segment, `/`, `?`, `#`, `%` are not).
fn urlencode_path(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:@!$&'()*+,;=".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

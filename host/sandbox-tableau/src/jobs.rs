//! Publishing and the asynchronous jobs (publish as job, Update Data in
//! Hyper, refresh). Jobs run as tokio tasks: created → started (progress 0,
//! `startedAt`) → completed (`completedAt`, progress 100, `finishCode` 0 or
//! 1 with notes).
//!
//! Webhook events fired (UNCONFIRMED which events a real site fires for an
//! Update-Data-in-Hyper job; this is our choice): a successful update job
//! fires `DatasourceUpdated`, a failed one `DatasourceRefreshFailed`. A
//! refresh job fires `DatasourceRefreshStarted` then
//! `DatasourceRefreshSucceeded` or `DatasourceRefreshFailed`. Publishing a
//! new data source fires `DatasourceCreated`; overwrite and append fire
//! `DatasourceUpdated`; delete fires `DatasourceDeleted`.

use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;

use crate::actions::Action;
use crate::error::ApiError;
use crate::server::Shared;
use crate::state::{Datasource, Job, JobKind, JobQueue, Turn, luid, now_micros};
use crate::webhooks;

/// How a publish treats an existing data source of the same name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Fail with 403007 when the name exists.
    CreateNew,
    /// Replace the existing file (same LUID) or create.
    Overwrite,
    /// Add the rows to the existing file.
    Append,
}

/// A publish request, with the file already on disk.
#[derive(Clone, Debug)]
pub struct Publish {
    /// Data source name.
    pub name: String,
    /// Target project LUID.
    pub project_id: String,
    /// Description.
    pub description: String,
    /// Mode.
    pub mode: Mode,
    /// The uploaded `.hyper` (moved away or deleted afterwards).
    pub file: PathBuf,
    /// Its file name as uploaded.
    pub filename: String,
}

/// 403007 for a name that exists in the project.
pub fn name_conflict(name: &str, project: &str) -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "403007",
        "Forbidden",
        format!(
            "A data source named '{name}' already exists in project '{project}' and may not be overwritten without the 'overwrite' flag set to 'true'."
        ),
    )
}

fn content_url_for(name: &str, taken: &[Datasource]) -> String {
    let base: String = name
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-')
        .collect();
    let base = if base.is_empty() {
        "datasource".to_owned()
    } else {
        base
    };
    let mut candidate = base.clone();
    let mut n = 0;
    while taken.iter().any(|d| d.content_url == candidate) {
        n += 1;
        candidate = format!("{base}_{n}");
    }
    candidate
}

/// Validates the file through hyperd and stores it per the mode. Returns
/// the data source as stored.
pub async fn publish_now(shared: &Arc<Shared>, publish: Publish) -> Result<Datasource, ApiError> {
    let result = publish_inner(shared, &publish).await;
    if publish.file.exists() {
        let _ = std::fs::remove_file(&publish.file);
    }
    result
}

async fn publish_inner(shared: &Arc<Shared>, publish: &Publish) -> Result<Datasource, ApiError> {
    let problem = |reason: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "400011",
            "Bad Request",
            format!(
                "There was a problem publishing the file '{}': {reason}",
                publish.filename
            ),
        )
    };
    let tables = shared
        .engine
        .inspect(&publish.file)
        .await
        .map_err(|e| problem(e.to_string()))?;
    if tables.is_empty() {
        return Err(problem("the .hyper file contains no table".to_owned()));
    }
    let project_name = shared
        .project(&publish.project_id)
        .map(|p| p.name.clone())
        .unwrap_or_default();
    let size = std::fs::metadata(&publish.file)
        .map(|m| m.len())
        .unwrap_or(0);
    let existing = shared
        .inner()
        .datasources
        .iter()
        .find(|d| d.name == publish.name && d.project_id == publish.project_id)
        .cloned();
    match (publish.mode, existing) {
        (Mode::CreateNew, Some(_)) => Err(name_conflict(&publish.name, &project_name)),
        (Mode::Append, None) => Err(ApiError::not_found(
            "404011",
            format!(
                "Cannot append: no data source named '{}' exists in project '{project_name}'.",
                publish.name
            ),
        )),
        (Mode::Append, Some(ds)) => {
            let _guard = ds.lock.lock().await;
            shared
                .engine
                .append(&ds.file, &publish.file)
                .await
                .map_err(|e| problem(e.to_string()))?;
            let updated = touch(shared, &ds.id);
            webhooks::fire(shared, "DatasourceUpdated", &ds.id, &ds.name);
            updated.ok_or_else(|| deleted_meanwhile(&ds.name))
        }
        (Mode::Overwrite, Some(ds)) => {
            let _guard = ds.lock.lock().await;
            std::fs::rename(&publish.file, &ds.file)
                .map_err(|e| ApiError::internal(format!("cannot store the data source: {e}")))?;
            let updated = {
                let mut inner = shared.inner();
                inner
                    .datasources
                    .iter_mut()
                    .find(|d| d.id == ds.id)
                    .map(|d| {
                        d.size = size;
                        d.updated_at = now_micros();
                        d.description = publish.description.clone();
                        d.filename = publish.filename.clone();
                        d.clone()
                    })
            };
            shared.save_catalog();
            webhooks::fire(shared, "DatasourceUpdated", &ds.id, &ds.name);
            updated.ok_or_else(|| deleted_meanwhile(&ds.name))
        }
        (Mode::CreateNew | Mode::Overwrite, None) => {
            let id = luid();
            let file = shared.datasource_dir.join(format!("{id}.hyper"));
            std::fs::rename(&publish.file, &file)
                .map_err(|e| ApiError::internal(format!("cannot store the data source: {e}")))?;
            let now = now_micros();
            let created = {
                let mut inner = shared.inner();
                if inner
                    .datasources
                    .iter()
                    .any(|d| d.name == publish.name && d.project_id == publish.project_id)
                {
                    drop(inner);
                    let _ = std::fs::remove_file(&file);
                    return Err(name_conflict(&publish.name, &project_name));
                }
                let ds = Datasource {
                    id: id.clone(),
                    name: publish.name.clone(),
                    content_url: content_url_for(&publish.name, &inner.datasources),
                    project_id: publish.project_id.clone(),
                    description: publish.description.clone(),
                    certified: false,
                    certification_note: None,
                    file,
                    filename: publish.filename.clone(),
                    size,
                    connection_id: luid(),
                    created_at: now,
                    updated_at: now,
                    lock: Arc::default(),
                    queue: JobQueue::default(),
                };
                inner.datasources.push(ds.clone());
                ds
            };
            shared.save_catalog();
            webhooks::fire(shared, "DatasourceCreated", &created.id, &created.name);
            Ok(created)
        }
    }
}

fn deleted_meanwhile(name: &str) -> ApiError {
    ApiError::not_found(
        "404011",
        format!("The data source '{name}' was deleted while it was being changed."),
    )
}

/// Refreshes size and `updatedAt` from the file; returns the new record.
fn touch(shared: &Shared, id: &str) -> Option<Datasource> {
    let updated = shared
        .inner()
        .datasources
        .iter_mut()
        .find(|d| d.id == id)
        .map(|d| {
            d.size = std::fs::metadata(&d.file)
                .map(|m| m.len())
                .unwrap_or(d.size);
            d.updated_at = now_micros();
            d.clone()
        });
    shared.save_catalog();
    updated
}

/// Registers a job and returns it.
pub fn register(shared: &Shared, job: Job) -> Job {
    insert(&mut shared.inner().jobs, job.clone());
    job
}

/// How long a completed job stays queryable.
const JOB_RETENTION_MICROS: i64 = 24 * 3600 * 1_000_000;

/// Adds a job, forgetting jobs completed more than 24 hours ago.
pub fn insert(jobs: &mut std::collections::HashMap<String, Job>, job: Job) {
    let horizon = now_micros() - JOB_RETENTION_MICROS;
    jobs.retain(|_, j| j.completed_at.is_none_or(|done| done > horizon));
    jobs.insert(job.id.clone(), job);
}

fn update_job(shared: &Shared, id: &str, f: impl FnOnce(&mut Job)) {
    if let Some(job) = shared.inner().jobs.get_mut(id) {
        f(job);
    }
}

/// Marks the job started, then waits out the `slow_jobs` fault.
async fn start(shared: &Shared, id: &str) {
    update_job(shared, id, |j| j.started_at = Some(now_micros()));
    let delay = shared.faults.job_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
}

fn finish(shared: &Shared, id: &str, result: Result<(), String>) {
    update_job(shared, id, |j| {
        j.completed_at = Some(now_micros());
        j.progress = 100;
        match result {
            Ok(()) => j.finish_code = Some(0),
            Err(notes) => {
                j.finish_code = Some(1);
                j.notes = Some(notes);
            }
        }
    });
}

/// Runs a publish as a job.
pub fn spawn_publish(shared: Arc<Shared>, job_id: String, publish: Publish) {
    tokio::spawn(async move {
        start(&shared, &job_id).await;
        let result = match shared.faults.take_job_failure() {
            Some(notes) => {
                let _ = std::fs::remove_file(&publish.file);
                Err(notes)
            }
            None => match publish_now(&shared, publish).await {
                Ok(ds) => {
                    update_job(&shared, &job_id, |j| j.datasource_id = Some(ds.id.clone()));
                    Ok(())
                }
                Err(e) => Err(format!("{}: {}", e.code, e.detail)),
            },
        };
        finish(&shared, &job_id, result);
    });
}

/// Runs an Update-Data-in-Hyper job.
pub fn spawn_update(
    shared: Arc<Shared>,
    job_id: String,
    datasource_id: String,
    payload: Option<PathBuf>,
    actions: Vec<Action>,
    mut turn: Turn,
) {
    tokio::spawn(async move {
        turn.wait().await;
        start(&shared, &job_id).await;
        let found = shared
            .inner()
            .datasources
            .iter()
            .find(|d| d.id == datasource_id)
            .cloned();
        let result = match (shared.faults.take_job_failure(), found) {
            (Some(notes), _) => Err(notes),
            (None, None) => Err(format!(
                "TableauRuntimeException: the data source {datasource_id} no longer exists."
            )),
            (None, Some(ds)) => {
                let guard = ds.lock.lock().await;
                let applied = shared
                    .engine
                    .apply(&ds.file, payload.as_deref(), &actions)
                    .await;
                drop(guard);
                match applied {
                    Ok(affected) => {
                        tracing::info!(datasource = %ds.name, job = %job_id, ?affected, "update applied");
                        touch(&shared, &ds.id);
                        Ok(())
                    }
                    Err(e) => Err(format!("com.tableau.hyper.HyperUpdateException: {e}")),
                }
            }
        };
        if let Some(payload) = payload {
            let _ = std::fs::remove_file(payload);
        }
        let name = shared
            .inner()
            .jobs
            .get(&job_id)
            .map(|j| j.datasource_name.clone())
            .unwrap_or_default();
        let event = if result.is_ok() {
            "DatasourceUpdated"
        } else {
            "DatasourceRefreshFailed"
        };
        if let Err(notes) = &result {
            tracing::warn!(job = %job_id, datasource = %name, notes, "update job failed");
        }
        finish(&shared, &job_id, result);
        webhooks::fire(&shared, event, &datasource_id, &name);
    });
}

/// Runs a refresh job: a live-to-Hyper source has no upstream to re-read,
/// so it succeeds without changing data (unless a fault fails it).
pub fn spawn_refresh(
    shared: Arc<Shared>,
    job_id: String,
    datasource_id: String,
    name: String,
    mut turn: Turn,
) {
    tokio::spawn(async move {
        turn.wait().await;
        webhooks::fire(&shared, "DatasourceRefreshStarted", &datasource_id, &name);
        start(&shared, &job_id).await;
        let result = match shared.faults.take_job_failure() {
            Some(notes) => Err(notes),
            None => {
                if shared
                    .inner()
                    .datasources
                    .iter()
                    .any(|d| d.id == datasource_id)
                {
                    Ok(())
                } else {
                    Err(format!("The data source {datasource_id} no longer exists."))
                }
            }
        };
        let event = if result.is_ok() {
            "DatasourceRefreshSucceeded"
        } else {
            "DatasourceRefreshFailed"
        };
        finish(&shared, &job_id, result);
        webhooks::fire(&shared, event, &datasource_id, &name);
    });
}

/// A job for a data source.
pub fn new_job(kind: JobKind, ds: Option<&Datasource>, name: &str) -> Job {
    let mut job = Job::new(kind, ds.map(|d| d.id.clone()), name.to_owned());
    if kind == JobKind::Update {
        job.connection_id = ds.map(|d| d.connection_id.clone());
    }
    job
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn completed_jobs_are_forgotten_after_a_day() {
        let mut jobs = std::collections::HashMap::new();
        let mut old = Job::new(JobKind::Update, None, "a".into());
        old.completed_at = Some(now_micros() - JOB_RETENTION_MICROS - 1);
        let mut recent = Job::new(JobKind::Update, None, "b".into());
        recent.completed_at = Some(now_micros() - 1000);
        let mut running = Job::new(JobKind::Update, None, "c".into());
        running.created_at -= 2 * JOB_RETENTION_MICROS;
        let ids = [old.id.clone(), recent.id.clone(), running.id.clone()];
        for job in [old, recent, running] {
            jobs.insert(job.id.clone(), job);
        }
        let fresh = Job::new(JobKind::Refresh, None, "d".into());
        let fresh_id = fresh.id.clone();
        insert(&mut jobs, fresh);
        assert!(!jobs.contains_key(&ids[0]), "an old completed job was kept");
        assert!(
            jobs.contains_key(&ids[1])
                && jobs.contains_key(&ids[2])
                && jobs.contains_key(&fresh_id)
        );
    }
}

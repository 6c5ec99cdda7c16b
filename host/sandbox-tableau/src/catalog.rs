//! The sandbox's catalog on disk (`catalog.json` in the data directory):
//! site, user and project LUIDs, data sources and webhooks, so a restarted
//! sandbox on the same `--data-dir` serves the same content under the same
//! LUIDs, as a real site would. Sessions, uploads and jobs are not kept.
//! The PAT secret is never written.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::state::{Datasource, Project, Webhook, find_event};

/// File name inside the data directory.
pub const FILE: &str = "catalog.json";

/// A project as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredProject {
    /// LUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Parent project LUID.
    #[serde(default)]
    pub parent_id: Option<String>,
    /// Created, µs.
    pub created_at: i64,
}

/// A data source as stored (its file is `datasources/<id>.hyper`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredDatasource {
    /// LUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// URL name.
    pub content_url: String,
    /// Project LUID.
    pub project_id: String,
    /// Description.
    pub description: String,
    /// Uploaded file name.
    pub filename: String,
    /// Connection LUID.
    pub connection_id: String,
    /// Created, µs.
    pub created_at: i64,
    /// Updated, µs.
    pub updated_at: i64,
}

/// A webhook as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StoredWebhook {
    /// LUID.
    pub id: String,
    /// Name.
    pub name: String,
    /// API event name.
    pub event: String,
    /// Destination.
    pub url: String,
    /// Enabled flag.
    pub enabled: bool,
    /// Why it was disabled.
    #[serde(default)]
    pub status_change_reason: String,
    /// Created, µs.
    pub created_at: i64,
}

/// Everything kept across restarts.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Catalog {
    /// Site LUID.
    pub site_id: String,
    /// User LUID.
    pub user_id: String,
    /// Projects.
    pub projects: Vec<StoredProject>,
    /// Data sources.
    pub datasources: Vec<StoredDatasource>,
    /// Webhooks.
    pub webhooks: Vec<StoredWebhook>,
}

impl Catalog {
    /// Reads the catalog; `Ok(None)` when there is none yet.
    pub fn load(dir: &Path) -> std::io::Result<Option<Self>> {
        let path = dir.join(FILE);
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Writes the catalog atomically (temporary file, then rename).
    pub fn save(&self, dir: &Path) -> std::io::Result<()> {
        let tmp = dir.join(format!("{FILE}.tmp"));
        let bytes = serde_json::to_vec_pretty(self).map_err(std::io::Error::other)?;
        std::fs::write(&tmp, bytes)?;
        std::fs::rename(&tmp, dir.join(FILE))
    }

    /// Builds the catalog from the live state.
    pub fn snapshot(
        site_id: &str,
        user_id: &str,
        projects: &[Project],
        datasources: &[Datasource],
        webhooks: &[Webhook],
    ) -> Self {
        Self {
            site_id: site_id.to_owned(),
            user_id: user_id.to_owned(),
            projects: projects
                .iter()
                .map(|p| StoredProject {
                    id: p.id.clone(),
                    name: p.name.clone(),
                    description: p.description.clone(),
                    parent_id: p.parent_id.clone(),
                    created_at: p.created_at,
                })
                .collect(),
            datasources: datasources
                .iter()
                .map(|d| StoredDatasource {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    content_url: d.content_url.clone(),
                    project_id: d.project_id.clone(),
                    description: d.description.clone(),
                    filename: d.filename.clone(),
                    connection_id: d.connection_id.clone(),
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                })
                .collect(),
            webhooks: webhooks
                .iter()
                .map(|w| StoredWebhook {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    event: w.event.to_owned(),
                    url: w.url.clone(),
                    enabled: w.enabled,
                    status_change_reason: w.status_change_reason.clone(),
                    created_at: w.created_at,
                })
                .collect(),
        }
    }

    /// The stored data sources whose files still exist.
    pub fn restore_datasources(&self, datasource_dir: &Path) -> Vec<Datasource> {
        self.datasources
            .iter()
            .filter_map(|d| {
                let file = datasource_dir.join(format!("{}.hyper", d.id));
                let size = std::fs::metadata(&file).ok()?.len();
                Some(Datasource {
                    id: d.id.clone(),
                    name: d.name.clone(),
                    content_url: d.content_url.clone(),
                    project_id: d.project_id.clone(),
                    description: d.description.clone(),
                    certified: false,
                    certification_note: None,
                    file,
                    filename: d.filename.clone(),
                    size,
                    connection_id: d.connection_id.clone(),
                    created_at: d.created_at,
                    updated_at: d.updated_at,
                    lock: Default::default(),
                    queue: Default::default(),
                })
            })
            .collect()
    }

    /// The stored webhooks (unknown event names are dropped).
    pub fn restore_webhooks(&self) -> Vec<Webhook> {
        self.webhooks
            .iter()
            .filter_map(|w| {
                let (event, _) = find_event(&w.event)?;
                Some(Webhook {
                    id: w.id.clone(),
                    name: w.name.clone(),
                    event,
                    url: w.url.clone(),
                    enabled: w.enabled,
                    status_change_reason: w.status_change_reason.clone(),
                    created_at: w.created_at,
                })
            })
            .collect()
    }
}

//! Starting and stopping the sandbox: the data directories, the shared
//! hyperd, the one site / user / PAT / projects, and the axum server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use mlc_common::{Secret, Value};
use mlc_hyper::{Hyperd, HyperdConfig};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::catalog::{self, Catalog};
use crate::engine::{Engine, EngineError};
use crate::error::SandboxError;
use crate::faults::Faults;
use crate::state::{Inner, Project, Site, User, luid, now_micros};
use crate::webhooks::WebhookDelivery;

/// The highest REST API version served (and reported by `serverInfo`).
pub const API_VERSION: &str = "3.28";
/// The lowest REST API version served.
pub const MIN_API_VERSION: (u32, u32) = (3, 19);
/// Megabyte as Tableau counts it.
pub const MB: u64 = 1024 * 1024;

/// How to start the sandbox.
#[derive(Clone, Debug)]
pub struct TableauSandboxConfig {
    /// Address to listen on (`127.0.0.1:0` picks a free port).
    pub listen: SocketAddr,
    /// Where data sources (`datasources/*.hyper`), uploads and hyperd logs
    /// live. Created when missing.
    pub data_dir: PathBuf,
    /// Session lifetime after sign-in (Tableau Server: 240 minutes).
    pub session_ttl: Duration,
    /// Largest Update-Data-in-Hyper payload (`413` above; default 100 MB).
    pub update_payload_limit: u64,
    /// Largest single request body: publish without chunking, or one chunk
    /// (default 64 MB).
    pub single_request_limit: u64,
    /// The hyperd binary; `None` finds it (`ML_CONNECTOR_HYPERD`, then the
    /// Python `tableauhyperapi` package).
    pub hyperd: Option<PathBuf>,
    /// The site's URL name used at sign-in.
    pub site_content_url: String,
    /// The project the connector publishes into (besides `Default`).
    pub project_name: String,
    /// The PAT name.
    pub pat_name: String,
    /// The PAT secret; empty picks a random one.
    pub pat_secret: Secret,
    /// First pause between webhook retries (doubles each time).
    pub webhook_retry_delay: Duration,
    /// Also create a project of the same name nested under `Default`, listed
    /// before the top-level one (names repeat across nesting levels on real
    /// sites; a client must check `parentProjectId`).
    pub nested_project_decoy: bool,
    /// Remove `data_dir` with everything in it on [`TableauSandbox::shutdown`]
    /// (for a throw-away directory).
    pub remove_data_dir_on_shutdown: bool,
}

impl Default for TableauSandboxConfig {
    fn default() -> Self {
        let unique = format!(
            "mlc-sandbox-tableau-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir: std::env::temp_dir().join(unique),
            session_ttl: Duration::from_secs(240 * 60),
            update_payload_limit: 100 * MB,
            single_request_limit: 64 * MB,
            hyperd: None,
            site_content_url: "sandbox".to_owned(),
            project_name: "ml-connector".to_owned(),
            pat_name: "ml-connector-pat".to_owned(),
            pat_secret: Secret::default(),
            webhook_retry_delay: Duration::from_millis(200),
            nested_project_decoy: true,
            remove_data_dir_on_shutdown: false,
        }
    }
}

/// Limits and timings the handlers need.
#[derive(Clone, Debug)]
pub(crate) struct Settings {
    pub session_ttl: Duration,
    pub update_payload_limit: u64,
    pub single_request_limit: u64,
    pub webhook_retry_delay: Duration,
}

/// Everything the handlers and jobs share.
#[derive(Debug)]
pub(crate) struct Shared {
    pub settings: Settings,
    pub site: Site,
    pub user: User,
    pub projects: Vec<Project>,
    /// Index of the connector's (top-level) project in `projects`.
    pub connector_project: usize,
    pub pat_name: String,
    pub pat_secret: Secret,
    pub server_url: String,
    pub data_dir: PathBuf,
    pub datasource_dir: PathBuf,
    pub upload_dir: PathBuf,
    pub engine: Engine,
    pub faults: Faults,
    pub http: reqwest::Client,
    state: Mutex<Inner>,
    deliveries: Mutex<Vec<WebhookDelivery>>,
    catalog_lock: Mutex<()>,
}

impl Shared {
    /// The mutable state (never held across an await).
    pub fn inner(&self) -> MutexGuard<'_, Inner> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Writes `catalog.json` from the current state; a failure is logged
    /// (the running sandbox is unaffected, only a restart would forget).
    pub fn save_catalog(&self) {
        let _serial = self
            .catalog_lock
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let snapshot = {
            let inner = self.inner();
            Catalog::snapshot(
                &self.site.id,
                &self.user.id,
                &self.projects,
                &inner.datasources,
                &inner.webhooks,
            )
        };
        if let Err(e) = snapshot.save(&self.data_dir) {
            tracing::warn!(dir = %self.data_dir.display(), error = %e, "could not save the sandbox catalog");
        }
    }

    /// Records a webhook attempt.
    pub fn record(&self, delivery: WebhookDelivery) {
        self.deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(delivery);
    }

    /// The default project (used when a publish names none).
    pub fn default_project(&self) -> &Project {
        &self.projects[0]
    }

    /// The connector's top-level project.
    pub fn connector_project(&self) -> &Project {
        &self.projects[self.connector_project]
    }

    /// A project by LUID.
    pub fn project(&self, id: &str) -> Option<&Project> {
        self.projects.iter().find(|p| p.id == id)
    }
}

/// A running Tableau sandbox.
#[derive(Debug)]
pub struct TableauSandbox {
    shared: Arc<Shared>,
    data_dir: PathBuf,
    remove_data_dir: bool,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    server: Option<JoinHandle<std::io::Result<()>>>,
}

fn prepare_dir(path: &Path) -> Result<PathBuf, SandboxError> {
    std::fs::create_dir_all(path).map_err(|source| SandboxError::DataDir {
        path: path.to_owned(),
        source,
    })?;
    std::path::absolute(path).map_err(|source| SandboxError::DataDir {
        path: path.to_owned(),
        source,
    })
}

impl TableauSandbox {
    /// Starts hyperd and the HTTP server.
    pub async fn start(config: TableauSandboxConfig) -> Result<Self, SandboxError> {
        let data_dir = prepare_dir(&config.data_dir)?;
        let datasource_dir = prepare_dir(&data_dir.join("datasources"))?;
        let upload_dir = prepare_dir(&data_dir.join("uploads"))?;
        // Upload sessions do not survive a restart: their files are orphans.
        if let Ok(entries) = std::fs::read_dir(&upload_dir) {
            for entry in entries.flatten() {
                if let Err(e) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(file = %entry.path().display(), error = %e, "could not remove a stale upload");
                }
            }
        }
        let hyperd = Hyperd::start(HyperdConfig {
            binary: config.hyperd.clone(),
            log_dir: data_dir.join("hyperd-logs"),
            ..HyperdConfig::default()
        })
        .await
        .map_err(|e| SandboxError::Hyperd(e.to_string()))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|source| SandboxError::Listen {
                addr: config.listen.to_string(),
                source,
            })?;
        let addr = listener
            .local_addr()
            .map_err(|source| SandboxError::Listen {
                addr: config.listen.to_string(),
                source,
            })?;
        let pat_secret = if config.pat_secret.is_empty() {
            Secret::new(random_secret())
        } else {
            config.pat_secret.clone()
        };
        let created = now_micros();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| SandboxError::Serve(std::io::Error::other(e)))?;
        let catalog = Catalog::load(&data_dir)
            .map_err(|source| SandboxError::DataDir {
                path: data_dir.join(catalog::FILE),
                source,
            })?
            .unwrap_or_default();
        let stored = |name: &str, parent: Option<&str>| {
            catalog
                .projects
                .iter()
                .find(|p| p.name == name && p.parent_id.as_deref() == parent)
                .map(|p| (p.id.clone(), p.created_at))
                .unwrap_or_else(|| (luid(), created))
        };
        let (default_id, default_created) = stored("Default", None);
        let mut projects = vec![Project {
            id: default_id.clone(),
            name: "Default".to_owned(),
            description: "The default project that was automatically created by Tableau."
                .to_owned(),
            parent_id: None,
            created_at: default_created,
        }];
        let connector_project = if config.project_name == "Default" {
            0
        } else {
            if config.nested_project_decoy {
                // A same-named project nested under Default, listed first:
                // names repeat across nesting levels on real sites.
                let (id, created_at) = stored(&config.project_name, Some(&default_id));
                projects.push(Project {
                    id,
                    name: config.project_name.clone(),
                    description: "A nested project with the connector project's name.".to_owned(),
                    parent_id: Some(default_id.clone()),
                    created_at,
                });
            }
            let (id, created_at) = stored(&config.project_name, None);
            projects.push(Project {
                id,
                name: config.project_name.clone(),
                description: "Data sources kept current by ml-connector.".to_owned(),
                parent_id: None,
                created_at,
            });
            projects.len() - 1
        };
        for kept in &catalog.projects {
            if !projects.iter().any(|p| p.id == kept.id) {
                projects.push(Project {
                    id: kept.id.clone(),
                    name: kept.name.clone(),
                    description: kept.description.clone(),
                    parent_id: kept.parent_id.clone(),
                    created_at: kept.created_at,
                });
            }
        }
        let nonempty = |id: &str| (!id.is_empty()).then(|| id.to_owned());
        let restored = catalog.restore_datasources(&datasource_dir);
        if !restored.is_empty() {
            tracing::info!(
                count = restored.len(),
                "data sources restored from the catalog"
            );
        }
        let shared = Arc::new(Shared {
            settings: Settings {
                session_ttl: config.session_ttl,
                update_payload_limit: config.update_payload_limit,
                single_request_limit: config.single_request_limit,
                webhook_retry_delay: config.webhook_retry_delay,
            },
            site: Site {
                id: nonempty(&catalog.site_id).unwrap_or_else(luid),
                name: format!("{} (sandbox)", config.site_content_url),
                content_url: config.site_content_url.clone(),
            },
            user: User {
                id: nonempty(&catalog.user_id).unwrap_or_else(luid),
                name: "sandbox-admin".to_owned(),
            },
            projects,
            connector_project,
            data_dir: data_dir.clone(),
            pat_name: config.pat_name.clone(),
            pat_secret: pat_secret.clone(),
            server_url: format!("http://{addr}"),
            datasource_dir,
            upload_dir,
            engine: Engine::new(hyperd),
            faults: Faults::default(),
            http,
            state: Mutex::new(Inner {
                pats: HashMap::from([(config.pat_name.clone(), pat_secret.clone())]),
                datasources: restored,
                webhooks: catalog.restore_webhooks(),
                ..Inner::default()
            }),
            deliveries: Mutex::new(Vec::new()),
            catalog_lock: Mutex::new(()),
        });
        shared.save_catalog();
        let app = crate::api::router(Arc::clone(&shared));
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let server = tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stop_rx.await;
                })
                .await
        });
        tracing::info!(%addr, site = %shared.site.content_url, "Tableau sandbox listening");
        Ok(Self {
            shared,
            data_dir,
            remove_data_dir: config.remove_data_dir_on_shutdown,
            addr,
            stop: Some(stop_tx),
            server: Some(server),
        })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash, no `/api`).
    pub fn server_url(&self) -> String {
        self.shared.server_url.clone()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The highest REST API version served (`3.28`).
    pub fn api_version(&self) -> &'static str {
        API_VERSION
    }

    /// The site's URL name for sign-in.
    pub fn site_content_url(&self) -> &str {
        &self.shared.site.content_url
    }

    /// The site LUID.
    pub fn site_id(&self) -> &str {
        &self.shared.site.id
    }

    /// The connector's (top-level) project name.
    pub fn project_name(&self) -> &str {
        &self.shared.connector_project().name
    }

    /// The connector's top-level project LUID.
    pub fn project_id(&self) -> &str {
        &self.shared.connector_project().id
    }

    /// The PAT name.
    pub fn pat_name(&self) -> &str {
        &self.shared.pat_name
    }

    /// The PAT secret.
    pub fn pat_secret(&self) -> &Secret {
        &self.shared.pat_secret
    }

    /// Adds another personal access token for the same user and site (for
    /// tests with several PATs, e.g. one per tenant); returns its secret.
    pub fn add_pat(&self, name: &str) -> Secret {
        let secret = Secret::new(random_secret());
        self.shared
            .inner()
            .pats
            .insert(name.to_owned(), secret.clone());
        secret
    }

    /// The fault switches.
    pub fn faults(&self) -> &Faults {
        &self.shared.faults
    }

    /// The stored `.hyper` of the data source with this name (any project).
    pub fn datasource_file(&self, name: &str) -> Option<PathBuf> {
        self.shared
            .inner()
            .datasources
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.file.clone())
    }

    /// The LUID of the data source with this name (any project).
    pub fn datasource_id(&self, name: &str) -> Option<String> {
        self.shared
            .inner()
            .datasources
            .iter()
            .find(|d| d.name == name)
            .map(|d| d.id.clone())
    }

    /// Reads `"Extract"."Extract"` of a data source through hyperd, ordered
    /// by the given columns. `Ok(None)` when no such data source exists.
    pub async fn datasource_rows(
        &self,
        name: &str,
        order_by: &[&str],
    ) -> Result<Option<Vec<Vec<Value>>>, EngineError> {
        self.datasource_table_rows(name, "Extract", "Extract", order_by)
            .await
    }

    /// Reads any table of a data source through hyperd.
    pub async fn datasource_table_rows(
        &self,
        name: &str,
        schema: &str,
        table: &str,
        order_by: &[&str],
    ) -> Result<Option<Vec<Vec<Value>>>, EngineError> {
        let found = self
            .shared
            .inner()
            .datasources
            .iter()
            .find(|d| d.name == name)
            .map(|d| (d.file.clone(), Arc::clone(&d.lock)));
        let Some((file, lock)) = found else {
            return Ok(None);
        };
        let _guard = lock.lock().await;
        self.shared
            .engine
            .rows(&file, schema, table, order_by)
            .await
            .map(Some)
    }

    /// Every webhook delivery attempt so far, in order.
    pub fn webhook_deliveries(&self) -> Vec<WebhookDelivery> {
        self.shared
            .deliveries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Stops the HTTP server and hyperd.
    pub async fn shutdown(mut self) -> Result<(), SandboxError> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            match server.await {
                Ok(result) => result.map_err(SandboxError::Serve)?,
                Err(e) => return Err(SandboxError::Serve(std::io::Error::other(e))),
            }
        }
        self.shared
            .engine
            .shutdown()
            .await
            .map_err(|e| SandboxError::Hyperd(e.to_string()))?;
        if self.remove_data_dir {
            tokio::fs::remove_dir_all(&self.data_dir)
                .await
                .map_err(|source| SandboxError::DataDir {
                    path: self.data_dir.clone(),
                    source,
                })?;
        }
        Ok(())
    }

    /// The data directory (absolute).
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }
}

impl Drop for TableauSandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// A random PAT secret in Tableau's shape (`base64==:base64`).
fn random_secret() -> String {
    use base64::Engine as _;
    let bytes: [u8; 24] = rand::random();
    let more: [u8; 24] = rand::random();
    let e = base64::engine::general_purpose::STANDARD;
    format!("{}:{}", e.encode(&bytes[..16]), e.encode(more))
}

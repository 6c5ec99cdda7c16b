//! What the commands over the store share: the global options naming the
//! data directory, master key, mappings and plugins; opening the runtime
//! file and a tenant's store; `TENANT[/PIPELINE[/KEY]]` targets; the
//! audit actor; printing one result as text or JSON.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use mlc_store::{Batch, DataDir, MasterKey, RuntimeStore, StoreError, TenantStore};
use mlc_sync::{Host, HostConfig};

use super::Output;
use crate::failure::CliError;

/// Where the runtime keeps and finds things (global options).
#[derive(Debug, Clone, clap::Args)]
pub struct RuntimeArgs {
    /// The data directory: runtime file, one store file per tenant.
    #[arg(
        long,
        global = true,
        env = "ML_CONNECTOR_DATA",
        default_value = ".mlc/data"
    )]
    pub data_dir: PathBuf,
    /// A file holding the master key (base64 of 32 bytes); default: the
    /// ML_CONNECTOR_MASTER_KEY variable.
    #[arg(long, global = true, env = "ML_CONNECTOR_MASTER_KEY_FILE")]
    pub master_key_file: Option<PathBuf>,
    /// Mapping scripts, as `<dir>/<tenant>/<file>.toml`.
    #[arg(
        long,
        global = true,
        env = "ML_CONNECTOR_MAPPINGS",
        default_value = "mappings"
    )]
    pub mappings_dir: PathBuf,
    /// Plugins, as `<dir>/<tenant>/<name>.wasm`.
    #[arg(long, global = true, env = "ML_CONNECTOR_PLUGINS")]
    pub plugins_dir: Option<PathBuf>,
    /// The scripted mapper component (default: target/plugins/scripted.wasm,
    /// built by `cargo xtask build-plugins`).
    #[arg(long, global = true, env = "ML_CONNECTOR_SCRIPTED_WASM")]
    pub scripted: Option<PathBuf>,
    /// The hyperd binary (default: from the tableauhyperapi Python package).
    #[arg(long, global = true, env = "ML_CONNECTOR_HYPERD")]
    pub hyperd: Option<PathBuf>,
    /// A file holding the admin API's bearer token (default: the
    /// ML_CONNECTOR_ADMIN_TOKEN variable): `serve` requires it, other
    /// commands use it to reach a running server.
    #[arg(long, global = true, env = "ML_CONNECTOR_ADMIN_TOKEN_FILE")]
    pub admin_token_file: Option<PathBuf>,
}

/// The shortest admin token accepted.
pub const MIN_ADMIN_TOKEN: usize = 16;

impl RuntimeArgs {
    /// The data directory.
    pub fn data(&self) -> DataDir {
        DataDir::new(&self.data_dir)
    }

    /// The master key, or an error saying what to set.
    pub fn master_key(&self) -> Result<MasterKey> {
        // The error says what to set; its hint (failure::classify) how to
        // make a new key.
        Ok(MasterKey::from_env_or_file(
            self.master_key_file.as_deref(),
        )?)
    }

    /// The admin API's token, from `--admin-token-file` or
    /// `ML_CONNECTOR_ADMIN_TOKEN`.
    pub fn admin_token(&self) -> Result<mlc_common::Secret> {
        let token = match &self.admin_token_file {
            Some(path) => std::fs::read_to_string(path)
                .with_context(|| format!("reading the admin token file {}", path.display()))?,
            None => std::env::var("ML_CONNECTOR_ADMIN_TOKEN").unwrap_or_default(),
        };
        let token = mlc_common::Secret::new(token.trim().to_owned());
        if token.expose().len() < MIN_ADMIN_TOKEN {
            return Err(CliError::AdminTokenMissing {
                min: MIN_ADMIN_TOKEN,
            }
            .into());
        }
        Ok(token)
    }

    /// Opens the runtime file.
    pub fn runtime(&self) -> Result<RuntimeStore> {
        Ok(RuntimeStore::open(&self.data())?)
    }

    /// Opens a tenant's store; the tenant must be listed.
    pub fn tenant_store(&self, runtime: &RuntimeStore, tenant: &str) -> Result<Arc<TenantStore>> {
        if runtime.tenant(tenant)?.is_none() {
            return Err(CliError::TenantNotListed {
                tenant: tenant.to_owned(),
                data_dir: self.data_dir.clone(),
            }
            .into());
        }
        let path = self.data().tenant_file(tenant);
        Ok(Arc::new(TenantStore::open(&path, tenant)?))
    }

    /// Starts the host parts (plugin runtime, hyperd, watcher).
    pub async fn host(&self, key: MasterKey) -> Result<Host> {
        let scripted = scripted_mapper(self.scripted.as_deref())?;
        let config = HostConfig {
            data: self.data(),
            mappings_dir: self.mappings_dir.clone(),
            plugins_dir: self.plugins_dir.clone(),
            scripted_wasm: scripted,
            hyperd: self.hyperd.clone(),
        };
        Ok(Host::start(config, key).await?)
    }
}

/// The `scripted` mapper component: `given`, or the one `cargo xtask
/// build-plugins` staged (`$ML_CONNECTOR_PLUGINS_BUILT`, default `target/plugins`);
/// an error saying how to build it when it is missing.
pub fn scripted_mapper(given: Option<&std::path::Path>) -> Result<PathBuf> {
    let path = match given {
        Some(p) => p.to_path_buf(),
        None => std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/plugins"))
            .join("scripted.wasm"),
    };
    if !path.is_file() {
        return Err(CliError::PluginsNotBuilt { path }.into());
    }
    Ok(path)
}

/// A duration option (`30s`, `90m`, `12h`, `30d`, `1h30m`).
pub fn duration_arg(text: &str) -> Result<std::time::Duration, String> {
    mlc_sync::definition::parse_duration(text)
        .ok_or_else(|| format!("{text:?} is not a duration such as 30s, 90m, 12h or 30d"))
}

/// Who an audit entry names for a CLI call.
pub fn actor() -> String {
    let user = std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| "unknown".into());
    format!("cli:{user}")
}

/// `TENANT[/PIPELINE]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The tenant.
    pub tenant: String,
    /// The pipeline, when named.
    pub pipeline: Option<String>,
}

impl std::str::FromStr for Target {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(2, '/');
        let tenant = parts.next().unwrap_or_default();
        if tenant.is_empty() {
            return Err("expected TENANT or TENANT/PIPELINE".into());
        }
        let pipeline = parts.next().map(str::to_owned);
        if pipeline.as_deref() == Some("") {
            return Err("expected TENANT/PIPELINE, the pipeline is empty".into());
        }
        Ok(Self {
            tenant: tenant.to_owned(),
            pipeline,
        })
    }
}

impl Target {
    /// The pipeline, or an error for a command that needs one.
    pub fn pipeline(&self) -> Result<&str> {
        self.pipeline
            .as_deref()
            .with_context(|| format!("expected {}/PIPELINE", self.tenant))
    }
}

/// `TENANT/PIPELINE/KEY` (the key may contain `/`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordTarget {
    /// The tenant.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// The record's key.
    pub key: String,
}

impl std::str::FromStr for RecordTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = s.splitn(3, '/');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(t), Some(p), Some(k)) if !t.is_empty() && !p.is_empty() && !k.is_empty() => {
                Ok(Self {
                    tenant: t.to_owned(),
                    pipeline: p.to_owned(),
                    key: k.to_owned(),
                })
            }
            _ => Err("expected TENANT/PIPELINE/KEY".into()),
        }
    }
}

/// A batch id `tenant.pipeline.instance.seq` split into its parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRef {
    /// The whole id, as given.
    pub id: String,
    /// The tenant.
    pub tenant: String,
    /// The pipeline.
    pub pipeline: String,
    /// The sequence number.
    pub seq: u64,
}

impl std::str::FromStr for BatchRef {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("`{s}` is not a batch id (tenant.pipeline.instance.sequence)");
        let mut right = s.rsplitn(3, '.');
        let seq = right.next().and_then(|n| n.parse().ok()).ok_or_else(bad)?;
        let _instance = right.next().ok_or_else(bad)?;
        let rest = right.next().ok_or_else(bad)?;
        let (tenant, pipeline) = rest.split_once('.').ok_or_else(bad)?;
        if tenant.is_empty() || pipeline.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            id: s.to_owned(),
            tenant: tenant.to_owned(),
            pipeline: pipeline.to_owned(),
            seq,
        })
    }
}

impl BatchRef {
    /// The batch this id names. The whole id must match: the same sequence
    /// number under another store instance (a file restored or copied from
    /// elsewhere) is another batch, not this one.
    pub fn find(&self, store: &TenantStore) -> Result<Batch> {
        let missing = || {
            anyhow::Error::new(CliError::NotFound(format!(
                "batch {} does not exist in {} (list them with `ml-connector batches {}/{}`)",
                self.id,
                store.path().display(),
                self.tenant,
                self.pipeline
            )))
        };
        match blocking(|| store.batch(&self.pipeline, self.seq)) {
            Ok(batch) if batch.id == self.id => Ok(batch),
            Ok(_) | Err(StoreError::NotFound { .. }) => Err(missing()),
            Err(e) => Err(e.into()),
        }
    }
}

/// Prints `value` as JSON, or `text` for people.
pub fn print(output: Output, value: &serde_json::Value, text: impl FnOnce() -> String) {
    match output {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
        ),
        Output::Text => {
            let t = text();
            if !t.is_empty() {
                println!("{}", t.trim_end());
            }
        }
    }
}

/// Runs a blocking store call off the async workers.
pub fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_parse() {
        let t: Target = "acme/ap-invoices".parse().expect("target");
        assert_eq!(t.pipeline.as_deref(), Some("ap-invoices"));
        assert!("".parse::<Target>().is_err());
        assert!("acme/".parse::<Target>().is_err());
        let r: RecordTarget = "acme/ap/INV/2".parse().expect("record");
        assert_eq!(r.key, "INV/2");
        assert!("acme/ap".parse::<RecordTarget>().is_err());
        let b: BatchRef = "acme.ap-invoices.0a1b2c3d.000012".parse().expect("batch");
        assert_eq!(
            (b.tenant.as_str(), b.pipeline.as_str(), b.seq),
            ("acme", "ap-invoices", 12)
        );
        assert!("acme.000012".parse::<BatchRef>().is_err());
    }
}

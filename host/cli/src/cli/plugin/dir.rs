//! The plugins directory `plugin load`, `list` and `rollback` manage:
//! installed components with their configuration and sample, every version
//! kept, and the history a rollback walks back.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde_json::json;

use mlc_plugin::{check_name, version_of};

use super::super::Output;
use super::show::print_table;
use super::{read_bytes, read_text};

/// The plugins directory: `<dir>/<tenant>/<name>.wasm` (+ `.toml`,
/// `.sample.json`) is what a runtime serves; `<dir>/<tenant>/.versions/<name>/`
/// keeps every installed version (`<version>.wasm`, `.toml`, `.sample.json`)
/// and `history`, the installed versions in order, one per line.
pub(super) struct PluginDir {
    pub(super) root: PathBuf,
}

/// The files of one version.
pub(super) struct VersionFiles {
    pub(super) wasm: Vec<u8>,
    pub(super) config: Option<String>,
    pub(super) sample: Option<String>,
}

impl PluginDir {
    pub(super) fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    pub(super) fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    pub(super) fn versions_dir(&self, tenant: &str, name: &str) -> PathBuf {
        self.tenant_dir(tenant).join(".versions").join(name)
    }

    pub(super) fn history(&self, tenant: &str, name: &str) -> anyhow::Result<Vec<String>> {
        let path = self.versions_dir(tenant, name).join("history");
        match std::fs::read_to_string(&path) {
            Ok(text) => Ok(text
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_owned)
                .collect()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
        }
    }

    pub(super) fn write_history(
        &self,
        tenant: &str,
        name: &str,
        history: &[String],
    ) -> anyhow::Result<()> {
        let mut text = history.join("\n");
        text.push('\n');
        write_atomically(
            &self.versions_dir(tenant, name).join("history"),
            text.as_bytes(),
        )
    }

    /// Keeps a version's files under `.versions/`.
    pub(super) fn keep(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
        files: &VersionFiles,
    ) -> anyhow::Result<()> {
        let dir = self.versions_dir(tenant, name);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        write_atomically(&dir.join(format!("{version}.wasm")), &files.wasm)?;
        for (ext, content) in [("toml", &files.config), ("sample.json", &files.sample)] {
            if let Some(content) = content {
                write_atomically(&dir.join(format!("{version}.{ext}")), content.as_bytes())?;
            }
        }
        Ok(())
    }

    pub(super) fn kept(
        &self,
        tenant: &str,
        name: &str,
        version: &str,
    ) -> anyhow::Result<VersionFiles> {
        let dir = self.versions_dir(tenant, name);
        let optional = |ext: &str| -> anyhow::Result<Option<String>> {
            let path = dir.join(format!("{version}.{ext}"));
            match std::fs::read_to_string(&path) {
                Ok(text) => Ok(Some(text)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
            }
        };
        Ok(VersionFiles {
            wasm: read_bytes(&dir.join(format!("{version}.wasm")))?,
            config: optional("toml")?,
            sample: optional("sample.json")?,
        })
    }

    /// Puts a version's files where the runtime serves them. The
    /// configuration and sample go first and the wasm last, each renamed
    /// into place, so a watcher never loads a half-written file.
    pub(super) fn install(
        &self,
        tenant: &str,
        name: &str,
        files: &VersionFiles,
    ) -> anyhow::Result<()> {
        let dir = self.tenant_dir(tenant);
        std::fs::create_dir_all(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
        for (ext, content) in [("toml", &files.config), ("sample.json", &files.sample)] {
            let path = dir.join(format!("{name}.{ext}"));
            match content {
                Some(content) => write_atomically(&path, content.as_bytes())?,
                None => match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                    }
                },
            }
        }
        write_atomically(&dir.join(format!("{name}.wasm")), &files.wasm)
    }
}

pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    Ok(mlc_common::fs::write_atomically(path, bytes)?)
}

pub(super) fn list(dir: &PluginDir, output: Output) -> anyhow::Result<()> {
    let mut entries = Vec::new();
    let tenants = match std::fs::read_dir(&dir.root) {
        Ok(read) => read
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("cannot read {}", dir.root.display()))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.root.display())),
    };
    for tenant_entry in tenants {
        let Some(tenant) = tenant_entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        let tenant_path = tenant_entry.path();
        let file_type = tenant_entry
            .file_type()
            .with_context(|| format!("cannot read {}", tenant_path.display()))?;
        if !file_type.is_dir() || check_name("tenant", &tenant).is_err() {
            continue;
        }
        let cannot_read = || format!("cannot read {}", tenant_path.display());
        for entry in std::fs::read_dir(&tenant_path).with_context(cannot_read)? {
            let path = entry.with_context(cannot_read)?.path();
            let Some(name) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".wasm"))
                .map(str::to_owned)
            else {
                continue;
            };
            if check_name("plugin", &name).is_err() {
                continue;
            }
            let wasm = read_bytes(&path)?;
            let config_path = path.with_extension("toml");
            let config = config_path
                .exists()
                .then(|| read_text(&config_path))
                .transpose()?;
            let version = version_of(&wasm, config.as_deref());
            let history = dir.history(&tenant, &name)?;
            entries.push(json!({
                "tenant": tenant,
                "name": name,
                "version": version,
                "bytes": wasm.len(),
                "configured": config.is_some(),
                "sample": path.with_file_name(format!("{name}.sample.json")).exists(),
                "versions_kept": history.len(),
            }));
        }
    }
    entries.sort_by_key(|e| (e["tenant"].to_string(), e["name"].to_string()));
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&entries)?),
        Output::Text => {
            if entries.is_empty() {
                say!("no plugins in {}", dir.root.display());
                return Ok(());
            }
            let rows: Vec<Vec<String>> = entries
                .iter()
                .map(|e| {
                    let text = |k: &str| e[k].as_str().unwrap_or_default().to_owned();
                    vec![
                        text("tenant"),
                        text("name"),
                        text("version").chars().take(12).collect(),
                        e["bytes"].to_string(),
                        if e["configured"] == json!(true) {
                            "yes"
                        } else {
                            "no"
                        }
                        .into(),
                        e["versions_kept"].to_string(),
                    ]
                })
                .collect();
            print_table(
                &["tenant", "plugin", "version", "bytes", "config", "versions"],
                &rows,
            );
        }
    }
    Ok(())
}

pub(super) fn rollback(
    dir: &PluginDir,
    tenant: &str,
    name: &str,
    output: Output,
) -> anyhow::Result<()> {
    check_name("tenant", tenant)?;
    check_name("plugin", name)?;
    let mut history = dir.history(tenant, name)?;
    if history.len() < 2 {
        bail!(
            "plugin `{name}` of tenant `{tenant}` has no previous version in {}",
            dir.versions_dir(tenant, name).display()
        );
    }
    let from = history.pop().unwrap_or_default();
    let to = history.last().cloned().unwrap_or_default();
    let files = dir.kept(tenant, name, &to)?;
    dir.install(tenant, name, &files)?;
    dir.write_history(tenant, name, &history)?;
    match output {
        Output::Json => say!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "tenant": tenant, "name": name, "from": from, "to": to, "rollback_depth": history.len() - 1,
            }))?
        ),
        Output::Text => say!(
            "plugin `{name}` of tenant `{tenant}`: reinstalled version {} (was {}) in {}; a runtime watching that directory loads it on its next scan",
            &to[..to.len().min(12)],
            &from[..from.len().min(12)],
            dir.root.display()
        ),
    }
    Ok(())
}

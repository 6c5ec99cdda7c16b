//! Hot loading from the plugins directory.
//!
//! Layout: `<plugins-dir>/<tenant>/<name>.wasm`, with optionally
//! `<name>.toml` beside it (the configuration passed to `configure`) and
//! `<name>.sample.json` (the validation sample: a JSON array of records, or
//! an object of arrays per resource). Directories and files whose names start
//! with `.` are ignored (the CLI keeps old versions in `<tenant>/.versions/`).
//!
//! The watcher polls: every interval it reads the metadata (length,
//! modification time, inode) of those files. A new or changed set is loaded
//! once it has stayed unchanged for one interval, so a file still being
//! copied is not loaded half-written; files present at start are loaded at
//! once. Loading compiles off the async runtime, validates, and swaps
//! atomically; a refused component is recorded with the reason
//! ([`PluginRuntime::refusals`]) and the previous version keeps serving. A
//! refused set is not retried until one of its files changes. Removing a
//! `.wasm` file does not unload the plugin: the last version keeps serving.
//!
//! Polling rather than inotify (`notify`): it costs a few `stat` calls per
//! second, needs no debouncing of the many events one copy produces, and
//! sees changes that inotify misses, such as Kubernetes ConfigMap volumes
//! swapped through symlinks or network file systems.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use crate::error::{PluginError, PluginRef, VersionId};
use crate::runtime::{LoadOptions, PluginRuntime, Sample, check_name};

/// How the plugins directory is watched.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Time between two scans; a changed file is loaded after it stayed
    /// unchanged for one interval. Default 1 s.
    pub interval: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
        }
    }
}

/// A running watcher; dropping it stops the watching (a load already in
/// progress still completes).
#[derive(Debug)]
pub struct WatchHandle {
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl WatchHandle {
    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Stops watching.
    pub fn stop(self) {}
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Identity of one file's content as far as metadata tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: Option<SystemTime>,
    inode: u64,
}

/// Stamps of the wasm, the configuration and the sample.
type Fingerprint = [Option<Stamp>; 3];

struct Tracked {
    seen: Fingerprint,
    applied: Option<Fingerprint>,
}

/// The files of one plugin in the directory.
struct Found {
    tenant: String,
    name: String,
    wasm: PathBuf,
    config: PathBuf,
    sample: PathBuf,
}

struct Watcher {
    runtime: PluginRuntime,
    dir: PathBuf,
    tracked: HashMap<(String, String), Tracked>,
    first: bool,
}

impl PluginRuntime {
    /// Loads every plugin under `dir`, then keeps watching it (see the
    /// module documentation). Needs a tokio runtime.
    pub async fn watch(&self, dir: impl Into<PathBuf>) -> Result<WatchHandle, PluginError> {
        self.watch_with(dir, WatchOptions::default()).await
    }

    /// [`PluginRuntime::watch`] with options.
    pub async fn watch_with(
        &self,
        dir: impl Into<PathBuf>,
        options: WatchOptions,
    ) -> Result<WatchHandle, PluginError> {
        let dir = dir.into();
        if !dir.is_dir() {
            return Err(PluginError::Io {
                path: dir,
                source: std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "the plugins directory does not exist",
                ),
            });
        }
        if options.interval.is_zero() {
            return Err(PluginError::Config(
                "the watch interval must be positive".into(),
            ));
        }
        let mut watcher = Watcher {
            runtime: self.clone(),
            dir: dir.clone(),
            tracked: HashMap::new(),
            first: true,
        };
        watcher.scan().await;
        tracing::info!(dir = %dir.display(), interval_ms = options.interval.as_millis() as u64, "watching the plugins directory");
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(options.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                watcher.scan().await;
            }
        });
        Ok(WatchHandle { dir, task })
    }
}

impl Watcher {
    async fn scan(&mut self) {
        let found = match discover(&self.dir) {
            Ok(found) => found,
            Err(error) => {
                tracing::warn!(dir = %self.dir.display(), %error, "cannot scan the plugins directory");
                return;
            }
        };
        for plugin in found {
            let fingerprint = [
                stamp(&plugin.wasm),
                stamp(&plugin.config),
                stamp(&plugin.sample),
            ];
            let key = (plugin.tenant.clone(), plugin.name.clone());
            let first = self.first;
            let tracked = self.tracked.entry(key).or_insert(Tracked {
                // A file that appears later must stay unchanged for one
                // interval before it is loaded.
                seen: if first { fingerprint } else { [None; 3] },
                applied: None,
            });
            let stable = tracked.seen == fingerprint;
            tracked.seen = fingerprint;
            if !stable || tracked.applied == Some(fingerprint) {
                continue;
            }
            tracked.applied = Some(fingerprint);
            self.apply(&plugin).await;
        }
        self.first = false;
    }

    async fn apply(&self, plugin: &Found) {
        let origin = plugin.wasm.display().to_string();
        let wasm = match tokio::fs::read(&plugin.wasm).await {
            Ok(wasm) => wasm,
            Err(error) => {
                tracing::warn!(path = %origin, %error, "cannot read plugin");
                return;
            }
        };
        let config = match read_optional(&plugin.config).await {
            Ok(config) => config,
            Err(error) => {
                tracing::warn!(path = %plugin.config.display(), %error, "cannot read plugin configuration");
                return;
            }
        };
        let sample = match read_optional(&plugin.sample).await {
            Ok(Some(text)) => {
                match Sample::from_json(&plugin.sample.display().to_string(), &text) {
                    Ok(sample) => Some(sample),
                    Err(error) => {
                        let version = crate::engine::version_hex(&wasm, config.as_deref());
                        let plugin_ref = PluginRef {
                            tenant: plugin.tenant.as_str().into(),
                            plugin: plugin.name.as_str().into(),
                            version: VersionId::from_hex(&version),
                        };
                        self.runtime.refuse(&plugin_ref, Some(origin), &error);
                        return;
                    }
                }
            }
            Ok(None) => None,
            Err(error) => {
                tracing::warn!(path = %plugin.sample.display(), %error, "cannot read plugin sample");
                return;
            }
        };
        let options = LoadOptions {
            config,
            sample,
            origin: Some(origin),
        };
        // Success and refusal are both logged (and refusals recorded) by
        // the load itself.
        let _ = self
            .runtime
            .load_with(&plugin.tenant, &plugin.name, wasm, options)
            .await;
    }
}

async fn read_optional(path: &Path) -> std::io::Result<Option<String>> {
    match tokio::fs::read_to_string(path).await {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    #[cfg(unix)]
    let inode = std::os::unix::fs::MetadataExt::ino(&meta);
    #[cfg(not(unix))]
    let inode = 0;
    Some(Stamp {
        len: meta.len(),
        modified: meta.modified().ok(),
        inode,
    })
}

/// The plugins under `dir`, sorted by tenant and name.
fn discover(dir: &Path) -> std::io::Result<Vec<Found>> {
    let mut found = Vec::new();
    for tenant_entry in std::fs::read_dir(dir)? {
        let tenant_entry = tenant_entry?;
        if !tenant_entry.file_type()?.is_dir() {
            continue;
        }
        let Some(tenant) = tenant_entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_name("tenant", &tenant).is_err() {
            continue;
        }
        let tenant_dir = tenant_entry.path();
        for entry in std::fs::read_dir(&tenant_dir)? {
            let path = entry?.path();
            let Some(file) = path.file_name().and_then(|f| f.to_str()) else {
                continue;
            };
            let Some(name) = file.strip_suffix(".wasm") else {
                continue;
            };
            if check_name("plugin", name).is_err() || !path.is_file() {
                continue;
            }
            found.push(Found {
                tenant: tenant.clone(),
                name: name.to_owned(),
                config: tenant_dir.join(format!("{name}.toml")),
                sample: tenant_dir.join(format!("{name}.sample.json")),
                wasm: path,
            });
        }
    }
    found.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn discovers_plugins_and_skips_hidden_and_invalid_names() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in [
            "acme/gl.wasm",
            "acme/gl.toml",
            "acme/inv.wasm",
            "acme/.versions/gl/abc.wasm",
            "acme/.tmp.wasm",
            "acme/bad name.wasm",
            "acme/readme.txt",
            ".hidden/x.wasm",
            "globex/scripted.wasm",
        ] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        std::fs::write(root.join("stray.wasm"), b"x").unwrap();
        let found: Vec<(String, String)> = discover(root)
            .unwrap()
            .into_iter()
            .map(|f| (f.tenant, f.name))
            .collect();
        assert_eq!(
            found,
            vec![
                ("acme".into(), "gl".into()),
                ("acme".into(), "inv".into()),
                ("globex".into(), "scripted".into()),
            ]
        );
    }

    #[test]
    fn stamps_change_with_content_and_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.wasm");
        assert_eq!(stamp(&path), None);
        std::fs::write(&path, b"one").unwrap();
        let first = stamp(&path).unwrap();
        let tmp = dir.path().join(".a.tmp");
        std::fs::write(&tmp, b"two").unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        let second = stamp(&path).unwrap();
        assert_ne!(first, second, "an atomic replace must change the stamp");
    }
}

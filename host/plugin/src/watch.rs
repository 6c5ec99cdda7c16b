//! Hot loading from the plugins directory.
//!
//! Layout: `<plugins-dir>/<tenant>/<name>.wasm`, with optionally
//! `<name>.toml` beside it (the configuration passed to `configure`) and
//! `<name>.sample.json` (the validation sample: a JSON array of records, or
//! an object of arrays per resource). Directories and files whose names start
//! with `.` are ignored (the CLI keeps old versions in `<tenant>/.versions/`).
//! Symbolic links are followed, tenant directories included.
//!
//! The watcher polls: every interval it reads the metadata (length,
//! modification time, inode) of those files. A new or changed set is loaded
//! once it has stayed unchanged for one interval, so a file still being
//! copied is not loaded half-written; files present at start are loaded at
//! once. Loading compiles off the async runtime, validates, and swaps
//! atomically; a refused component is recorded with the reason
//! ([`PluginRuntime::refusals`]; a configuration the plugin refuses is named
//! in the reason, a mapping script error as `FILE:LINE:COL: message`) and
//! the previous version keeps serving. A refused set is not retried until one of its
//! files changes. Removing a `.wasm` file does not unload the plugin: the
//! last version keeps serving.
//!
//! A set with a file over its upload limit ([`crate::UploadLimits`]: the
//! component, configuration or sample size) is refused with kind
//! `too-large` from the file's metadata size, before it is read, and not
//! retried until its files change.
//!
//! A set whose files cannot be read (permissions, a directory where a file
//! should be, a file that is not a regular file) is refused with kind `io`,
//! naming the file and the system's error, and read again at every scan
//! until it can be: a permission fixed later changes none of the metadata
//! compared. The refusal is recorded once per failure, not at every scan. A
//! tenant directory that cannot be read is logged (once, until it can be
//! read again) and skipped; the other tenants are watched as before, and
//! the plugins it had keep serving.
//!
//! Polling rather than inotify (`notify`): it costs a few `stat` calls per
//! second, needs no debouncing of the many events one copy produces, and
//! sees changes that inotify misses, such as Kubernetes ConfigMap volumes
//! swapped through symlinks or network file systems.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use crate::error::{PluginError, PluginRef, VersionId};
use crate::runtime::{LoadOptions, PluginRuntime, Sample, check_name, version_of};

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
    scans: Arc<AtomicU64>,
}

impl WatchHandle {
    /// The watched directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Scans completed so far, the one made before `watch` returned
    /// included. A scan has loaded (or refused) what it found by the time
    /// it is counted. A scan may be under way while a change is made, so
    /// once the count has grown by two since then, a scan that started
    /// after the change has completed.
    pub fn scans(&self) -> u64 {
        self.scans.load(Ordering::Acquire)
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
    /// The fingerprint at the last scan.
    seen: Fingerprint,
    /// The fingerprint last read and handed to the runtime (loaded or
    /// refused); not retried until the files change.
    applied: Option<Fingerprint>,
    /// The last failure to read the files: recorded as a refusal once,
    /// retried at every scan.
    unreadable: Option<Unreadable>,
}

/// A set whose files could not be read.
struct Unreadable {
    fingerprint: Fingerprint,
    path: PathBuf,
    error: String,
    /// Scans that failed to read it, in a row.
    attempts: u64,
}

/// The files of one plugin in the directory.
struct Found {
    tenant: String,
    name: String,
    wasm: PathBuf,
    config: PathBuf,
    sample: PathBuf,
}

/// A part of the plugins directory that could not be read.
#[derive(Debug)]
struct Fault {
    path: PathBuf,
    error: std::io::Error,
}

/// What one look at the plugins directory found.
struct Discovery {
    /// The plugins, sorted by tenant and name.
    found: Vec<Found>,
    /// Tenant directories (or entries) that could not be read.
    faults: Vec<Fault>,
}

/// The contents of one plugin's files.
struct Files {
    wasm: Vec<u8>,
    config: Option<String>,
    sample: Option<String>,
}

/// A file of a plugin that could not be read.
struct ReadFailure {
    path: PathBuf,
    error: std::io::Error,
    /// The version, when the wasm and the configuration were read.
    version: Option<VersionId>,
}

struct Watcher {
    runtime: PluginRuntime,
    dir: PathBuf,
    tracked: HashMap<(String, String), Tracked>,
    first: bool,
    /// Paths that could not be read at the last scan, with the error: a
    /// fault is logged when it appears or changes, not at every scan.
    faults: HashMap<PathBuf, String>,
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
            faults: HashMap::new(),
        };
        let scans = Arc::new(AtomicU64::new(0));
        watcher.scan().await;
        scans.fetch_add(1, Ordering::Release);
        tracing::info!(dir = %dir.display(), interval_ms = options.interval.as_millis() as u64, "watching the plugins directory");
        let counter = scans.clone();
        let task = tokio::spawn(async move {
            let mut ticker = tokio::time::interval(options.interval);
            ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticker.tick().await;
            loop {
                ticker.tick().await;
                watcher.scan().await;
                counter.fetch_add(1, Ordering::Release);
            }
        });
        Ok(WatchHandle { dir, task, scans })
    }
}

impl Watcher {
    async fn scan(&mut self) {
        let discovery = match discover(&self.dir) {
            Ok(discovery) => discovery,
            Err(error) => {
                let path = self.dir.clone();
                self.report_faults(vec![Fault { path, error }]);
                return;
            }
        };
        self.report_faults(discovery.faults);
        for plugin in discovery.found {
            let fingerprint = [
                stamp(&plugin.wasm),
                stamp(&plugin.config),
                stamp(&plugin.sample),
            ];
            let key = (plugin.tenant.clone(), plugin.name.clone());
            let first = self.first;
            let tracked = self.tracked.entry(key.clone()).or_insert(Tracked {
                // A file that appears later must stay unchanged for one
                // interval before it is loaded.
                seen: if first { fingerprint } else { [None; 3] },
                applied: None,
                unreadable: None,
            });
            let stable = tracked.seen == fingerprint;
            tracked.seen = fingerprint;
            if !stable || tracked.applied == Some(fingerprint) {
                continue;
            }
            if let Some(error) = self.too_large(&plugin, &fingerprint) {
                // Refused from its size alone, once: not read, not retried
                // until the files change.
                if let Some(tracked) = self.tracked.get_mut(&key) {
                    tracked.applied = Some(fingerprint);
                    tracked.unreadable = None;
                }
                self.runtime.refuse(
                    &plugin.tenant,
                    &plugin.name,
                    None,
                    Some(plugin.wasm.display().to_string()),
                    None,
                    &error,
                );
                continue;
            }
            match read_files(&plugin).await {
                Ok(files) => {
                    if let Some(tracked) = self.tracked.get_mut(&key) {
                        tracked.applied = Some(fingerprint);
                        tracked.unreadable = None;
                    }
                    self.apply(&plugin, files).await;
                }
                Err(failure) => self.unreadable(&key, &plugin, fingerprint, failure),
            }
        }
        self.first = false;
    }

    /// A file of the set over its upload limit, told from its metadata
    /// size before anything is read.
    fn too_large(&self, plugin: &Found, fingerprint: &Fingerprint) -> Option<PluginError> {
        let limits = self.runtime.upload_limits();
        let caps = [
            ("component", limits.max_component),
            ("configuration", limits.max_config),
            ("sample", limits.max_sample_bytes),
        ];
        let (what, size, limit) =
            fingerprint
                .iter()
                .zip(caps)
                .find_map(|(stamp, (what, cap))| {
                    let len = usize::try_from(stamp.as_ref()?.len).unwrap_or(usize::MAX);
                    (len > cap).then_some((what, len, cap))
                })?;
        Some(PluginError::TooLarge {
            plugin: PluginRef {
                tenant: plugin.tenant.as_str().into(),
                plugin: plugin.name.as_str().into(),
                // Not read, so not hashed.
                version: VersionId::from_hex("unread"),
            },
            what,
            size,
            limit,
        })
    }

    /// Logs the faults that are new or changed since the last scan, and
    /// the paths that became readable again.
    fn report_faults(&mut self, faults: Vec<Fault>) {
        let mut now = HashMap::with_capacity(faults.len());
        for Fault { path, error } in faults {
            let message = error.to_string();
            if self.faults.get(&path) != Some(&message) {
                tracing::warn!(
                    path = %path.display(),
                    error = %message,
                    "cannot read part of the plugins directory; skipping it (other tenants are watched as before)"
                );
            }
            now.insert(path, message);
        }
        for path in self.faults.keys() {
            if !now.contains_key(path) {
                tracing::info!(path = %path.display(), "no longer fails to read (readable again, or gone)");
            }
        }
        self.faults = now;
    }

    /// Records a read failure as a refusal, once per failure; the set is
    /// read again at the next scan (it is not marked applied).
    fn unreadable(
        &mut self,
        key: &(String, String),
        plugin: &Found,
        fingerprint: Fingerprint,
        failure: ReadFailure,
    ) {
        let Some(tracked) = self.tracked.get_mut(key) else {
            return;
        };
        let message = failure.error.to_string();
        // The same failure of the same files: recorded already.
        let repeated = tracked.unreadable.as_ref().filter(|last| {
            last.fingerprint == fingerprint && last.path == failure.path && last.error == message
        });
        let attempts = repeated.map_or(1, |last| last.attempts + 1);
        tracked.unreadable = Some(Unreadable {
            fingerprint,
            path: failure.path.clone(),
            error: message.clone(),
            attempts,
        });
        if attempts > 1 {
            tracing::debug!(
                tenant = %plugin.tenant,
                plugin = %plugin.name,
                path = %failure.path.display(),
                error = %message,
                attempts,
                "plugin files still unreadable"
            );
            return;
        }
        let error = PluginError::Io {
            path: failure.path,
            source: failure.error,
        };
        self.runtime.refuse(
            &plugin.tenant,
            &plugin.name,
            failure.version.as_ref(),
            Some(plugin.wasm.display().to_string()),
            None,
            &error,
        );
    }

    async fn apply(&self, plugin: &Found, files: Files) {
        let origin = plugin.wasm.display().to_string();
        let config_file = files
            .config
            .as_ref()
            .map(|_| plugin.config.display().to_string());
        let sample = match files.sample {
            Some(text) => match Sample::from_json(&plugin.sample.display().to_string(), &text) {
                Ok(sample) => Some(sample),
                Err(error) => {
                    let version = version_of(&files.wasm, files.config.as_deref());
                    self.runtime.refuse(
                        &plugin.tenant,
                        &plugin.name,
                        Some(&version),
                        Some(origin),
                        None,
                        &error,
                    );
                    return;
                }
            },
            None => None,
        };
        let options = LoadOptions {
            config: files.config,
            sample,
            origin: Some(origin),
        };
        // Success and refusal are both logged (and refusals recorded) by
        // the load itself.
        let _ = self
            .runtime
            .load_from_files(
                &plugin.tenant,
                &plugin.name,
                files.wasm,
                options,
                config_file,
            )
            .await;
    }
}

/// Reads a plugin's wasm, configuration and sample.
async fn read_files(plugin: &Found) -> Result<Files, ReadFailure> {
    let wasm = tokio::fs::read(&plugin.wasm)
        .await
        .map_err(|error| ReadFailure {
            path: plugin.wasm.clone(),
            error,
            version: None,
        })?;
    let config = read_optional(&plugin.config)
        .await
        .map_err(|error| ReadFailure {
            path: plugin.config.clone(),
            error,
            version: None,
        })?;
    let sample = match read_optional(&plugin.sample).await {
        Ok(sample) => sample,
        Err(error) => {
            return Err(ReadFailure {
                path: plugin.sample.clone(),
                error,
                version: Some(version_of(&wasm, config.as_deref())),
            });
        }
    };
    Ok(Files {
        wasm,
        config,
        sample,
    })
}

/// The text of an optional file: `None` when it does not exist. A FIFO,
/// socket or device is refused without being opened (opening a FIFO would
/// block the watcher until something writes to it).
async fn read_optional(path: &Path) -> std::io::Result<Option<String>> {
    match tokio::fs::metadata(path).await {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "not a regular file",
            ));
        }
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    }
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

/// The plugins under `dir`, sorted by tenant and name, and the parts that
/// could not be read. Only failing to list `dir` itself is an error: a
/// tenant directory that cannot be read is a fault, and the others are
/// still listed.
fn discover(dir: &Path) -> std::io::Result<Discovery> {
    let mut found = Vec::new();
    let mut faults = Vec::new();
    for tenant_entry in std::fs::read_dir(dir)? {
        let tenant_entry = match tenant_entry {
            Ok(entry) => entry,
            Err(error) => {
                // The listing itself failed part-way: what was listed is
                // still used.
                faults.push(Fault {
                    path: dir.to_path_buf(),
                    error,
                });
                break;
            }
        };
        let Some(tenant) = tenant_entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if check_name("tenant", &tenant).is_err() {
            continue;
        }
        let tenant_dir = tenant_entry.path();
        let file_type = match tenant_entry.file_type() {
            Ok(file_type) => file_type,
            Err(error) => {
                faults.push(Fault {
                    path: tenant_dir,
                    error,
                });
                continue;
            }
        };
        // A symbolic link is followed: listing it fails unless it leads to
        // a directory (ConfigMap volumes link every entry).
        let link = file_type.is_symlink();
        if !file_type.is_dir() && !link {
            continue;
        }
        if let Err(error) = list_tenant(&tenant, &tenant_dir, &mut found) {
            if link && error.kind() == std::io::ErrorKind::NotADirectory {
                // A link to a file: not a tenant.
                continue;
            }
            faults.push(Fault {
                path: tenant_dir,
                error,
            });
        }
    }
    found.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    Ok(Discovery { found, faults })
}

/// Adds the plugins of one tenant directory to `found`.
fn list_tenant(tenant: &str, tenant_dir: &Path, found: &mut Vec<Found>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(tenant_dir)? {
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
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            config: tenant_dir.join(format!("{name}.toml")),
            sample: tenant_dir.join(format!("{name}.sample.json")),
            wasm: path,
        });
    }
    Ok(())
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
        let discovery = discover(root).unwrap();
        assert!(discovery.faults.is_empty(), "{:?}", discovery.faults);
        let found: Vec<(String, String)> = discovery
            .found
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

    #[cfg(unix)]
    #[test]
    fn an_unreadable_tenant_directory_is_a_fault_and_the_others_are_listed() {
        use std::os::unix::fs::{PermissionsExt, symlink};
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        for path in ["acme/gl.wasm", "zeta/inv.wasm", "shared/items.wasm"] {
            let path = root.join(path);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"x").unwrap();
        }
        std::fs::write(root.join("notes.txt"), b"x").unwrap();
        // Tenant directories that cannot be listed, whatever the user: a
        // link to itself (ELOOP) and a link to nothing (ENOENT).
        symlink("loop", root.join("loop")).unwrap();
        symlink("gone", root.join("dangling")).unwrap();
        // A link to a directory is a tenant; a link to a file is not.
        symlink("shared", root.join("linked")).unwrap();
        symlink("notes.txt", root.join("notes")).unwrap();
        // A directory without permissions: unreadable unless running with
        // CAP_DAC_OVERRIDE (root), in which case it lists normally.
        let locked = root.join("locked");
        std::fs::create_dir(&locked).unwrap();
        std::fs::write(locked.join("x.wasm"), b"x").unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).unwrap();
        let locked_fails = std::fs::read_dir(&locked).is_err();

        let discovery = discover(root).unwrap();
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found: Vec<(String, String)> = discovery
            .found
            .iter()
            .map(|f| (f.tenant.clone(), f.name.clone()))
            .collect();
        let mut faults: Vec<(String, Option<std::io::ErrorKind>)> = discovery
            .faults
            .iter()
            .map(|f| {
                let name = f.path.file_name().unwrap().to_str().unwrap().to_owned();
                // ELOOP's kind is not stable Rust yet: any OS error.
                let kind =
                    match f.error.kind() {
                        kind @ (std::io::ErrorKind::NotFound
                        | std::io::ErrorKind::PermissionDenied) => Some(kind),
                        _ => None,
                    };
                assert!(f.error.raw_os_error().is_some(), "{f:?}");
                (name, kind)
            })
            .collect();
        faults.sort();
        let mut want_found = vec![
            ("acme".to_owned(), "gl".to_owned()),
            ("linked".into(), "items".into()),
            ("shared".into(), "items".into()),
            ("zeta".into(), "inv".into()),
        ];
        let mut want_faults = vec![
            ("dangling".to_owned(), Some(std::io::ErrorKind::NotFound)),
            ("loop".into(), None),
        ];
        if locked_fails {
            want_faults.push(("locked".into(), Some(std::io::ErrorKind::PermissionDenied)));
        } else {
            eprintln!("running as root: the mode-000 directory is readable and listed");
            want_found.push(("locked".into(), "x".into()));
        }
        want_found.sort();
        want_faults.sort();
        assert_eq!(found, want_found, "faults: {:?}", discovery.faults);
        assert_eq!(faults, want_faults, "{:?}", discovery.faults);
        // Each fault names the path that could not be read.
        for fault in &discovery.faults {
            assert_eq!(fault.path.parent(), Some(root), "{fault:?}");
        }
    }

    /// A watcher on `dir` that has not scanned yet.
    fn watcher(dir: &Path) -> Watcher {
        Watcher {
            runtime: PluginRuntime::new(crate::RuntimeConfig {
                pooling: false,
                ..crate::RuntimeConfig::default()
            })
            .unwrap(),
            dir: dir.to_path_buf(),
            tracked: HashMap::new(),
            first: true,
            faults: HashMap::new(),
        }
    }

    #[tokio::test]
    async fn files_over_their_caps_are_refused_from_their_size_unread() {
        let dir = tempfile::tempdir().unwrap();
        for tenant in ["acme", "globex"] {
            std::fs::create_dir(dir.path().join(tenant)).unwrap();
        }
        // 1 TiB, sparse: reading it would not end in a test's time.
        let huge = std::fs::File::create(dir.path().join("acme/items.wasm")).unwrap();
        huge.set_len(1 << 40).unwrap();
        std::fs::write(dir.path().join("globex/items.wasm"), b"junk").unwrap();
        let sample = std::fs::File::create(dir.path().join("globex/items.sample.json")).unwrap();
        sample
            .set_len(crate::UploadLimits::DEFAULT_MAX_SAMPLE_BYTES as u64 + 1)
            .unwrap();
        let mut watcher = watcher(dir.path());
        let started = std::time::Instant::now();
        watcher.scan().await;
        watcher.scan().await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "scanning took {:?}: the files were read",
            started.elapsed()
        );
        let mut seen: Vec<(String, &str, String)> = watcher
            .runtime
            .refusals()
            .iter()
            .map(|r| (r.tenant.clone(), r.kind, r.reason.clone()))
            .collect();
        seen.sort();
        let [
            (acme, acme_kind, acme_reason),
            (globex, globex_kind, globex_reason),
        ] = seen.as_slice()
        else {
            panic!("one refusal per set, refused once: {seen:?}");
        };
        assert_eq!(
            (acme.as_str(), *acme_kind, globex.as_str(), *globex_kind),
            ("acme", "too-large", "globex", "too-large"),
            "{seen:?}"
        );
        assert!(
            acme_reason
                .contains("the component is 1099511627776 bytes, over the limit of 16777216 bytes"),
            "{acme_reason}"
        );
        assert!(
            globex_reason.contains("the sample is 8388609 bytes, over the limit of 8388608 bytes"),
            "{globex_reason}"
        );
    }

    #[tokio::test]
    async fn unreadable_files_are_refused_once_and_read_again_at_every_scan() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = dir.path().join("acme");
        std::fs::create_dir(&tenant).unwrap();
        // Not a component: once its files are read, the load is refused
        // with kind `compile`, which tells that the files were read.
        std::fs::write(tenant.join("items.wasm"), b"junk").unwrap();
        // A directory where the configuration should be: reading fails
        // (EISDIR) whoever runs the test.
        std::fs::create_dir(tenant.join("items.toml")).unwrap();
        let mut watcher = watcher(dir.path());
        let key = ("acme".to_owned(), "items".to_owned());
        for scan in 1..=3u64 {
            watcher.scan().await;
            let tracked = &watcher.tracked[&key];
            assert_eq!(tracked.applied, None, "scan {scan}: marked applied");
            let attempts = tracked.unreadable.as_ref().map(|u| u.attempts);
            assert_eq!(attempts, Some(scan), "scan {scan}: attempts");
        }
        let refusals = watcher.runtime.refusals();
        let seen: Vec<(&str, &str, bool)> = refusals
            .iter()
            .map(|r| (r.kind, r.reason.as_str(), r.version.is_some()))
            .collect();
        assert_eq!(refusals.len(), 1, "one refusal per failure: {seen:?}");
        let refusal = &refusals[0];
        let config = tenant.join("items.toml").display().to_string();
        assert_eq!(
            (refusal.kind, refusal.tenant.as_str(), refusal.name.as_str()),
            ("io", "acme", "items"),
            "{seen:?}"
        );
        assert!(
            refusal.reason.starts_with(&config) && refusal.reason.contains("os error"),
            "the reason names neither the file nor the system's error: {}",
            refusal.reason
        );
        assert_eq!(refusal.version, None, "the configuration is unknown");
        assert_eq!(
            refusal.origin.as_deref(),
            Some(tenant.join("items.wasm").to_str().unwrap())
        );

        // Fixed: read at the next scans once stable, and handed to the
        // runtime (which refuses the junk for what it is).
        std::fs::remove_dir(tenant.join("items.toml")).unwrap();
        std::fs::write(tenant.join("items.toml"), b"mode").unwrap();
        watcher.scan().await;
        watcher.scan().await;
        let kinds: Vec<&str> = watcher.runtime.refusals().iter().map(|r| r.kind).collect();
        assert_eq!(kinds, vec!["io", "compile"]);
        let tracked = &watcher.tracked[&key];
        assert!(tracked.applied.is_some() && tracked.unreadable.is_none());
        // Not retried while unchanged.
        watcher.scan().await;
        assert_eq!(watcher.runtime.refusals().len(), 2);

        // A sample that cannot be read: the version is known then.
        std::fs::create_dir(tenant.join("items.sample.json")).unwrap();
        watcher.scan().await;
        watcher.scan().await;
        let refusals = watcher.runtime.refusals();
        let last = refusals.last().unwrap();
        assert_eq!(last.kind, "io", "{refusals:?}");
        assert!(
            last.reason
                .starts_with(&tenant.join("items.sample.json").display().to_string()),
            "{}",
            last.reason
        );
        assert_eq!(
            last.version,
            Some(version_of(b"junk", Some("mode"))),
            "{last:?}"
        );
    }

    #[tokio::test]
    async fn a_fifo_is_refused_without_blocking_the_watcher() {
        let dir = tempfile::tempdir().unwrap();
        let tenant = dir.path().join("acme");
        std::fs::create_dir(&tenant).unwrap();
        std::fs::write(tenant.join("items.wasm"), b"junk").unwrap();
        let fifo = tenant.join("items.toml");
        let status = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap();
        assert!(status.success(), "mkfifo: {status}");
        let mut watcher = watcher(dir.path());
        tokio::time::timeout(Duration::from_secs(10), watcher.scan())
            .await
            .expect("the scan blocked on the FIFO");
        let refusals = watcher.runtime.refusals();
        assert_eq!(refusals.len(), 1, "{refusals:?}");
        assert!(
            refusals[0].kind == "io" && refusals[0].reason.contains("not a regular file"),
            "{refusals:?}"
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

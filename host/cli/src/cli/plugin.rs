//! `ml-connector plugin check|test|load|list|rollback`: validate and try
//! mapping plugins locally, and prepare a plugins directory:
//! `<dir>/<tenant>/<name>.wasm` with its `.toml` configuration and
//! `.sample.json`, old versions kept in `<dir>/<tenant>/.versions/<name>/`.
//!
//! `load` and `rollback` only write files. A runtime watching the directory
//! (`mlc_plugin::PluginRuntime::watch`) loads what they wrote on its next
//! scan; until a runtime watches it, nothing is served from it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use mlc_common::{MappedBatch, Schema, Value};
use mlc_plugin::{
    GuestError, JsonDirReference, LoadOptions, PluginError, PluginInfo, PluginRuntime,
    RuntimeConfig, Sample, check_name, locate_config_error, records_of, version_of,
};
use serde_json::json;

use super::Output;

/// Prints a line on stdout. A closed pipe (`| head`) ends the program
/// quietly; any other write failure ends it with an error.
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        match writeln!(std::io::stdout().lock(), $($arg)*) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => std::process::exit(0),
            Err(e) => {
                eprintln!("error: cannot write to stdout: {e}");
                std::process::exit(1);
            }
        }
    }};
}

/// Plugin commands.
#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Validate a component: world, imports, configuration, schema per resource.
    Check {
        /// The component (.wasm).
        file: PathBuf,
        /// Configuration passed to `configure` (for `scripted`: the mapping script).
        #[arg(long, alias = "mapping")]
        config: Option<PathBuf>,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Map sample records with a component and print the rows and rejects.
    Test {
        /// The component (.wasm).
        file: PathBuf,
        /// The mapping script (the configuration of the `scripted` plugin).
        #[arg(long, alias = "config")]
        mapping: Option<PathBuf>,
        /// A JSON array of Oracle items.
        #[arg(long)]
        records: PathBuf,
        /// Reference data: a directory of `<dataset>.json` files.
        #[arg(long)]
        reference: Option<PathBuf>,
        /// The resource to map the records as (needed when the plugin maps several).
        #[arg(long)]
        resource: Option<String>,
        /// The tenant whose reference data lookups see.
        #[arg(long, default_value = "local")]
        tenant: String,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Validate a component, then install it into the plugins directory,
    /// where a runtime watching that directory loads it on its next scan.
    Load {
        /// The component (.wasm).
        file: PathBuf,
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The plugin name.
        #[arg(long)]
        name: String,
        /// Configuration passed to `configure` (for `scripted`: the mapping script).
        #[arg(long, alias = "mapping")]
        config: Option<PathBuf>,
        /// Validation sample (a JSON array of records, or an object of arrays
        /// per resource); installed beside the component.
        #[arg(long)]
        sample: Option<PathBuf>,
        /// Reference data the sample's lookups read: a directory of
        /// `<dataset>.json` files (validation only; not installed).
        #[arg(long)]
        reference: Option<PathBuf>,
        #[command(flatten)]
        dir: DirArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// Scaffold a custom plugin crate against the SDK: a mapper, a sample,
    /// its test, and `cargo wasm` to build the component.
    New(super::plugin_new::NewArgs),
    /// List the plugins installed in the plugins directory.
    List {
        #[command(flatten)]
        dir: DirArgs,
    },
    /// Reinstall the previously installed version in the plugins directory
    /// (a runtime watching that directory loads it on its next scan).
    Rollback {
        /// The tenant.
        #[arg(long)]
        tenant: String,
        /// The plugin name.
        #[arg(long)]
        name: String,
        #[command(flatten)]
        dir: DirArgs,
    },
}

/// Where the plugins directory is.
#[derive(Debug, Args)]
pub struct DirArgs {
    /// The plugins directory (`<dir>/<tenant>/<name>.wasm`), the one a
    /// runtime's watcher loads plugins from.
    #[arg(long, env = "ML_CONNECTOR_PLUGINS_DIR", default_value = ".mlc/plugins")]
    plugins_dir: PathBuf,
}

/// Where compiled components are cached.
#[derive(Debug, Args)]
pub struct CacheArgs {
    /// Compile cache directory.
    #[arg(long, env = "ML_CONNECTOR_CACHE_DIR", default_value = ".mlc/cache")]
    cache_dir: PathBuf,
}

impl PluginCommand {
    /// Runs the command.
    pub async fn run(self, output: Output) -> anyhow::Result<()> {
        match self {
            Self::New(args) => args.run(output),
            Self::Check {
                file,
                config,
                cache,
            } => check(&file, config.as_deref(), &cache, output).await,
            Self::Test {
                file,
                mapping,
                records,
                reference,
                resource,
                tenant,
                cache,
            } => {
                let args = TestArgs {
                    file: &file,
                    mapping: mapping.as_deref(),
                    records: &records,
                    reference: reference.as_deref(),
                    resource: resource.as_deref(),
                    tenant: &tenant,
                };
                test(args, &cache, output).await
            }
            Self::Load {
                file,
                tenant,
                name,
                config,
                sample,
                reference,
                dir,
                cache,
            } => {
                let args = LoadArgs {
                    file: &file,
                    tenant: &tenant,
                    name: &name,
                    config: config.as_deref(),
                    sample: sample.as_deref(),
                    reference: reference.as_deref(),
                };
                load(args, &PluginDir::new(&dir.plugins_dir), &cache, output).await
            }
            Self::List { dir } => list(&PluginDir::new(&dir.plugins_dir), output),
            Self::Rollback { tenant, name, dir } => {
                rollback(&PluginDir::new(&dir.plugins_dir), &tenant, &name, output)
            }
        }
    }
}

fn read_bytes(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

fn read_text(path: &Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))
}

fn runtime(cache: &CacheArgs, reference: Option<&Path>) -> anyhow::Result<PluginRuntime> {
    let mut config = RuntimeConfig {
        cache_dir: Some(cache.cache_dir.clone()),
        ..RuntimeConfig::default()
    };
    if let Some(dir) = reference {
        let data = JsonDirReference::open(dir)
            .with_context(|| format!("cannot read reference data from {}", dir.display()))?;
        config.reference = Arc::new(data);
    }
    Ok(PluginRuntime::new(config)?)
}

async fn check(
    file: &Path,
    config: Option<&Path>,
    cache: &CacheArgs,
    output: Output,
) -> anyhow::Result<()> {
    let wasm = read_bytes(file)?;
    let config_path = config;
    let config = config.map(read_text).transpose()?;
    let runtime = runtime(cache, None)?;
    let info = runtime
        .load_with(
            "local",
            &plugin_name(file, "check"),
            wasm.clone(),
            LoadOptions {
                config,
                sample: None,
                origin: Some(file.display().to_string()),
            },
        )
        .await
        .map_err(|e| refusal(e, file, config_path, ""))?;
    match output {
        Output::Json => say!("{}", serde_json::to_string_pretty(&info_json(&info))?),
        Output::Text => {
            say!("component  {} ({} bytes)", file.display(), wasm.len());
            say!("world      {}: ok", mlc_plugin::WORLD);
            say!("version    {}", info.version.as_str());
            say!("compile    {}", describe_compile(&info));
            say!("imports    {}", info.imports.len());
            for import in &info.imports {
                say!("  {import}");
            }
            for resource in &info.resources {
                if let Some(schema) = info.schema(resource) {
                    say!();
                    say!("resource {resource} ({} columns)", schema.columns.len());
                    print_schema(schema);
                }
            }
        }
    }
    Ok(())
}

fn describe_compile(info: &PluginInfo) -> String {
    match info.compile {
        mlc_plugin::CompileSource::Compiled { took } => {
            format!("compiled in {} ms", took.as_millis())
        }
        mlc_plugin::CompileSource::DiskCache { took } => {
            format!(
                "loaded from the compile cache in {:.1} ms",
                took.as_secs_f64() * 1000.0
            )
        }
        mlc_plugin::CompileSource::Memory => "shared with a loaded version".into(),
    }
}

fn type_name(ty: &mlc_common::ColumnType) -> String {
    match ty {
        mlc_common::ColumnType::Decimal { precision, scale } => {
            format!("decimal({precision},{scale})")
        }
        other => format!("{other:?}").to_lowercase(),
    }
}

fn print_schema(schema: &Schema) {
    let rows: Vec<Vec<String>> = schema
        .columns
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                type_name(&c.ty),
                if c.nullable { "yes" } else { "no" }.into(),
                if c.key { "key" } else { "" }.into(),
            ]
        })
        .collect();
    print_table(&["column", "type", "nullable", "key"], &rows);
}

fn info_json(info: &PluginInfo) -> serde_json::Value {
    json!({
        "world": mlc_plugin::WORLD,
        "version": info.version,
        "wasm_sha256": info.wasm_sha256,
        "imports": info.imports,
        "resources": info.resources,
        "schemas": info.schemas,
        "compile": info.compile,
    })
}

struct TestArgs<'a> {
    file: &'a Path,
    mapping: Option<&'a Path>,
    records: &'a Path,
    reference: Option<&'a Path>,
    resource: Option<&'a str>,
    tenant: &'a str,
}

async fn test(args: TestArgs<'_>, cache: &CacheArgs, output: Output) -> anyhow::Result<()> {
    check_name("tenant", args.tenant)?;
    let wasm = read_bytes(args.file)?;
    let config = args.mapping.map(read_text).transpose()?;
    let text = read_text(args.records)?;
    let raw: Vec<Box<serde_json::value::RawValue>> = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a JSON array of records", args.records.display()))?;
    let records =
        records_of(raw).map_err(|e| anyhow::anyhow!("{}: {e}", args.records.display()))?;
    let runtime = runtime(cache, args.reference)?;
    let name = plugin_name(args.file, "test");
    let info = runtime
        .load(args.tenant, &name, wasm, config)
        .await
        .map_err(|e| refusal(e, args.file, args.mapping, ""))?;
    let resource = match (args.resource, info.resources.as_slice()) {
        (Some(r), _) => r.to_owned(),
        (None, [only]) => only.clone(),
        (None, several) => bail!(
            "the plugin maps several resources ({}): choose one with --resource",
            several.join(", ")
        ),
    };
    let schema = runtime.schema(args.tenant, &name, &resource)?;
    let batch = runtime
        .map_batch(args.tenant, &name, &resource, &records)
        .await
        .map_err(|e| anyhow::Error::msg(e.chain()))?;
    match output {
        Output::Json => say!(
            "{}",
            serde_json::to_string_pretty(&mlc_plugin::output::batch_json(&schema, &batch))?
        ),
        Output::Text => print_batch(&schema, &batch, records.len()),
    }
    Ok(())
}

fn cell(value: &Value) -> String {
    match mlc_plugin::output::cell_json(value) {
        serde_json::Value::Null => String::new(),
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    }
}

fn print_batch(schema: &Schema, batch: &MappedBatch, records: usize) {
    let header: Vec<&str> = schema.columns.iter().map(|c| c.name.as_str()).collect();
    let rows: Vec<Vec<String>> = batch
        .rows
        .iter()
        .map(|r| r.values.iter().map(cell).collect())
        .collect();
    print_table(&header, &rows);
    say!();
    say!(
        "{records} records: {} rows, {} rejected",
        batch.rows.len(),
        batch.rejects.len()
    );
    for reject in &batch.rejects {
        match &reject.field {
            Some(field) => say!("  record {}: {field}: {}", reject.index, reject.reason),
            None => say!("  record {}: {}", reject.index, reject.reason),
        }
    }
}

/// Longest cell shown in text tables.
const MAX_CELL: usize = 40;

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let clip = |s: &str| -> String {
        if s.chars().count() > MAX_CELL {
            let mut out: String = s.chars().take(MAX_CELL - 1).collect();
            out.push('…');
            out
        } else {
            s.to_owned()
        }
    };
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| r.iter().map(|c| clip(c)).collect())
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |cells: Vec<&str>| {
        let text: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        say!("{}", text.join("  ").trim_end());
    };
    line(header.to_vec());
    line(
        widths
            .iter()
            .map(|w| "─".repeat(*w))
            .collect::<Vec<_>>()
            .iter()
            .map(String::as_str)
            .collect(),
    );
    for row in &rows {
        line(row.iter().map(String::as_str).collect());
    }
}

/// The plugins directory: `<dir>/<tenant>/<name>.wasm` (+ `.toml`,
/// `.sample.json`) is what a runtime serves; `<dir>/<tenant>/.versions/<name>/`
/// keeps every installed version (`<version>.wasm`, `.toml`, `.sample.json`)
/// and `history`, the installed versions in order, one per line.
struct PluginDir {
    root: PathBuf,
}

/// The files of one version.
struct VersionFiles {
    wasm: Vec<u8>,
    config: Option<String>,
    sample: Option<String>,
}

impl PluginDir {
    fn new(root: &Path) -> Self {
        Self {
            root: root.to_path_buf(),
        }
    }

    fn tenant_dir(&self, tenant: &str) -> PathBuf {
        self.root.join(tenant)
    }

    fn versions_dir(&self, tenant: &str, name: &str) -> PathBuf {
        self.tenant_dir(tenant).join(".versions").join(name)
    }

    fn history(&self, tenant: &str, name: &str) -> anyhow::Result<Vec<String>> {
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

    fn write_history(&self, tenant: &str, name: &str, history: &[String]) -> anyhow::Result<()> {
        let mut text = history.join("\n");
        text.push('\n');
        write_atomically(
            &self.versions_dir(tenant, name).join("history"),
            text.as_bytes(),
        )
    }

    /// Keeps a version's files under `.versions/`.
    fn keep(
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

    fn kept(&self, tenant: &str, name: &str, version: &str) -> anyhow::Result<VersionFiles> {
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
    fn install(&self, tenant: &str, name: &str, files: &VersionFiles) -> anyhow::Result<()> {
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

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .context("a file path without a name")?;
    let tmp = path.with_file_name(format!(".{file_name}.tmp{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path)
        .with_context(|| format!("cannot move {} into place", path.display()))
}

/// "FILE is refused", naming the configuration file too.
fn refused(file: &Path, config: Option<&Path>) -> String {
    match config {
        Some(config) => format!(
            "{} configured with {} is refused",
            file.display(),
            config.display()
        ),
        None => format!("{} is refused", file.display()),
    }
}

/// The plugin name a local `check` or `test` loads a component under, so
/// that its errors name the file's plugin: the file stem when it is a
/// valid plugin name, else `fallback`.
fn plugin_name(file: &Path, fallback: &str) -> String {
    file.file_stem()
        .and_then(|stem| stem.to_str())
        .filter(|stem| check_name("plugin", stem).is_ok())
        .unwrap_or(fallback)
        .to_owned()
}

/// Why `file` (configured with `config`) was refused, as a user reads it;
/// `after` is appended to the refusal (e.g. "; nothing was installed").
///
/// - A mapping script error located as `mapping script line L:C: ...` (the
///   form the scripted plugin reports for a script given as text) becomes
///   `CONFIG:L:C: ...`, the form `mappings/README.md` documents.
/// - A configuration refused when none was given says the component needs
///   one.
/// - Anything else keeps the runtime's error (with its causes, on one
///   line) under "FILE is refused".
fn refusal(error: PluginError, file: &Path, config: Option<&Path>, after: &str) -> anyhow::Error {
    anyhow::Error::new(crate::failure::MappingRefused(refusal_text(
        error, file, config, after,
    )))
}

/// What [`refusal`] says.
fn refusal_text(
    error: PluginError,
    file: &Path,
    config: Option<&Path>,
    after: &str,
) -> anyhow::Error {
    if let PluginError::Guest {
        error: GuestError::InvalidConfig(message),
        ..
    } = &error
    {
        match config {
            Some(config) => {
                if let Some(located) = locate_config_error(message, &config.display().to_string()) {
                    return anyhow::anyhow!(
                        "{located}\n  ({} refused this configuration{after})",
                        file.display()
                    );
                }
            }
            None => {
                let hint = format!(
                    "{}{after}: this component needs a configuration; \
                     give it with --mapping FILE (for `scripted`, the mapping script)",
                    refused(file, None)
                );
                return anyhow::Error::msg(error.chain()).context(hint);
            }
        }
    }
    anyhow::Error::msg(error.chain()).context(format!("{}{after}", refused(file, config)))
}

/// `mapping script line L:C: message` as `FILE:L:C: message`, or `None`
/// when the message is not located that way.
/// What `plugin load` was given.
struct LoadArgs<'a> {
    file: &'a Path,
    tenant: &'a str,
    name: &'a str,
    config: Option<&'a Path>,
    sample: Option<&'a Path>,
    reference: Option<&'a Path>,
}

async fn load(
    args: LoadArgs<'_>,
    dir: &PluginDir,
    cache: &CacheArgs,
    output: Output,
) -> anyhow::Result<()> {
    let LoadArgs {
        file,
        tenant,
        name,
        config,
        sample,
        reference,
    } = args;
    check_name("tenant", tenant)?;
    check_name("plugin", name)?;
    let files = VersionFiles {
        wasm: read_bytes(file)?,
        config: config.map(read_text).transpose()?,
        sample: sample.map(read_text).transpose()?,
    };
    let parsed_sample = match (&files.sample, sample) {
        (Some(text), Some(path)) => Some(Sample::from_json(&path.display().to_string(), text)?),
        _ => None,
    };
    let runtime = runtime(cache, reference)?;
    let info = runtime
        .load_with(
            tenant,
            name,
            files.wasm.clone(),
            LoadOptions {
                config: files.config.clone(),
                sample: parsed_sample,
                origin: Some(file.display().to_string()),
            },
        )
        .await
        .map_err(|e| refusal(e, file, config, "; nothing was installed"))?;
    let version = info.version.as_str().to_owned();
    dir.keep(tenant, name, &version, &files)?;
    let mut history = dir.history(tenant, name)?;
    history.retain(|v| v != &version);
    history.push(version.clone());
    dir.install(tenant, name, &files)?;
    dir.write_history(tenant, name, &history)?;
    let installed = dir.tenant_dir(tenant).join(format!("{name}.wasm"));
    match output {
        Output::Json => say!(
            "{}",
            serde_json::to_string_pretty(&json!({
                "tenant": tenant,
                "name": name,
                "version": version,
                "installed": installed,
                "versions_kept": history.len(),
                "resources": info.resources,
                "sample": info.sample,
            }))?
        ),
        Output::Text => {
            say!(
                "validated {} ({})",
                file.display(),
                info.resources.join(", ")
            );
            if let Some(sample) = &info.sample {
                say!(
                    "sample: {} records, {} rows, {} rejected",
                    sample.records,
                    sample.rows,
                    sample.rejects
                );
            }
            say!("installed {} version {}", installed.display(), info.version);
            say!("{} versions kept for rollback", history.len());
            say!(
                "a runtime watching {} loads it on its next scan",
                dir.root.display()
            );
        }
    }
    Ok(())
}

fn list(dir: &PluginDir, output: Output) -> anyhow::Result<()> {
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

fn rollback(dir: &PluginDir, tenant: &str, name: &str, output: Output) -> anyhow::Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_configuration_file() {
        let with = refused(
            Path::new("scripted.wasm"),
            Some(Path::new("mappings/a/invoices.toml")),
        );
        assert_eq!(
            with,
            "scripted.wasm configured with mappings/a/invoices.toml is refused"
        );
        assert_eq!(refused(Path::new("x.wasm"), None), "x.wasm is refused");
    }

    #[test]
    fn local_plugins_are_named_after_their_file() {
        assert_eq!(
            plugin_name(Path::new("target/plugins/scripted.wasm"), "test"),
            "scripted"
        );
        assert_eq!(plugin_name(Path::new("my plugin.wasm"), "test"), "test");
        assert_eq!(plugin_name(Path::new(".hidden.wasm"), "check"), "check");
    }

    /// A directory removed on drop (this crate has no `tempfile`).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            let path = std::env::temp_dir().join(format!("mlc-cli-{tag}-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&path);
            std::fs::create_dir_all(&path).unwrap();
            Self(path)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn install_keep_and_roll_back_files() {
        let root = TempDir::new("rollback");
        let dir = PluginDir::new(root.path());
        let v1 = VersionFiles {
            wasm: b"one".to_vec(),
            config: Some("version:v1".into()),
            sample: None,
        };
        let v2 = VersionFiles {
            wasm: b"two".to_vec(),
            config: None,
            sample: Some("[]".into()),
        };
        dir.keep("acme", "items", "aaa1", &v1).unwrap();
        dir.install("acme", "items", &v1).unwrap();
        dir.write_history("acme", "items", &["aaa1".into()])
            .unwrap();
        dir.keep("acme", "items", "bbb2", &v2).unwrap();
        dir.install("acme", "items", &v2).unwrap();
        dir.write_history("acme", "items", &["aaa1".into(), "bbb2".into()])
            .unwrap();
        let served = root.path().join("acme");
        assert_eq!(std::fs::read(served.join("items.wasm")).unwrap(), b"two");
        assert!(!served.join("items.toml").exists());
        assert!(served.join("items.sample.json").exists());

        rollback(&dir, "acme", "items", Output::Json).unwrap();
        assert_eq!(std::fs::read(served.join("items.wasm")).unwrap(), b"one");
        assert_eq!(
            std::fs::read_to_string(served.join("items.toml")).unwrap(),
            "version:v1"
        );
        assert!(!served.join("items.sample.json").exists());
        assert_eq!(
            dir.history("acme", "items").unwrap(),
            vec!["aaa1".to_owned()]
        );
        let err = rollback(&dir, "acme", "items", Output::Json).unwrap_err();
        assert!(err.to_string().contains("no previous version"), "{err}");
        // No temporary files are left behind.
        let leftovers: Vec<_> = std::fs::read_dir(&served)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "{leftovers:?}");
    }
}

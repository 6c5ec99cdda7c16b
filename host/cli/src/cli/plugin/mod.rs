//! `ml-connector plugin new|check|test|load|list|rollback`: scaffold,
//! validate and try mapping plugins locally, and prepare a plugins directory:
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
use mlc_plugin::{
    GuestError, JsonDirReference, LoadOptions, PluginError, PluginRuntime, RuntimeConfig, Sample,
    check_name, locate_config_error, records_of,
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

mod dir;
mod show;

use dir::{PluginDir, VersionFiles, list, rollback};
use show::{describe_compile, info_json, print_batch, print_schema};

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

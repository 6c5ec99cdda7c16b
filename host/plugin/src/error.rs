//! Errors of the plugin runtime.
//!
//! Every failure that concerns one plugin names it through a [`PluginRef`]:
//! tenant, plugin name and version (a prefix of the version hash). wasmtime's
//! own error type never leaves this crate: traps are classified into
//! [`PluginError::Trap`], [`PluginError::Deadline`], [`PluginError::OutOfFuel`]
//! and [`PluginError::MemoryLimit`] where they happen, and anything else is
//! kept as a boxed source.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// A boxed error kept as the source of a [`PluginError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A plugin version: the SHA-256 (hex) of the component bytes followed by its
/// configuration. `Display` shows the first 12 hex digits.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VersionId(Arc<str>);

impl VersionId {
    /// Number of hex digits shown by [`VersionId::short`] and `Display`.
    pub const SHORT_LEN: usize = 12;

    /// Wraps a full hex digest.
    pub fn from_hex(hex: &str) -> Self {
        Self(hex.to_ascii_lowercase().into())
    }

    /// The full hex digest.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The first [`VersionId::SHORT_LEN`] hex digits.
    pub fn short(&self) -> &str {
        self.0.get(..Self::SHORT_LEN).unwrap_or(&self.0)
    }

    /// Whether `prefix` (at least 4 hex digits) starts this version id.
    pub fn matches_prefix(&self, prefix: &str) -> bool {
        prefix.len() >= 4 && self.0.starts_with(&prefix.to_ascii_lowercase())
    }
}

impl serde::Serialize for VersionId {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl fmt::Display for VersionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short())
    }
}

/// Which plugin version an error or a call is about. Cheap to clone.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PluginRef {
    /// The tenant the plugin belongs to.
    pub tenant: Arc<str>,
    /// The plugin's name within the tenant.
    pub plugin: Arc<str>,
    /// The plugin version.
    pub version: VersionId,
}

impl fmt::Display for PluginRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "plugin `{}` version {} of tenant `{}`",
            self.plugin, self.version, self.tenant
        )
    }
}

/// What a plugin reported of its own failure (the WIT `failure` record),
/// kept as the plugin gave it: the cause, the message and where the fault
/// is, each in its own field. The host never reads the message for more;
/// it only names the file a plugin could not know
/// ([`GuestFailure::in_file`]).
///
/// Displays as `FILE:LINE:COL: column "NAME": message`, the form editors
/// and terminals link to, leaving out what is not known (`line L:C: ...`
/// without a file).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct GuestFailure {
    /// The plugin's short machine-readable name of the cause (the scripted
    /// mapper: `script`, `lookup`, ...).
    pub kind: String,
    /// What is wrong, without the location below.
    pub message: String,
    /// The file at fault, when known.
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<u32>,
    /// 1-based character position within the line.
    pub column: Option<u32>,
    /// The output column the failure is about.
    pub output_column: Option<String>,
}

impl GuestFailure {
    /// A failure of `kind` saying `message`, at no particular place.
    pub fn new(kind: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            kind: kind.into(),
            message: message.into(),
            file: None,
            line: None,
            column: None,
            output_column: None,
        }
    }

    /// Whether the plugin said where the fault is (a line).
    pub fn is_located(&self) -> bool {
        self.line.is_some()
    }

    /// The same failure naming `file` when the plugin named none (the
    /// file the configuration was read from).
    pub fn in_file(&self, file: &str) -> Self {
        let mut located = self.clone();
        if located.file.is_none() {
            located.file = Some(file.to_owned());
        }
        located
    }
}

impl fmt::Display for GuestFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let position = match (self.line, self.column) {
            (Some(line), Some(column)) => Some(format!("{line}:{column}")),
            (Some(line), None) => Some(line.to_string()),
            (None, _) => None,
        };
        match (&self.file, position) {
            (Some(file), Some(position)) => write!(f, "{file}:{position}: ")?,
            (Some(file), None) => write!(f, "{file}: ")?,
            (None, Some(position)) => write!(f, "line {position}: ")?,
            (None, None) => {}
        }
        if let Some(column) = &self.output_column {
            write!(f, "column {column:?}: ")?;
        }
        f.write_str(&self.message)
    }
}

/// A failure the plugin itself reported (the WIT `plugin-error`).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GuestError {
    /// The configuration given to `configure` is invalid.
    #[error("invalid configuration: {0}")]
    InvalidConfig(Box<GuestFailure>),
    /// The plugin does not map this resource.
    #[error("unknown resource: {0}")]
    UnknownResource(String),
    /// Anything else.
    #[error("{0}")]
    Internal(Box<GuestFailure>),
}

impl GuestError {
    /// The failure record the plugin gave, unless the resource was unknown.
    pub fn failure(&self) -> Option<&GuestFailure> {
        match self {
            Self::InvalidConfig(failure) | Self::Internal(failure) => Some(failure),
            Self::UnknownResource(_) => None,
        }
    }
}

/// Which output cap a batch exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputMeasure {
    /// Number of rows plus rejects.
    Rows,
    /// Approximate bytes of the lifted output (text bytes plus 16 per value).
    Bytes,
}

impl fmt::Display for OutputMeasure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Rows => "rows",
            Self::Bytes => "bytes",
        })
    }
}

/// Everything that can go wrong loading or running a plugin.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The guest trapped (a panic, an out-of-bounds access, `unreachable`...).
    #[error("{plugin} trapped: {trap}{}", stderr_suffix(.stderr))]
    Trap {
        /// The plugin.
        plugin: PluginRef,
        /// The trap and its wasm backtrace, as wasmtime describes it.
        trap: String,
        /// The last lines the guest wrote to stderr (its panic message).
        stderr: Option<String>,
    },
    /// The call ran past its deadline (epoch interruption).
    #[error("{plugin} ran past its deadline of {deadline:?}")]
    Deadline {
        /// The plugin.
        plugin: PluginRef,
        /// The deadline that was exceeded.
        deadline: Duration,
    },
    /// The call consumed all the fuel it was given.
    #[error("{plugin} ran out of fuel ({fuel} units)")]
    OutOfFuel {
        /// The plugin.
        plugin: PluginRef,
        /// The fuel the call was given.
        fuel: u64,
    },
    /// The guest tried to grow its memory past the cap.
    #[error("{plugin} exceeded its memory limit: asked for {requested} bytes, limit {limit}")]
    MemoryLimit {
        /// The plugin.
        plugin: PluginRef,
        /// The cap, bytes.
        limit: usize,
        /// The size the guest asked to grow to, bytes.
        requested: usize,
    },
    /// The batch output is larger than allowed.
    #[error("{plugin} produced too large an output: {actual} {measure}, limit {limit}")]
    OutputTooLarge {
        /// The plugin.
        plugin: PluginRef,
        /// What was measured.
        measure: OutputMeasure,
        /// The cap.
        limit: usize,
        /// What the batch produced.
        actual: usize,
    },
    /// The rows do not follow the schema the plugin declared.
    #[error("{plugin} broke its own schema for resource `{resource}`: {detail}")]
    SchemaViolation {
        /// The plugin.
        plugin: PluginRef,
        /// The resource being mapped.
        resource: String,
        /// What was wrong (row, column, expected and actual type).
        detail: String,
    },
    /// The declared schema itself is unusable.
    #[error("{plugin} declares an invalid schema for resource `{resource}`: {detail}")]
    InvalidSchema {
        /// The plugin.
        plugin: PluginRef,
        /// The resource.
        resource: String,
        /// What is wrong.
        detail: String,
    },
    /// The plugin returned a `plugin-error`.
    #[error("{plugin} failed: {error}")]
    Guest {
        /// The plugin.
        plugin: PluginRef,
        /// What the plugin said.
        #[source]
        error: GuestError,
    },
    /// The plugin does not map the resource asked for.
    #[error("{plugin} does not map resource `{resource}` (it maps: {})", .known.join(", "))]
    UnknownResource {
        /// The plugin.
        plugin: PluginRef,
        /// The resource asked for.
        resource: String,
        /// The resources the plugin declares.
        known: Vec<String>,
    },
    /// The component imports something outside the mapping world and the
    /// minimal WASI that Rust's wasip2 standard library needs.
    #[error("{plugin} refused: it imports `{import}`, which plugins may not use{}", others_suffix(.others))]
    ForbiddenImport {
        /// The plugin.
        plugin: PluginRef,
        /// The first forbidden import.
        import: String,
        /// Further forbidden imports, if any.
        others: Vec<String>,
    },
    /// The component was built against another version of the plugin
    /// contract.
    #[error(
        "{plugin} refused: it was built against plugin contract ml-connector:mapping@{found}; this runtime speaks {}: rebuild it with the current SDK",
        crate::CONTRACT_VERSION
    )]
    ContractVersion {
        /// The plugin.
        plugin: PluginRef,
        /// The contract version the component imports.
        found: String,
    },
    /// The bytes are not a WebAssembly component, or do not compile.
    #[error("{plugin} does not compile")]
    Compile {
        /// The plugin.
        plugin: PluginRef,
        /// wasmtime's description.
        #[source]
        source: BoxError,
    },
    /// The compile worker ran past one of its OS limits
    /// ([`crate::CompileLimits`]) and was stopped: this upload alone is
    /// refused, nothing is cached.
    #[error("{plugin} refused: compiling it ran past the compile worker's {limit} limit of {limit_value}{}", worker_stderr_suffix(.detail))]
    CompileLimit {
        /// The plugin.
        plugin: PluginRef,
        /// `cpu-seconds`, `address-space`, `wall-clock` or `artifact-size`.
        limit: &'static str,
        /// The limit, with its unit (`2 s`, `1073741824 bytes`).
        limit_value: String,
        /// The last lines the worker wrote to stderr, if any.
        detail: Option<String>,
    },
    /// The compile worker could not be started or ended in a way that
    /// names no limit (a crash, a protocol error).
    #[error("{plugin}: the compile worker failed: {detail}")]
    CompileWorker {
        /// The plugin.
        plugin: PluginRef,
        /// What happened.
        detail: String,
    },
    /// The component's shape is over one of the instance-shape limits
    /// ([`crate::ShapeLimits`]): refused at load, before it is compiled
    /// or instantiated.
    #[error("{plugin} refused: {where_} has {actual} {limit}, over the limit of {max}")]
    ShapeLimit {
        /// The plugin.
        plugin: PluginRef,
        /// The limit: `tables`, `table-elements`, `memories`, `globals`,
        /// `functions`, `data-bytes`, `core-modules`, `core-instances`.
        limit: &'static str,
        /// Which part of the component (`core module 2`, `the component`).
        where_: String,
        /// What it has.
        actual: u64,
        /// The limit.
        max: u64,
    },
    /// The component does not export the mapping world.
    #[error("{plugin} does not implement world `ml-connector:mapping/mapping@0.3.0`")]
    Incompatible {
        /// The plugin.
        plugin: PluginRef,
        /// wasmtime's description of the mismatch.
        #[source]
        source: BoxError,
    },
    /// The component could not be instantiated for a call.
    #[error("{plugin} could not be instantiated")]
    Instantiate {
        /// The plugin.
        plugin: PluginRef,
        /// wasmtime's description.
        #[source]
        source: BoxError,
    },
    /// The validation sample failed to map: the component is refused.
    #[error("{plugin} refused: its sample batch for resource `{resource}` failed")]
    Sample {
        /// The plugin.
        plugin: PluginRef,
        /// The resource the sample was mapped as.
        resource: String,
        /// Why the batch failed.
        #[source]
        source: Box<PluginError>,
    },
    /// Every record of the validation sample was rejected.
    #[error(
        "{plugin} refused: all {count} sample records for resource `{resource}` were rejected (first: {first})"
    )]
    SampleRejected {
        /// The plugin.
        plugin: PluginRef,
        /// The resource.
        resource: String,
        /// Number of sample records.
        count: usize,
        /// The first reject's reason.
        first: String,
    },
    /// A validation sample file is not a JSON array (or object of arrays).
    #[error("invalid sample {origin}: {detail}")]
    BadSample {
        /// Where the sample came from (a path or "inline").
        origin: String,
        /// What is wrong.
        detail: String,
    },
    /// No plugin of that name is loaded for the tenant.
    #[error("no plugin `{plugin}` is loaded for tenant `{tenant}`")]
    NotFound {
        /// The tenant.
        tenant: String,
        /// The plugin name.
        plugin: String,
    },
    /// No version to roll back to, or no version with that id.
    #[error("plugin `{plugin}` of tenant `{tenant}`: {detail}")]
    NoSuchVersion {
        /// The tenant.
        tenant: String,
        /// The plugin name.
        plugin: String,
        /// What was asked for.
        detail: String,
    },
    /// A tenant or plugin name that cannot be used (empty, path characters).
    #[error("invalid {what} name {name:?}: use letters, digits, '-', '_' and '.' (not leading)")]
    InvalidName {
        /// `tenant` or `plugin`.
        what: &'static str,
        /// The name given.
        name: String,
    },
    /// An upload is over its limit ([`crate::UploadLimits`]); nothing was
    /// compiled.
    #[error("{plugin}: the {what} is {size} {unit}, over the limit of {limit} {unit}", unit = size_unit(.what))]
    TooLarge {
        /// The plugin.
        plugin: PluginRef,
        /// `component`, `configuration`, `sample` (bytes of record text) or
        /// `sample records` (a count).
        what: &'static str,
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// A tenant already has as many plugins as it may.
    #[error(
        "tenant `{tenant}` already has {limit} plugins, the most it may have: plugin `{name}` is not loaded"
    )]
    TooManyPlugins {
        /// The tenant.
        tenant: String,
        /// The plugin refused.
        name: String,
        /// The limit.
        limit: usize,
    },
    /// The runtime configuration or limits are unusable.
    #[error("invalid plugin runtime configuration: {0}")]
    Config(String),
    /// The wasmtime engine could not be set up.
    #[error("cannot set up the WebAssembly engine")]
    Engine(#[source] BoxError),
    /// A file of the plugins directory or compile cache could not be used.
    #[error("{}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A blocking task of the runtime panicked or was cancelled.
    #[error("plugin runtime task failed: {0}")]
    Task(String),
}

fn stderr_suffix(stderr: &Option<String>) -> String {
    match stderr {
        Some(text) if !text.is_empty() => format!(" (guest stderr: {text})"),
        _ => String::new(),
    }
}

fn size_unit(what: &str) -> &'static str {
    if what == "sample records" {
        "records"
    } else {
        "bytes"
    }
}

fn worker_stderr_suffix(stderr: &Option<String>) -> String {
    match stderr {
        Some(text) if !text.is_empty() => format!(" (worker stderr: {text})"),
        _ => String::new(),
    }
}

fn others_suffix(others: &[String]) -> String {
    if others.is_empty() {
        String::new()
    } else {
        format!(" (also: {})", others.join(", "))
    }
}

impl PluginError {
    /// The plugin this error is about, when it is about one version.
    pub fn plugin(&self) -> Option<&PluginRef> {
        match self {
            Self::Trap { plugin, .. }
            | Self::Deadline { plugin, .. }
            | Self::OutOfFuel { plugin, .. }
            | Self::MemoryLimit { plugin, .. }
            | Self::OutputTooLarge { plugin, .. }
            | Self::SchemaViolation { plugin, .. }
            | Self::InvalidSchema { plugin, .. }
            | Self::Guest { plugin, .. }
            | Self::UnknownResource { plugin, .. }
            | Self::ForbiddenImport { plugin, .. }
            | Self::ContractVersion { plugin, .. }
            | Self::Compile { plugin, .. }
            | Self::CompileLimit { plugin, .. }
            | Self::CompileWorker { plugin, .. }
            | Self::ShapeLimit { plugin, .. }
            | Self::Incompatible { plugin, .. }
            | Self::Instantiate { plugin, .. }
            | Self::Sample { plugin, .. }
            | Self::SampleRejected { plugin, .. }
            | Self::TooLarge { plugin, .. } => Some(plugin),
            Self::BadSample { .. }
            | Self::NotFound { .. }
            | Self::NoSuchVersion { .. }
            | Self::InvalidName { .. }
            | Self::TooManyPlugins { .. }
            | Self::Config(_)
            | Self::Engine(_)
            | Self::Io { .. }
            | Self::Task(_) => None,
        }
    }

    /// A short machine-readable name of the cause (`trap`, `deadline`,
    /// `out-of-fuel`, ...), for metrics and JSON output.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Trap { .. } => "trap",
            Self::Deadline { .. } => "deadline",
            Self::OutOfFuel { .. } => "out-of-fuel",
            Self::MemoryLimit { .. } => "memory-limit",
            Self::OutputTooLarge { .. } => "output-too-large",
            Self::SchemaViolation { .. } => "schema-violation",
            Self::InvalidSchema { .. } => "invalid-schema",
            Self::Guest { .. } => "guest",
            Self::UnknownResource { .. } => "unknown-resource",
            Self::ForbiddenImport { .. } => "forbidden-import",
            Self::ContractVersion { .. } => "contract-version",
            Self::Compile { .. } => "compile",
            Self::CompileLimit { .. } => "compile-limit",
            Self::CompileWorker { .. } => "compile-worker",
            Self::ShapeLimit { .. } => "shape-limit",
            Self::Incompatible { .. } => "incompatible",
            Self::Instantiate { .. } => "instantiate",
            Self::Sample { .. } => "sample",
            Self::SampleRejected { .. } => "sample-rejected",
            Self::BadSample { .. } => "bad-sample",
            Self::NotFound { .. } => "not-found",
            Self::NoSuchVersion { .. } => "no-such-version",
            Self::InvalidName { .. } => "invalid-name",
            Self::TooLarge { .. } => "too-large",
            Self::TooManyPlugins { .. } => "too-many-plugins",
            Self::Config(_) => "config",
            Self::Engine(_) => "engine",
            Self::Io { .. } => "io",
            Self::Task(_) => "task",
        }
    }

    /// What the plugin itself reported, when this error is its own
    /// failure or a sample batch that failed with one.
    pub fn guest_failure(&self) -> Option<&GuestFailure> {
        match self {
            Self::Guest { error, .. } => error.failure(),
            Self::Sample { source, .. } => source.guest_failure(),
            _ => None,
        }
    }

    /// The error with its whole source chain on one line.
    pub fn chain(&self) -> String {
        let mut text = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            // Several variants already show their source in their own
            // message; a cause is added only when it says something new.
            let cause_text = cause.to_string();
            if !text.ends_with(&cause_text) {
                text.push_str(": ");
                text.push_str(&cause_text);
            }
            source = cause.source();
        }
        text
    }
}

/// A configuration error read from `file`, as `FILE:LINE:COL: message`,
/// when the plugin located it (a line); `None` otherwise. The location is
/// the plugin's own data: nothing is read out of its message.
pub fn locate_config_error(failure: &GuestFailure, file: &str) -> Option<String> {
    failure
        .is_located()
        .then(|| failure.in_file(file).to_string())
}

/// Turns a wasmtime error into a boxed source, keeping its context chain.
pub(crate) fn boxed(error: wasmtime::Error) -> BoxError {
    Box::new(WasmtimeError(format!("{error:#}")))
}

/// wasmtime's error text, kept as a `std::error::Error` source.
#[derive(Debug)]
struct WasmtimeError(String);

impl fmt::Display for WasmtimeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for WasmtimeError {}

#[cfg(test)]
mod tests {
    use super::*;

    fn plugin() -> PluginRef {
        PluginRef {
            tenant: "acme".into(),
            plugin: "gl".into(),
            version: VersionId::from_hex("0123456789abcdef0123"),
        }
    }

    #[test]
    fn messages_name_tenant_plugin_and_version() {
        let err = PluginError::Deadline {
            plugin: plugin(),
            deadline: Duration::from_millis(250),
        };
        assert_eq!(
            err.to_string(),
            "plugin `gl` version 0123456789ab of tenant `acme` ran past its deadline of 250ms"
        );
        assert_eq!(err.kind(), "deadline");
        let err = PluginError::Trap {
            plugin: plugin(),
            trap: "wasm trap: unreachable".into(),
            stderr: Some("panicked at src/lib.rs:3:5: boom".into()),
        };
        assert!(
            err.to_string()
                .ends_with("(guest stderr: panicked at src/lib.rs:3:5: boom)")
        );
        let err = PluginError::ForbiddenImport {
            plugin: plugin(),
            import: "wasi:filesystem/types@0.2.6".into(),
            others: vec!["wasi:filesystem/preopens@0.2.6".into()],
        };
        assert!(
            err.to_string()
                .contains("imports `wasi:filesystem/types@0.2.6`, which plugins may not use (also: wasi:filesystem/preopens@0.2.6)"),
            "{err}"
        );
    }

    #[test]
    fn chain_includes_sources() {
        let err = PluginError::Sample {
            plugin: plugin(),
            resource: "items".into(),
            source: Box::new(PluginError::OutOfFuel {
                plugin: plugin(),
                fuel: 10,
            }),
        };
        let chain = err.chain();
        assert!(
            chain.contains("sample batch for resource `items` failed: "),
            "{chain}"
        );
        assert!(chain.ends_with("ran out of fuel (10 units)"), "{chain}");
    }

    #[test]
    fn chain_does_not_repeat_a_cause_the_message_shows() {
        let err = PluginError::Guest {
            plugin: plugin(),
            error: GuestError::InvalidConfig(Box::new(GuestFailure {
                line: Some(5),
                column: Some(8),
                ..GuestFailure::new("script", "unknown type")
            })),
        };
        assert_eq!(err.chain(), err.to_string());
        assert_eq!(
            err.chain().matches("unknown type").count(),
            1,
            "{}",
            err.chain()
        );
        let io = PluginError::Io {
            path: "/p/x.wasm".into(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(io.chain(), "/p/x.wasm: gone");
    }

    #[test]
    fn failures_show_their_location_as_data() {
        let failure = GuestFailure {
            line: Some(11),
            column: Some(8),
            output_column: Some("Invoice Amount".into()),
            ..GuestFailure::new("script", "type \"decimal(18)\"")
        };
        assert_eq!(
            failure.to_string(),
            "line 11:8: column \"Invoice Amount\": type \"decimal(18)\""
        );
        let file = "mappings/demo/invoices.toml";
        let located =
            "mappings/demo/invoices.toml:11:8: column \"Invoice Amount\": type \"decimal(18)\"";
        assert_eq!(failure.in_file(file).to_string(), located);
        assert_eq!(
            locate_config_error(&failure, file).as_deref(),
            Some(located)
        );
        // A file the plugin named is kept.
        let named = GuestFailure {
            file: Some("lib/common.toml".into()),
            ..failure.clone()
        };
        assert!(
            named
                .in_file(file)
                .to_string()
                .starts_with("lib/common.toml:11:8: ")
        );
        // A line without a column, a file without a line.
        let line_only = GuestFailure {
            line: Some(3),
            ..GuestFailure::new("config", "bad")
        };
        assert_eq!(
            line_only.in_file(file).to_string(),
            format!("{file}:3: bad")
        );
        let unlocated = GuestFailure::new("config", "mapping script line 3:4: looks located");
        assert_eq!(
            unlocated.in_file(file).to_string(),
            format!("{file}: mapping script line 3:4: looks located")
        );
        // Not located: the message's text is never read for a position.
        assert_eq!(locate_config_error(&unlocated, file), None);
        assert_eq!(
            serde_json::to_value(&failure).unwrap(),
            serde_json::json!({
                "kind": "script",
                "message": "type \"decimal(18)\"",
                "file": null,
                "line": 11,
                "column": 8,
                "output_column": "Invoice Amount",
            })
        );
    }

    #[test]
    fn the_guest_failure_is_found_under_a_sample() {
        let failure = GuestFailure::new("lookup", "reference data `suppliers` unavailable");
        let err = PluginError::Sample {
            plugin: plugin(),
            resource: "items".into(),
            source: Box::new(PluginError::Guest {
                plugin: plugin(),
                error: GuestError::Internal(Box::new(failure.clone())),
            }),
        };
        assert_eq!(err.guest_failure(), Some(&failure));
        let unknown = PluginError::Guest {
            plugin: plugin(),
            error: GuestError::UnknownResource("x".into()),
        };
        assert_eq!(unknown.guest_failure(), None);
    }

    #[test]
    fn version_prefixes() {
        let v = VersionId::from_hex("abcdef0123456789");
        assert_eq!(v.short(), "abcdef012345");
        assert!(v.matches_prefix("ABCD"));
        assert!(!v.matches_prefix("abc"));
        assert!(!v.matches_prefix("abce"));
    }
}

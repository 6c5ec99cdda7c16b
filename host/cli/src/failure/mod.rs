//! How a failed command ends: its class (the process exit code), a stable
//! snake_case code, what happened, its causes and, where there is one, the
//! command that fixes it (the hint). Printed on stderr as text, or as one
//! JSON object with `--output json`.
//!
//! | exit | class |
//! |------|-------|
//! | 0 | success |
//! | 1 | runtime failure (a cycle failed, a store is locked or damaged, the listen address is taken, ...) |
//! | 2 | usage (clap: an unknown flag, a missing argument) |
//! | 3 | configuration or validation (tenant file, mapping, secret, master key, credentials, hyperd or plugins not installed) |
//! | 4 | not reachable (Oracle, Tableau or a running `serve` did not answer) |
//!
//! The class is found by [`classify`], which walks the error chain and
//! looks at the libraries' typed errors (and the CLI's own, [`CliError`]);
//! it never reads the messages.

mod classify;

use std::path::PathBuf;
use std::process::ExitCode;

pub use classify::classify;

use crate::cli::Output;

/// The class of a failure; each is one exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitKind {
    /// 1: the command ran and something failed.
    Runtime,
    /// 2: the command line is wrong.
    Usage,
    /// 3: a configuration or an input is invalid, or something needed is
    /// not set up.
    Config,
    /// 4: a service did not answer.
    Unreachable,
}

impl ExitKind {
    /// The process exit code.
    pub fn code(self) -> u8 {
        match self {
            Self::Runtime => 1,
            Self::Usage => 2,
            Self::Config => 3,
            Self::Unreachable => 4,
        }
    }
}

/// What [`classify`] made of an error.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Diagnosis {
    /// The class.
    pub kind: ExitKind,
    /// A stable snake_case name of the failure.
    pub code: &'static str,
    /// The command (or the change) that fixes it, when one is known.
    pub hint: Option<String>,
}

impl Diagnosis {
    /// A diagnosis with a hint.
    pub fn new(kind: ExitKind, code: &'static str, hint: impl Into<String>) -> Self {
        Self {
            kind,
            code,
            hint: Some(hint.into()),
        }
    }

    /// A diagnosis without a hint.
    pub fn bare(kind: ExitKind, code: &'static str) -> Self {
        Self {
            kind,
            code,
            hint: None,
        }
    }
}

/// Failures the CLI finds itself, as typed errors so that [`classify`] can
/// tell them apart. Raise one as the error itself (`Err(CliError::…)?`),
/// or as the outermost context: a context further down the chain is a link
/// of anyhow's wrapper type, which does not downcast to it.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The `scripted` mapper component was never built.
    #[error(
        "the scripted mapper {} is missing: build it with `cargo xtask build-plugins`, or pass --scripted FILE",
        .path.display()
    )]
    PluginsNotBuilt {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A command names a tenant that was never applied.
    #[error(
        "tenant `{tenant}` is not in {}: apply it with `ml-connector tenant apply FILE`",
        .data_dir.display()
    )]
    TenantNotListed {
        /// The tenant.
        tenant: String,
        /// The data directory.
        data_dir: PathBuf,
    },
    /// No usable admin token.
    #[error(
        "an admin token of at least {min} characters is needed: set ML_CONNECTOR_ADMIN_TOKEN or pass --admin-token-file FILE (e.g. `openssl rand -hex 32 > admin-token`)"
    )]
    AdminTokenMissing {
        /// The shortest accepted.
        min: usize,
    },
    /// The address to listen on is taken (checked before anything starts).
    #[error(
        "cannot listen on {addr}: {source}; pass another address, e.g. `--listen 127.0.0.1:8090`"
    )]
    ListenTaken {
        /// The address.
        addr: std::net::SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A batch, pipeline or other named thing the command line names does
    /// not exist; the text says which, and where to list them.
    #[error("{0}")]
    NotFound(String),
    /// A name given on the command line breaks its rule.
    #[error("`{name}` is not a {what} name: {rule}")]
    InvalidName {
        /// What it names (`plugin`, ...).
        what: &'static str,
        /// The name given.
        name: String,
        /// The rule, with an example.
        rule: &'static str,
    },
    /// A running `serve`'s admin API did not answer.
    #[error("the server at {url} is not reachable: {reason}")]
    ServerUnreachable {
        /// Its URL.
        url: String,
        /// What the HTTP client said.
        reason: String,
    },
    /// Some pipelines of a `sync` failed; the first failure is the cause
    /// (and decides the class).
    #[error(
        "{failed} of {total} pipelines failed; the failed batches resume at the next `sync` (see `ml-connector batches {tenant} --state failed`)"
    )]
    PipelinesFailed {
        /// How many failed.
        failed: usize,
        /// How many ran.
        total: usize,
        /// The tenant.
        tenant: String,
        /// The first pipeline's error.
        #[source]
        first: Cause,
    },
}

/// An error kept as the cause of another; it reads exactly as the error it
/// wraps, and [`classify`] looks into it.
#[derive(Debug)]
pub struct Cause(pub anyhow::Error);

impl std::fmt::Display for Cause {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for Cause {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// A mapping (a plugin or its configuration) the plugin runtime refused;
/// it reads exactly as the refusal it wraps.
#[derive(Debug)]
pub struct MappingRefused(pub anyhow::Error);

impl std::fmt::Display for MappingRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.0, f)
    }
}

impl std::error::Error for MappingRefused {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.0.source()
    }
}

/// Prints `error` on stderr (text, or one JSON object) and gives the exit
/// code of its class.
pub fn report(error: &anyhow::Error, output: Output) -> ExitCode {
    let diagnosis = classify(error);
    let message = error.to_string();
    let causes: Vec<String> = error.chain().skip(1).map(|c| c.to_string()).collect();
    print(output, &diagnosis, &message, &causes);
    ExitCode::from(diagnosis.kind.code())
}

/// Reports a command line clap refused (exit 2), or prints the help or
/// version clap was asked for (exit 0). The output format is read from the
/// same command line (`--output json`, or `ML_CONNECTOR_OUTPUT`) as far as
/// clap can make it out.
pub fn usage(error: clap::Error) -> ExitCode {
    if !error.use_stderr() {
        // --help, --version: not a failure.
        let _ = error.print();
        return ExitCode::SUCCESS;
    }
    if output_asked() == Output::Text {
        let _ = error.print();
        return ExitCode::from(ExitKind::Usage.code());
    }
    // clap's first paragraph (the error and what it names), on one line.
    let text = error.render().to_string();
    let message = text
        .lines()
        .map(str::trim)
        .skip_while(|l| l.is_empty())
        .take_while(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let message = message.trim_start_matches("error: ").to_owned();
    let diagnosis = Diagnosis::new(
        ExitKind::Usage,
        "usage",
        "see `ml-connector --help` (or `ml-connector COMMAND --help`)",
    );
    print(Output::Json, &diagnosis, &message, &[]);
    ExitCode::from(ExitKind::Usage.code())
}

/// The `--output` a command line asked for, when clap can tell despite the
/// error; text otherwise.
fn output_asked() -> Output {
    use clap::CommandFactory;
    crate::cli::Cli::command()
        .ignore_errors(true)
        .try_get_matches()
        .ok()
        .and_then(|m| m.try_get_one::<Output>("output").ok().flatten().copied())
        .unwrap_or(Output::Text)
}

/// One failure, as text or JSON, on stderr.
fn print(output: Output, diagnosis: &Diagnosis, message: &str, causes: &[String]) {
    match output {
        Output::Json => {
            let doc = serde_json::json!({"error": {
                "code": diagnosis.code,
                "exit": diagnosis.kind.code(),
                "message": message,
                "causes": causes,
                "hint": diagnosis.hint,
            }});
            eprintln!("{doc}");
        }
        Output::Text => {
            eprintln!("error: {message}");
            for cause in causes {
                eprintln!("  caused by: {cause}");
            }
            if let Some(hint) = &diagnosis.hint {
                eprintln!("hint: {hint}");
            }
        }
    }
}

//! What the operator-facing tests share (operator_cli, newcomer_errors): a
//! scratch data directory and master key without sandboxes, the CLI run with
//! only the `ML_CONNECTOR_*` variables a test gives it, a tenant file whose
//! services are all on a closed port, and checks of the exit code and of
//! the error report in text and in JSON.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};

use super::explain;

/// A data directory and a master key; nothing listens anywhere.
pub struct Scratch {
    /// The scratch directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The master key (base64).
    pub master_key: String,
}

impl Default for Scratch {
    fn default() -> Self {
        Self::new()
    }
}

impl Scratch {
    /// A new scratch directory and key.
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().expect("scratch dir"),
            master_key: mlc_store::MasterKey::generate_base64().expose().to_owned(),
        }
    }

    /// The CLI in the scratch directory, with none of the test process's
    /// `ML_CONNECTOR_*` variables but the Python used to find hyperd, and
    /// with this scratch's data directory and key.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
        for (name, _) in std::env::vars_os() {
            let keep = name == "ML_CONNECTOR_PYTHON" || name == "ML_CONNECTOR_PLUGINS_BUILT";
            if name.to_string_lossy().starts_with("ML_CONNECTOR_") && !keep {
                c.env_remove(&name);
            }
        }
        c.current_dir(self.dir.path())
            .env_remove("RUST_LOG")
            .env_remove("NO_COLOR")
            .env("ML_CONNECTOR_DATA", self.dir.path().join("data"))
            .env("ML_CONNECTOR_MASTER_KEY", &self.master_key)
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI with `env` added.
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut c = self.command(args);
        c.envs(env.iter().copied());
        c.output()
            .unwrap_or_else(|e| panic!("running ml-connector {args:?}: {e}"))
    }

    /// Runs the CLI.
    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs the CLI with `stdin`, asserting success.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) {
        let out = super::with_stdin(self.command(args), args, stdin);
        assert!(
            out.status.success(),
            "ml-connector {args:?}: {}",
            explain(&out)
        );
    }

    /// Runs the CLI, asserting success; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ml-connector {args:?}: {}",
            explain(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// A file in the scratch directory.
    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("writing a scratch file");
        path
    }

    /// Applies tenant `acme` with every URL on `port` (where nothing
    /// listens), the authorization-code grant, no pipelines, and its Oracle
    /// client secret set.
    pub fn apply_unreachable_tenant(&self, port: u16) {
        let file = self.write("acme.toml", &unreachable_tenant_toml(port));
        self.ok(&["tenant", "apply", file.to_str().expect("utf-8 path")]);
        self.ok_with_stdin(
            &["secret", "set", "acme", "oracle-client-secret"],
            "a-client-secret-value",
        );
    }
}

/// A tenant file whose Oracle and Tableau are at `127.0.0.1:port`.
pub fn unreachable_tenant_toml(port: u16) -> String {
    format!(
        r#"id = "acme"

[oracle]
url = "http://127.0.0.1:{port}"
token_url = "http://127.0.0.1:{port}/oauth2/v1/token"
client_id = "client"
client_secret = "secret:oracle-client-secret"
scope = "urn:opc:resource:fusion"
grant = "authorization_code"
authorize_url = "http://127.0.0.1:{port}/oauth2/v1/authorize"
redirect_uri = "http://127.0.0.1:{port}/callback"

[tableau]
url = "http://127.0.0.1:{port}"
site = "site"
project = "project"
pat_name = "pat"
pat_secret = "secret:tableau-pat"
"#
    )
}

/// A loopback port nothing listens on (bound, then released).
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Asserts the exit code.
pub fn assert_exit(out: &Output, code: i32, what: &str) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what}: expected exit code {code}: {}",
        explain(out)
    );
}

/// The error object of a failed `--output json` run, checked for its shape:
/// stderr is JSON lines (logs, if any, are JSON too) and exactly one of them,
/// the last, is `{"error":{code,exit,message,causes,hint}}`.
pub fn error_json(out: &Output, what: &str) -> serde_json::Value {
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| {
                panic!(
                    "{what}: a stderr line is not JSON ({e}): {l}\n{}",
                    explain(out)
                )
            })
        })
        .collect();
    let errors = lines.iter().filter(|l| l.get("error").is_some()).count();
    assert_eq!(
        errors,
        1,
        "{what}: exactly one error object: {}",
        explain(out)
    );
    let doc = lines.last().cloned().unwrap_or_default();
    let error = doc["error"]
        .as_object()
        .unwrap_or_else(|| panic!("{what}: no `error` object: {}", explain(out)));
    let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        ["causes", "code", "exit", "hint", "message"],
        "{what}: the error's fields: {}",
        explain(out)
    );
    let code = error["code"].as_str().unwrap_or_default();
    assert!(
        !code.is_empty() && code.chars().all(|c| c.is_ascii_lowercase() || c == '_'),
        "{what}: code must be snake_case: {}",
        explain(out)
    );
    assert_eq!(
        error["exit"].as_i64().map(|e| e as i32),
        out.status.code(),
        "{what}: `exit` must be the exit code: {}",
        explain(out)
    );
    assert!(
        error["message"].is_string(),
        "{what}: message: {}",
        explain(out)
    );
    assert!(
        error["causes"]
            .as_array()
            .is_some_and(|c| c.iter().all(serde_json::Value::is_string)),
        "{what}: causes must be strings: {}",
        explain(out)
    );
    assert!(
        error["hint"].is_string() || error["hint"].is_null(),
        "{what}: hint: {}",
        explain(out)
    );
    doc["error"].clone()
}

/// What a failure must say, in text and in JSON.
pub struct Expected<'a> {
    /// The exit code.
    pub exit: i32,
    /// The JSON `code`.
    pub code: &'a str,
    /// Text the message or its causes must hold.
    pub says: &'a [&'a str],
    /// Text the hint must hold.
    pub hint: &'a [&'a str],
}

/// Runs `run` with `args` as given (text) and again after `--output json`,
/// and checks both reports against `expected`; the text run's stderr.
pub fn assert_reports(
    what: &str,
    args: &[&str],
    run: impl Fn(&[&str]) -> Output,
    expected: &Expected<'_>,
) -> String {
    let text = run(args);
    assert_exit(&text, expected.exit, what);
    let stderr = String::from_utf8_lossy(&text.stderr).into_owned();
    assert!(
        stderr.lines().any(|l| l.starts_with("error: ")),
        "{what}: an `error: ` line: {}",
        explain(&text)
    );
    for needle in expected.says {
        assert!(
            stderr.contains(needle),
            "{what}: should say `{needle}`: {}",
            explain(&text)
        );
    }
    let hint_line = stderr
        .lines()
        .find_map(|l| l.strip_prefix("hint: "))
        .unwrap_or_else(|| panic!("{what}: a `hint:` line: {}", explain(&text)));
    for needle in expected.hint {
        assert!(
            hint_line.contains(needle),
            "{what}: the hint should say `{needle}`: {}",
            explain(&text)
        );
    }

    let mut json_args = vec!["--output", "json"];
    json_args.extend_from_slice(args);
    let json = run(&json_args);
    assert_exit(&json, expected.exit, &format!("{what} (json)"));
    let error = error_json(&json, &format!("{what} (json)"));
    assert_eq!(
        error["code"],
        expected.code,
        "{what}: code: {}",
        explain(&json)
    );
    let said = std::iter::once(&error["message"])
        .chain(error["causes"].as_array().into_iter().flatten())
        .filter_map(serde_json::Value::as_str)
        .collect::<Vec<_>>()
        .join("\n");
    for needle in expected.says {
        assert!(
            said.contains(needle),
            "{what} (json): should say `{needle}`: {error:#}"
        );
    }
    let hint = error["hint"].as_str().unwrap_or_default();
    for needle in expected.hint {
        assert!(
            hint.contains(needle),
            "{what} (json): the hint should say `{needle}`: {error:#}"
        );
    }
    stderr
}

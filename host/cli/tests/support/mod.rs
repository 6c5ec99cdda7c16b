//! What the durable-runtime CLI tests share: both sandboxes started in the
//! test process (real HTTP over loopback, the real hyperd behind the
//! Tableau sandbox), a scratch data directory, a master key, the demo
//! mapping scripts copied under `<scratch>/mappings/<tenant>/`, a tenant
//! file written for the sandboxes, and the real `ml-connector` binary run
//! as a child process against them.
//!
//! Each test file `mod support;`s this; not every file uses every helper.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use mlc_sandbox_oracle::{OracleSandbox, SandboxConfig};
use mlc_sandbox_tableau::{TableauSandbox, TableauSandboxConfig};

/// Every pipeline of the demo tenant: (id, resource, script file).
pub const ALL_PIPELINES: [(&str, &str, &str); 8] = [
    ("invoices", "invoices", "invoices.toml"),
    ("invoice-lines", "invoices", "invoice-lines.toml"),
    ("payments", "payablesPayments", "payablesPayments.toml"),
    ("suppliers", "suppliers", "suppliers.toml"),
    ("purchase-orders", "purchaseOrders", "purchaseOrders.toml"),
    (
        "receivables",
        "receivablesInvoices",
        "receivablesInvoices.toml",
    ),
    ("journals", "journalBatches", "journalBatches.toml"),
    (
        "accounts",
        "accountCombinationsLOV",
        "accountCombinationsLOV.toml",
    ),
];

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap_or_else(|e| panic!("workspace root: {e}"))
}

/// The staged `scripted` mapper.
pub fn scripted_wasm() -> PathBuf {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"));
    let path = dir.join("scripted.wasm");
    assert!(
        path.exists(),
        "{} is missing: run `cargo xtask build-plugins` (or set ML_CONNECTOR_PLUGINS_BUILT)",
        path.display()
    );
    path
}

/// Runs `cmd` (the CLI with `args`) with `stdin` as its input.
pub fn with_stdin(mut cmd: Command, args: &[&str], stdin: &str) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running ml-connector {args:?}: {e}"));
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("writing stdin");
    child.wait_with_output().expect("waiting")
}

/// Status, stdout and stderr of a finished command, for assertion messages.
pub fn explain(out: &Output) -> String {
    format!(
        "status {}\n--- stdout\n{}\n--- stderr\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// One test's world: sandboxes, a data directory, a key, mappings.
pub struct World {
    /// Scratch directory (removed on drop).
    pub dir: tempfile::TempDir,
    /// The Oracle Fusion sandbox.
    pub oracle: OracleSandbox,
    /// The Tableau sandbox.
    pub tableau: TableauSandbox,
    /// The master key (base64), given to the CLI in its environment.
    pub master_key: String,
}

impl World {
    /// Starts both sandboxes with these configurations (the Tableau data
    /// directory is placed in the scratch directory).
    pub async fn start(oracle: SandboxConfig, tableau: TableauSandboxConfig) -> Self {
        let dir = tempfile::tempdir().expect("scratch dir");
        let oracle = OracleSandbox::start(oracle)
            .await
            .unwrap_or_else(|e| panic!("starting the Oracle sandbox: {e}"));
        let tableau = TableauSandbox::start(TableauSandboxConfig {
            data_dir: dir.path().join("tableau"),
            ..tableau
        })
        .await
        .unwrap_or_else(|e| panic!("starting the Tableau sandbox: {e}"));
        let master_key = mlc_store::MasterKey::generate_base64().expose().to_owned();
        Self {
            dir,
            oracle,
            tableau,
            master_key,
        }
    }

    /// The data directory the CLI uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The mappings directory the CLI uses.
    pub fn mappings_dir(&self) -> PathBuf {
        self.dir.path().join("mappings")
    }

    /// Copies the demo mapping scripts (and samples) as `tenant`'s.
    pub fn copy_demo_mappings(&self, tenant: &str) {
        let from = workspace().join("mappings/demo");
        let to = self.mappings_dir().join(tenant);
        std::fs::create_dir_all(to.join("samples")).expect("mappings dir");
        for sub in ["", "samples"] {
            for entry in std::fs::read_dir(from.join(sub)).expect("demo mappings") {
                let path = entry.expect("entry").path();
                if path.is_file() {
                    let name = path.file_name().expect("name");
                    std::fs::copy(&path, to.join(sub).join(name)).expect("copy mapping");
                }
            }
        }
    }

    /// The text of a tenant file for the sandboxes, with the demo's
    /// reference datasets and `pipelines` (id, resource, script).
    pub fn tenant_toml(&self, tenant: &str, pipelines: &[(&str, &str, &str)]) -> String {
        let base = self.oracle.base_url();
        let url = base
            .split("/fscmRestApi")
            .next()
            .unwrap_or(&base)
            .to_owned();
        let mut s = format!(
            r#"id = "{tenant}"

[oracle]
url = "{url}"
token_url = "{token}"
client_id = "{client}"
client_secret = "secret:oracle-client-secret"
scope = "{scope}"

[tableau]
url = "{tab}"
site = "{site}"
project = "{project}"
pat_name = "{pat}"
pat_secret = "secret:tableau-pat"

[reference]
suppliers = true
account_combination_segments = ["entity", "department", "account", "subAccount", "location"]

[reference.value_sets]
companies = "CORP_ENTITY"
cost-centers = "CORP_COST_CENTER"
accounts = "CORP_ACCOUNT"
"#,
            token = self.oracle.token_url(),
            client = self.oracle.client_id(),
            scope = self.oracle.scope(),
            tab = self.tableau.server_url(),
            site = self.tableau.site_content_url(),
            project = self.tableau.project_name(),
            pat = self.tableau.pat_name(),
        );
        for (id, resource, script) in pipelines {
            s.push_str(&format!(
                "\n[[pipeline]]\nid = \"{id}\"\nresource = \"{resource}\"\ndatasource = \"{}\"\nmapping = \"{script}\"\n",
                datasource_name(tenant, id)
            ));
        }
        s
    }

    /// Writes the tenant file, copies the demo mappings, applies it and sets
    /// both secrets, each step asserted.
    pub fn setup_tenant(&self, tenant: &str, pipelines: &[(&str, &str, &str)]) -> PathBuf {
        self.copy_demo_mappings(tenant);
        let file = self.dir.path().join(format!("{tenant}.toml"));
        std::fs::write(&file, self.tenant_toml(tenant, pipelines)).expect("tenant file");
        self.ok(&["tenant", "apply", file.to_str().expect("utf-8 path")]);
        let oracle_secret = self.oracle.client_secret().expose().to_owned();
        let pat = self.tableau.pat_secret().expose().to_owned();
        self.ok_with_stdin(
            &["secret", "set", tenant, "oracle-client-secret"],
            &oracle_secret,
        );
        self.ok_with_stdin(&["secret", "set", tenant, "tableau-pat"], &pat);
        file
    }

    /// The CLI with this world's environment (no stdin).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
        c.current_dir(self.dir.path())
            .env("ML_CONNECTOR_DATA", self.data_dir())
            .env("ML_CONNECTOR_MASTER_KEY", &self.master_key)
            .env("ML_CONNECTOR_MAPPINGS", self.mappings_dir())
            .env("ML_CONNECTOR_SCRIPTED_WASM", scripted_wasm())
            .env("ML_CONNECTOR_ADMIN_TOKEN", serve::ADMIN_TOKEN)
            .env_remove("ML_CONNECTOR_MASTER_KEY_FILE")
            .args(args)
            .stdin(Stdio::null());
        c
    }

    /// Runs the CLI to completion.
    pub fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .output()
            .unwrap_or_else(|e| panic!("running ml-connector {args:?}: {e}"))
    }

    /// Runs the CLI with `stdin` as its input.
    pub fn run_with_stdin(&self, args: &[&str], stdin: &str) -> Output {
        with_stdin(self.command(args), args, stdin)
    }

    /// Runs the CLI and asserts it succeeded; its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "ml-connector {args:?}: {}",
            explain(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// [`World::ok`] with stdin.
    pub fn ok_with_stdin(&self, args: &[&str], stdin: &str) -> String {
        let out = self.run_with_stdin(args, stdin);
        assert!(
            out.status.success(),
            "ml-connector {args:?}: {}",
            explain(&out)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs the CLI with `--output json` and parses its stdout.
    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        let text = self.ok(&all);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {text}"))
    }

    /// The tenant's store file.
    pub fn store_file(&self, tenant: &str) -> PathBuf {
        self.data_dir()
            .join("tenants")
            .join(format!("{tenant}.redb"))
    }
}

/// The data source a pipeline of [`World::tenant_toml`] writes.
pub fn datasource_name(tenant: &str, pipeline: &str) -> String {
    format!("{tenant} {pipeline}")
}

/// Oracle's invoices: id → (number, LastUpdateDate in µs).
pub fn oracle_invoices(world: &World) -> std::collections::BTreeMap<i64, (String, i64)> {
    world
        .oracle
        .snapshot("invoices")
        .expect("Oracle snapshot")
        .into_iter()
        .map(|item| {
            let id = item["InvoiceId"].as_i64().expect("InvoiceId");
            let number = item["InvoiceNumber"].as_str().expect("number").to_owned();
            let updated = mlc_common::time::parse_timestamp(
                item["LastUpdateDate"].as_str().expect("LastUpdateDate"),
            )
            .expect("timestamp");
            (id, (number, updated))
        })
        .collect()
}

/// What a dashboard sees in `<tenant> invoices`: id → (number, last
/// updated), failing on a duplicate key.
pub async fn tableau_invoices(
    world: &World,
    tenant: &str,
) -> std::collections::BTreeMap<i64, (String, i64)> {
    tableau_invoices_mapped(world, tenant, "invoices", "mappings/demo/invoices.toml").await
}

/// Rows of any data source of the tenant.
pub async fn row_count(world: &World, tenant: &str, pipeline: &str) -> usize {
    world
        .tableau
        .datasource_rows(&datasource_name(tenant, pipeline), &[])
        .await
        .expect("reading the data source")
        .map_or(0, |r| r.len())
}

// ---------------------------------------------------------------------------
// Crash tests (runtime_crash.rs): a tenant file given as text, one mapping
// script copied in by hand, a `sync` child whose stderr is read line by
// line while it runs, and SIGKILL.
// ---------------------------------------------------------------------------

impl World {
    /// Copies `script` (a path under the workspace) as `tenant`'s mapping
    /// `name`, with the demo samples beside it.
    pub fn copy_mapping(&self, tenant: &str, script: &str, name: &str) {
        self.copy_demo_mappings(tenant);
        let to = self.mappings_dir().join(tenant).join(name);
        std::fs::copy(workspace().join(script), &to)
            .unwrap_or_else(|e| panic!("copying {script} to {}: {e}", to.display()));
    }

    /// Writes `text` as the tenant file, applies it and sets both secrets
    /// (mappings must be in place already).
    pub fn apply_tenant_text(&self, tenant: &str, text: &str) -> PathBuf {
        let file = self.dir.path().join(format!("{tenant}.toml"));
        std::fs::write(&file, text).expect("tenant file");
        self.ok(&["tenant", "apply", file.to_str().expect("utf-8 path")]);
        let oracle_secret = self.oracle.client_secret().expose().to_owned();
        let pat = self.tableau.pat_secret().expose().to_owned();
        self.ok_with_stdin(
            &["secret", "set", tenant, "oracle-client-secret"],
            &oracle_secret,
        );
        self.ok_with_stdin(&["secret", "set", tenant, "tableau-pat"], &pat);
        file
    }

    /// Starts the CLI as a child with stdout and stderr piped; `env` is
    /// added to its environment. Its stderr lines arrive on
    /// [`Running::lines`] as they are written.
    pub fn spawn(&self, args: &[&str], env: &[(&str, &str)]) -> Running {
        let mut command = self.command(args);
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        for (k, v) in env {
            command.env(k, v);
        }
        let mut child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting ml-connector {args:?}: {e}"));
        let stderr = child.stderr.take().expect("stderr");
        let (tx, lines) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let stdout = child.stdout.take().expect("stdout");
        let out_reader = std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut { stdout }, &mut text);
            text
        });
        Running {
            child,
            lines,
            stderr: Vec::new(),
            reader: Some(reader),
            stdout: Some(out_reader),
            started: std::time::Instant::now(),
        }
    }
}

/// A CLI child started by [`World::spawn`].
pub struct Running {
    /// The process.
    pub child: std::process::Child,
    /// Its stderr, line by line, as written.
    pub lines: std::sync::mpsc::Receiver<String>,
    /// The stderr lines taken so far by [`Running::next_line`].
    pub stderr: Vec<String>,
    reader: Option<std::thread::JoinHandle<()>>,
    stdout: Option<std::thread::JoinHandle<String>>,
    /// When it was started.
    pub started: std::time::Instant,
}

/// How a [`Running`] child ended.
#[derive(Debug)]
pub struct Ended {
    /// Killed by our SIGKILL (false: it exited by itself first).
    pub killed: bool,
    /// Its exit status.
    pub status: std::process::ExitStatus,
    /// Its whole stdout.
    pub stdout: String,
    /// Its whole stderr.
    pub stderr: String,
    /// Time from start to its end.
    pub took: std::time::Duration,
}

impl Running {
    /// The next stderr line, waiting at most `timeout`; `Err` says whether
    /// it timed out or stderr closed (the process is ending).
    pub fn next_line(
        &mut self,
        timeout: std::time::Duration,
    ) -> Result<String, std::sync::mpsc::RecvTimeoutError> {
        let line = self.lines.recv_timeout(timeout)?;
        self.stderr.push(line.clone());
        Ok(line)
    }

    /// Sends SIGKILL (`Child::kill` on Unix) unless it already exited, then
    /// reaps it.
    pub fn kill9(self) -> Ended {
        self.end(true)
    }

    /// Waits for it to exit by itself.
    pub fn wait(self) -> Ended {
        self.end(false)
    }

    fn end(mut self, kill: bool) -> Ended {
        let exited_first = self.child.try_wait().expect("try_wait").is_some();
        let killed = kill && !exited_first && self.child.kill().is_ok();
        let status = self.child.wait().expect("waiting for the child");
        let took = self.started.elapsed();
        if let Some(reader) = self.reader.take() {
            let _ = reader.join();
        }
        while let Ok(line) = self.lines.try_recv() {
            self.stderr.push(line);
        }
        let stdout = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        Ended {
            killed,
            status,
            stdout,
            stderr: self.stderr.join("\n"),
            took,
        }
    }
}

/// Invoices of the data source `<tenant> <pipeline>` written by the mapping
/// `script` (a path under the workspace; its column names give the column
/// positions): id → (number, last updated), failing on a duplicate key.
pub async fn tableau_invoices_mapped(
    world: &World,
    tenant: &str,
    pipeline: &str,
    script: &str,
) -> std::collections::BTreeMap<i64, (String, i64)> {
    use mlc_common::Value;
    let rows = world
        .tableau
        .datasource_rows(&datasource_name(tenant, pipeline), &["Invoice ID"])
        .await
        .expect("reading the data source")
        .expect("the data source exists");
    let text = std::fs::read_to_string(workspace().join(script)).expect("mapping script");
    let names: Vec<String> = text
        .lines()
        .filter_map(|l| l.strip_prefix("name = \""))
        .map(|l| l.trim_end_matches('"').to_owned())
        .collect();
    let at = |n: &str| names.iter().position(|c| c == n).expect("column");
    let (id, number, updated) = (at("Invoice ID"), at("Invoice Number"), at("Last Updated"));
    let mut state = std::collections::BTreeMap::new();
    for row in rows {
        let (Value::Integer(k), Value::Text(n), Value::Timestamp(t)) =
            (&row[id], &row[number], &row[updated])
        else {
            panic!("unexpected row shape: {row:?}");
        };
        let previous = state.insert(*k, (n.clone(), *t));
        assert!(previous.is_none(), "invoice {k} is in Tableau twice");
    }
    state
}

impl World {
    /// [`World::setup_tenant`] with the tenant file's text edited first
    /// (an option added, say).
    pub fn setup_tenant_with(
        &self,
        tenant: &str,
        pipelines: &[(&str, &str, &str)],
        edit: impl FnOnce(String) -> String,
    ) -> PathBuf {
        self.copy_demo_mappings(tenant);
        let file = self.dir.path().join(format!("{tenant}.toml"));
        std::fs::write(&file, edit(self.tenant_toml(tenant, pipelines))).expect("tenant file");
        self.ok(&["tenant", "apply", file.to_str().expect("utf-8 path")]);
        let oracle_secret = self.oracle.client_secret().expose().to_owned();
        let pat = self.tableau.pat_secret().expose().to_owned();
        self.ok_with_stdin(
            &["secret", "set", tenant, "oracle-client-secret"],
            &oracle_secret,
        );
        self.ok_with_stdin(&["secret", "set", tenant, "tableau-pat"], &pat);
        file
    }

    /// Runs the CLI without blocking the test's runtime, calling `during`
    /// (with the number of calls so far) every `every` until it exits: a
    /// test switches faults on mid-run with it.
    pub async fn run_during(
        &self,
        args: &[&str],
        every: std::time::Duration,
        mut during: impl FnMut(u32),
    ) -> Output {
        use std::io::Read;
        let mut child = self
            .command(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running ml-connector {args:?}: {e}"));
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                pipe.read_to_end(&mut buf).map(|_| buf)
            })
        };
        let stdout = drain(Box::new(child.stdout.take().expect("stdout")));
        let stderr = drain(Box::new(child.stderr.take().expect("stderr")));
        let mut calls = 0;
        let status = loop {
            if let Some(status) = child.try_wait().expect("waiting") {
                break status;
            }
            tokio::time::sleep(every).await;
            calls += 1;
            during(calls);
        };
        Output {
            status,
            stdout: stdout.join().expect("stdout reader").expect("stdout"),
            stderr: stderr.join().expect("stderr reader").expect("stderr"),
        }
    }

    /// The CLI's arguments with `--output json` in front.
    pub fn json_args<'a>(args: &[&'a str]) -> Vec<&'a str> {
        let mut all = vec!["--output", "json"];
        all.extend_from_slice(args);
        all
    }

    /// Runs the CLI, expecting it to fail; its output.
    pub fn fails(&self, args: &[&str]) -> Output {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "ml-connector {args:?} should have failed: {}",
            explain(&out)
        );
        out
    }

    /// The ids of a tenant's batches in `state` (`batches --state`), newest
    /// first.
    pub fn batch_ids(&self, target: &str, state: &str) -> Vec<String> {
        let doc = self.json(&["batches", target, "--state", state, "--limit", "1000"]);
        doc["batches"]
            .as_array()
            .expect("batches")
            .iter()
            .map(|b| b["id"].as_str().expect("batch id").to_owned())
            .collect()
    }
}

/// Parses a command's stdout as JSON.
pub fn stdout_json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", explain(out)))
}

/// The columns of a demo mapping script, in order: (name, is a key).
pub fn script_columns(script: &str) -> Vec<(String, bool)> {
    let text = std::fs::read_to_string(workspace().join("mappings/demo").join(script))
        .unwrap_or_else(|e| panic!("{script}: {e}"));
    let mut columns: Vec<(String, bool)> = Vec::new();
    let mut in_column = false;
    for line in text.lines().map(str::trim) {
        if line.starts_with('[') {
            in_column = line == "[[column]]";
            if in_column {
                columns.push((String::new(), false));
            }
            continue;
        }
        let Some(last) = columns.last_mut().filter(|_| in_column) else {
            continue;
        };
        if let Some(name) = line.strip_prefix("name = \"") {
            name.trim_end_matches('"').clone_into(&mut last.0);
        } else if line.replace(' ', "") == "key=true" {
            last.1 = true;
        }
    }
    assert!(
        columns.iter().any(|c| c.1),
        "{script} has no key column: {columns:?}"
    );
    columns
}

/// What a dashboard sees in a pipeline's data source, reduced to what
/// exactness needs: each row's key columns → its `Last Updated` (empty
/// when the mapping has none). Fails on a key that is there twice.
pub async fn datasource_state(
    world: &World,
    tenant: &str,
    pipeline: &str,
    script: &str,
) -> std::collections::BTreeMap<String, String> {
    let columns = script_columns(script);
    let rows = world
        .tableau
        .datasource_rows(&datasource_name(tenant, pipeline), &[])
        .await
        .expect("reading the data source")
        .unwrap_or_else(|| panic!("{tenant}/{pipeline}: no data source"));
    let keys: Vec<usize> = (0..columns.len()).filter(|&i| columns[i].1).collect();
    let updated = columns.iter().position(|c| c.0 == "Last Updated");
    let mut state = std::collections::BTreeMap::new();
    for row in rows {
        assert_eq!(row.len(), columns.len(), "{tenant}/{pipeline}: row {row:?}");
        let key = keys
            .iter()
            .map(|&i| format!("{:?}", row[i]))
            .collect::<Vec<_>>()
            .join("|");
        let value = updated.map(|i| format!("{:?}", row[i])).unwrap_or_default();
        if let Some(previous) = state.insert(key.clone(), value) {
            panic!("{tenant}/{pipeline}: key {key} is there twice (one with {previous})");
        }
    }
    state
}

/// The first difference between two maps, for a failure message.
pub fn first_difference<K: Ord + std::fmt::Debug, V: PartialEq + std::fmt::Debug>(
    left: &std::collections::BTreeMap<K, V>,
    right: &std::collections::BTreeMap<K, V>,
) -> String {
    for (k, v) in left {
        match right.get(k) {
            None => return format!("{k:?} only on the left ({v:?})"),
            Some(w) if w != v => return format!("{k:?}: {v:?} on the left, {w:?} on the right"),
            Some(_) => {}
        }
    }
    for (k, w) in right {
        if !left.contains_key(k) {
            return format!("{k:?} only on the right ({w:?})");
        }
    }
    "none".into()
}
pub mod operator;
pub mod serve;

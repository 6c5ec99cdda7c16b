//! `ml-connector plugin check|test|load|list|rollback`, run as the real
//! binary in a temporary plugins directory: exit codes, stdout and stderr.
//!
//! Needs the guest components: `cargo xtask build-plugins` stages them in
//! `<target>/plugins`; these tests read `$ML_CONNECTOR_PLUGINS_BUILT` (set by
//! `cargo xtask test`), else `<workspace>/target/plugins`. Compiled
//! components are cached under the test target's tmp directory, so only the
//! first run compiles them.
// The whole file is test code: failing loudly, with the run's output, is
// the point.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value as Json;
use tempfile::TempDir;

/// The workspace root: commands run there, so demo paths are relative.
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap()
}

/// A staged guest component (`scripted`, `gl-journal-lines`,
/// `misbehave-import`, ...), or a failure saying how to build them.
fn component(name: &str) -> PathBuf {
    let dir = std::env::var_os("ML_CONNECTOR_PLUGINS_BUILT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace().join("target/plugins"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: build the guest components with `cargo xtask build-plugins` \
         (with CARGO_TARGET_DIR=<dir>, then set ML_CONNECTOR_PLUGINS_BUILT=<dir>/plugins)",
        path.display()
    );
    path
}

fn demo(path: &str) -> PathBuf {
    workspace().join("mappings/demo").join(path)
}

/// One finished run of the binary.
struct Run {
    command: String,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    /// Everything about the run, for assertion messages.
    fn dump(&self) -> String {
        format!(
            "command: {}\nexit code: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.command, self.code, self.stdout, self.stderr
        )
    }

    /// Asserts success and returns stdout.
    fn ok(&self) -> &str {
        assert_eq!(self.code, Some(0), "the command failed\n{}", self.dump());
        &self.stdout
    }

    /// Asserts failure with exit `code` (1 a runtime failure, 3 a refused
    /// component, script or input), nothing on stdout, and returns stderr.
    fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code,
            Some(code),
            "the command did not fail as expected\n{}",
            self.dump()
        );
        assert!(
            self.stdout.is_empty(),
            "a failed command printed results\n{}",
            self.dump()
        );
        &self.stderr
    }

    /// Asserts success and parses stdout as one JSON document.
    fn json(&self) -> Json {
        let out = self.ok();
        serde_json::from_str(out)
            .unwrap_or_else(|e| panic!("stdout is not JSON: {e}\n{}", self.dump()))
    }

    /// Asserts that `text` (stdout or stderr of this run) contains `part`.
    fn expect(&self, text: &str, part: &str) {
        assert!(text.contains(part), "expected {part:?}\n{}", self.dump());
    }
}

/// A plugins directory of its own, and the shared compile cache.
struct Env {
    dir: TempDir,
}

impl Env {
    fn new() -> Self {
        Self {
            dir: tempfile::Builder::new()
                .prefix("mlc-cli-test")
                .tempdir()
                .unwrap(),
        }
    }

    fn plugins(&self) -> PathBuf {
        self.dir.path().join("plugins")
    }

    /// Writes a file in the temporary directory and returns its path.
    fn file(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, content).unwrap();
        path
    }

    /// Runs `ml-connector plugin ARGS...` in the workspace root.
    fn plugin<S: AsRef<std::ffi::OsStr>>(&self, args: &[S]) -> Run {
        let cache = Path::new(env!("CARGO_TARGET_TMPDIR")).join("plugin-cli-cache");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ml-connector"));
        command
            .arg("plugin")
            .args(args)
            .current_dir(workspace())
            .env("ML_CONNECTOR_PLUGINS_DIR", self.plugins())
            .env("ML_CONNECTOR_CACHE_DIR", &cache)
            .env_remove("ML_CONNECTOR_OUTPUT")
            .env_remove("RUST_LOG");
        let described = std::iter::once("ml-connector plugin".to_owned())
            .chain(
                args.iter()
                    .map(|a| a.as_ref().to_string_lossy().into_owned()),
            )
            .collect::<Vec<_>>()
            .join(" ");
        let output = command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {described}: {e}"));
        Run {
            command: described,
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

fn golden(name: &str) -> Json {
    let path = demo(&format!("golden/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap()
}

/// A copy of `mappings/demo/invoices.toml` whose `Invoice Amount` type is
/// `decimal(18)`, and where the refusal must point: (line, column).
fn broken_invoices_script() -> (String, usize, usize) {
    let good = std::fs::read_to_string(demo("invoices.toml")).unwrap();
    let lines: Vec<&str> = good.lines().collect();
    let name_line = lines
        .iter()
        .position(|l| *l == "name = \"Invoice Amount\"")
        .unwrap();
    let type_line = name_line
        + lines[name_line..]
            .iter()
            .position(|l| l.starts_with("type = "))
            .unwrap();
    let mut broken: Vec<String> = lines.iter().map(|l| (*l).to_owned()).collect();
    broken[type_line] = "type = \"decimal(18)\"".into();
    let col = broken[type_line].find('"').unwrap() + 1;
    (broken.join("\n") + "\n", type_line + 1, col)
}

#[test]
fn check_prints_the_world_and_the_schema() {
    let env = Env::new();
    let scripted = component("scripted");
    let mapping = demo("invoices.toml");
    let run = env.plugin(&[
        "check".as_ref(),
        scripted.as_os_str(),
        "--mapping".as_ref(),
        mapping.as_os_str(),
    ]);
    let out = run.ok();
    run.expect(out, "world      ml-connector:mapping/mapping@0.3.0: ok");
    run.expect(out, "resource invoices (");
    let header = out
        .lines()
        .find(|l| l.starts_with("column "))
        .unwrap_or_else(|| panic!("no schema table\n{}", run.dump()));
    for part in ["type", "nullable", "key"] {
        run.expect(header, part);
    }
    let id = out
        .lines()
        .find(|l| l.starts_with("Invoice ID "))
        .unwrap_or_else(|| panic!("no Invoice ID column\n{}", run.dump()));
    let cells: Vec<&str> = id.split_whitespace().collect();
    assert_eq!(
        cells,
        ["Invoice", "ID", "integer", "no", "key"],
        "{}",
        run.dump()
    );

    let run = env.plugin(&[
        "--output".as_ref(),
        "json".as_ref(),
        "check".as_ref(),
        scripted.as_os_str(),
        "--mapping".as_ref(),
        mapping.as_os_str(),
    ]);
    let info = run.json();
    assert_eq!(
        info["world"],
        "ml-connector:mapping/mapping@0.3.0",
        "{}",
        run.dump()
    );
    assert_eq!(
        info["resources"],
        serde_json::json!(["invoices"]),
        "{}",
        run.dump()
    );
    assert_eq!(
        info["schemas"]["invoices"],
        golden("invoices")["schema"],
        "the schema differs from the golden file's\n{}",
        run.dump()
    );
    assert_eq!(
        info["version"].as_str().map(str::len),
        Some(64),
        "{}",
        run.dump()
    );
}

#[test]
fn check_without_a_mapping_script_says_one_is_needed() {
    let env = Env::new();
    let run = env.plugin(&["check".as_ref(), component("scripted").as_os_str()]);
    let err = run.fails(3);
    run.expect(
        err,
        "scripted.wasm is refused: this component needs a configuration",
    );
    run.expect(err, "--mapping FILE");
    run.expect(err, "missing `resource");
    // Errors name the file's plugin, not a fixed placeholder.
    run.expect(err, "plugin `scripted` version ");
}

#[test]
fn test_prints_a_table_of_rows_and_rejects() {
    let env = Env::new();
    let run = env.plugin(&[
        "test".as_ref(),
        component("scripted").as_os_str(),
        "--mapping".as_ref(),
        demo("invoices.toml").as_os_str(),
        "--records".as_ref(),
        demo("samples/invoices.json").as_os_str(),
        "--reference".as_ref(),
        demo("reference").as_os_str(),
    ]);
    let out = run.ok();
    let expected = golden("invoices");
    let records: Vec<Json> =
        serde_json::from_str(&std::fs::read_to_string(demo("samples/invoices.json")).unwrap())
            .unwrap();
    let rows = expected["rows"].as_array().unwrap();
    let rejects = expected["rejects"].as_array().unwrap();
    let header = out.lines().next().unwrap_or_default();
    for column in expected["schema"].as_array().unwrap().iter().take(3) {
        run.expect(header, column["name"].as_str().unwrap());
    }
    run.expect(
        out,
        &format!(
            "{} records: {} rows, {} rejected",
            records.len(),
            rows.len(),
            rejects.len()
        ),
    );
    // The first row's invoice number, and every reject with its record.
    run.expect(out, rows[0]["Invoice Number"].as_str().unwrap());
    for reject in rejects {
        run.expect(out, &format!("  record {}: ", reject["index"]));
    }
    // Table lines: header, rule, one per row, blank, summary, one per reject.
    assert_eq!(
        out.lines().count(),
        2 + rows.len() + 2 + rejects.len(),
        "{}",
        run.dump()
    );
}

#[test]
fn test_json_is_the_golden_form() {
    let env = Env::new();
    for (script, resource) in [
        ("invoices", "invoices"),
        ("journalBatches", "journalBatches"),
    ] {
        let run = env.plugin(&[
            "--output".as_ref(),
            "json".as_ref(),
            "test".as_ref(),
            component("scripted").as_os_str(),
            "--mapping".as_ref(),
            demo(&format!("{script}.toml")).as_os_str(),
            "--records".as_ref(),
            demo(&format!("samples/{resource}.json")).as_os_str(),
            "--reference".as_ref(),
            demo("reference").as_os_str(),
        ]);
        let actual = run.json();
        assert!(
            actual == golden(script),
            "{script}: the output is not golden/{script}.json\n{}",
            run.dump()
        );
    }
}

#[test]
fn test_needs_resource_for_a_plugin_of_several_resources() {
    let env = Env::new();
    let gl = component("gl-journal-lines");
    let records = demo("samples/invoices.json");
    let run = env.plugin(&[
        "test".as_ref(),
        gl.as_os_str(),
        "--records".as_ref(),
        records.as_os_str(),
    ]);
    let err = run.fails(1);
    run.expect(
        err,
        "error: the plugin maps several resources (journalBatches, invoices): choose one with --resource",
    );

    let run = env.plugin(&[
        "--output".as_ref(),
        "json".as_ref(),
        "test".as_ref(),
        gl.as_os_str(),
        "--records".as_ref(),
        records.as_os_str(),
        "--resource".as_ref(),
        "invoices".as_ref(),
    ]);
    let batch = run.json();
    let columns: Vec<&str> = batch["schema"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(columns.first(), Some(&"Invoice ID"), "{}", run.dump());
    assert!(
        !batch["rows"].as_array().unwrap().is_empty(),
        "no rows\n{}",
        run.dump()
    );

    let run = env.plugin(&[
        "test".as_ref(),
        gl.as_os_str(),
        "--records".as_ref(),
        records.as_os_str(),
        "--resource".as_ref(),
        "payments".as_ref(),
    ]);
    let err = run.fails(1);
    run.expect(err, "plugin `gl-journal-lines` version ");
    run.expect(err, "does not map resource `payments`");
}

#[test]
fn test_refuses_malformed_records_and_reference_data() {
    let env = Env::new();
    let scripted = component("scripted");
    let cases = [
        (
            "object.json",
            r#"{"InvoiceId": 1}"#,
            "is not a JSON array of records",
        ),
        (
            "scalar.json",
            r#"[{"InvoiceId": 1}, 2]"#,
            "scalar.json: record 1 is not a JSON object",
        ),
        (
            "twice.json",
            r#"[{"InvoiceId": 1}, {"a": 1, "a": 2}]"#,
            r#"twice.json: record 1: member "a" appears twice"#,
        ),
    ];
    for (name, content, message) in cases {
        let records = env.file(name, content);
        let run = env.plugin(&[
            "test".as_ref(),
            scripted.as_os_str(),
            "--mapping".as_ref(),
            demo("invoices.toml").as_os_str(),
            "--records".as_ref(),
            records.as_os_str(),
        ]);
        let err = run.fails(1);
        run.expect(err, message);
    }

    let missing = env.dir.path().join("no-such-reference");
    let bad = env.dir.path().join("bad-reference");
    std::fs::create_dir(&bad).unwrap();
    std::fs::write(bad.join("suppliers.json"), "[1, 2").unwrap();
    for dir in [&missing, &bad] {
        let run = env.plugin(&[
            "test".as_ref(),
            scripted.as_os_str(),
            "--mapping".as_ref(),
            demo("invoices.toml").as_os_str(),
            "--records".as_ref(),
            demo("samples/invoices.json").as_os_str(),
            "--reference".as_ref(),
            dir.as_os_str(),
        ]);
        let err = run.fails(3);
        run.expect(
            err,
            &format!("error: cannot read reference data from {}", dir.display()),
        );
        run.expect(err, "caused by: ");
    }
}

#[test]
fn a_broken_script_is_reported_at_its_file_line_and_column() {
    let env = Env::new();
    let scripted = component("scripted");
    let (text, line, col) = broken_invoices_script();
    let script = env.file("invoices.toml", &text);
    let located = format!(
        "error: {}:{line}:{col}: column \"Invoice Amount\": type \"decimal(18)\": ",
        script.display()
    );
    for command in ["check", "test"] {
        let mut args: Vec<std::ffi::OsString> = vec![
            command.into(),
            scripted.clone().into_os_string(),
            "--mapping".into(),
            script.clone().into_os_string(),
        ];
        if command == "test" {
            args.push("--records".into());
            args.push(demo("samples/invoices.json").into_os_string());
        }
        let run = env.plugin(&args);
        let err = run.fails(3);
        let mut lines = err.lines().skip_while(|l| !l.starts_with("error: "));
        let error = lines.next().unwrap_or_default();
        assert!(
            error.starts_with(&located),
            "expected an error line starting with {located:?}\n{}",
            run.dump()
        );
        assert_eq!(
            lines.next(),
            Some(format!("  ({} refused this configuration)", scripted.display()).as_str()),
            "{}",
            run.dump()
        );
    }
}

/// The `history` of a plugin in the plugins directory.
fn history(env: &Env, tenant: &str, name: &str) -> Vec<String> {
    let path = env
        .plugins()
        .join(tenant)
        .join(".versions")
        .join(name)
        .join("history");
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// The files `<plugins>/<tenant>/<name>.*` a runtime would load.
fn installed(env: &Env, tenant: &str, name: &str) -> (Vec<u8>, Option<String>, Option<String>) {
    let dir = env.plugins().join(tenant);
    (
        std::fs::read(dir.join(format!("{name}.wasm"))).unwrap(),
        std::fs::read_to_string(dir.join(format!("{name}.toml"))).ok(),
        std::fs::read_to_string(dir.join(format!("{name}.sample.json"))).ok(),
    )
}

fn load_args(script: &Path, reference: bool) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = vec![
        "--output".into(),
        "json".into(),
        "load".into(),
        component("scripted").into(),
        "--config".into(),
        script.into(),
        "--sample".into(),
        demo("samples/invoices.json").into(),
        "--tenant".into(),
        "demo".into(),
        "--name".into(),
        "invoices".into(),
    ];
    if reference {
        args.push("--reference".into());
        args.push(demo("reference").into());
    }
    args
}

#[test]
fn load_list_and_rollback_manage_the_plugins_directory() {
    let env = Env::new();
    let scripted = std::fs::read(component("scripted")).unwrap();
    let first_script = std::fs::read_to_string(demo("invoices.toml")).unwrap();
    let sample = std::fs::read_to_string(demo("samples/invoices.json")).unwrap();

    // Nothing installed yet.
    let run = env.plugin(&["list"]);
    run.expect(
        run.ok(),
        &format!("no plugins in {}", env.plugins().display()),
    );
    let run = env.plugin(&["rollback", "--tenant", "demo", "--name", "invoices"]);
    run.expect(
        run.fails(1),
        "plugin `invoices` of tenant `demo` has no previous version",
    );

    // The sample's lookups need the reference data: without it the load is
    // refused, with it the component is validated and installed.
    let run = env.plugin(&load_args(&demo("invoices.toml"), false));
    let err = run.fails(3);
    run.expect(err, "nothing was installed");
    assert!(
        !env.plugins().join("demo/invoices.wasm").exists(),
        "a refused load installed files\n{}",
        run.dump()
    );
    let run = env.plugin(&load_args(&demo("invoices.toml"), true));
    let first = run.json();
    let first_version = first["version"].as_str().unwrap().to_owned();
    assert_eq!(first["tenant"], "demo", "{}", run.dump());
    assert_eq!(first["versions_kept"], 1, "{}", run.dump());
    assert_eq!(
        first["resources"],
        serde_json::json!(["invoices"]),
        "{}",
        run.dump()
    );
    let golden = golden("invoices");
    assert_eq!(
        first["sample"]["rows"].as_u64(),
        golden["rows"].as_array().map(|r| r.len() as u64),
        "{}",
        run.dump()
    );
    // (assert!, not assert_eq!: a failure should not print the wasm bytes)
    assert!(
        installed(&env, "demo", "invoices")
            == (
                scripted.clone(),
                Some(first_script.clone()),
                Some(sample.clone())
            ),
        "the installed files are not what was loaded\n{}",
        run.dump()
    );
    assert_eq!(
        history(&env, "demo", "invoices"),
        [first_version.as_str()],
        "{}",
        run.dump()
    );

    // A second version: the same component with another script (text output).
    let second_script = first_script.replace("name = \"Invoice ID\"", "name = \"Invoice Id\"");
    assert_ne!(second_script, first_script);
    let second_path = env.file("invoices-v2.toml", &second_script);
    let mut args = load_args(&second_path, true);
    args.drain(..2);
    let run = env.plugin(&args);
    let out = run.ok();
    run.expect(out, "validated ");
    run.expect(out, "(invoices)");
    run.expect(out, "2 versions kept for rollback");
    run.expect(
        out,
        &format!(
            "a runtime watching {} loads it on its next scan",
            env.plugins().display()
        ),
    );
    let versions = history(&env, "demo", "invoices");
    assert_eq!(versions.len(), 2, "{versions:?}\n{}", run.dump());
    assert_eq!(versions[0], first_version, "{}", run.dump());
    let second_version = versions[1].clone();
    assert_ne!(second_version, first_version, "{}", run.dump());
    run.expect(out, &second_version[..12]);
    let serving = installed(&env, "demo", "invoices");

    // Refused components leave the installed version and its history alone.
    let (broken, line, col) = broken_invoices_script();
    let broken_path = env.file("broken.toml", &broken);
    let mut args = load_args(&broken_path, true);
    args.drain(..2); // the text report
    let run = env.plugin(&args);
    let err = run.fails(3);
    run.expect(
        err,
        &format!(
            "error: {}:{line}:{col}: column \"Invoice Amount\"",
            broken_path.display()
        ),
    );
    run.expect(err, "nothing was installed");
    let import = component("misbehave-import");
    let run = env.plugin(&[
        "load".as_ref(),
        import.as_os_str(),
        "--tenant".as_ref(),
        "demo".as_ref(),
        "--name".as_ref(),
        "invoices".as_ref(),
    ]);
    let err = run.fails(3);
    run.expect(
        err,
        "misbehave-import.wasm is refused; nothing was installed",
    );
    run.expect(err, "which plugins may not use");
    assert!(
        installed(&env, "demo", "invoices") == serving,
        "a refused load changed the installed plugin\n{}",
        run.dump()
    );
    assert_eq!(
        history(&env, "demo", "invoices"),
        versions,
        "a refused load changed the history\n{}",
        run.dump()
    );

    // list shows the installed version.
    let run = env.plugin(&["list"]);
    let out = run.ok();
    let line = out
        .lines()
        .find(|l| l.starts_with("demo "))
        .unwrap_or_else(|| panic!("demo is not listed\n{}", run.dump()));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(
        cells,
        [
            "demo",
            "invoices",
            &second_version[..12],
            &scripted.len().to_string(),
            "yes",
            "2"
        ],
        "{}",
        run.dump()
    );
    let run = env.plugin(&["--output", "json", "list"]);
    let listed = run.json();
    assert_eq!(
        listed,
        serde_json::json!([{
            "tenant": "demo",
            "name": "invoices",
            "version": second_version,
            "bytes": scripted.len(),
            "configured": true,
            "sample": true,
            "versions_kept": 2,
        }]),
        "{}",
        run.dump()
    );

    // rollback reinstalls the first version's files.
    let run = env.plugin(&["rollback", "--tenant", "demo", "--name", "invoices"]);
    let out = run.ok();
    run.expect(
        out,
        &format!(
            "reinstalled version {} (was {})",
            &first_version[..12],
            &second_version[..12]
        ),
    );
    assert!(
        installed(&env, "demo", "invoices") == (scripted, Some(first_script), Some(sample)),
        "rollback did not reinstall the first version's files\n{}",
        run.dump()
    );
    assert_eq!(
        history(&env, "demo", "invoices"),
        [first_version.as_str()],
        "{}",
        run.dump()
    );
    let run = env.plugin(&["--output", "json", "list"]);
    assert_eq!(run.json()[0]["version"], first_version, "{}", run.dump());
    let run = env.plugin(&["rollback", "--tenant", "demo", "--name", "invoices"]);
    run.expect(
        run.fails(1),
        "plugin `invoices` of tenant `demo` has no previous version",
    );
}

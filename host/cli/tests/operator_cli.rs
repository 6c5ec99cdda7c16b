//! The CLI as an operator meets it (issue 11), on the real binary and
//! without sandboxes: one exit code per class of failure, the JSON error
//! object, an `ML_CONNECTOR_*` variable standing in for its flag,
//! `--version` with the git revision, no colour under `NO_COLOR`, results on
//! stdout and logs on stderr, shell completions and man pages.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use support::explain;
use support::operator::{Scratch, assert_exit, closed_port, error_json};

#[test]
fn each_class_of_failure_has_its_exit_code() {
    let s = Scratch::new();
    // 0: it worked.
    assert_exit(&s.run(&["tenant", "list"]), 0, "tenant list");
    // 2: clap refuses the command line.
    assert_exit(
        &s.run(&["tenant", "list", "--no-such-flag"]),
        2,
        "unknown flag",
    );
    assert_exit(&s.run(&["tenant", "show"]), 2, "missing argument");
    // 3: configuration: a tenant that was never applied, a tenant file that
    // does not parse, no master key.
    assert_exit(&s.run(&["tenant", "show", "nobody"]), 3, "unknown tenant");
    let bad = s.write("bad.toml", "id = \"acme\"\n[oracle]\nurl = 3\n");
    assert_exit(
        &s.run(&["tenant", "apply", bad.to_str().expect("path")]),
        3,
        "bad tenant file",
    );
    s.apply_unreachable_tenant(closed_port());
    let mut no_key = s.command(&["secret", "set", "acme", "tableau-pat"]);
    no_key.env_remove("ML_CONNECTOR_MASTER_KEY");
    assert_exit(&no_key.output().expect("run"), 3, "no master key");
    // 4: Oracle's token endpoint does not answer.
    assert_exit(
        &s.run(&["tenant", "authorize", "acme", "--code", "abc"]),
        4,
        "Oracle unreachable",
    );
    // 1: a runtime failure (the listen address is taken).
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    assert_exit(
        &s.run_env(
            &["serve", "--listen", &addr],
            &[("ML_CONNECTOR_ADMIN_TOKEN", "an-admin-token-of-some-length")],
        ),
        1,
        "listen address taken",
    );
}

#[test]
fn an_error_under_output_json_is_one_object_with_code_exit_message_causes_and_hint() {
    let s = Scratch::new();
    s.apply_unreachable_tenant(closed_port());
    let out = s.run(&[
        "--output",
        "json",
        "tenant",
        "authorize",
        "acme",
        "--code",
        "abc",
    ]);
    let error = error_json(&out, "authorize against a closed port");
    assert!(
        out.stdout.is_empty(),
        "no result on stdout: {}",
        explain(&out)
    );
    assert_eq!(error["code"], "oracle_unreachable", "{error:#}");
    assert_eq!(error["exit"], 4, "{error:#}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("exchanging the code")),
        "{error:#}"
    );
    assert!(
        error["causes"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c.as_str().is_some_and(|c| c.contains("refused")))),
        "the causes go down to the refused connection: {error:#}"
    );
    assert!(error["hint"].is_string(), "{error:#}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        !stderr.contains("a-client-secret-value"),
        "the client secret must not appear: {stderr}"
    );

    // Usage errors too, when JSON was asked for.
    let out = s.run(&["--output", "json", "tenant", "show"]);
    assert_exit(&out, 2, "missing argument (json)");
    let error = error_json(&out, "missing argument (json)");
    assert_eq!(error["code"], "usage", "{error:#}");
    assert!(
        error["message"]
            .as_str()
            .is_some_and(|m| m.contains("<ID>")),
        "the message names what is missing: {error:#}"
    );
}

#[test]
fn ml_connector_output_stands_in_for_the_flag() {
    let s = Scratch::new();
    let env = [("ML_CONNECTOR_OUTPUT", "json")];
    let out = s.run_env(&["tenant", "list"], &env);
    assert_exit(&out, 0, "tenant list with ML_CONNECTOR_OUTPUT=json");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {}", explain(&out)));
    assert!(doc.is_object() || doc.is_array(), "{doc}");
    let out = s.run_env(&["tenant", "show", "nobody"], &env);
    let error = error_json(&out, "tenant show with ML_CONNECTOR_OUTPUT=json");
    assert_eq!(error["code"], "tenant_not_applied", "{error:#}");
    // And --help names the variable.
    let help = s.ok(&["--help"]);
    assert!(help.contains("ML_CONNECTOR_OUTPUT"), "{help}");
    let help = s.ok(&["sandbox", "oracle", "--help"]);
    assert!(
        help.contains("ML_CONNECTOR_SANDBOX_ORACLE_INVOICES"),
        "{help}"
    );
}

#[test]
fn version_names_the_crate_version_and_the_git_revision() {
    let s = Scratch::new();
    let out = s.ok(&["--version"]);
    let version = env!("CARGO_PKG_VERSION");
    assert!(
        out.starts_with(&format!("ml-connector {version} (")),
        "{out}"
    );
    let expected = std::process::Command::new("git")
        .args(["rev-parse", "--short", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    let revision = out
        .trim()
        .rsplit_once('(')
        .and_then(|(_, r)| r.strip_suffix(')'))
        .unwrap_or_default();
    match expected {
        // Built from this checkout: the revision may be older than HEAD only
        // if HEAD moved after the build; it is a short hash either way.
        Some(_) => assert!(
            revision.len() >= 7 && revision.chars().all(|c| c.is_ascii_hexdigit()),
            "not a git revision: {out}"
        ),
        None => assert_eq!(revision, "unknown", "{out}"),
    }
}

#[test]
fn no_color_gives_no_escape_codes_and_logs_stay_off_stdout() {
    let s = Scratch::new();
    let out = s.run_env(
        &["-vv", "--output", "json", "tenant", "list"],
        &[("NO_COLOR", "1")],
    );
    assert_exit(&out, 0, "tenant list -vv");
    assert!(
        !out.stderr.contains(&0x1b) && !out.stdout.contains(&0x1b),
        "escape codes under NO_COLOR: {}",
        explain(&out)
    );
    serde_json::from_slice::<serde_json::Value>(&out.stdout)
        .unwrap_or_else(|e| panic!("stdout holds only the result ({e}): {}", explain(&out)));
    let out = s.run_env(&["tenant", "show", "nobody"], &[("NO_COLOR", "1")]);
    assert!(!out.stderr.contains(&0x1b), "{}", explain(&out));
    assert!(
        out.stdout.is_empty(),
        "an error goes to stderr: {}",
        explain(&out)
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_definitions() {
    let s = Scratch::new();
    let bash = s.ok(&["completions", "bash"]);
    for sub in [
        "tenant",
        "secret",
        "sync",
        "serve",
        "replay",
        "plugin",
        "completions",
        "man",
    ] {
        assert!(bash.contains(sub), "bash completions lack `{sub}`");
    }
    for shell in ["zsh", "fish"] {
        assert!(!s.ok(&["completions", shell]).is_empty(), "{shell}");
    }
    let dir = s.dir.path().join("man");
    let listed = s.ok(&["man", "--out", dir.to_str().expect("path")]);
    let main = dir.join("ml-connector.1");
    let page = std::fs::read_to_string(&main)
        .unwrap_or_else(|e| panic!("{}: {e}; listed: {listed}", main.display()));
    assert!(page.contains(".TH"), "not a man page: {page}");
    for sub in ["tenant", "sync", "serve", "completions"] {
        assert!(page.contains(sub), "ml-connector.1 lacks `{sub}`");
        let sub_page = dir.join(format!("ml-connector-{sub}.1"));
        let size = std::fs::metadata(&sub_page).map(|m| m.len()).unwrap_or(0);
        assert!(
            size > 0,
            "{} missing or empty; listed: {listed}",
            sub_page.display()
        );
    }
}

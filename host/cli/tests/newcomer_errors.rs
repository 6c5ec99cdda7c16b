//! The first mistakes a newcomer makes, each on the real binary: the exit
//! code of its class, a message that says what happened, and a hint with the
//! command that fixes it — in text and in `--output json` — and never a
//! secret in either. Most run without sandboxes (support/operator.rs); the
//! credentials Oracle or Tableau refuse and an unreachable Tableau run
//! against both sandboxes (support/mod.rs), and so does an Oracle that does
//! not answer a sync.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::operator::{Expected, Scratch, assert_reports, closed_port, unreachable_tenant_toml};
use support::{ALL_PIPELINES, World, scripted_wasm, workspace};

/// `unreachable_tenant_toml` with the client-credentials grant (no operator
/// sign-in needed before a sync).
fn client_credentials_toml(port: u16) -> String {
    unreachable_tenant_toml(port)
        .lines()
        .filter(|l| {
            !["grant", "authorize_url", "redirect_uri"]
                .iter()
                .any(|k| l.starts_with(k))
        })
        .map(|l| format!("{l}\n"))
        .collect()
}

#[test]
fn hyperd_missing_says_to_run_xtask_setup() {
    let s = Scratch::new();
    s.apply_unreachable_tenant(closed_port());
    let scripted = scripted_wasm();
    let scripted = scripted.to_str().expect("path");
    // Nothing installed: no Python with tableauhyperapi anywhere (an empty
    // PATH hides python3), no --hyperd.
    let empty = s.dir.path().join("empty-path");
    std::fs::create_dir_all(&empty).expect("empty dir");
    let no_python = s.dir.path().join("no-python");
    let env = [
        ("ML_CONNECTOR_PYTHON", no_python.to_str().expect("path")),
        ("PATH", empty.to_str().expect("path")),
        ("ML_CONNECTOR_SCRIPTED_WASM", scripted),
    ];
    assert_reports(
        "sync with no hyperd installed",
        &["sync", "acme", "--once"],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 3,
            code: "hyperd_missing",
            says: &["hyperd not found", "no-python"],
            hint: &["cargo xtask setup"],
        },
    );
    // A --hyperd (here ML_CONNECTOR_HYPERD) that is not there.
    let missing = s.dir.path().join("no-such-hyperd");
    let env = [
        ("ML_CONNECTOR_HYPERD", missing.to_str().expect("path")),
        ("ML_CONNECTOR_SCRIPTED_WASM", scripted),
    ];
    assert_reports(
        "sync with a --hyperd that is not there",
        &["sync", "acme", "--once"],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 3,
            code: "hyperd_missing",
            says: &["hyperd not found", "no-such-hyperd"],
            hint: &["--hyperd", "cargo xtask setup"],
        },
    );
}

#[test]
fn plugins_not_built_say_to_add_the_wasm_target_and_build_them() {
    let s = Scratch::new();
    s.apply_unreachable_tenant(closed_port());
    let missing = s.dir.path().join("target/plugins/scripted.wasm");
    let env = [(
        "ML_CONNECTOR_SCRIPTED_WASM",
        missing.to_str().expect("path"),
    )];
    assert_reports(
        "sync without built plugins",
        &["sync", "acme", "--once"],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 3,
            code: "plugins_not_built",
            says: &["scripted mapper", "is missing"],
            hint: &[
                "rustup target add wasm32-wasip2",
                "cargo xtask build-plugins",
            ],
        },
    );
}

#[test]
fn a_taken_port_says_to_listen_elsewhere() {
    let s = Scratch::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let env = [("ML_CONNECTOR_ADMIN_TOKEN", "an-admin-token-of-some-length")];
    assert_reports(
        "serve on a taken port",
        &["serve", "--listen", &addr],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 1,
            code: "listen_address_in_use",
            says: &[&addr, "in use"],
            hint: &["--listen"],
        },
    );
}

#[test]
fn a_bad_tenant_file_names_the_file_line_and_field() {
    let s = Scratch::new();
    let text = client_credentials_toml(closed_port()).replace(
        "client_id = \"client\"",
        "client_id = \"client\"\npage_size = \"many\"",
    );
    let line = text
        .lines()
        .position(|l| l.starts_with("page_size"))
        .expect("the bad line")
        + 1;
    s.write("acme.toml", &text);
    let at = format!("acme.toml:{line}:");
    let fix = format!("fix acme.toml:{line}");
    assert_reports(
        "apply a bad tenant file",
        &["tenant", "apply", "acme.toml"],
        |args| s.run(args),
        &Expected {
            exit: 3,
            code: "tenant_file_invalid",
            says: &[&at, "page_size"],
            hint: &[&fix, "ml-connector tenant apply acme.toml"],
        },
    );
}

#[test]
fn a_missing_secret_names_the_command_that_sets_it() {
    let s = Scratch::new();
    let file = s.write("acme.toml", &client_credentials_toml(closed_port()));
    s.ok(&["tenant", "apply", file.to_str().expect("path")]);
    s.ok_with_stdin(
        &["secret", "set", "acme", "oracle-client-secret"],
        "a-client-secret-value",
    );
    let scripted = scripted_wasm();
    let env = [(
        "ML_CONNECTOR_SCRIPTED_WASM",
        scripted.to_str().expect("path"),
    )];
    let text = assert_reports(
        "sync with the PAT not set",
        &["sync", "acme", "--once"],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 3,
            code: "secret_missing",
            says: &["secret `tableau-pat` is not set"],
            hint: &["ml-connector secret set acme tableau-pat"],
        },
    );
    assert!(!text.contains("a-client-secret-value"), "{text}");
}

#[test]
fn a_missing_or_wrong_master_key_says_which_key_to_give() {
    let s = Scratch::new();
    s.apply_unreachable_tenant(closed_port());
    let other = mlc_store::MasterKey::generate_base64().expose().to_owned();
    let text = assert_reports(
        "secret set under another key",
        &["secret", "set", "acme", "tableau-pat"],
        |args| s.run_env(args, &[("ML_CONNECTOR_MASTER_KEY", &other)]),
        &Expected {
            exit: 3,
            code: "master_key_wrong",
            says: &["was sealed under master key"],
            hint: &["ML_CONNECTOR_MASTER_KEY", "set up with"],
        },
    );
    assert!(
        !text.contains(&other) && !text.contains(&s.master_key),
        "{text}"
    );
    assert_reports(
        "secret set without a key",
        &["secret", "set", "acme", "tableau-pat"],
        |args| {
            let mut c = s.command(args);
            c.env_remove("ML_CONNECTOR_MASTER_KEY");
            c.output().expect("run")
        },
        &Expected {
            exit: 3,
            code: "master_key_missing",
            says: &["no master key", "--master-key-file"],
            hint: &["ml-connector keys generate"],
        },
    );
}

#[test]
fn a_sync_under_another_master_key_says_which_key_to_give() {
    let s = Scratch::new();
    let file = s.write("acme.toml", &client_credentials_toml(closed_port()));
    s.ok(&["tenant", "apply", file.to_str().expect("path")]);
    s.ok_with_stdin(
        &["secret", "set", "acme", "oracle-client-secret"],
        "a-client-secret-value",
    );
    s.ok_with_stdin(&["secret", "set", "acme", "tableau-pat"], "a-pat-value");
    let other = mlc_store::MasterKey::generate_base64().expose().to_owned();
    let scripted = scripted_wasm();
    let env = [
        ("ML_CONNECTOR_MASTER_KEY", other.as_str()),
        (
            "ML_CONNECTOR_SCRIPTED_WASM",
            scripted.to_str().expect("path"),
        ),
    ];
    let text = assert_reports(
        "sync under another master key",
        &["sync", "acme", "--once"],
        |args| s.run_env(args, &env),
        &Expected {
            exit: 3,
            code: "master_key_wrong",
            says: &["oracle-client-secret", "was sealed under master key"],
            hint: &["ML_CONNECTOR_MASTER_KEY"],
        },
    );
    for secret in ["a-client-secret-value", "a-pat-value", other.as_str()] {
        assert!(!text.contains(secret), "{text}");
    }
}

#[test]
fn a_refused_mapping_points_at_the_line_of_the_script() {
    let s = Scratch::new();
    let good = std::fs::read_to_string(workspace().join("mappings/demo/invoices.toml"))
        .expect("demo mapping");
    let line = good
        .lines()
        .position(|l| l == "type = \"decimal(38,2)\"")
        .expect("a decimal column in the demo mapping")
        + 1;
    let broken = good.replacen("type = \"decimal(38,2)\"", "type = \"decimal(18)\"", 1);
    s.write("broken.toml", &broken);
    let scripted = scripted_wasm();
    let at = format!("broken.toml:{line}:");
    assert_reports(
        "plugin check of a broken script",
        &[
            "plugin",
            "check",
            scripted.to_str().expect("path"),
            "--mapping",
            "broken.toml",
        ],
        |args| {
            s.run_env(
                args,
                &[(
                    "ML_CONNECTOR_CACHE_DIR",
                    s.dir.path().join("cache").to_str().expect("path"),
                )],
            )
        },
        &Expected {
            exit: 3,
            code: "mapping_refused",
            says: &[&at, "decimal(18)", "refused"],
            hint: &["ml-connector plugin check"],
        },
    );
}

#[test]
fn an_unreachable_oracle_is_exit_4_naming_its_url() {
    let s = Scratch::new();
    let port = closed_port();
    s.apply_unreachable_tenant(port);
    let url = format!("127.0.0.1:{port}");
    let text = assert_reports(
        "authorize against an Oracle that does not answer",
        &["tenant", "authorize", "acme", "--code", "abc"],
        |args| s.run(args),
        &Expected {
            exit: 4,
            code: "oracle_unreachable",
            says: &[&url, "Connection refused"],
            hint: &["token_url"],
        },
    );
    assert!(!text.contains("a-client-secret-value"), "{text}");
}

/// Oracle refusing the client secret, Tableau refusing the PAT, then
/// Tableau not answering, then a tenant whose Oracle does not answer: one
/// pair of sandboxes, the tenants changed between.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_credentials_are_exit_3_and_unreachable_services_exit_4() {
    let world = World::start(
        SandboxConfig {
            seed: 61,
            invoices: 30,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    let file = world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    let oracle_secret = world.oracle.client_secret().expose().to_owned();
    let pat = world.tableau.pat_secret().expose().to_owned();
    let sync = ["sync", "acme", "--once"];

    world.ok_with_stdin(
        &["secret", "set", "acme", "oracle-client-secret"],
        "not-the-oracle-secret",
    );
    let text = assert_reports(
        "sync with a wrong Oracle client secret",
        &sync,
        |args| world.run(args),
        &Expected {
            exit: 3,
            code: "oracle_credentials_refused",
            says: &["refused the client credentials"],
            hint: &["ml-connector secret set"],
        },
    );
    assert!(!text.contains("not-the-oracle-secret"), "{text}");

    world.ok_with_stdin(
        &["secret", "set", "acme", "oracle-client-secret"],
        &oracle_secret,
    );
    world.ok_with_stdin(&["secret", "set", "acme", "tableau-pat"], "not-the-pat");
    let text = assert_reports(
        "sync with a wrong Tableau PAT",
        &sync,
        |args| world.run(args),
        &Expected {
            exit: 3,
            code: "tableau_credentials_refused",
            says: &["HTTP 401"],
            hint: &["pat_name", "ml-connector secret set"],
        },
    );
    assert!(!text.contains("not-the-pat"), "{text}");

    world.ok_with_stdin(&["secret", "set", "acme", "tableau-pat"], &pat);
    let closed = format!("http://127.0.0.1:{}", closed_port());
    let text = std::fs::read_to_string(&file)
        .expect("tenant file")
        .replace(&world.tableau.server_url(), &closed);
    std::fs::write(&file, text).expect("tenant file");
    world.ok(&["tenant", "apply", file.to_str().expect("path")]);
    assert_reports(
        "sync with Tableau not answering",
        &sync,
        |args| world.run(args),
        &Expected {
            exit: 4,
            code: "tableau_unreachable",
            says: &["request failed"],
            hint: &["[tableau] url"],
        },
    );

    // Another tenant, whose Oracle does not answer (a wrong url): exit 4
    // once the retries are spent.
    let oracle_root = world
        .oracle
        .base_url()
        .split("/fscmRestApi")
        .next()
        .unwrap_or_default()
        .to_owned();
    let nowhere = format!("http://127.0.0.1:{}", closed_port());
    let beta = world
        .tenant_toml("beta", &[ALL_PIPELINES[0]])
        .replace(&oracle_root, &nowhere);
    assert!(!beta.contains(&oracle_root), "{beta}");
    world.copy_demo_mappings("beta");
    let beta_file = world.dir.path().join("beta.toml");
    std::fs::write(&beta_file, beta).expect("tenant file");
    world.ok(&["tenant", "apply", beta_file.to_str().expect("path")]);
    world.ok_with_stdin(
        &["secret", "set", "beta", "oracle-client-secret"],
        &oracle_secret,
    );
    world.ok_with_stdin(&["secret", "set", "beta", "tableau-pat"], &pat);
    assert_reports(
        "sync with Oracle not answering",
        &["sync", "beta", "--once"],
        |args| world.run(args),
        &Expected {
            exit: 4,
            code: "oracle_unreachable",
            says: &["gave up after"],
            hint: &["[oracle] url"],
        },
    );
}

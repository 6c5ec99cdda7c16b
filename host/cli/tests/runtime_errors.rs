//! What an operator's mistakes and a damaged data directory do, through the
//! real binary: a wrong or missing master key, a missing secret, a corrupt
//! store file, a store file of a newer version, a bad tenant file (an
//! unknown field, a bad duration, a literal secret) and the replay of a
//! batch that does not exist each exit non-zero with an error that names
//! what to set or the file, line and field, and change nothing: the
//! tenant's batches, secrets and pipelines, the tenant list and the admin
//! audit log as they were, no request to Oracle, and byte for byte the
//! files a command refuses before opening them for writing (a damaged or
//! newer store file, the store of a tenant whose new file is refused).
//! (redb rewrites bookkeeping pages whenever a file is opened for writing
//! and closed, so other refusals are compared by content, not bytes.) Last, a grep for the secrets: after a
//! set-up and two syncs logged at `-vvv`, neither secret value nor the
//! master key appears in the store file, any file of the data directory,
//! or any command's stdout or stderr.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Output;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{ALL_PIPELINES, World, explain};

async fn world(seed: u64) -> World {
    World::start(
        SandboxConfig {
            seed,
            invoices: 60,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts `out` failed with exit `code` (1 runtime, 2 usage, 3
/// configuration or validation) and its stderr holds every one of `needles`.
fn assert_fails_saying(out: &Output, code: i32, what: &str, needles: &[&str]) {
    assert_eq!(
        out.status.code(),
        Some(code),
        "{what} should have failed with exit code {code}: {}",
        explain(out)
    );
    let text = stderr(out);
    for needle in needles {
        assert!(
            text.contains(needle),
            "{what}: the error should say `{needle}`: {}",
            explain(out)
        );
    }
}

/// What "changes nothing" compares: per tenant its batches, secret names
/// and pipelines, and the tenant list and admin audit log (read with the
/// right key).
fn logical_state(world: &World, tenants: &[&str]) -> serde_json::Value {
    let mut doc = serde_json::json!({
        "tenants": world.json(&["tenant", "list"]),
        "audit": world.json(&["audit", "--log"]),
    });
    for t in tenants {
        doc[*t] = serde_json::json!({
            "batches": world.json(&["batches", t, "--limit", "1000"]),
            "secrets": world.json(&["secret", "list", t]),
            "pipelines": world.json(&["pipeline", "list", t]),
        });
    }
    doc
}

/// Every file under `dir` with its bytes.
fn files_under(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if let Ok(bytes) = std::fs::read(&path) {
                out.push((path, bytes));
            }
        }
    }
    out.sort();
    out
}

/// Standard base64 (with padding) to bytes.
fn base64_decode(text: &str) -> Vec<u8> {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0);
    for c in text.trim().bytes().filter(|&c| c != b'=') {
        let v = ALPHABET
            .iter()
            .position(|&a| a == c)
            .unwrap_or_else(|| panic!("not base64: {c}")) as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_or_missing_master_key_is_refused_naming_what_to_set_and_changes_nothing() {
    let world = world(41).await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    world.ok(&["sync", "acme", "--once"]);
    let before = logical_state(&world, &["acme"]);
    let served = world.oracle.stats().served;

    let wrong = mlc_store::MasterKey::generate_base64().expose().to_owned();
    let with_key = |args: &[&str], key: Option<&str>, stdin: &str| -> Output {
        let mut c = world.command(args);
        match key {
            Some(k) => c.env("ML_CONNECTOR_MASTER_KEY", k),
            None => c.env_remove("ML_CONNECTOR_MASTER_KEY"),
        };
        let mut child = c
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        use std::io::Write;
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("stdin");
        child.wait_with_output().expect("wait")
    };

    // A different key than sealed the secrets.
    let out = with_key(&["sync", "acme", "--once"], Some(&wrong), "");
    assert_fails_saying(
        &out,
        3,
        "sync with a wrong master key",
        &["was sealed under master key", "ML_CONNECTOR_MASTER_KEY"],
    );
    let out = with_key(
        &["secret", "set", "acme", "tableau-pat"],
        Some(&wrong),
        "another-pat-value",
    );
    assert_fails_saying(
        &out,
        3,
        "secret set with a wrong master key",
        &["ML_CONNECTOR_MASTER_KEY"],
    );

    // No key at all, and a key that is not one.
    for (args, stdin) in [
        (&["sync", "acme", "--once"][..], ""),
        (&["secret", "set", "acme", "tableau-pat"][..], "x"),
    ] {
        let out = with_key(args, None, stdin);
        assert_fails_saying(
            &out,
            3,
            &format!("{args:?} without a master key"),
            &[
                "no master key",
                "ML_CONNECTOR_MASTER_KEY",
                "--master-key-file",
            ],
        );
        let out = with_key(args, Some("not-a-key"), stdin);
        assert_fails_saying(
            &out,
            3,
            &format!("{args:?} with a malformed master key"),
            &["not the base64 of 32 bytes", "ML_CONNECTOR_MASTER_KEY"],
        );
    }

    assert_eq!(
        world.oracle.stats().served,
        served,
        "a refused key must stop before any work (Oracle was asked)"
    );
    assert_eq!(
        logical_state(&world, &["acme"]),
        before,
        "a refused key changed the store"
    );
    // The right key still works: the secrets are as they were.
    let again = world.json(&["sync", "acme", "--once"]);
    assert_eq!(
        again["pipelines"][0]["report"]["action"]["type"], "nothing-new",
        "{again:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_secret_is_named_with_the_command_that_sets_it() {
    let world = world(42).await;
    world.copy_demo_mappings("acme");
    let file = world.dir.path().join("acme.toml");
    std::fs::write(&file, world.tenant_toml("acme", &[ALL_PIPELINES[0]])).expect("write");
    let applied = world.ok(&["tenant", "apply", file.to_str().expect("path")]);
    assert!(
        applied.contains("secret set acme tableau-pat"),
        "apply already says what is missing: {applied}"
    );
    world.ok_with_stdin(
        &["secret", "set", "acme", "oracle-client-secret"],
        world.oracle.client_secret().expose(),
    );
    let before = logical_state(&world, &["acme"]);
    let out = world.run(&["sync", "acme", "--once"]);
    assert_fails_saying(
        &out,
        3,
        "sync with the PAT secret not set",
        &["tableau-pat", "ml-connector secret set acme tableau-pat"],
    );
    assert_eq!(world.oracle.stats().served, 0, "Oracle was asked");
    assert_eq!(logical_state(&world, &["acme"]), before);
}

/// Sets up `acme` and `beta`, syncs both, then overwrites 64 KiB in the
/// middle of acme's store file; the damaged bytes.
async fn two_tenants_one_corrupt(seed: u64) -> (World, Vec<u8>) {
    let world = world(seed).await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    world.setup_tenant("beta", &[ALL_PIPELINES[0]]);
    world.ok(&["sync", "acme", "--once"]);
    world.ok(&["sync", "beta", "--once"]);
    let path = world.store_file("acme");
    let mut bytes = std::fs::read(&path).expect("store file");
    let middle = bytes.len() / 2;
    let end = (middle + 64 * 1024).min(bytes.len());
    for b in &mut bytes[middle..end] {
        *b = 0xA5;
    }
    std::fs::write(&path, &bytes).expect("corrupting");
    (world, bytes)
}

const ON_ACME: [&[&str]; 3] = [
    &["sync", "acme", "--once"],
    &["batches", "acme"],
    &["tenant", "show", "acme"],
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_file_stops_that_tenant_only_and_is_left_as_it_was() {
    let (world, bytes) = two_tenants_one_corrupt(43).await;
    let path = world.store_file("acme");
    let tenants = world.json(&["tenant", "list"]);
    for args in ON_ACME {
        let out = world.run(args);
        assert!(
            !out.status.success(),
            "{args:?} on a corrupt store should fail: {}",
            explain(&out)
        );
        assert!(
            std::fs::read(&path).expect("store file") == bytes,
            "{args:?} changed the corrupt store file"
        );
    }
    // The other tenant is not affected.
    assert_eq!(world.json(&["tenant", "list"]), tenants);
    world.oracle.mutate(3, 1);
    let beta = world.json(&["sync", "beta", "--once"]);
    assert_eq!(
        beta["pipelines"][0]["report"]["action"]["type"], "upserted",
        "{beta:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_store_file_gives_an_error_naming_the_file() {
    let (world, _) = two_tenants_one_corrupt(48).await;
    let path = world.store_file("acme").display().to_string();
    for args in ON_ACME {
        let out = world.run(args);
        assert_fails_saying(
            &out,
            1,
            &format!("{args:?} on a corrupt store"),
            &[&path, "damaged", "restore it from a backup"],
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{args:?}: an error, not a panic: {}",
            explain(&out)
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_file_of_a_newer_version_is_refused_unchanged() {
    let world = world(44).await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    world.ok(&["sync", "acme", "--once"]);
    let path = world.store_file("acme");
    let newer = mlc_store::SCHEMA_VERSION + 1;
    {
        const META: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("meta");
        let db = redb::Database::open(&path).expect("opening the store with redb");
        let tx = db.begin_write().expect("write");
        {
            let mut meta = tx.open_table(META).expect("meta");
            meta.insert("schema_version", newer.to_le_bytes().as_slice())
                .expect("insert");
        }
        tx.commit().expect("commit");
    }
    let bytes = std::fs::read(&path).expect("store file");
    let message = format!(
        "has schema version {newer}, newer than the {} this ml-connector understands",
        mlc_store::SCHEMA_VERSION
    );
    for args in [
        &["sync", "acme", "--once"][..],
        &["batches", "acme"][..],
        &["secret", "list", "acme"][..],
    ] {
        let out = world.run(args);
        assert_fails_saying(
            &out,
            3,
            &format!("{args:?} on a newer store"),
            &[
                &path.display().to_string(),
                &message,
                "upgrade ml-connector",
            ],
        );
        assert!(
            std::fs::read(&path).expect("store file") == bytes,
            "{args:?} changed the newer store file"
        );
    }
    let out = world.run_with_stdin(&["secret", "set", "acme", "tableau-pat"], "x");
    assert_fails_saying(&out, 3, "secret set on a newer store", &[&message]);
    assert!(std::fs::read(&path).expect("store file") == bytes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_tenant_file_names_the_file_line_and_field_and_changes_nothing() {
    let world = world(45).await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    let good = world.tenant_toml("acme", &[ALL_PIPELINES[0]]);
    let before = logical_state(&world, &["acme"]);
    let store_before = std::fs::read(world.store_file("acme")).expect("store");

    // (what, the edited file, the field named, what the message says, a
    // text the message must not contain)
    let line_of = |text: &str, needle: &str| {
        text.lines()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("`{needle}` not in {text}"))
            + 1
    };
    let unknown = good.replacen("[tableau]\n", "[tableau]\ncolour = \"blue\"\n", 1);
    let bad_every = format!("{good}every = \"90 minutes\"\n");
    let short_every = format!("{good}every = \"30s\"\n");
    let literal = good.replacen(
        "client_secret = \"secret:oracle-client-secret\"",
        "client_secret = \"hunter2-literal-value\"",
        1,
    );
    let cases = [
        (
            "an unknown field",
            unknown.clone(),
            "tableau.colour",
            line_of(&unknown, "colour ="),
            "unknown field",
        ),
        (
            "a bad duration",
            bad_every.clone(),
            "pipeline[0].every",
            line_of(&bad_every, "every ="),
            "",
        ),
        (
            "a duration out of range",
            short_every.clone(),
            "pipeline[0].every",
            line_of(&short_every, "every ="),
            "1m to 24h",
        ),
        (
            "a literal secret",
            literal.clone(),
            "oracle.client_secret",
            line_of(&literal, "client_secret ="),
            "secret:",
        ),
    ];
    for (what, text, field, line, says) in cases {
        let file = world.dir.path().join("acme-edited.toml");
        std::fs::write(&file, &text).expect("write");
        let out = world.run(&["tenant", "apply", file.to_str().expect("path")]);
        let located = format!("{}:{line}:", file.display());
        assert_fails_saying(
            &out,
            3,
            &format!("tenant apply of {what}"),
            &[&located, &format!("{field}: "), says],
        );
        assert!(
            !stderr(&out).contains("hunter2"),
            "the error repeats the literal secret: {}",
            explain(&out)
        );
    }
    // A new tenant's bad file creates no store file either.
    let file = world.dir.path().join("newco.toml");
    std::fs::write(&file, unknown.replace("id = \"acme\"", "id = \"newco\"")).expect("write");
    let out = world.run(&["tenant", "apply", file.to_str().expect("path")]);
    assert_fails_saying(&out, 3, "tenant apply of a new tenant", &["tableau.colour"]);
    assert!(
        !world.store_file("newco").exists(),
        "a refused tenant file created a store file"
    );

    assert!(
        std::fs::read(world.store_file("acme")).expect("store") == store_before,
        "a refused tenant file changed the tenant's store"
    );
    assert_eq!(logical_state(&world, &["acme"]), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_replay_of_a_batch_that_does_not_exist_is_refused_and_changes_nothing() {
    let world = world(46).await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    world.ok(&["sync", "acme", "--once"]);
    let existing = world.batch_ids("acme/invoices", "confirmed");
    assert_eq!(existing.len(), 1, "{existing:?}");
    let (prefix, _) = existing[0].rsplit_once('.').expect("batch id");
    let before = logical_state(&world, &["acme"]);
    let served = world.oracle.stats().served;

    let missing_seq = format!("{prefix}.000099");
    // An existing sequence number under another store instance is another
    // batch too (ids are never reused across stores).
    let other_instance =
        existing[0].replace(prefix.rsplit_once('.').expect("instance").1, "00000000");
    for id in [&missing_seq, &other_instance] {
        for command in ["replay", "audit"] {
            let out = world.run(&[command, "--batch", id]);
            assert_fails_saying(
                &out,
                3,
                &format!("{command} --batch {id}"),
                &[
                    &format!("batch {id} does not exist"),
                    "ml-connector batches acme/invoices",
                ],
            );
        }
    }
    let out = world.run(&["replay", "--batch", "acme.nosuch.00000000.000001"]);
    assert_fails_saying(
        &out,
        3,
        "replay --batch of another pipeline",
        &["has no pipeline `nosuch`"],
    );
    let out = world.run(&["replay", "--batch", "not-a-batch-id"]);
    assert_fails_saying(
        &out,
        2,
        "replay --batch of a malformed id",
        &["is not a batch id"],
    );
    assert_eq!(world.oracle.stats().served, served);
    assert_eq!(logical_state(&world, &["acme"]), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_store_the_data_dir_or_the_logs() {
    let world = world(47).await;
    let oracle_secret = world.oracle.client_secret().expose().to_owned();
    let pat = world.tableau.pat_secret().expose().to_owned();
    let master = world.master_key.clone();
    let mut outputs: Vec<(String, Output)> = Vec::new();
    let mut run = |args: &[&str], stdin: Option<&str>| {
        let mut all = vec!["-vvv"];
        all.extend_from_slice(args);
        let mut command = world.command(&all);
        // `-vvv`'s own filter: everything of ours at trace (the wasm
        // compiler's internals stay at info, or a sync logs gigabytes).
        command
            .env_remove("RUST_LOG")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = command.spawn().expect("spawn");
        {
            use std::io::Write;
            let mut input = child.stdin.take().expect("stdin");
            input
                .write_all(stdin.unwrap_or_default().as_bytes())
                .expect("stdin");
        }
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{all:?}: {}", explain(&out));
        eprintln!(
            "TIMING {all:?} {:?} stderr {} bytes",
            std::time::Instant::now(),
            out.stderr.len()
        );
        outputs.push((format!("{all:?}"), out));
    };
    world.copy_demo_mappings("acme");
    let file = world.dir.path().join("acme.toml");
    std::fs::write(&file, world.tenant_toml("acme", &ALL_PIPELINES)).expect("write");
    run(&["tenant", "apply", file.to_str().expect("path")], None);
    run(
        &["secret", "set", "acme", "oracle-client-secret"],
        Some(&oracle_secret),
    );
    run(&["secret", "set", "acme", "tableau-pat"], Some(&pat));
    run(&["sync", "acme", "--once"], None);
    world.oracle.mutate(5, 2);
    run(&["--output", "json", "sync", "acme", "--once"], None);
    for args in [
        &["tenant", "show", "acme"][..],
        &["--output", "json", "tenant", "show", "acme"][..],
        &["secret", "list", "acme"][..],
        &["--output", "json", "secret", "list", "acme"][..],
        &["--output", "json", "batches", "acme"][..],
        &["--output", "json", "audit", "--log"][..],
    ] {
        run(args, None);
    }
    let logged: usize = outputs.iter().map(|(_, o)| o.stderr.len()).sum();
    assert!(
        logged > 10_000,
        "-vvv logged almost nothing ({logged} bytes): the grep proves little"
    );

    let raw_key = base64_decode(&master);
    assert_eq!(raw_key.len(), 32, "the master key is 32 bytes");
    let needles: [(&str, &[u8]); 4] = [
        ("the Oracle client secret", oracle_secret.as_bytes()),
        ("the Tableau PAT", pat.as_bytes()),
        ("the master key (base64)", master.as_bytes()),
        ("the master key (raw bytes)", &raw_key),
    ];
    let files = files_under(&world.data_dir());
    assert!(
        files.iter().any(|(p, _)| p == &world.store_file("acme")),
        "the store file is not under the data dir: {:?}",
        files.iter().map(|(p, _)| p).collect::<Vec<_>>()
    );
    for (name, needle) in needles {
        for (path, bytes) in &files {
            assert!(
                !contains(bytes, needle),
                "{name} is in {} in clear",
                path.display()
            );
        }
        for (args, out) in &outputs {
            for (stream, bytes) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
                assert!(
                    !contains(bytes, needle),
                    "{name} is in the {stream} of {args}"
                );
            }
        }
    }
}

//! Replay through the real binary, from the store and never from Oracle:
//! `replay --batch` of an older batch after a newer one was confirmed,
//! `replay --record`, `replay --failed` and `replay --full` each leave the
//! invoices data source exactly equal to Oracle, never make a row older
//! than it was, and leave the Oracle sandbox's request counters untouched;
//! the newer values a later batch confirmed survive the replay of the batch
//! that carried the older version. The audit trail shows it: `audit
//! --record` lists every version of a record with the batch that carried
//! it, `audit --batch` a batch's history (a failure and its retry
//! included), `audit --log` every replay, and `audit --verify` passes.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::collections::BTreeMap;
use std::time::Instant;

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{ALL_PIPELINES, World, explain, first_difference, oracle_invoices, tableau_invoices};

type State = BTreeMap<i64, (String, i64)>;

/// Asserts Tableau's invoices equal Oracle's, and that no row is older
/// than in `before` (what Tableau held before the step).
async fn assert_exact_no_regression(world: &World, before: &State, step: &str) -> State {
    let now = tableau_invoices(world, "acme").await;
    let oracle = oracle_invoices(world);
    assert!(
        now == oracle,
        "after {step}, Tableau differs from Oracle: first difference (Tableau vs Oracle): {}",
        first_difference(&now, &oracle)
    );
    for (id, (_, was)) in before {
        let is = now.get(id).map(|v| v.1);
        assert!(
            is.is_some_and(|is| is >= *was),
            "after {step}, invoice {id} went back from {was} to {is:?}"
        );
    }
    now
}

/// Runs a replay, asserting it succeeds without a single request to
/// Oracle; its JSON report.
fn replay_offline(world: &World, args: &[&str]) -> serde_json::Value {
    let (served, requests, tokens) = (
        world.oracle.stats().served,
        world.oracle.request_count(),
        world.oracle.token_request_count(),
    );
    let mut all = vec!["--output", "json", "replay"];
    all.extend_from_slice(args);
    let out = world.run(&all);
    assert!(out.status.success(), "replay {args:?}: {}", explain(&out));
    assert_eq!(
        (
            world.oracle.stats().served,
            world.oracle.request_count(),
            world.oracle.token_request_count()
        ),
        (served, requests, tokens),
        "replay {args:?} asked Oracle (served, resource requests, token requests): {}",
        explain(&out)
    );
    let doc = support::stdout_json(&out);
    assert_eq!(doc["pipelines"][0]["ok"], true, "replay {args:?}: {doc:#}");
    doc
}

/// The batches of acme/invoices by sequence number.
fn batches_by_seq(world: &World) -> BTreeMap<u64, serde_json::Value> {
    world.json(&["batches", "acme/invoices", "--limit", "1000"])["batches"]
        .as_array()
        .expect("batches")
        .iter()
        .map(|b| (b["seq"].as_u64().expect("seq"), b.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_are_exact_offline_never_regress_and_are_audited() {
    let started = Instant::now();
    let world = World::start(
        SandboxConfig {
            seed: 31,
            invoices: 150,
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.setup_tenant("acme", &[ALL_PIPELINES[0]]);
    let sync = |what: &str| {
        let out = world.run(&["sync", "acme", "--once"]);
        assert!(out.status.success(), "{what}: {}", explain(&out));
    };

    // Batch 1 loads everything; invoice `x` changes in batch 2 and again
    // in batch 3.
    sync("the first load");
    let x = *oracle_invoices(&world).keys().nth(17).expect("an invoice");
    let mut versions = vec![oracle_invoices(&world)[&x].1];
    for what in ["batch 2", "batch 3"] {
        world.oracle.update("invoices", x).expect("update");
        world.oracle.mutate(5, 2);
        sync(what);
        versions.push(oracle_invoices(&world)[&x].1);
    }
    assert!(
        versions.windows(2).all(|w| w[0] < w[1]),
        "three versions of {x}: {versions:?}"
    );
    let mut state = assert_exact_no_regression(&world, &State::new(), "three syncs").await;
    let batches = batches_by_seq(&world);
    let batch_id = |seq: u64| batches[&seq]["id"].as_str().expect("id").to_owned();

    // Replaying batch 2 (which carried x's second version) after batch 3
    // was confirmed leaves x's third version in Tableau.
    let doc = replay_offline(&world, &["--batch", &batch_id(2)]);
    assert_eq!(
        doc["pipelines"][0]["report"]["action"]["type"], "upserted",
        "{doc:#}"
    );
    state = assert_exact_no_regression(&world, &state, "replay --batch of batch 2").await;
    assert_eq!(
        state[&x].1, versions[2],
        "the replay of batch 2 brought back invoice {x}'s older version"
    );

    // One record.
    let record = format!("acme/invoices/{x}");
    replay_offline(&world, &["--record", &record]);
    state = assert_exact_no_regression(&world, &state, "replay --record").await;

    // A failed batch: Tableau fails the job; the replay retries it from the
    // store.
    world.oracle.mutate(6, 3);
    world
        .tableau
        .faults()
        .fail_next_job("injected: backgrounder restarted");
    let failed = world.fails(&["sync", "acme", "--once"]);
    let failed_ids = world.batch_ids("acme/invoices", "failed");
    assert_eq!(
        failed_ids.len(),
        1,
        "one failed batch: {}",
        explain(&failed)
    );
    // While it is open, other replays are refused (it must finish first).
    let refused = world.fails(&["replay", "--full", "acme/invoices"]);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("replay --failed acme/invoices"),
        "the refusal says what to do: {}",
        explain(&refused)
    );
    replay_offline(&world, &["--failed", "acme/invoices"]);
    assert!(world.batch_ids("acme/invoices", "failed").is_empty());
    assert!(
        world
            .batch_ids("acme/invoices", "confirmed")
            .contains(&failed_ids[0]),
        "the failed batch is confirmed by its replay"
    );
    state = assert_exact_no_regression(&world, &state, "replay --failed").await;

    // The whole data source, re-published from the store.
    let doc = replay_offline(&world, &["--full", "acme/invoices"]);
    assert_eq!(
        doc["pipelines"][0]["report"]["action"]["type"], "published",
        "{doc:#}"
    );
    assert_exact_no_regression(&world, &state, "replay --full").await;

    // audit --record: every version of x, the batch that carried it, confirmed.
    let audit = world.json(&["audit", "--record", &record]);
    let seen: Vec<(String, String, String)> = audit["versions"]
        .as_array()
        .expect("versions")
        .iter()
        .map(|v| {
            assert!(v["confirmed_at"].is_string(), "{audit:#}");
            (
                v["batch"].as_str().unwrap_or("?").to_owned(),
                v["last_update"].as_str().unwrap_or("?").to_owned(),
                v["state"].as_str().unwrap_or("?").to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String, String)> = (1..=3)
        .map(|seq| {
            (
                batch_id(seq),
                mlc_common::time::format_timestamp(versions[seq as usize - 1]),
                "confirmed".to_owned(),
            )
        })
        .collect();
    assert_eq!(seen, expected, "audit --record {record}: {audit:#}");

    // audit --batch: batch 2's journal, and the failed batch's failure and
    // retry.
    let states = |id: &str| -> (Vec<String>, serde_json::Value) {
        let doc = world.json(&["audit", "--batch", id]);
        let states = doc["batch"]["history"]
            .as_array()
            .expect("history")
            .iter()
            .map(|c| c["state"].as_str().unwrap_or("?").to_owned())
            .collect();
        (states, doc)
    };
    let (history, doc) = states(&batch_id(2));
    let tail: Vec<&str> = history.iter().map(String::as_str).rev().take(5).collect();
    assert_eq!(
        tail,
        ["confirmed", "submitted", "written", "mapped", "pulled"],
        "audit --batch: {doc:#}"
    );
    assert!(
        doc["sent"]
            .as_str()
            .unwrap_or_default()
            .contains("upserted"),
        "audit --batch says what was sent: {doc:#}"
    );
    let (history, doc) = states(&failed_ids[0]);
    let failure = history.iter().position(|s| s == "failed");
    assert!(
        failure.is_some() && history.last().map(String::as_str) == Some("confirmed"),
        "audit --batch of the failed batch shows the failure, then the confirmation: {doc:#}"
    );
    assert!(
        doc.to_string().contains("backgrounder restarted"),
        "and Tableau's notes: {doc:#}"
    );

    // audit --log: every replay, with the batch it created.
    let log = world.json(&["audit", "--log"]);
    let replays: Vec<String> = log["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .filter(|e| e["tenant"] == "acme")
        .filter_map(|e| e["action"].as_str())
        .filter(|a| a.starts_with("replay."))
        .map(str::to_owned)
        .collect();
    assert_eq!(
        replays,
        [
            "replay.batch",
            "replay.record",
            "replay.failed",
            "replay.full"
        ],
        "audit --log: {log:#}"
    );
    let verify = world.json(&["audit", "--verify"]);
    assert_eq!(verify["ok"], true, "audit --verify: {verify:#}");
    eprintln!("took {:.1} s", started.elapsed().as_secs_f64());
}

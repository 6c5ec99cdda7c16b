//! `kill -9` of `ml-connector sync --once` at 20 random moments of a long
//! sync, each followed by a restart: the journal resumes every batch from
//! its last durable state, Tableau ends exactly equal to Oracle (no row
//! lost, none doubled, none stale), every batch ends confirmed, and no batch
//! is pulled from Oracle twice.
//!
//! The sync: a first load of 4,000 invoices (one full batch, 40 pages of
//! 100 from an Oracle sandbox with latency), then incremental batches of at
//! most 300 records while Oracle changes between restarts (Tableau's jobs
//! slowed to 1 s). The kills: during the first load at random moments, then
//! after the request of its last page (landing in the last page, mapping,
//! writing or publishing); during the incremental phase at random moments,
//! a random moment after the child's own `update submitted` log line
//! (Tableau accepted the upsert, its job runs: between submit and confirm),
//! and during a restart that resumes a submitted batch. The store is locked
//! while `sync` runs, so the CLI cannot be asked mid-run: after each kill
//! `batches --output json` tells which state the kill left (printed), and
//! the test asserts enough kills left a batch `submitted`.
//!
//! The moments come from a seeded RNG: the seed is printed, and
//! `ML_CONNECTOR_CRASH_SEED=<n>` draws the same moments again (what state each one
//! hits still depends on the machine's speed).
//!
//! The pipeline runs without an overlap (`overlap_secs = 0`) so that the
//! Oracle request bound is exact; with the default overlap a resumed pull
//! still continues strictly after its position
//! (`a_resumed_pull_does_not_ask_oracle_again_for_the_overlap`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod support;

use std::os::unix::process::ExitStatusExt;
use std::sync::mpsc::RecvTimeoutError;
use std::time::{Duration, Instant};

use mlc_sandbox_oracle::SandboxConfig;
use mlc_sandbox_tableau::TableauSandboxConfig;
use support::{Ended, World, oracle_invoices, tableau_invoices_mapped};

/// The mapping the crash test uses: it looks nothing up, so the tenant
/// needs no reference datasets and every Oracle request the sandbox counts
/// belongs to the `invoices` pipeline.
const SCRIPT: &str = "mappings/bench/invoices.toml";
/// Records per Oracle page (`[oracle] page_size`).
const PAGE: u64 = 100;
/// `max_records_per_batch` of the pipeline: an incremental batch stops
/// after three pages.
const MAX_PER_BATCH: u64 = 300;
/// Invoices of the first load.
const INVOICES: u64 = 4000;
/// Kills in all.
const KILLS: usize = 20;
/// Kills during the first load (a full batch: pulling, mapping, publish).
const FIRST_LOAD_KILLS: usize = 6;
/// How long the Tableau sandbox keeps every job running.
const SLOW_JOB: Duration = Duration::from_millis(1000);
/// Log filter of the child: the upsert's `update submitted` line.
const CHILD_LOG: &str = "warn,mlc_tableau=info,mlc_sync=info";

/// splitmix64: a seeded, dependency-free RNG.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..hi` milliseconds.
    fn millis(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.next() % (hi - lo))
    }
}

/// When to strike.
#[derive(Clone, Copy, Debug)]
enum Moment {
    /// This long after the start.
    After(Duration),
    /// This long after the child logs `update submitted`.
    AfterSubmit(Duration),
    /// This long after the Oracle sandbox admitted this many requests of
    /// the run (the last page of the pull: the kill lands in the last page,
    /// or mapping, writing or publishing the full batch).
    AfterRequests(u64, Duration),
}

/// The tenant: one `invoices` pipeline, small pages, small incremental
/// batches; `overlap` in seconds, or the default.
fn tenant_text(world: &World, overlap: Option<u64>) -> String {
    let overlap = overlap.map_or_else(String::new, |s| format!("overlap_secs = {s}\n"));
    let base = world.oracle.base_url();
    let url = base.split("/fscmRestApi").next().unwrap_or(&base);
    format!(
        r#"id = "acme"

[oracle]
url = "{url}"
token_url = "{token}"
client_id = "{client}"
client_secret = "secret:oracle-client-secret"
scope = "{scope}"
page_size = {PAGE}
# One request at a time: the first load is pulled serially, so the
# request bound below is exact (a sliced load re-reads, after a kill, the
# pages other slices had delivered past its safe position).
max_concurrency = 1
{overlap}
[tableau]
url = "{tab}"
site = "{site}"
project = "{project}"
pat_name = "{pat}"
pat_secret = "secret:tableau-pat"

[[pipeline]]
id = "invoices"
resource = "invoices"
datasource = "acme invoices"
mapping = "invoices.toml"
max_records_per_batch = {MAX_PER_BATCH}
"#,
        token = world.oracle.token_url(),
        client = world.oracle.client_id(),
        scope = world.oracle.scope(),
        tab = world.tableau.server_url(),
        site = world.tableau.site_content_url(),
        project = world.tableau.project_name(),
        pat = world.tableau.pat_name(),
    )
}

/// The pipeline's batches, oldest first.
fn batches(world: &World) -> Vec<serde_json::Value> {
    let listed = world.json(&["batches", "acme/invoices", "--limit", "100000"]);
    let mut all = listed["batches"].as_array().expect("batches").clone();
    all.reverse();
    all
}

/// The state of the pipeline's unfinished batch (`failed` as
/// `failed(<resume state>)`), or `none`.
fn open_state(world: &World) -> String {
    batches(world)
        .iter()
        .find(|b| b["state"]["state"] != "confirmed")
        .map_or_else(
            || "none".to_owned(),
            |b| {
                let s = b["state"]["state"].as_str().unwrap_or("?").to_owned();
                if s == "failed" {
                    format!(
                        "failed({})",
                        b["state"]["resume"]["state"].as_str().unwrap_or("?")
                    )
                } else {
                    s
                }
            },
        )
}

/// One run of `sync acme/invoices --once`, killed at `moment` unless it
/// ends first.
fn run(world: &World, moment: Option<Moment>) -> Ended {
    let served_before = world.oracle.stats().served;
    let mut child = world.spawn(
        &["--output", "json", "sync", "acme/invoices", "--once"],
        &[("RUST_LOG", CHILD_LOG)],
    );
    let mut deadline = match moment {
        Some(Moment::After(d)) => Some(child.started + d),
        _ => None,
    };
    let silent_since = Instant::now();
    loop {
        let wait = match (deadline, moment) {
            (Some(d), _) => d.saturating_duration_since(Instant::now()),
            // Watching the sandbox's counter.
            (None, Some(Moment::AfterRequests(..))) => Duration::from_millis(5),
            _ => Duration::from_secs(120),
        };
        match child.next_line(wait) {
            Ok(line) => {
                if let Some(Moment::AfterSubmit(d)) = moment
                    && deadline.is_none()
                    && line.contains("update submitted")
                {
                    deadline = Some(Instant::now() + d);
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                if let Some(d) = deadline
                    && Instant::now() >= d
                {
                    return child.kill9();
                }
                if let (None, Some(Moment::AfterRequests(n, d))) = (deadline, moment)
                    && world.oracle.stats().served - served_before >= n
                {
                    deadline = Some(Instant::now() + d);
                }
                assert!(
                    silent_since.elapsed() < Duration::from_secs(120),
                    "sync ran for 120 s: {:?}",
                    child.stderr
                );
            }
            Err(RecvTimeoutError::Disconnected) => return child.wait(),
        }
    }
}

/// What one run did.
struct Step {
    /// The state the kill (or the end) left.
    after: String,
    killed: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_twenty_moments_ends_exact_and_pulls_no_batch_twice() {
    let seed = std::env::var("ML_CONNECTOR_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.as_nanos() as u64)
        });
    eprintln!("runtime_crash: seed {seed} (ML_CONNECTOR_CRASH_SEED={seed} replays the moments)");
    let mut rng = Rng(seed);
    let test_started = Instant::now();

    let world = World::start(
        SandboxConfig {
            seed: 5,
            invoices: INVOICES,
            // ~0.2 s per page of 100: a first load of 40 pages takes
            // several seconds, so kills land inside it.
            latency: Duration::from_millis(40),
            latency_per_record: Duration::from_micros(1500),
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.tableau.faults().slow_jobs(SLOW_JOB);
    world.copy_mapping("acme", SCRIPT, "invoices.toml");
    // No overlap: every pull is then pure key-set continuation and the
    // request bound below is exact (a new incremental batch re-reads the
    // overlap before the confirmed cursor by design; a resumed one does
    // not: see `a_resumed_pull_does_not_ask_oracle_again_for_the_overlap`).
    world.apply_tenant_text("acme", &tenant_text(&world, Some(0)));

    let served_at_start = world.oracle.stats().served;
    let mut steps: Vec<Step> = Vec::new();
    let mut mutations = 0u64;
    let step = |world: &World, moment: Option<Moment>, steps: &mut Vec<Step>| -> Ended {
        let before = open_state(world);
        let served = world.oracle.stats().served;
        let ended = run(world, moment);
        let requests = world.oracle.stats().served - served;
        if !ended.killed {
            assert!(
                ended.status.success(),
                "sync failed ({moment:?}, batch was {before}): {}\n{}",
                ended.stdout,
                ended.stderr
            );
        } else {
            assert_eq!(
                ended.status.signal(),
                Some(9),
                "not ended by SIGKILL: {}",
                ended.stderr
            );
        }
        let after = open_state(world);
        // A batch recorded before this run is never asked of Oracle again:
        // a run does one cycle, so a run that found it past pulling makes
        // no request at all.
        if !before.contains("pulling") && before != "none" {
            assert_eq!(
                requests, 0,
                "the run resuming a {before} batch asked Oracle {requests} times ({moment:?})\n{}",
                ended.stderr
            );
        }
        eprintln!(
            "run {:>2}: {:<28} {:<22} -> {:<10} {:>3} requests {:>6.2} s{}",
            steps.len() + 1,
            format!("{moment:?}"),
            before,
            after,
            requests,
            ended.took.as_secs_f64(),
            if ended.killed { "  KILLED" } else { "" }
        );
        steps.push(Step {
            after,
            killed: ended.killed,
        });
        ended
    };
    let kills = |steps: &[Step]| steps.iter().filter(|s| s.killed).count();

    // Phase 1: the first load (one full batch of INVOICES / PAGE pages),
    // killed at random moments: first while pulling, then after the request
    // for its last page (in the last page, mapping, writing or publishing).
    while kills(&steps) < FIRST_LOAD_KILLS {
        let moment = if kills(&steps) < FIRST_LOAD_KILLS / 2 {
            Moment::After(rng.millis(300, 3500))
        } else if !["none", "pulling"].contains(&open_state(&world).as_str()) {
            // Recorded: the rest of the batch asks nothing of Oracle.
            Moment::After(rng.millis(100, 2500))
        } else {
            let recorded = batches(&world)
                .first()
                .map_or(0, |b| b["records"].as_u64().unwrap_or(0));
            let pages = (INVOICES - recorded).div_ceil(PAGE).max(1);
            Moment::AfterRequests(pages, rng.millis(0, 900))
        };
        let ended = step(&world, Some(moment), &mut steps);
        if !ended.killed {
            break;
        }
    }
    // Phase 2: incremental batches of at most MAX_PER_BATCH records, Oracle
    // changing between some restarts; every other kill strikes after a
    // submit.
    world.oracle.mutate(1500, 900);
    mutations += 2400;
    let mut runs = 0u32;
    while kills(&steps) < KILLS {
        runs += 1;
        assert!(runs < 80, "80 runs without 20 kills");
        if runs.is_multiple_of(3) {
            world.oracle.mutate(6, 3);
            mutations += 9;
        }
        let moment = if open_state(&world) == "submitted" {
            // A resumed submit sends the same RequestID again and waits for
            // the job: let it, or kill it on the way.
            rng.next()
                .is_multiple_of(2)
                .then(|| Moment::After(rng.millis(100, 700)))
        } else if runs.is_multiple_of(2) {
            Some(Moment::AfterSubmit(rng.millis(0, 800)))
        } else {
            Some(Moment::After(rng.millis(200, 2000)))
        };
        let ended = step(&world, moment, &mut steps);
        if !ended.killed && ended.stdout.contains("\"nothing-new\"") {
            // Caught up before the kills were spent: more changes.
            world.oracle.mutate(300, 100);
            mutations += 400;
        }
    }
    // Phase 3: to completion, then a quiet cycle.
    let mut finished = false;
    for _ in 0..40 {
        let ended = step(&world, None, &mut steps);
        if ended.stdout.contains("\"nothing-new\"") {
            finished = true;
            break;
        }
    }
    assert!(finished, "40 runs did not catch up");
    let quiet = step(&world, None, &mut steps);
    assert!(quiet.stdout.contains("\"nothing-new\""), "{}", quiet.stdout);
    let served = world.oracle.stats().served - served_at_start;

    // Tableau equals Oracle exactly: no row lost, none doubled (the reader
    // fails on a duplicate key), none stale.
    let oracle = oracle_invoices(&world);
    let tableau = tableau_invoices_mapped(&world, "acme", "invoices", SCRIPT).await;
    if tableau != oracle {
        let missing: Vec<_> = oracle
            .keys()
            .filter(|k| !tableau.contains_key(k))
            .take(10)
            .collect();
        let extra: Vec<_> = tableau
            .keys()
            .filter(|k| !oracle.contains_key(k))
            .take(10)
            .collect();
        let stale: Vec<_> = oracle
            .iter()
            .filter(|(k, v)| tableau.get(k).is_some_and(|t| t != *v))
            .take(10)
            .collect();
        for b in batches(&world) {
            eprintln!(
                "batch {} {} records {} changed {} state {} history {:?}",
                b["seq"],
                b["kind"]["type"],
                b["records"],
                b["changed"],
                b["state"]["state"],
                b["history"].as_array().map(|h| h
                    .iter()
                    .map(|c| c["state"].as_str().unwrap_or("?"))
                    .collect::<Vec<_>>())
            );
        }
        for key in missing
            .iter()
            .take(2)
            .chain(stale.iter().take(2).map(|(k, _)| k))
        {
            let audit = world.run(&["audit", "--record", &format!("acme/invoices/{key}")]);
            eprintln!(
                "{key}: Oracle {:?}\n{}",
                oracle.get(key),
                support::explain(&audit)
            );
        }
        panic!(
            "seed {seed}: Tableau differs from Oracle ({} vs {} rows); missing {missing:?}, extra {extra:?}, stale {stale:?}",
            tableau.len(),
            oracle.len()
        );
    }

    // Every batch confirmed.
    let all = batches(&world);
    for b in &all {
        assert_eq!(b["state"]["state"], "confirmed", "seed {seed}: {b:#}");
    }

    // No batch pulled twice. An uninterrupted pull of a batch asks for
    // ceil(versions / PAGE) pages, at least one: pages are read one at a
    // time, each full page but the last; a batch that reaches
    // MAX_PER_BATCH stops after a full page, a pull that reaches the end
    // stops on `hasMore: false` without asking again, and a quiet cycle asks
    // once. With no overlap nothing is read twice, so each version read is
    // one the batch recorded (`changed`; `records` counts keys, and a key
    // Oracle changed again while its batch was open is read again, as a new
    // version). A kill costs at most the page in flight: every recorded page
    // was full, so the resumed pull starts page-aligned after its recorded
    // position, and the page whose answer was lost (or not yet recorded) is
    // asked again once. A kill in any other state costs nothing (asserted
    // run by run above).
    let needed: u64 = all
        .iter()
        .map(|b| {
            b["changed"]
                .as_u64()
                .expect("changed")
                .div_ceil(PAGE)
                .max(1)
        })
        .sum();
    let killed_pulling = steps
        .iter()
        .filter(|s| s.killed && s.after.contains("pulling"))
        .count() as u64;
    let submitted = steps
        .iter()
        .filter(|s| s.killed && s.after.contains("submitted"))
        .count();
    let killed = kills(&steps);
    eprintln!(
        "runtime_crash: seed {seed}: {} runs, {killed} kills ({killed_pulling} pulling, {submitted} submitted), {} batches, {mutations} changes, {served} Oracle requests (bound {needed} + {killed_pulling}), {:.1} s",
        steps.len(),
        all.len(),
        test_started.elapsed().as_secs_f64()
    );
    assert_eq!(killed, KILLS);
    assert!(
        served <= needed + killed_pulling,
        "seed {seed}: {served} Oracle requests, more than the {needed} an uninterrupted run needs + {killed_pulling} kills while pulling: a batch was pulled twice"
    );
    assert!(
        submitted >= 3,
        "seed {seed}: only {submitted} kills left a batch submitted (want 3 or more between submit and confirm)"
    );
}

/// A first load killed while pulling resumes from its recorded position:
/// with the default overlap (300 s) the resumed pull must not ask Oracle
/// again for the pages before that position.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resumed_pull_does_not_ask_oracle_again_for_the_overlap() {
    const N: u64 = 2000;
    let world = World::start(
        SandboxConfig {
            seed: 6,
            invoices: N,
            latency: Duration::from_millis(40),
            latency_per_record: Duration::from_micros(1500),
            ..SandboxConfig::default()
        },
        TableauSandboxConfig::default(),
    )
    .await;
    world.copy_mapping("acme", SCRIPT, "invoices.toml");
    world.apply_tenant_text("acme", &tenant_text(&world, None));
    let killed = run(
        &world,
        Some(Moment::AfterRequests(10, Duration::from_millis(100))),
    );
    assert!(killed.killed, "the first load ended before the kill");
    let open = batches(&world);
    let recorded = open[0]["records"].as_u64().expect("records");
    assert_eq!(open[0]["state"]["state"], "pulling", "{open:#?}");
    let resumed = run(&world, None);
    assert!(resumed.status.success(), "{}", resumed.stderr);
    let served = world.oracle.stats().served;
    // The sandbox stamps one invoice a second: the 300 s overlap holds 300
    // records, 3 pages. Uninterrupted: N / PAGE pages; the kill costs at
    // most the page in flight.
    assert!(
        served <= N / PAGE + 1,
        "{served} requests for a first load of {} pages killed once while pulling (after {recorded} records): the resumed pull asked again for what the batch had recorded",
        N / PAGE
    );
    assert_eq!(
        tableau_invoices_mapped(&world, "acme", "invoices", SCRIPT).await,
        oracle_invoices(&world)
    );
}

//! Guests that misbehave when called, and a tenant hogging the call permits.

use std::thread::JoinHandle;
use std::time::Duration;

use mlc_plugin::{LoadOptions, PluginError, Sample};

use crate::support::{Case, misbehave, options, records};

/// Tenant `hog` runs `threads` looping calls (each stopped by its 1 s
/// deadline, twice per thread) while tenant `acme` maps small batches;
/// returns the slowest `acme` call and how many hog calls failed with the
/// deadline.
fn hog_and_measure(case: &Case, threads: usize) -> (Duration, usize) {
    let runtime = &case.runtime;
    runtime
        .load_blocking("hog", "items", &misbehave(), options("loop"))
        .unwrap_or_else(|e| panic!("{}: loading the hog: {}", case.name, e.chain()));
    runtime
        .set_tenant_limits(
            "hog",
            mlc_plugin::PluginLimits {
                deadline: Duration::from_secs(1),
                ..mlc_plugin::PluginLimits::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    let hogs: Vec<JoinHandle<usize>> = (0..threads)
        .map(|_| {
            let runtime = runtime.clone();
            std::thread::spawn(move || {
                (0..2)
                    .filter(|_| {
                        matches!(
                            runtime.map_batch_blocking("hog", "items", "items", &records(1)),
                            Err(PluginError::Deadline { .. })
                        )
                    })
                    .count()
            })
        })
        .collect();
    // Let the hogs take their permits.
    std::thread::sleep(Duration::from_millis(200));
    let mut slowest = Duration::ZERO;
    while hogs.iter().any(|h| !h.is_finished()) {
        let started = std::time::Instant::now();
        let (batch, _) = runtime
            .map_batch_blocking("acme", "items", "items", &records(5))
            .unwrap_or_else(|e| panic!("{}: acme's call failed: {}", case.name, e.chain()));
        assert_eq!(batch.rows.len(), 5, "{}", case.name);
        slowest = slowest.max(started.elapsed());
        std::thread::sleep(Duration::from_millis(20));
    }
    let deadlines = hogs.into_iter().map(|h| h.join().unwrap_or(0)).sum();
    (slowest, deadlines)
}

#[test]
fn a_tenant_saturating_its_share_does_not_stall_the_others() {
    // 4 permits: the hog may hold 2; acme and the bystander share the rest.
    let case = Case::new("fair share");
    let (slowest, deadlines) = hog_and_measure(&case, 8);
    assert_eq!(deadlines, 16, "every hog call ends at its deadline");
    assert!(
        slowest < Duration::from_millis(500),
        "an acme call waited {slowest:?} while the hog looped (1 s deadlines): the hog took the pool"
    );
    eprintln!("fair share: slowest acme call {slowest:?} while the hog looped");
    case.finish();
}

#[test]
fn without_a_share_the_hog_would_take_the_pool() {
    // The control: with the share set to the whole pool, acme's calls wait
    // for the hog's deadlines, which is what the share prevents.
    let case = Case::with("no share (control)", |config| {
        config.max_calls_per_tenant = Some(4);
    });
    let (slowest, _) = hog_and_measure(&case, 8);
    eprintln!("no share: slowest acme call {slowest:?} while the hog looped");
    assert!(
        slowest >= Duration::from_millis(500),
        "acme never waited ({slowest:?}): this test could not tell a fair pool from an unfair one"
    );
    case.finish();
}

/// Loads misbehave in `mode` as acme's plugin `bad`, maps a batch with it
/// and hands the outcome to `check`; then asserts acme's `items` still
/// serves its previous version, nothing was refused and the bystander kept
/// mapping.
fn batch_case(
    name: &'static str,
    mode: &str,
    limits: Option<mlc_plugin::PluginLimits>,
    check: impl FnOnce(Result<mlc_common::MappedBatch, PluginError>),
) {
    let case = Case::new(name);
    if let Some(limits) = limits {
        case.runtime
            .set_tenant_limits("acme", limits)
            .unwrap_or_else(|e| panic!("{name}: {}", e.chain()));
    }
    case.runtime
        .load_blocking("acme", "bad", &misbehave(), options(mode))
        .unwrap_or_else(|e| panic!("{name}: loading mode {mode}: {}", e.chain()));
    let outcome = case
        .runtime
        .map_batch_blocking("acme", "bad", "items", &records(4))
        .map(|(batch, _)| batch);
    if let Err(err) = &outcome {
        eprintln!("{name}: the batch failed: {}", err.chain());
    }
    check(outcome);
    // A failed batch changes nothing: no refusal, the other plugin serves.
    let refusals = case.runtime.refusals();
    assert_eq!(
        refusals.len(),
        case.refusals_before,
        "{name}: a batch failure was recorded as a refusal: {refusals:?}"
    );
    let (batch, version) = case
        .runtime
        .map_batch_blocking("acme", "items", "items", &records(3))
        .unwrap_or_else(|e| panic!("{name}: acme's other plugin fails: {}", e.chain()));
    assert_eq!((batch.rows.len(), &version), (3, &case.previous), "{name}");
    // The plugin that failed maps again on its next call (a fresh store).
    if mode != "loop" {
        let again = case
            .runtime
            .map_batch_blocking("acme", "bad", "items", &records(1))
            .map(|_| ())
            .map_err(|e| e.kind());
        eprintln!("{name}: next call of the same plugin: {again:?}");
    }
    case.finish();
}

/// Asserts `outcome` failed with `kind`, the message saying each of `needles`.
fn failed_with(
    name: &str,
    kind: &str,
    needles: &[&str],
) -> impl FnOnce(Result<mlc_common::MappedBatch, PluginError>) {
    let (name, kind) = (name.to_owned(), kind.to_owned());
    let needles: Vec<String> = needles.iter().map(|n| (*n).to_owned()).collect();
    move |outcome| {
        let err = match outcome {
            Ok(batch) => panic!(
                "{name}: mapped {} rows instead of failing",
                batch.rows.len()
            ),
            Err(err) => err,
        };
        let text = err.chain();
        assert_eq!(err.kind(), kind, "{name}: {text}");
        for needle in &needles {
            assert!(
                text.contains(needle.as_str()),
                "{name}: does not say {needle:?}: {text}"
            );
        }
    }
}

#[test]
fn a_guest_that_loops_is_stopped_at_its_deadline() {
    let limits = mlc_plugin::PluginLimits {
        deadline: Duration::from_millis(300),
        ..mlc_plugin::PluginLimits::default()
    };
    batch_case(
        "loop",
        "loop",
        Some(limits),
        failed_with(
            "loop",
            "deadline",
            &["ran past its deadline of 300ms", "acme"],
        ),
    );
}

#[test]
fn a_guest_that_traps_fails_its_batch_with_its_panic_message() {
    batch_case(
        "trap",
        "trap",
        None,
        failed_with(
            "trap",
            "trap",
            &["trapped", "misbehave: trapping on purpose"],
        ),
    );
}

#[test]
fn a_guest_that_grows_its_memory_without_end_hits_the_cap() {
    batch_case(
        "memory bomb",
        "memory-bomb",
        None,
        failed_with(
            "memory bomb",
            "memory-limit",
            &["exceeded its memory limit", &format!("limit {}", 64 << 20)],
        ),
    );
}

#[test]
fn a_guest_that_recurses_without_end_overflows_the_wasm_stack() {
    batch_case(
        "stack overflow",
        "recurse",
        None,
        failed_with("stack overflow", "trap", &["call stack exhausted"]),
    );
}

#[test]
fn a_guest_returning_a_huge_output_is_cut_at_the_output_cap() {
    let limits = mlc_plugin::PluginLimits {
        max_output_rows: 1000,
        ..mlc_plugin::PluginLimits::default()
    };
    batch_case(
        "huge output",
        "huge:5000",
        Some(limits),
        failed_with(
            "huge output",
            "output-too-large",
            &["produced too large an output", "rows, limit 1000"],
        ),
    );
}

#[test]
fn a_guest_returning_a_wrong_schema_fails_its_batch() {
    batch_case(
        "wrong schema",
        "wrong-schema",
        None,
        failed_with(
            "wrong schema",
            "schema-violation",
            &["broke its own schema"],
        ),
    );
}

#[test]
fn a_guest_returning_wrongly_typed_values_fails_its_batch() {
    batch_case(
        "wrong type",
        "wrong-type",
        None,
        failed_with(
            "wrong type",
            "schema-violation",
            &["broke its own schema", "Index"],
        ),
    );
}

#[test]
fn a_guest_returning_text_offsets_inside_a_character_fails_its_batch() {
    batch_case(
        "bad utf-8 offsets",
        "bad-utf8-offsets",
        None,
        failed_with(
            "bad utf-8 offsets",
            "schema-violation",
            &["column `Label` row 0", "not on a character boundary"],
        ),
    );
}

#[test]
fn out_of_range_decimals_reject_their_records_with_the_column_named() {
    batch_case(
        "decimal out of range",
        "decimal-out-of-range",
        None,
        |outcome| {
            let batch = outcome.unwrap_or_else(|e| {
                panic!(
                    "decimal out of range: the batch failed instead of rejecting: {}",
                    e.chain()
                )
            });
            assert!(batch.rows.is_empty(), "{:?}", batch.rows);
            assert_eq!(batch.rejects.len(), 4, "{:?}", batch.rejects);
            for reject in &batch.rejects {
                assert_eq!(reject.field.as_deref(), Some("Amount"), "{reject:?}");
                assert!(
                    reject.reason.contains("38") || reject.reason.contains("precision"),
                    "the reason does not name the precision: {reject:?}"
                );
            }
        },
    );
}

#[test]
fn out_of_range_decimals_in_the_sample_refuse_the_load() {
    let mut case = Case::new("decimal sample");
    case.refused(
        &misbehave(),
        LoadOptions {
            config: Some("decimal-out-of-range".into()),
            sample: Some(Sample::Records(records(3))),
            origin: None,
        },
        "sample-rejected",
        &["all 3 sample records", "Amount"],
    );
    case.finish();
}

#[test]
fn a_configuration_the_guest_refuses_is_a_refusal() {
    let mut case = Case::new("unknown mode");
    case.refused(
        &misbehave(),
        options("no-such-mode"),
        "guest",
        &["unknown mode \"no-such-mode\""],
    );
    case.finish();
}

#[test]
fn a_component_exporting_nothing_is_incompatible() {
    let mut case = Case::new("exports nothing");
    case.refused(
        b"(component)",
        LoadOptions::default(),
        "incompatible",
        &["does not implement world"],
    );
    case.finish();
}

#[test]
fn a_looping_guest_runs_out_of_fuel_in_a_fuel_metered_runtime() {
    // Fuel changes the compiled code: the worker compiles with the same
    // setting, or its artifact would not load here.
    let case = Case::with("out of fuel", |config| config.consume_fuel = true);
    case.runtime
        .set_tenant_limits(
            "acme",
            mlc_plugin::PluginLimits {
                fuel: Some(50_000_000),
                ..mlc_plugin::PluginLimits::default()
            },
        )
        .unwrap_or_else(|e| panic!("{}", e.chain()));
    case.runtime
        .load_blocking("acme", "bad", &misbehave(), options("loop"))
        .unwrap_or_else(|e| panic!("out of fuel: loading: {}", e.chain()));
    let err = case
        .runtime
        .map_batch_blocking("acme", "bad", "items", &records(2))
        .err()
        .unwrap_or_else(|| panic!("out of fuel: the loop mapped"));
    assert_eq!(err.kind(), "out-of-fuel", "{}", err.chain());
    assert!(
        err.to_string().contains("50000000 units"),
        "{}",
        err.chain()
    );
    case.finish();
}

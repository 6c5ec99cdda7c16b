//! The store's own tests: secrets, the journal, records and the file.

use mlc_common::Secret;

use crate::*;

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes([byte; 32])
}

fn record(key: &str, lu: i64, body: &str) -> StoredRecord {
    StoredRecord {
        key: key.into(),
        last_update: Some(lu),
        content_hash: [lu as u8; 32],
        json: format!(r#"{{"Id":{key},"Body":"{body}"}}"#),
    }
}

fn open(dir: &tempfile::TempDir) -> TenantStore {
    TenantStore::open(&dir.path().join("acme.redb"), "acme").unwrap()
}

#[test]
fn secrets_are_sealed_in_the_file_and_open_with_their_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.redb");
    {
        let store = TenantStore::open(&path, "acme").unwrap();
        store
            .set_secret(&key(1), "pat", &Secret::new("s3cr3t-value-123"))
            .unwrap();
        assert_eq!(store.secret_names().unwrap(), vec!["pat".to_owned()]);
        assert_eq!(
            store.secret(&key(1), "pat").unwrap().expose(),
            "s3cr3t-value-123"
        );
        let err = store.secret(&key(2), "pat").unwrap_err();
        assert!(err.to_string().contains(MASTER_KEY_ENV), "{err}");
        assert!(matches!(
            store.secret(&key(1), "absent"),
            Err(StoreError::NotFound { .. })
        ));
    }
    let bytes = std::fs::read(&path).unwrap();
    assert!(
        !bytes.windows(16).any(|w| w == b"s3cr3t-value-123"),
        "the secret is in the store file in clear"
    );
}

#[test]
fn rotation_reseals_every_secret_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    for name in ["a", "b"] {
        store
            .set_secret(&key(1), name, &Secret::new(format!("value-{name}")))
            .unwrap();
    }
    assert_eq!(store.reseal(&key(1), &key(2)).unwrap(), 2);
    // Run again (an interrupted rotation): nothing left to do.
    assert_eq!(store.reseal(&key(1), &key(2)).unwrap(), 0);
    assert_eq!(store.secret(&key(2), "b").unwrap().expose(), "value-b");
    assert!(store.secret(&key(1), "a").is_err());
}

#[test]
fn a_second_open_of_one_file_is_refused_as_locked() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(&dir);
    let err = TenantStore::open(&dir.path().join("acme.redb"), "acme").unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
}

#[test]
fn garbage_is_refused_as_corrupt_and_left_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.redb");
    std::fs::write(&path, vec![0x42u8; 8192]).unwrap();
    let err = TenantStore::open(&path, "acme").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err:?}");
    assert!(
        std::fs::read(&path).unwrap() == vec![0x42u8; 8192],
        "the file changed"
    );
}

#[test]
fn a_newer_schema_is_refused_without_change() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("acme.redb");
    {
        let db = redb::Database::create(&path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut meta = tx
                .open_table(redb::TableDefinition::<&str, &[u8]>::new("meta"))
                .unwrap();
            meta.insert("schema_version", 99u32.to_le_bytes().as_slice())
                .unwrap();
        }
        tx.commit().unwrap();
    }
    let before = std::fs::read(&path).unwrap();
    let err = TenantStore::open(&path, "acme").unwrap_err();
    assert!(
        matches!(err, StoreError::NewerSchema { found: 99, .. }),
        "{err:?}"
    );
    assert!(std::fs::read(&path).unwrap() == before, "the file changed");
}

#[test]
fn a_batch_records_pages_and_confirms_in_one_step_with_the_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut batch = store.create_batch("inv", BatchKind::Full, &[]).unwrap();
    assert_eq!(batch.seq, 1);
    assert!(batch.id.starts_with("acme.inv."), "{}", batch.id);
    let pos = |lu: i64, k: &str| Position {
        last_update: lu,
        key: k.into(),
    };
    store
        .record_page(
            &mut batch,
            &[record("1", 10, "a"), record("2", 11, "b")],
            Some(pos(11, "2")),
        )
        .unwrap();
    // A page read again after a resume records nothing twice.
    store
        .record_page(
            &mut batch,
            &[record("2", 11, "b"), record("3", 12, "c")],
            Some(pos(12, "3")),
        )
        .unwrap();
    assert_eq!(batch.records, 3);
    assert_eq!(
        store.batch_keys("inv", 1, None, 10).unwrap(),
        vec!["1", "2", "3"]
    );
    assert_eq!(store.batch_keys("inv", 1, Some("1"), 1).unwrap(), vec!["2"]);
    // Not exported before confirmation.
    assert!(store.is_new("inv", "1", Some(10), &[10; 32], 0).unwrap());

    let end = Some(pos(12, "3"));
    store
        .transition(&mut batch, BatchState::Pulled { end: end.clone() })
        .unwrap();
    assert!(
        store
            .record_page(&mut batch, &[record("4", 13, "d")], None)
            .is_err(),
        "a pulled batch took another page"
    );
    store
        .transition(
            &mut batch,
            BatchState::Submitted {
                end: end.clone(),
                rows: 3,
                extract: "x.hyper".into(),
                request_ids: vec![],
                jobs: vec![],
            },
        )
        .unwrap();
    store
        .confirm(&mut batch, vec!["job-1".into()], "ds-1", "{}")
        .unwrap();
    let state = store.pipeline("inv").unwrap();
    assert_eq!(state.cursor, end);
    assert_eq!(state.confirmed_seq, 1);
    assert_eq!(state.datasource_id.as_deref(), Some("ds-1"));
    assert!(!store.is_new("inv", "1", Some(10), &[10; 32], 1).unwrap());
    assert!(store.is_new("inv", "1", Some(20), &[20; 32], 1).unwrap());
    assert!(store.open_batch("inv").unwrap().is_none());
    assert!(
        store
            .transition(&mut batch, BatchState::Pulled { end: None })
            .is_err(),
        "a confirmed batch moved"
    );
    let history: Vec<&str> = batch.history.iter().map(|c| c.state.as_str()).collect();
    assert_eq!(history, ["pulling", "pulled", "submitted", "confirmed"]);
}

#[test]
fn a_shared_page_is_recorded_into_every_batch_or_into_none() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut headers = store.create_batch("inv", BatchKind::Full, &[]).unwrap();
    let mut lines = store.create_batch("lines", BatchKind::Full, &[]).unwrap();
    let at = Some(Position {
        last_update: 11,
        key: "2".into(),
    });
    let page = [record("1", 10, "a"), record("2", 11, "b")];
    // Each batch records what its own index kept of the page.
    let repeats = store
        .record_shared_page(
            &mut [(&mut headers, &page[..]), (&mut lines, &page[1..])],
            at.clone(),
        )
        .unwrap();
    assert_eq!(repeats, [0, 0]);
    assert_eq!((headers.records, lines.records), (2, 1));
    // A record read again (it changed while it was pulled) is counted.
    let again = [record("2", 12, "b2")];
    let repeats = store
        .record_shared_page(
            &mut [(&mut headers, &again[..]), (&mut lines, &[][..])],
            at.clone(),
        )
        .unwrap();
    assert_eq!(repeats, [1, 0]);
    assert_eq!(headers.records, 2);
    assert_eq!(store.batch_keys("inv", 1, None, 10).unwrap(), ["1", "2"]);
    assert_eq!(store.batch_keys("lines", 1, None, 10).unwrap(), ["2"]);
    for (pipeline, batch) in [("inv", &headers), ("lines", &lines)] {
        let stored = store.open_batch(pipeline).unwrap().unwrap();
        assert_eq!(
            stored.state,
            BatchState::Pulling {
                position: at.clone()
            }
        );
        assert_eq!(stored.records, batch.records, "{pipeline}");
    }
    assert_eq!(
        store.latest_records("lines", &["2".into()]).unwrap()[0].json,
        page[1].json
    );

    // One batch that may not take the page: neither records it.
    store
        .transition(&mut lines, BatchState::Pulled { end: at.clone() })
        .unwrap();
    let later = [record("3", 12, "c")];
    let refused = store.record_shared_page(
        &mut [(&mut headers, &later[..]), (&mut lines, &later[..])],
        None,
    );
    assert!(refused.is_err(), "a pulled batch took a shared page");
    assert_eq!(headers.records, 2, "the refused page counted");
    assert_eq!(store.batch_keys("inv", 1, None, 10).unwrap(), ["1", "2"]);
    assert_eq!(store.latest_count("inv").unwrap(), 2);
}

#[test]
fn latest_versions_win_and_every_version_is_kept() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    confirmed_batch(&store, BatchKind::Incremental, &[record("7", 10, "old")]);
    let second = confirmed_batch(&store, BatchKind::Incremental, &[record("7", 20, "new")]);
    assert_eq!(second.seq, 2, "sequence numbers are never reused");
    let latest = store
        .latest_records("inv", &["7".into(), "8".into()])
        .unwrap();
    assert_eq!(latest.len(), 1);
    assert!(latest[0].json.contains("new"), "{}", latest[0].json);
    let versions = store.versions("inv", "7").unwrap();
    assert_eq!(
        versions
            .iter()
            .map(|v| (v.seq, v.last_update))
            .collect::<Vec<_>>(),
        vec![(1, Some(10)), (2, Some(20))]
    );
    assert_eq!(store.latest_keys("inv", None, 10).unwrap(), vec!["7"]);
    // A replay copies its key set and starts pulled.
    let replay = store
        .create_batch("inv", BatchKind::Replay { of: 1 }, &["7".into()])
        .unwrap();
    assert_eq!(replay.state, BatchState::Pulled { end: None });
    assert_eq!(
        store.batch_keys("inv", replay.seq, None, 10).unwrap(),
        vec!["7"]
    );
}

#[test]
fn a_failed_batch_keeps_where_it_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let mut batch = store
        .create_batch("inv", BatchKind::Incremental, &[])
        .unwrap();
    store
        .transition(&mut batch, BatchState::Pulled { end: None })
        .unwrap();
    store.fail(&mut batch, "Tableau said no", true).unwrap();
    store
        .fail(&mut batch, "Tableau said no again", false)
        .unwrap();
    let stored = store.batch("inv", batch.seq).unwrap();
    assert_eq!((stored.failures, stored.failed_jobs), (2, 1));
    match &stored.state {
        BatchState::Failed { error, resume } => {
            assert_eq!(error, "Tableau said no again");
            assert_eq!(**resume, BatchState::Pulled { end: None });
        }
        other => panic!("not failed: {other:?}"),
    }
    assert_eq!(
        store.open_batch("inv").unwrap().map(|b| b.seq),
        Some(batch.seq)
    );
    store
        .put_rejects("inv", batch.seq, &[("9".into(), "bad date".into())])
        .unwrap();
    assert_eq!(
        store.rejects("inv", batch.seq).unwrap(),
        vec![("9".to_owned(), "bad date".to_owned())]
    );
}

#[test]
fn reference_datasets_are_replaced_whole() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .replace_dataset(
            "suppliers",
            &[("A".into(), "{\"n\":1}".into()), ("B".into(), "{}".into())],
        )
        .unwrap();
    store
        .replace_dataset("suppliers", &[("B".into(), "{\"n\":2}".into())])
        .unwrap();
    assert_eq!(store.lookup("suppliers", "A").unwrap(), None);
    assert_eq!(
        store.lookup("suppliers", "B").unwrap().as_deref(),
        Some("{\"n\":2}")
    );
}

#[test]
fn state_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = open(&dir);
        store.put_definition("id = \"acme\"").unwrap();
        store.set_paused("inv", true).unwrap();
        store.create_batch("inv", BatchKind::Full, &[]).unwrap().id
    };
    let store = open(&dir);
    assert_eq!(
        store.definition().unwrap().as_deref(),
        Some("id = \"acme\"")
    );
    assert!(store.pipeline("inv").unwrap().paused);
    // The unfinished batch is still there, and nothing new starts before it
    // finishes.
    let open_one = store.open_batch("inv").unwrap().expect("the open batch");
    assert_eq!(open_one.id, id);
    let err = store.create_batch("inv", BatchKind::Full, &[]).unwrap_err();
    assert!(matches!(err, StoreError::Unfinished { .. }), "{err}");
    let mut b = open_one;
    store.fail(&mut b, "given up", false).unwrap();
    assert!(
        store.create_batch("inv", BatchKind::Full, &[]).is_err(),
        "a failed batch is unfinished"
    );
    store
        .transition(&mut b, BatchState::Pulled { end: None })
        .unwrap();
    store
        .transition(
            &mut b,
            BatchState::Submitted {
                end: None,
                rows: 0,
                extract: String::new(),
                request_ids: Vec::new(),
                jobs: Vec::new(),
            },
        )
        .unwrap();
    store.confirm(&mut b, Vec::new(), "ds", "{}").unwrap();
    assert!(store.open_batch("inv").unwrap().is_none());
    let next = store.create_batch("inv", BatchKind::Full, &[]).unwrap();
    assert_eq!(next.seq, 2);
    assert_eq!(store.open_batch("inv").unwrap().map(|b| b.seq), Some(2));
    assert_eq!(
        store
            .recent_batches("inv", Some("confirmed"), 10)
            .unwrap()
            .iter()
            .map(|b| b.seq)
            .collect::<Vec<_>>(),
        vec![1]
    );
    // The instance part of the id is kept with the file.
    assert_eq!(
        id.rsplit_once('.').map(|p| p.0),
        next.id.rsplit_once('.').map(|p| p.0)
    );
}

/// Drives a batch through to confirmed with `records`.
fn confirmed_batch(store: &TenantStore, kind: BatchKind, records: &[StoredRecord]) -> Batch {
    confirmed_batch_pulled_with(store, kind, records, None)
}

/// [`confirmed_batch`] of a batch pulled with `pulled_with`.
fn confirmed_batch_pulled_with(
    store: &TenantStore,
    kind: BatchKind,
    records: &[StoredRecord],
    pulled_with: Option<&str>,
) -> Batch {
    let mut b = store
        .create_batch_pulled_with("inv", kind, &[], pulled_with)
        .unwrap();
    store.record_page(&mut b, records, None).unwrap();
    store
        .transition(&mut b, BatchState::Pulled { end: None })
        .unwrap();
    store
        .transition(
            &mut b,
            BatchState::Submitted {
                end: None,
                rows: records.len() as u64,
                extract: String::new(),
                request_ids: Vec::new(),
                jobs: Vec::new(),
            },
        )
        .unwrap();
    store.confirm(&mut b, Vec::new(), "ds", "{}").unwrap();
    b
}

#[test]
fn an_unchanged_version_is_not_stored_again_and_a_full_read_drops_keys_gone() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let first = confirmed_batch(
        &store,
        BatchKind::Full,
        &[record("1", 10, "a"), record("2", 10, "b")],
    );
    assert_eq!((first.records, first.changed), (2, 2));
    // The same version again: counted in the batch, not stored, not a change.
    let second = confirmed_batch(&store, BatchKind::Full, &[record("1", 10, "a")]);
    assert_eq!((second.records, second.changed), (1, 0));
    assert_eq!(store.versions("inv", "1").unwrap().len(), 1);
    // Key 2 was not in the second full read: gone from Oracle.
    assert_eq!(store.latest_keys("inv", None, 10).unwrap(), vec!["1"]);
    assert_eq!(store.latest_count("inv").unwrap(), 1);
    assert_eq!(
        store.versions("inv", "2").unwrap().len(),
        1,
        "history stays"
    );
}

#[test]
fn retention_drops_old_versions_but_never_the_latest() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    confirmed_batch(
        &store,
        BatchKind::Incremental,
        &[record("1", 10, "a"), record("2", 10, "b")],
    );
    confirmed_batch(&store, BatchKind::Incremental, &[record("1", 20, "a2")]);
    // Nothing is older than a cutoff in the past.
    let past = time::OffsetDateTime::now_utc() - time::Duration::days(30);
    assert_eq!(store.prune_raw("inv", past).unwrap(), 0);
    // Everything is older than a cutoff in the future: only record 1's
    // first version goes; record 2's only version is its latest.
    let future = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    assert_eq!(store.prune_raw("inv", future).unwrap(), 1);
    let seqs = |k: &str| -> Vec<u64> {
        store
            .versions("inv", k)
            .unwrap()
            .iter()
            .map(|v| v.seq)
            .collect()
    };
    assert_eq!(seqs("1"), vec![2]);
    assert_eq!(seqs("2"), vec![1]);
    let latest = store
        .latest_records("inv", &["1".into(), "2".into()])
        .unwrap();
    assert_eq!(latest.len(), 2, "{latest:?}");
    assert_eq!(store.prune_raw("inv", future).unwrap(), 0, "idempotent");
}

#[test]
fn a_file_left_open_by_a_crash_opens_with_its_committed_state() {
    // A copy of the file taken while its store is open is what `kill -9`
    // leaves: redb marked it as needing recovery and never cleared the mark.
    let dir = tempfile::tempdir().unwrap();
    let crashed = dir.path().join("crashed.redb");
    let id = {
        let store = open(&dir);
        store.put_definition("id = \"acme\"").unwrap();
        let mut batch = store.create_batch("inv", BatchKind::Full, &[]).unwrap();
        store
            .record_page(&mut batch, &[record("1", 10, "a")], None)
            .unwrap();
        std::fs::copy(dir.path().join("acme.redb"), &crashed).unwrap();
        batch.id
    };
    let store = TenantStore::open(&crashed, "acme").unwrap();
    assert_eq!(
        store.definition().unwrap().as_deref(),
        Some("id = \"acme\"")
    );
    let open_batch = store.open_batch("inv").unwrap().expect("the open batch");
    assert_eq!((open_batch.id, open_batch.records), (id, 1));
}

#[test]
fn a_webhook_event_is_recorded_once_and_the_oldest_go() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert!(store.record_event("e1", r#"{"n":1}"#, 3).unwrap());
    assert!(
        !store.record_event("e1", r#"{"n":1}"#, 3).unwrap(),
        "a second delivery of one event is not new"
    );
    assert!(store.record_event("e2", r#"{"n":2}"#, 3).unwrap());
    assert_eq!(store.events(10).unwrap(), vec![r#"{"n":2}"#, r#"{"n":1}"#]);
    for i in 0..3 {
        store.record_event(&format!("x{i}"), "{}", 3).unwrap();
    }
    // e1 and e2 were the oldest: dropped, so they count as new again.
    assert_eq!(store.events(usize::MAX).unwrap().len(), 3);
    assert!(store.record_event("e1", "{}", 3).unwrap());
}

#[test]
fn freshness_samples_are_kept_for_the_window_only() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.record_freshness("inv", 100, 1.5, 0).unwrap();
    store.record_freshness("inv", 200, 2.5, 0).unwrap();
    store.record_freshness("other", 150, 9.0, 0).unwrap();
    assert_eq!(
        store.freshness("inv", 0).unwrap(),
        vec![(100, 1.5), (200, 2.5)]
    );
    // A sample at 300 with a window starting at 150 drops the one at 100.
    store.record_freshness("inv", 300, 3.5, 150).unwrap();
    assert_eq!(
        store.freshness("inv", 0).unwrap(),
        vec![(200, 2.5), (300, 3.5)]
    );
    assert_eq!(store.freshness("other", 0).unwrap(), vec![(150, 9.0)]);
}

#[test]
fn a_pulling_batch_makes_its_projection_the_pipelines_and_a_reexport_keeps_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    assert_eq!(store.pipeline("inv").unwrap().pulled_with, None);
    let b = confirmed_batch_pulled_with(
        &store,
        BatchKind::Full,
        &[record("1", 10, "a")],
        Some("narrow"),
    );
    assert_eq!(b.pulled_with.as_deref(), Some("narrow"));
    assert_eq!(
        store.pipeline("inv").unwrap().pulled_with.as_deref(),
        Some("narrow")
    );
    let mut b = store
        .create_batch_pulled_with("inv", BatchKind::Reexport, &[], Some("wide"))
        .unwrap();
    assert_eq!(b.pulled_with, None, "a re-export reads no Oracle");
    let submitted = BatchState::Submitted {
        end: None,
        rows: 1,
        extract: String::new(),
        request_ids: Vec::new(),
        jobs: Vec::new(),
    };
    store.transition(&mut b, submitted).unwrap();
    store.confirm(&mut b, Vec::new(), "ds", "{}").unwrap();
    assert_eq!(
        store.pipeline("inv").unwrap().pulled_with.as_deref(),
        Some("narrow"),
        "the stored records are still the narrow ones"
    );
    confirmed_batch(&store, BatchKind::Incremental, &[record("1", 20, "b")]);
    assert_eq!(
        store.pipeline("inv").unwrap().pulled_with.as_deref(),
        Some("narrow"),
        "some changes pulled whole: the others are still narrow"
    );
    confirmed_batch(&store, BatchKind::Full, &[record("1", 20, "b")]);
    assert_eq!(
        store.pipeline("inv").unwrap().pulled_with,
        None,
        "every record pulled whole since"
    );
}

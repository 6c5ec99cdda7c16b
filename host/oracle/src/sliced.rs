//! Sliced pulls: a first load (or a large catch-up) split into
//! `LastUpdateDate` windows read side by side under the client's
//! concurrency cap ([`SlicedPull`], from [`OracleClient::pull_sliced`]).
//!
//! # How a sliced pull runs
//!
//! 1. **First page, serially**, exactly as [`crate::Pull`] reads it, with
//!    `totalResults=true`. If `hasMore` is false the pull is over: an idle
//!    incremental cycle costs one request, as a serial pull does.
//! 2. **Plan** (only when more than one page remains, going by
//!    `totalResults`): one more request (`orderBy=LastUpdateDate:desc`,
//!    `limit=1`) finds the greatest `LastUpdateDate` now, `M`. The span
//!    from the first page's last position `P` up to `M` is cut into `n`
//!    equal windows at whole milliseconds `b1 < b2 < … < b(n-1)`, `n` such
//!    that each would hold 90% of a page if records were spread evenly in
//!    time (so a window rarely needs a second, nearly empty request):
//!    slice 0 is `after P and < b1`, slice i is `>= bi and < b(i+1)`, and the
//!    last slice is `>= b(n-1)` **with no upper bound**. Together they cover
//!    everything after `P`, each (`LastUpdateDate`, key) in exactly one
//!    slice. Windows equal in time are uneven in records when the data is;
//!    a window that holds more simply takes more pages, while the small
//!    ones finish and free their permit for the next. (Per-window counts
//!    would even them out at one request each; not done.) For a first load
//!    the request for `M` goes out together with the first page, so the
//!    slices start one round trip after the pull does.
//! 3. **Slices run as tasks**, at most `max_concurrency` at once, started in
//!    order (at most [`MAX_SLICES`]). Each reads its window by the same key-set continuation as a
//!    serial pull (`offset=0`, strictly after the last position read, plus
//!    the window's bound in `q`), so drift between its pages loses and
//!    doubles nothing within it, and a page holding a record outside the
//!    window is refused. Pages come back through a bounded channel
//!    (`max_concurrency` pages): when the consumer is slower, the slices
//!    wait, and memory stays at about `2 × max_concurrency + 1` pages.
//!
//! # Why nothing is lost or doubled
//!
//! A version (key, `LastUpdateDate`) lies in exactly one window, and a slice
//! reads its window like a serial pull reads the whole resource, so no
//! version is read twice. What remains is a record that changes while the
//! load runs: its `LastUpdateDate` grows, so it can leave a window that has
//! not read it yet for a later one, possibly one that has already gone past
//! it. Oracle stamps a change with the time it is made, and every bounded
//! window ends at or below `M`, the newest stamp Oracle had when the plan
//! was made, so a change made after that is stamped at or above `M` and
//! lands in the open last slice, never in a bounded window. The open slice
//! is a serial pull of its own from `b(n-1)` on: it reads the change if it
//! has not passed the new stamp yet, and if it has finished or passed it,
//! the change is newer than the final cursor (or, with a late commit, at
//! most `lag` behind the last position the open slice read, which the final
//! cursor is) and the next incremental cycle, which starts `overlap_secs`
//! before the cursor, reads it, exactly as it reads what changes after a
//! serial pull's last page. A late commit is the one case a window can
//! miss (stamped behind a bounded slice that has already passed the stamp):
//! it is then within `lag` of the moment it was committed, which is after
//! the plan, so it is at most `lag` behind `M` and the final cursor (which
//! is at least `M` when the open slice reads anything, or the greatest
//! position read otherwise), and the overlap catches it when `lag <=
//! overlap_secs`, the serial pull's own condition. The old version already
//! read in its first window is a different version, exported once each.
//!
//! # The cursor
//!
//! [`SlicedPull::cursor`] is the greatest position up to which *everything*
//! was delivered: the first page's, then each slice's in order while the
//! slices before it are finished. It is safe to persist after every page
//! (a resumed pull re-reads the rest; the record index drops what it has).
//! Once every slice is done it is the greatest (`LastUpdateDate`, key) read
//! by any slice, exactly what a serial pull leaves, so the next incremental
//! pull continues from the same place.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tokio::task::{Id, JoinSet};

use crate::canonical;
use crate::client::{Decoded, Filter, Inner, OracleClient, bad_item, parse_envelope};
use crate::error::OracleError;
use crate::model::{Cursor, Page, PullStats, RecordIndex, ResourceSpec};

/// Share of a page a window is sized to hold: windows equal in time are
/// not equal in records, and one just over a page would cost a second,
/// nearly empty request.
pub const SLICE_FILL: f64 = 0.9;

/// Most slices one pull plans (about 1.8 million records at 499 a page).
pub const MAX_SLICES: usize = 4096;

/// A message from a slice task.
enum Msg {
    /// A page of slice `slice`, and where it continues (`None`: done).
    Page {
        slice: usize,
        page: Decoded,
        next: Option<Filter>,
        requests: u64,
    },
    /// Slice `slice` failed; it stays where its last page left it.
    Failed {
        slice: usize,
        error: OracleError,
        requests: u64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Running,
    Failed,
    Done,
}

/// One window of the load.
#[derive(Debug, Clone)]
struct Slice {
    /// Where it continues.
    filter: Filter,
    /// `LastUpdateDate` below which it reads (`None`: open-ended).
    upper: Option<i64>,
    /// The greatest position it delivered.
    last: Option<Cursor>,
    status: Status,
}

#[derive(Debug)]
enum Phase {
    /// The first page, from the start filter.
    First(Filter),
    /// The first page had more behind it: plan from its continuation.
    Plan {
        /// Where the first page left off.
        after: Filter,
        /// Records left, going by `totalResults`.
        remaining: u64,
    },
    /// Slices are running.
    Slices,
    /// Over.
    Done,
}

/// A sliced pull in progress (see the [module docs](self)): an async
/// iterator over pages that arrive from several slices at once. Within a
/// page records are in (`LastUpdateDate`, key) order; across pages they are
/// not. Dropping it stops its slices.
pub struct SlicedPull<'a> {
    inner: Arc<Inner>,
    spec: Arc<ResourceSpec>,
    index: &'a dyn RecordIndex,
    phase: Phase,
    /// The starting cursor, then the first page's position: no slice cursor
    /// is ever behind it.
    base: Option<Cursor>,
    slices: Vec<Slice>,
    tasks: JoinSet<()>,
    running: HashMap<Id, usize>,
    tx: mpsc::Sender<Msg>,
    rx: mpsc::Receiver<Msg>,
    cursor: Option<Cursor>,
    stats: PullStats,
    /// The newest `LastUpdateDate`, when asked with the first page.
    newest: Option<Option<i64>>,
}

impl OracleClient {
    /// Starts a sliced pull of `spec`: the first page as [`Self::pull`]
    /// reads it, then, when more than a page remains, the rest in
    /// `LastUpdateDate` windows read side by side under
    /// [`crate::OracleConfig::max_concurrency`] (see [`crate::sliced`]).
    /// `cursor` and `index` mean what they mean for [`Self::pull`]; with a
    /// cursor and nothing changed it costs the one request of a serial
    /// pull. Resources without a timestamp are read as one slice.
    /// Nothing is requested until [`SlicedPull::next_page`].
    pub fn pull_sliced<'a>(
        &self,
        spec: &ResourceSpec,
        cursor: Option<Cursor>,
        index: &'a dyn RecordIndex,
    ) -> SlicedPull<'a> {
        let (filter, base) = crate::client::start_filter(&self.inner.config, spec, cursor);
        let (tx, rx) = mpsc::channel(self.inner.config.max_concurrency.max(1));
        SlicedPull {
            inner: Arc::clone(&self.inner),
            spec: Arc::new(spec.clone()),
            index,
            phase: Phase::First(filter),
            cursor: base.clone(),
            base,
            slices: Vec::new(),
            tasks: JoinSet::new(),
            running: HashMap::new(),
            tx,
            rx,
            stats: PullStats::default(),
            newest: None,
        }
    }
}

impl SlicedPull<'_> {
    /// The next page of new or changed records, `Ok(None)` at the end.
    ///
    /// Pages whose records were all exported before are read through
    /// without being returned. On an error nothing of the failed page is
    /// delivered; the failed slice stays where it was and the other slices
    /// go on. Calling again retries it from there.
    pub async fn next_page(&mut self) -> Result<Option<Page>, OracleError> {
        loop {
            match &self.phase {
                Phase::Done => return Ok(None),
                Phase::First(filter) => {
                    let filter = filter.clone();
                    // A first load asks for the newest record at the same
                    // time (one request wasted when a page holds it all);
                    // an incremental cycle asks only when it needs to, so
                    // that an idle one stays one request.
                    let first_load = matches!(filter, Filter::All)
                        && self.spec.timestamp.is_some()
                        && self.inner.config.max_concurrency > 1;
                    let (mut r1, mut r2) = (0, 0);
                    let (page, newest) = if first_load {
                        let (page, newest) = tokio::join!(
                            self.inner
                                .fetch_page(&self.spec, &filter, None, true, &mut r1),
                            newest(&self.inner, &self.spec, &mut r2),
                        );
                        (page, newest.ok())
                    } else {
                        let page = self
                            .inner
                            .fetch_page(&self.spec, &filter, None, true, &mut r1)
                            .await;
                        (page, None)
                    };
                    self.stats.requests += r1 + r2;
                    self.newest = newest;
                    let page = page?;
                    let next = page.next(&self.spec, &filter)?;
                    self.advance_base(page.last_cursor());
                    self.phase = match next {
                        None => Phase::Done,
                        Some(after) => self.after_first(after, page.total, page.read),
                    };
                    if let Some(page) = self.deliver(page) {
                        return Ok(Some(page));
                    }
                }
                Phase::Plan { after, remaining } => {
                    let (after, remaining) = (after.clone(), *remaining);
                    let newest = match self.newest.take() {
                        Some(n) => n,
                        None => newest(&self.inner, &self.spec, &mut self.stats.requests).await?,
                    };
                    self.slices = plan(after, newest, remaining, self.inner.config.page_size);
                    tracing::info!(
                        tenant = %self.inner.tenant,
                        resource = %self.spec.path,
                        slices = self.slices.len(),
                        remaining,
                        "sliced pull planned"
                    );
                    self.phase = Phase::Slices;
                }
                Phase::Slices => {
                    if self.slices.iter().all(|s| s.status == Status::Done) {
                        self.phase = Phase::Done;
                        self.update_cursor();
                        continue;
                    }
                    self.start_slices();
                    let msg = tokio::select! {
                        biased;
                        msg = self.rx.recv() => msg,
                        Some(joined) = self.tasks.join_next_with_id() => {
                            match joined {
                                Ok((id, ())) => {
                                    self.running.remove(&id);
                                }
                                Err(e) => {
                                    if let Some(slice) = self.running.remove(&e.id())
                                        && self.slices[slice].status == Status::Running
                                    {
                                        // The task ended without a word
                                        // (it panicked).
                                        self.slices[slice].status = Status::Failed;
                                        return Err(OracleError::SliceFailed {
                                            resource: self.spec.path.clone(),
                                            slice,
                                            detail: e.to_string(),
                                        });
                                    }
                                }
                            }
                            continue;
                        }
                    };
                    // The pull holds a sender, so the channel never closes.
                    let Some(msg) = msg else { continue };
                    match msg {
                        Msg::Page {
                            slice,
                            page,
                            next,
                            requests,
                        } => {
                            self.stats.requests += requests;
                            let kind = self.spec.key_kind;
                            let s = &mut self.slices[slice];
                            if let Some(c) = page.last_cursor()
                                && s.last
                                    .as_ref()
                                    .is_none_or(|old| c.compare(old, kind) == Ordering::Greater)
                            {
                                s.last = Some(c);
                            }
                            match next {
                                Some(f) => s.filter = f,
                                None => s.status = Status::Done,
                            }
                            self.update_cursor();
                            if let Some(page) = self.deliver(page) {
                                return Ok(Some(page));
                            }
                        }
                        Msg::Failed {
                            slice,
                            error,
                            requests,
                        } => {
                            self.stats.requests += requests;
                            self.slices[slice].status = Status::Failed;
                            tracing::warn!(
                                tenant = %self.inner.tenant,
                                resource = %self.spec.path,
                                slice,
                                error = %error,
                                "slice failed; it resumes from its last page on the next call"
                            );
                            return Err(error);
                        }
                    }
                }
            }
        }
    }

    /// The cursor to store once every returned page is exported: the
    /// greatest position up to which everything was delivered (see the
    /// [module docs](self)); after the last page, the greatest
    /// (`LastUpdateDate`, key) read, as a serial pull leaves it. Never
    /// behind the starting cursor; `None` for full-refresh resources and an
    /// empty first sync.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Counters so far, over every slice (the planning request included).
    pub fn stats(&self) -> PullStats {
        self.stats
    }

    /// True once every slice read its last page.
    pub fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// Slices planned: 0 before the first page is past (and when it was the
    /// only one), 1 when the rest is read serially.
    pub fn slices(&self) -> usize {
        self.slices.len()
    }

    fn advance_base(&mut self, c: Option<Cursor>) {
        if let Some(c) = c
            && self
                .base
                .as_ref()
                .is_none_or(|old| c.compare(old, self.spec.key_kind) == Ordering::Greater)
        {
            self.base = Some(c);
        }
        self.update_cursor();
    }

    /// After a first page with more behind it: plan slices when more than a
    /// page remains and slicing applies, else one serial slice.
    fn after_first(&mut self, after: Filter, total: Option<u64>, read: usize) -> Phase {
        let page = u64::from(self.inner.config.page_size.max(1));
        let remaining = total.map(|t| t.saturating_sub(read as u64));
        match remaining {
            Some(remaining)
                if remaining > page
                    && self.inner.config.max_concurrency > 1
                    && matches!(after, Filter::After(_)) =>
            {
                Phase::Plan { after, remaining }
            }
            _ => {
                self.slices = vec![Slice {
                    filter: after,
                    upper: None,
                    last: None,
                    status: Status::Waiting,
                }];
                Phase::Slices
            }
        }
    }

    /// Starts waiting (or failed) slices in order while fewer than
    /// `max_concurrency` run.
    fn start_slices(&mut self) {
        let cap = self.inner.config.max_concurrency.max(1);
        let mut running = self
            .slices
            .iter()
            .filter(|s| s.status == Status::Running)
            .count();
        for (i, s) in self.slices.iter_mut().enumerate() {
            if running >= cap {
                break;
            }
            if matches!(s.status, Status::Waiting | Status::Failed) {
                s.status = Status::Running;
                running += 1;
                let task = run_slice(
                    Arc::clone(&self.inner),
                    Arc::clone(&self.spec),
                    i,
                    s.filter.clone(),
                    s.upper,
                    self.tx.clone(),
                );
                let handle = self.tasks.spawn(task);
                self.running.insert(handle.id(), i);
            }
        }
    }

    /// The greatest position up to which everything was delivered.
    fn update_cursor(&mut self) {
        let kind = self.spec.key_kind;
        let mut safe = self.base.clone();
        for s in &self.slices {
            if let Some(l) = &s.last
                && safe
                    .as_ref()
                    .is_none_or(|c| l.compare(c, kind) == Ordering::Greater)
            {
                safe = Some(l.clone());
            }
            if s.status != Status::Done {
                break;
            }
        }
        self.cursor = safe;
    }

    /// Counts a page and returns it with what the index does not have, or
    /// `None` when that is nothing.
    fn deliver(&mut self, page: Decoded) -> Option<Page> {
        let read = page.read as u64;
        let (records, duplicates) = page.keep_new(self.index);
        self.stats.pages += 1;
        self.stats.records += read;
        self.stats.duplicates_skipped += duplicates;
        tracing::debug!(
            tenant = %self.inner.tenant,
            resource = %self.spec.path,
            read,
            new = records.len(),
            duplicates,
            "page"
        );
        (!records.is_empty()).then(|| Page {
            records,
            cursor: self.cursor.clone(),
            duplicates,
        })
    }
}

/// The greatest `LastUpdateDate` of `spec` now (one request), `None` when
/// the resource is empty or has no timestamp.
async fn newest(
    inner: &Inner,
    spec: &ResourceSpec,
    requests: &mut u64,
) -> Result<Option<i64>, OracleError> {
    let Some(ts) = spec.timestamp.as_deref() else {
        return Ok(None);
    };
    let query = [
        ("onlyData", "true".to_owned()),
        ("fields", format!("{},{ts}", spec.key)),
        ("limit", "1".to_owned()),
        ("offset", "0".to_owned()),
        ("orderBy", format!("{ts}:desc,{}:desc", spec.key)),
    ];
    let body = inner.get(spec, &query, requests).await?;
    let after = "planning (the newest record)";
    let coll = parse_envelope(&spec.path, after, &body)?;
    let Some(raw) = coll.items.first() else {
        return Ok(None);
    };
    let facts = canonical::inspect(raw.get(), &spec.key, Some(ts))
        .map_err(|p| bad_item(spec, 0, after, p))?;
    let text = facts
        .timestamp
        .ok_or_else(|| bad_item(spec, 0, after, format!("no {ts}")))?;
    let newest = mlc_common::time::parse_timestamp(&text)
        .map_err(|e| bad_item(spec, 0, after, format!("{ts}: {e}")))?;
    Ok(Some(newest))
}

/// The slices after the first page (continuing at `after`, `remaining`
/// records behind it): `LastUpdateDate` windows up to `newest`, each sized
/// to hold [`SLICE_FILL`] of a page if records were spread evenly in time,
/// the last one open-ended (see the module docs).
fn plan(after: Filter, newest: Option<i64>, remaining: u64, page_size: u32) -> Vec<Slice> {
    let slice = |filter, upper| Slice {
        filter,
        upper,
        last: None,
        status: Status::Waiting,
    };
    let from = match &after {
        Filter::After(c) => c.last_update,
        _ => return vec![slice(after, None)],
    };
    let per_slice = ((f64::from(page_size) * SLICE_FILL) as u64).max(1);
    let n = usize::try_from(remaining.div_ceil(per_slice))
        .unwrap_or(MAX_SLICES)
        .clamp(1, MAX_SLICES);
    let Some(top) = newest.filter(|t| *t > from) else {
        return vec![slice(after, None)];
    };
    let width = (top - from) / i64::try_from(n).unwrap_or(i64::MAX);
    let mut bounds: Vec<i64> = Vec::new();
    for i in 1..n {
        let b = from.saturating_add(width.saturating_mul(i64::try_from(i).unwrap_or(0)));
        // Whole milliseconds: the literal Oracle compares is exact.
        let b = b - b.rem_euclid(1000);
        if b > from && bounds.last().is_none_or(|l| b > *l) {
            bounds.push(b);
        }
    }
    let mut slices = Vec::with_capacity(bounds.len() + 1);
    let mut lower = after;
    for b in bounds {
        slices.push(slice(lower, Some(b)));
        lower = Filter::Since(b);
    }
    slices.push(slice(lower, None));
    slices
}

/// One slice: pages from `filter` on (below `upper`) until its end or an
/// error, each sent to the pull as it is read.
async fn run_slice(
    inner: Arc<Inner>,
    spec: Arc<ResourceSpec>,
    slice: usize,
    mut filter: Filter,
    upper: Option<i64>,
    tx: mpsc::Sender<Msg>,
) {
    loop {
        let mut requests = 0;
        let read = match inner
            .fetch_page(&spec, &filter, upper, false, &mut requests)
            .await
        {
            Ok(page) => page.next(&spec, &filter).map(|next| (page, next)),
            Err(e) => Err(e),
        };
        match read {
            Ok((page, next)) => {
                let more = next.clone();
                let msg = Msg::Page {
                    slice,
                    page,
                    next,
                    requests,
                };
                if tx.send(msg).await.is_err() {
                    return;
                }
                match more {
                    Some(f) => filter = f,
                    None => return,
                }
            }
            Err(error) => {
                let _ = tx
                    .send(Msg::Failed {
                        slice,
                        error,
                        requests,
                    })
                    .await;
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cursor(ts: i64) -> Filter {
        Filter::After(Cursor {
            last_update: ts,
            key: "1".into(),
        })
    }

    #[test]
    fn windows_cover_everything_after_the_first_page_once() {
        let from = 1_000_000;
        let top = from + 10_000_000;
        // 4,000 records at 449 a window (90% of 499).
        let slices = plan(cursor(from), Some(top), 4000, 499);
        assert_eq!(slices.len(), 9);
        assert!(matches!(slices[0].filter, Filter::After(_)));
        assert_eq!(slices.last().unwrap().upper, None, "the last is open");
        for pair in slices.windows(2) {
            let upper = pair[0].upper.unwrap();
            match pair[1].filter {
                Filter::Since(lo) => assert_eq!(lo, upper, "adjacent, no gap, no overlap"),
                ref f => panic!("{f:?}"),
            }
            assert_eq!(upper % 1000, 0, "whole milliseconds");
            assert!(upper > from && upper <= top);
        }
        // Nothing newer, or one timestamp for all: one open slice.
        assert_eq!(plan(cursor(from), Some(from), 4000, 499).len(), 1);
        assert_eq!(plan(cursor(from), None, 4000, 499).len(), 1);
        // A span narrower than a millisecond per window collapses.
        let narrow = plan(cursor(from), Some(from + 2_500), 4000, 499);
        assert_eq!(narrow.len(), 3, "{narrow:?}");
        // Never more than MAX_SLICES.
        let huge = plan(cursor(from), Some(from + 10_i64.pow(13)), u64::MAX, 1);
        assert_eq!(huge.len(), MAX_SLICES);
    }
}

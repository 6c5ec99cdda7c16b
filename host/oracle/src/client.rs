//! The Oracle Fusion REST client: incremental pulls by key-set continuation,
//! full refreshes, key reconciliation for deletes, retries.
//!
//! # Why key-set continuation
//!
//! Paging with `offset` over a result that changes while it is read skips
//! or doubles rows: a record updated between two pages moves to the end
//! and shifts every later row one place. Every request of a pull here uses
//! `offset=0` and a filter that continues strictly after the last
//! (`LastUpdateDate`, key) read, under `orderBy=LastUpdateDate:asc,<Key>:asc`:
//!
//! ```text
//! LastUpdateDate > 'T' or (LastUpdateDate = 'T' and InvoiceId > K)
//! ```
//!
//! A record not yet read can only move forward (its timestamp grows), so it
//! is still ahead of the position and read once; a record already read that
//! changes again comes back once more as its new version, which is a
//! different (key, `LastUpdateDate`, hash) and must be exported. Any number
//! of records sharing one timestamp page through the key tie-breaker. Late
//! commits stamped behind the position are caught by the next pull, which
//! starts `overlap` before the stored cursor; what the overlap re-reads is
//! dropped by the [`RecordIndex`].
//!
//! A page is delivered whole or not at all: on any error the position stays
//! where the last delivered page left it, so calling
//! [`Pull::next_page`] again re-reads the same page.

use std::cmp::Ordering;
use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use mlc_common::time::{format_timestamp, parse_timestamp};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::auth::TokenCache;
use crate::canonical;
use crate::config::OracleConfig;
use crate::error::OracleError;
use crate::gate::{Gate, RequestStats};
use crate::model::{
    Cursor, KeyKind, Page, PullStats, RawRecord, RecordIndex, ResourceSpec, compare_keys,
};
use crate::retry::{
    Attempt, Backoff, chain, classify_send_error, is_transient, retry_after, truncate,
};

/// Header pinning the REST framework version.
const FRAMEWORK_HEADER: &str = "REST-Framework-Version";

/// A client for one tenant's Oracle Fusion pod. Cheap to share behind an
/// `Arc`; concurrent pulls share its token cache and its request gate (the
/// concurrency cap, the request budget and the shared 429/503 backoff, see
/// [`crate::gate`]).
pub struct OracleClient {
    pub(crate) inner: Arc<Inner>,
}

/// What a client's pulls share; slices of a [`crate::SlicedPull`] run as
/// tasks holding it.
pub(crate) struct Inner {
    pub(crate) tenant: String,
    pub(crate) config: OracleConfig,
    http: reqwest::Client,
    auth: TokenCache,
    backoff: Backoff,
    gate: Gate,
}

/// The collection envelope. `items`, `count` and `hasMore` are required;
/// `limit`, `offset`, `links` are not read.
#[derive(Deserialize)]
struct Envelope<'a> {
    #[serde(borrow)]
    items: Option<Vec<&'a RawValue>>,
    count: Option<u64>,
    #[serde(rename = "hasMore")]
    has_more: Option<bool>,
    /// Only with `totalResults=true`.
    #[serde(rename = "totalResults")]
    total_results: Option<u64>,
}

/// A checked collection envelope.
#[derive(Debug)]
pub(crate) struct Collection<'b> {
    pub(crate) items: Vec<&'b RawValue>,
    pub(crate) has_more: bool,
    pub(crate) total: Option<u64>,
}

/// Oracle's error body (ADF family shape; unconfirmed for Fusion, so any
/// part may be missing and plain text is accepted too).
#[derive(Deserialize)]
struct ErrorBody {
    title: Option<String>,
    detail: Option<String>,
    #[serde(rename = "o:errorDetails")]
    error_details: Option<Vec<ErrorDetail>>,
}

#[derive(Deserialize)]
struct ErrorDetail {
    detail: Option<String>,
    #[serde(rename = "o:errorCode")]
    error_code: Option<String>,
}

/// Where the next request continues.
#[derive(Debug, Clone)]
pub(crate) enum Filter {
    /// Everything (first sync, or the start of a full refresh).
    All,
    /// `LastUpdateDate >= since` (the stored cursor minus the overlap).
    Since(i64),
    /// Strictly after this (`LastUpdateDate`, key).
    After(Cursor),
    /// Strictly after this key (full refresh, key reconciliation).
    KeyAfter(String),
}

impl OracleClient {
    /// A client for `tenant` (used in logs) with `config`.
    pub fn new(tenant: impl Into<String>, config: OracleConfig) -> Result<Self, OracleError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.request_timeout())
            .connect_timeout(config.request_timeout().min(Duration::from_secs(30)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|source| OracleError::Http {
                resource: "client".into(),
                source,
            })?;
        let auth = TokenCache::new(http.clone(), &config);
        let backoff = Backoff::new(&config.retry);
        let gate = Gate::new(&config);
        Ok(Self {
            inner: Arc::new(Inner {
                tenant: tenant.into(),
                config,
                http,
                auth,
                backoff,
                gate,
            }),
        })
    }

    /// The tenant this client serves.
    pub fn tenant(&self) -> &str {
        &self.inner.tenant
    }

    /// The configuration in use.
    pub fn config(&self) -> &OracleConfig {
        &self.inner.config
    }

    /// The authorization-code grant's refresh token now in use (rotated by
    /// the identity domain, if it rotates): the caller stores it sealed.
    /// `None` for the client-credentials grant.
    pub fn refresh_token(&self) -> Option<mlc_common::Secret> {
        self.inner.auth.refresh_token()
    }

    /// Token requests made so far (retries included).
    pub fn token_requests(&self) -> u64 {
        self.inner.auth.fetches()
    }

    /// What the request gate did so far, across every pull of this client:
    /// requests sent, 429s and 503s seen, pauses, the most in flight at once
    /// and the adaptive concurrency limit now.
    pub fn request_stats(&self) -> RequestStats {
        self.inner.gate.stats()
    }

    /// Starts a pull of `spec`.
    ///
    /// Incremental resources start `overlap` before `cursor` (or at the
    /// beginning when there is none) and return every record changed since,
    /// once per version, minus what `index` says was exported. Resources
    /// without a timestamp are read in full (`cursor` is ignored), still
    /// deduplicated by `index`; pass [`crate::NothingExported`] to get every
    /// record. Nothing is requested until [`Pull::next_page`].
    pub fn pull<'a>(
        &'a self,
        spec: &'a ResourceSpec,
        cursor: Option<Cursor>,
        index: &'a dyn RecordIndex,
    ) -> Pull<'a> {
        let (filter, cursor) = start_filter(&self.inner.config, spec, cursor);
        self.pull_from(spec, filter, cursor, index)
    }

    /// Continues an interrupted pull strictly after `position`, the last
    /// (`LastUpdateDate`, key) it delivered, without the overlap window:
    /// the pull that recorded that position already read everything up to
    /// it (a record committed late behind it is read by the next pull's
    /// overlap, as for any pull). Resources without a timestamp are read in
    /// full again.
    pub fn resume<'a>(
        &'a self,
        spec: &'a ResourceSpec,
        position: Cursor,
        index: &'a dyn RecordIndex,
    ) -> Pull<'a> {
        let (filter, cursor) = match &spec.timestamp {
            None => (Filter::All, None),
            Some(_) => (Filter::After(position.clone()), Some(position)),
        };
        self.pull_from(spec, filter, cursor, index)
    }

    fn pull_from<'a>(
        &'a self,
        spec: &'a ResourceSpec,
        filter: Filter,
        cursor: Option<Cursor>,
        index: &'a dyn RecordIndex,
    ) -> Pull<'a> {
        Pull {
            client: &self.inner,
            spec,
            index,
            filter,
            cursor,
            done: false,
            stats: PullStats::default(),
        }
    }

    /// Every key of `spec` now in Oracle (`fields=<Key>`, paged by key-set
    /// continuation). Compare with [`deleted_keys`] to find deletes.
    pub async fn reconcile_keys(&self, spec: &ResourceSpec) -> Result<Vec<String>, OracleError> {
        self.inner.reconcile_keys(spec).await
    }
}

impl Inner {
    async fn reconcile_keys(&self, spec: &ResourceSpec) -> Result<Vec<String>, OracleError> {
        let mut keys: Vec<String> = Vec::new();
        let mut filter = Filter::All;
        let mut requests = 0u64;
        loop {
            let mut query = vec![
                ("onlyData", "true".to_owned()),
                ("fields", spec.key.clone()),
                ("limit", self.config.page_size.to_string()),
                ("offset", "0".to_owned()),
                ("orderBy", format!("{}:asc", spec.key)),
            ];
            if let Some(q) = q_filter(spec, &filter) {
                query.push(("q", q));
            }
            let body = self.get(spec, &query, &mut requests).await?;
            let after = describe(&filter);
            let Collection {
                items, has_more, ..
            } = parse_envelope(&spec.path, &after, &body)?;
            let page_len = items.len();
            let mut last: Option<String> = None;
            for (index, raw) in items.into_iter().enumerate() {
                let facts = canonical::inspect(raw.get(), &spec.key, None)
                    .map_err(|problem| bad_item(spec, index, &after, problem))?;
                let key = facts.key.ok_or_else(|| {
                    bad_item(spec, index, &after, format!("no {} member", spec.key))
                })?;
                if let Some(prev) = last.as_deref().or(match &filter {
                    Filter::KeyAfter(k) => Some(k.as_str()),
                    _ => None,
                }) && compare_keys(spec.key_kind, &key, prev) != Ordering::Greater
                {
                    return Err(bad_item(
                        spec,
                        index,
                        &after,
                        format!("key {key} is not after {prev}: Oracle did not honour orderBy/q"),
                    ));
                }
                last = Some(key.clone());
                keys.push(key);
            }
            match last {
                Some(k) if has_more && page_len > 0 => filter = Filter::KeyAfter(k),
                _ => break,
            }
        }
        tracing::info!(tenant = %self.tenant, resource = %spec.path, keys = keys.len(), requests, "reconciled keys");
        Ok(keys)
    }

    /// One GET of `spec` with retries, the 401 replay and error decoding,
    /// through the client's gate (cap, budget, shared backoff).
    pub(crate) async fn get(
        &self,
        spec: &ResourceSpec,
        query: &[(&str, String)],
        requests: &mut u64,
    ) -> Result<Bytes, OracleError> {
        let url = format!(
            "{}/{}",
            self.config.base_url.trim_end_matches('/'),
            spec.path
        );
        let resource = spec.path.as_str();
        // The retry clock starts at the first admission: waiting for the
        // gate is queueing, not failing.
        let mut attempt: Option<Attempt> = None;
        let mut reauthenticated = false;
        loop {
            let admitted = self.gate.admit().await;
            let attempt = attempt.get_or_insert_with(Attempt::start);
            let bearer = self.auth.bearer().await?;
            *requests += 1;
            let sent = self
                .http
                .get(&url)
                .query(query)
                .bearer_auth(bearer.token.expose())
                .header(FRAMEWORK_HEADER, self.config.framework_version.to_string())
                .header(reqwest::header::ACCEPT, "application/json")
                .send()
                .await;
            metrics::counter!("mlc_oracle_requests_total", "tenant" => self.tenant.to_string(),
                "status" => sent.as_ref().map_or_else(|_| "error".to_owned(), |r| r.status().as_u16().to_string()))
            .increment(1);
            let (failure, wait, pushed_back) = match sent {
                Err(e) => match classify_send_error(&e) {
                    Some(text) => (text, None, None),
                    None => {
                        return Err(OracleError::Http {
                            resource: resource.to_owned(),
                            source: e,
                        });
                    }
                },
                Ok(resp) => {
                    let status = resp.status();
                    if status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                        self.gate.answered();
                    }
                    // Only a 401 right after signing in again means the
                    // credentials are refused; one after another answer is
                    // a token revoked or expired since (it gets one more
                    // sign-in).
                    if status != reqwest::StatusCode::UNAUTHORIZED {
                        reauthenticated = false;
                    }
                    if status.is_success() {
                        match resp.bytes().await {
                            Ok(body) => return Ok(body),
                            Err(e) => (format!("reading the answer: {}", chain(&e)), None, None),
                        }
                    } else if status == reqwest::StatusCode::UNAUTHORIZED {
                        if reauthenticated {
                            return Err(OracleError::Unauthorized {
                                resource: resource.to_owned(),
                            });
                        }
                        tracing::info!(tenant = %self.tenant, resource, "401: re-authenticating once");
                        reauthenticated = true;
                        self.auth.invalidate(bearer.generation).await;
                        continue;
                    } else if is_transient(status) {
                        let wait = retry_after(resp.headers());
                        let code = status.as_u16();
                        let shared = matches!(code, 429 | 503).then_some(code);
                        (format!("Oracle answered {code}"), wait, shared)
                    } else {
                        let text = resp.text().await.unwrap_or_default();
                        return Err(OracleError::Rejected {
                            resource: resource.to_owned(),
                            status: status.as_u16(),
                            detail: error_detail(&text),
                        });
                    }
                }
            };
            let delay = self.backoff.next_delay(attempt, wait, resource, &failure);
            if let Some(code) = pushed_back {
                // Everyone waits, not just this request (with the retry
                // time of this one; a request out of retries still pauses
                // the others for what the server asked).
                let pause = match &delay {
                    Ok(d) => *d,
                    Err(_) => wait.unwrap_or_default(),
                };
                self.gate.pushed_back(code, pause);
            }
            drop(admitted);
            let delay = delay?;
            tracing::warn!(
                tenant = %self.tenant,
                resource,
                attempt = attempt.attempts,
                delay_ms = delay.as_millis() as u64,
                failure = %failure,
                "transient failure, retrying"
            );
            tokio::time::sleep(delay).await;
        }
    }
}

/// Where a pull of `spec` from `cursor` starts: `overlap` before it for a
/// timestamped resource (strictly after it when there is no overlap), the
/// beginning without a cursor or a timestamp; and the cursor it starts at.
pub(crate) fn start_filter(
    config: &OracleConfig,
    spec: &ResourceSpec,
    cursor: Option<Cursor>,
) -> (Filter, Option<Cursor>) {
    match (&spec.timestamp, cursor) {
        (None, _) | (Some(_), None) => (Filter::All, None),
        (Some(_), Some(c)) => {
            let overlap = config.overlap_micros();
            let filter = if overlap == 0 {
                Filter::After(c.clone())
            } else {
                Filter::Since(c.last_update.saturating_sub(overlap))
            };
            (filter, Some(c))
        }
    }
}

/// Keys in `known` that Oracle no longer has (`present` from
/// [`OracleClient::reconcile_keys`]), sorted.
pub fn deleted_keys<I, S>(known: I, present: &[String]) -> Vec<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    let present: HashSet<&str> = present.iter().map(String::as_str).collect();
    let mut gone: Vec<String> = known
        .into_iter()
        .filter(|k| !present.contains(k.as_ref()))
        .map(|k| k.as_ref().to_owned())
        .collect();
    gone.sort();
    gone.dedup();
    gone
}

/// One pull in progress: an async iterator over pages, holding at most one
/// page in memory.
pub struct Pull<'a> {
    client: &'a Inner,
    spec: &'a ResourceSpec,
    index: &'a dyn RecordIndex,
    filter: Filter,
    cursor: Option<Cursor>,
    done: bool,
    stats: PullStats,
}

impl Pull<'_> {
    /// The next page of new or changed records, `Ok(None)` at the end.
    ///
    /// Pages whose records were all exported before are read through
    /// without being returned. On an error nothing of the failed page is
    /// delivered and the position stays; calling again retries that page.
    pub async fn next_page(&mut self) -> Result<Option<Page>, OracleError> {
        while !self.done {
            let page = self.read_page().await?;
            if !page.records.is_empty() {
                return Ok(Some(page));
            }
        }
        Ok(None)
    }

    /// The cursor to store once every returned page is exported: the
    /// greatest (`LastUpdateDate`, key) read, never behind the starting
    /// cursor. `None` for full-refresh resources and for an empty first sync.
    pub fn cursor(&self) -> Option<&Cursor> {
        self.cursor.as_ref()
    }

    /// Counters so far.
    pub fn stats(&self) -> PullStats {
        self.stats
    }

    /// True once the last page was read.
    pub fn is_done(&self) -> bool {
        self.done
    }

    async fn read_page(&mut self) -> Result<Page, OracleError> {
        let spec = self.spec;
        let client = self.client;
        let page = client
            .fetch_page(spec, &self.filter, None, false, &mut self.stats.requests)
            .await?;
        let next = page.next(spec, &self.filter)?;

        // Advance (the whole page is decoded and checked by now).
        if let Some(c) = page.last_cursor() {
            let ahead = self
                .cursor
                .as_ref()
                .is_none_or(|old| c.compare(old, spec.key_kind) == Ordering::Greater);
            if ahead {
                self.cursor = Some(c);
            }
        }
        match next {
            Some(f) => self.filter = f,
            None => self.done = true,
        }
        let read = page.read;
        let (records, duplicates) = page.keep_new(self.index);
        self.stats.pages += 1;
        self.stats.records += read as u64;
        self.stats.duplicates_skipped += duplicates;
        tracing::debug!(
            tenant = %client.tenant,
            resource = %spec.path,
            read,
            new = records.len(),
            duplicates,
            "page"
        );
        Ok(Page {
            records,
            cursor: self.cursor.clone(),
            duplicates,
        })
    }
}

/// One page read and checked, before the [`RecordIndex`] is asked.
#[derive(Debug)]
pub(crate) struct Decoded {
    /// Records ahead of the continuation, in (`LastUpdateDate`, key) order.
    pub(crate) records: Vec<RawRecord>,
    /// Records at or behind the continuation (re-reads), skipped.
    pub(crate) behind: u64,
    /// Items in the page.
    pub(crate) read: usize,
    /// The page's last (`LastUpdateDate`, key).
    pub(crate) last: Option<(Option<i64>, String)>,
    /// `hasMore`.
    pub(crate) has_more: bool,
    /// `totalResults`, when asked for.
    pub(crate) total: Option<u64>,
    /// Where the pull stood (for errors).
    pub(crate) after: String,
}

impl Decoded {
    /// The page's last position as a cursor (timestamped resources).
    pub(crate) fn last_cursor(&self) -> Option<Cursor> {
        match &self.last {
            Some((Some(ts), key)) => Some(Cursor {
                last_update: *ts,
                key: key.clone(),
            }),
            _ => None,
        }
    }

    /// The continuation after this page, `None` at the end; an error when
    /// `hasMore` is true but the page does not move past `filter`.
    pub(crate) fn next(
        &self,
        spec: &ResourceSpec,
        filter: &Filter,
    ) -> Result<Option<Filter>, OracleError> {
        let next = match (&self.last, &spec.timestamp) {
            (Some((Some(ts), key)), Some(_)) => Some(Filter::After(Cursor {
                last_update: *ts,
                key: key.clone(),
            })),
            (Some((_, key)), None) => Some(Filter::KeyAfter(key.clone())),
            _ => None,
        };
        let progressed = match (&next, filter) {
            (Some(Filter::After(n)), Filter::After(o)) => {
                n.compare(o, spec.key_kind) == Ordering::Greater
            }
            (Some(Filter::KeyAfter(n)), Filter::KeyAfter(o)) => {
                compare_keys(spec.key_kind, n, o) == Ordering::Greater
            }
            (Some(_), _) => true,
            (None, _) => false,
        };
        if self.has_more && self.read > 0 && !progressed {
            return Err(OracleError::Envelope {
                resource: spec.path.clone(),
                after: self.after.clone(),
                problem: "hasMore is true but the page does not advance past the last position"
                    .into(),
            });
        }
        if self.has_more && self.read == 0 {
            tracing::warn!(resource = %spec.path, "empty page with hasMore=true; treating as the end");
        }
        Ok(next.filter(|_| self.has_more))
    }

    /// The records `index` does not have, and how many were skipped
    /// (re-reads included).
    pub(crate) fn keep_new(self, index: &dyn RecordIndex) -> (Vec<RawRecord>, u64) {
        let mut duplicates = self.behind;
        let mut records = self.records;
        records.retain(|r| {
            let new = index.is_new(&r.key, r.last_update, &r.content_hash);
            if !new {
                duplicates += 1;
            }
            new
        });
        (records, duplicates)
    }
}

impl Inner {
    /// The query of one page of `spec` continuing at `filter`, below
    /// `LastUpdateDate` `upper` when given, with `totalResults` when `total`.
    fn page_query(
        &self,
        spec: &ResourceSpec,
        filter: &Filter,
        upper: Option<i64>,
        total: bool,
    ) -> Vec<(&'static str, String)> {
        let order = match &spec.timestamp {
            Some(ts) => format!("{ts}:asc,{}:asc", spec.key),
            None => format!("{}:asc", spec.key),
        };
        let mut query = vec![
            ("onlyData", "true".to_owned()),
            ("limit", self.config.page_size.to_string()),
            ("offset", "0".to_owned()),
            ("orderBy", order),
        ];
        match &spec.fields {
            // With `fields`, Oracle inlines the children it names and
            // ignores `expand`.
            Some(projection) => query.push(("fields", projection.query())),
            None if !spec.expand.is_empty() => query.push(("expand", spec.expand.join(","))),
            None => {}
        }
        if total {
            query.push(("totalResults", "true".to_owned()));
        }
        let bound = match (&spec.timestamp, upper) {
            (Some(ts), Some(u)) => Some(format!("{ts} < '{}'", format_timestamp(u))),
            _ => None,
        };
        let q = match (q_filter(spec, filter), bound) {
            (Some(q), Some(b)) => Some(format!("({q}) and {b}")),
            (q, b) => q.or(b),
        };
        if let Some(q) = q {
            query.push(("q", q));
        }
        query
    }

    /// Reads and checks one page of `spec` continuing at `filter` (below
    /// `upper`, when given). Nothing is decided about the records yet.
    pub(crate) async fn fetch_page(
        &self,
        spec: &ResourceSpec,
        filter: &Filter,
        upper: Option<i64>,
        total: bool,
        requests: &mut u64,
    ) -> Result<Decoded, OracleError> {
        let query = self.page_query(spec, filter, upper, total);
        let body = self.get(spec, &query, requests).await?;
        let mut after = describe(filter);
        if let Some(u) = upper {
            after.push_str(&format!(" below {}", format_timestamp(u)));
        }
        decode_page(spec, filter, upper, &body, after)
    }
}

/// Decodes and checks a whole page: envelope, keys, timestamps, truncated
/// children, order, the slice's upper bound; marks re-reads.
fn decode_page(
    spec: &ResourceSpec,
    filter: &Filter,
    upper: Option<i64>,
    body: &[u8],
    after: String,
) -> Result<Decoded, OracleError> {
    let Collection {
        items,
        has_more,
        total,
    } = parse_envelope(&spec.path, &after, body)?;
    let read = items.len();
    let mut records = Vec::with_capacity(items.len());
    let mut behind_count = 0u64;
    let mut last: Option<(Option<i64>, String)> = None;
    for (index, raw) in items.into_iter().enumerate() {
        let facts = canonical::inspect(raw.get(), &spec.key, spec.timestamp.as_deref())
            .map_err(|p| bad_item(spec, index, &after, p))?;
        let key = facts
            .key
            .ok_or_else(|| bad_item(spec, index, &after, format!("no {} member", spec.key)))?;
        if let Some(child) = facts.truncated_child {
            return Err(bad_item(
                spec,
                index,
                &after,
                format!(
                    "{} {key}: expanded child {child} is truncated (hasMore=true)",
                    spec.key
                ),
            ));
        }
        let last_update = match (&spec.timestamp, facts.timestamp) {
            (None, _) => None,
            (Some(ts), None) => {
                return Err(bad_item(
                    spec,
                    index,
                    &after,
                    format!("{} {key} has no {ts}", spec.key),
                ));
            }
            (Some(ts), Some(text)) => Some(parse_timestamp(&text).map_err(|e| {
                bad_item(
                    spec,
                    index,
                    &after,
                    format!("{} {key}: {ts}: {e}", spec.key),
                )
            })?),
        };
        // Order check: strictly increasing, so key-set continuation
        // cannot step over a record the server returned out of order.
        if let Some((prev_ts, prev_key)) = &last
            && position_cmp(spec.key_kind, (*prev_ts, prev_key), (last_update, &key))
                != Ordering::Less
        {
            return Err(bad_item(
                spec,
                index,
                &after,
                format!(
                    "{} {key} is not after {prev_key}: Oracle did not honour orderBy",
                    spec.key
                ),
            ));
        }
        // A slice never takes a record of the next one: it would be
        // delivered twice.
        if let (Some(u), Some(t)) = (upper, last_update)
            && t >= u
        {
            return Err(bad_item(
                spec,
                index,
                &after,
                format!(
                    "{} {key} is at {}, not below the slice's bound: Oracle did not honour q",
                    spec.key,
                    format_timestamp(t)
                ),
            ));
        }
        // At or behind the continuation point: a re-read (e.g. a
        // timestamp rendered with less precision than it is compared
        // with). It was delivered already; skip it.
        let behind = match filter {
            Filter::After(c) => {
                position_cmp(
                    spec.key_kind,
                    (last_update, &key),
                    (Some(c.last_update), &c.key),
                ) != Ordering::Greater
            }
            Filter::KeyAfter(k) => compare_keys(spec.key_kind, &key, k) != Ordering::Greater,
            Filter::Since(since) => last_update.is_some_and(|t| t < *since),
            Filter::All => false,
        };
        last = Some((last_update, key.clone()));
        if behind {
            behind_count += 1;
            continue;
        }
        records.push(RawRecord {
            key,
            last_update,
            content_hash: facts.hash,
            json: raw.get().to_owned(),
        });
    }
    Ok(Decoded {
        records,
        behind: behind_count,
        read,
        last,
        has_more,
        total,
        after,
    })
}

/// Orders (timestamp, key) positions; a missing timestamp sorts first.
fn position_cmp(kind: KeyKind, a: (Option<i64>, &str), b: (Option<i64>, &str)) -> Ordering {
    a.0.cmp(&b.0).then_with(|| compare_keys(kind, a.1, b.1))
}

/// The `q` row-match filter (framework version 2+) for `filter`.
fn q_filter(spec: &ResourceSpec, filter: &Filter) -> Option<String> {
    let key = &spec.key;
    match (filter, &spec.timestamp) {
        (Filter::All, _) => None,
        (Filter::Since(since), Some(ts)) => Some(format!("{ts} >= '{}'", format_timestamp(*since))),
        (Filter::After(c), Some(ts)) => {
            let t = format_timestamp(c.last_update);
            Some(format!(
                "{ts} > '{t}' or ({ts} = '{t}' and {key} > {})",
                key_literal(spec.key_kind, &c.key)
            ))
        }
        (Filter::KeyAfter(k), _) => Some(format!("{key} > {}", key_literal(spec.key_kind, k))),
        (Filter::Since(_) | Filter::After(_), None) => None,
    }
}

/// A key as a `q` literal: integers bare (only digits pass), text quoted
/// with embedded quotes doubled (the escape rule is unconfirmed in the
/// reference; doubling is the SQL convention the row-match dialect follows).
fn key_literal(kind: KeyKind, key: &str) -> String {
    match kind {
        KeyKind::Integer if key.parse::<i64>().is_ok() => key.to_owned(),
        _ => format!("'{}'", key.replace('\'', "''")),
    }
}

fn describe(filter: &Filter) -> String {
    match filter {
        Filter::All => "the start".into(),
        Filter::Since(t) => format!("LastUpdateDate >= {}", format_timestamp(*t)),
        Filter::After(c) => format!("({}, key {})", format_timestamp(c.last_update), c.key),
        Filter::KeyAfter(k) => format!("key {k}"),
    }
}

pub(crate) fn bad_item(
    spec: &ResourceSpec,
    index: usize,
    after: &str,
    problem: String,
) -> OracleError {
    OracleError::BadItem {
        resource: spec.path.clone(),
        index,
        after: after.to_owned(),
        problem,
    }
}

/// Checks the envelope and returns its items and `hasMore`.
pub(crate) fn parse_envelope<'b>(
    resource: &str,
    after: &str,
    body: &'b [u8],
) -> Result<Collection<'b>, OracleError> {
    let envelope: Envelope<'b> =
        serde_json::from_slice(body).map_err(|source| OracleError::MalformedJson {
            resource: resource.to_owned(),
            after: after.to_owned(),
            source,
        })?;
    let problem = |p: &str| OracleError::Envelope {
        resource: resource.to_owned(),
        after: after.to_owned(),
        problem: p.to_owned(),
    };
    let items = envelope.items.ok_or_else(|| problem("no `items`"))?;
    let count = envelope.count.ok_or_else(|| problem("no `count`"))?;
    let has_more = envelope.has_more.ok_or_else(|| problem("no `hasMore`"))?;
    if count != items.len() as u64 {
        return Err(problem(&format!(
            "`count` is {count} but {} items came",
            items.len()
        )));
    }
    Ok(Collection {
        items,
        has_more,
        total: envelope.total_results,
    })
}

/// Oracle's error detail from a refused request: `o:errorDetails[].detail`
/// (with the error code), else `title`/`detail`, else the text itself.
fn error_detail(body: &str) -> String {
    if let Ok(parsed) = serde_json::from_str::<ErrorBody>(body) {
        let details: Vec<String> = parsed
            .error_details
            .unwrap_or_default()
            .into_iter()
            .filter_map(|d| match (d.detail, d.error_code) {
                (Some(detail), Some(code)) => Some(format!("{detail} [{code}]")),
                (Some(detail), None) => Some(detail),
                _ => None,
            })
            .collect();
        let head = parsed.title.or(parsed.detail);
        match (head, details.is_empty()) {
            (Some(h), true) => return h,
            (Some(h), false) => return format!("{h}: {}", details.join("; ")),
            (None, false) => return details.join("; "),
            (None, true) => {}
        }
    }
    let text = body.trim();
    if text.is_empty() {
        "(empty body)".into()
    } else {
        truncate(text, 500)
    }
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn q_filters() {
        let spec = ResourceSpec::invoices();
        let c = Cursor {
            last_update: 1_714_726_971_077_000,
            key: "42".into(),
        };
        assert_eq!(
            q_filter(&spec, &Filter::After(c)).unwrap(),
            "LastUpdateDate > '2024-05-03T09:02:51.077+00:00' or (LastUpdateDate = '2024-05-03T09:02:51.077+00:00' and InvoiceId > 42)"
        );
        let vs = ResourceSpec::value_set_values("CC");
        assert_eq!(
            q_filter(&vs, &Filter::KeyAfter("O'Neil".into())).unwrap(),
            "Value > 'O''Neil'"
        );
        assert_eq!(key_literal(KeyKind::Integer, "1 or 1=1"), "'1 or 1=1'");
    }

    #[test]
    fn error_details() {
        assert_eq!(
            error_detail(
                r#"{"title":"Bad Request","status":"400","o:errorDetails":[{"detail":"URL request parameter q with value X is not valid.","o:errorCode":"27502"}]}"#
            ),
            "Bad Request: URL request parameter q with value X is not valid. [27502]"
        );
        assert_eq!(
            error_detail("Invalid operation create."),
            "Invalid operation create."
        );
        assert_eq!(error_detail(""), "(empty body)");
    }

    #[test]
    fn envelopes() {
        let ok = br#"{"items":[{"a":1}],"count":1,"hasMore":false,"limit":499,"offset":0}"#;
        let c = parse_envelope("r", "s", ok).unwrap();
        assert_eq!(c.items.len(), 1);
        assert!(!c.has_more);
        assert_eq!(c.total, None);
        let with_total = br#"{"items":[],"count":0,"hasMore":false,"totalResults":7}"#;
        assert_eq!(parse_envelope("r", "s", with_total).unwrap().total, Some(7));
        for (body, want) in [
            (&br#"{"count":0,"hasMore":false}"#[..], "no `items`"),
            (br#"{"items":[],"hasMore":false}"#, "no `count`"),
            (br#"{"items":[],"count":0}"#, "no `hasMore`"),
            (
                br#"{"items":[{}],"count":2,"hasMore":false}"#,
                "`count` is 2",
            ),
        ] {
            let err = parse_envelope("r", "s", body).err().unwrap().to_string();
            assert!(err.contains(want), "{err}");
        }
        let err = parse_envelope("r", "s", b"{\"items\":[").unwrap_err();
        assert!(matches!(err, OracleError::MalformedJson { .. }), "{err}");
    }

    #[test]
    fn deletes() {
        let present = vec!["1".to_owned(), "3".to_owned()];
        assert_eq!(deleted_keys(["1", "2", "3", "4"], &present), vec!["2", "4"]);
    }
}

//! Record state and paging: a generated base plus a small overlay of
//! changes, read without materialising the base.
//!
//! The base of a resource is records `0..n`, generated on demand; their
//! keys and base `LastUpdateDate`s both rise with the index, so the base is
//! already sorted by `(LastUpdateDate, key)` and by key. Updates, inserts
//! and deletes go to an overlay: a map from index to its current version,
//! a set of shadowed base indices, and a `(LastUpdateDate, index)`-ordered
//! set of live overlay records. A `LastUpdateDate >= X` query ordered by
//! `LastUpdateDate, key` binary-searches the base, merges the overlay, and
//! skips offsets arithmetically when the filter is a plain range; other
//! filters and orders scan.

use std::cmp::Ordering;
use std::collections::{BTreeSet, HashMap};
use std::sync::RwLock;

use crate::generator::{Gen, Ver};
use crate::model::{Rec, V};
use crate::query::{Pred, bounds, eval, fields_used, is_range_on};
use crate::resources::{Kind, Resource};

/// Non-pure filters beyond this many candidates get an estimated
/// `totalResults` instead of a full count.
const EXACT_COUNT_LIMIT: u64 = 20_000;

#[derive(Clone, Copy, Debug)]
struct Entry {
    ver: Ver,
    deleted: bool,
}

#[derive(Default, Debug)]
struct Overlay {
    entries: HashMap<u64, Entry>,
    /// Base indices (`< n`) that have an entry (updated or deleted).
    shadow: BTreeSet<u64>,
    /// Live (not deleted) entries by `(LastUpdateDate, index)`.
    timeline: BTreeSet<(i64, u64)>,
    /// Every deleted index.
    deleted: BTreeSet<u64>,
    /// Records inserted after the base (indices `n..n+inserted`).
    inserted: u64,
}

/// One record read for a response.
#[derive(Clone, Debug)]
pub(crate) struct Item {
    /// Record index.
    pub index: u64,
    /// Version state.
    pub ver: Ver,
    /// Attributes: always with [`Select::records`], else only when the
    /// filter had to generate them anyway.
    pub rec: Option<Rec>,
}

/// What to read.
pub(crate) struct Select<'a> {
    /// Filter (q and finder combined).
    pub pred: Option<&'a Pred>,
    /// `orderBy`: attribute and descending flag.
    pub order: &'a [(&'static str, bool)],
    /// Rows to skip.
    pub offset: u64,
    /// Page size.
    pub limit: u64,
    /// Compute `totalResults`.
    pub total: bool,
    /// Generate every item's attributes (`false`: the caller generates
    /// what it needs itself, e.g. straight to JSON).
    pub records: bool,
}

/// One page.
#[derive(Debug)]
pub(crate) struct Page {
    /// Rows.
    pub items: Vec<Item>,
    /// More rows follow.
    pub has_more: bool,
    /// `totalResults` (exact where cheap, else an estimate that is never
    /// below `offset + count`).
    pub total: Option<u64>,
}

/// One top-level resource's records.
#[derive(Debug)]
pub(crate) struct Table {
    /// Shape.
    pub res: &'static Resource,
    base_n: u64,
    ov: RwLock<Overlay>,
}

impl Table {
    fn read(&self) -> std::sync::RwLockReadGuard<'_, Overlay> {
        self.ov.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Overlay> {
        self.ov.write().unwrap_or_else(|e| e.into_inner())
    }

    fn kind(&self) -> Kind {
        self.res.kind
    }

    fn millis(&self) -> bool {
        self.res.ts_millis
    }

    /// Truncates a timestamp to the precision this resource renders.
    pub(crate) fn stamp(&self, micros: i64) -> i64 {
        let unit = if self.millis() { 1000 } else { 1_000_000 };
        micros - micros.rem_euclid(unit)
    }

    fn state(&self, g: &Gen, ov: &Overlay, index: u64) -> Option<Ver> {
        match ov.entries.get(&index) {
            Some(e) if e.deleted => None,
            Some(e) => Some(e.ver),
            None if index < self.base_n => Some(g.base_ver(self.kind(), index, self.millis())),
            None => None,
        }
    }

    /// Current version of record `index` (`None`: deleted or absent).
    pub(crate) fn get(&self, g: &Gen, index: u64) -> Option<Ver> {
        self.state(g, &self.read(), index)
    }

    /// The key value of record `index`.
    pub(crate) fn key_value(&self, g: &Gen, index: u64) -> V {
        if self.kind() == Kind::ValueSets {
            V::str(Gen::value_set_code(index).unwrap_or_default())
        } else {
            V::Int(g.int_key(self.kind(), index))
        }
    }

    /// The index of a key value (not checking that it is live).
    pub(crate) fn index_of(&self, g: &Gen, key: &V) -> Option<u64> {
        match key {
            V::Str(code) if self.kind() == Kind::ValueSets => Gen::value_set_index(code),
            V::Int(k) => g.index_of_int(self.kind(), *k),
            _ => None,
        }
    }

    /// Number of indices ever used (base plus inserted).
    fn span(&self, ov: &Overlay) -> u64 {
        self.base_n + ov.inserted
    }

    /// Live record count.
    pub(crate) fn live_count(&self) -> u64 {
        let ov = self.read();
        self.span(&ov) - ov.deleted.len() as u64
    }

    /// Live indices in key order.
    pub(crate) fn live_indices(&self) -> Vec<u64> {
        let ov = self.read();
        (0..self.span(&ov))
            .filter(|i| !ov.deleted.contains(i))
            .collect()
    }

    /// Picks a live index from a random number (`None` when empty).
    pub(crate) fn random_live(&self, r: u64) -> Option<u64> {
        let ov = self.read();
        let span = self.span(&ov);
        if span == 0 {
            return None;
        }
        (0..16u64)
            .map(|k| (r.wrapping_add(k.wrapping_mul(0x9E37_79B9))) % span)
            .find(|i| !ov.deleted.contains(i))
    }

    /// Records a new version of `index` stamped `lud`; false if deleted or
    /// absent.
    pub(crate) fn update(&self, g: &Gen, index: u64, lud: i64) -> bool {
        let lud = self.stamp(lud);
        let mut ov = self.write();
        let Some(cur) = self.state(g, &ov, index) else {
            return false;
        };
        if ov.entries.contains_key(&index) {
            ov.timeline.remove(&(cur.lud, index));
        }
        let ver = Ver {
            version: cur.version + 1,
            lud,
            created: cur.created.min(lud),
        };
        ov.entries.insert(
            index,
            Entry {
                ver,
                deleted: false,
            },
        );
        if index < self.base_n {
            ov.shadow.insert(index);
        }
        ov.timeline.insert((lud, index));
        true
    }

    /// Inserts a new record stamped `lud`; returns its index.
    pub(crate) fn insert(&self, lud: i64) -> u64 {
        let lud = self.stamp(lud);
        let mut ov = self.write();
        let index = self.base_n + ov.inserted;
        ov.inserted += 1;
        ov.entries.insert(
            index,
            Entry {
                ver: Ver {
                    version: 0,
                    lud,
                    created: lud,
                },
                deleted: false,
            },
        );
        ov.timeline.insert((lud, index));
        index
    }

    /// Deletes record `index`; false if already deleted or absent.
    pub(crate) fn delete(&self, g: &Gen, index: u64) -> bool {
        let mut ov = self.write();
        let Some(cur) = self.state(g, &ov, index) else {
            return false;
        };
        if ov.entries.contains_key(&index) {
            ov.timeline.remove(&(cur.lud, index));
        }
        ov.entries.insert(
            index,
            Entry {
                ver: cur,
                deleted: true,
            },
        );
        if index < self.base_n {
            ov.shadow.insert(index);
        }
        ov.deleted.insert(index);
        true
    }

    /// Generates the record at `index` in state `ver`.
    pub(crate) fn record(&self, g: &Gen, index: u64, ver: Ver) -> Rec {
        g.record(self.kind(), index, ver, self.millis())
    }

    fn pure_fields(&self) -> [&'static str; 2] {
        [
            self.res.node.key,
            if self.res.timestamped {
                "LastUpdateDate"
            } else {
                self.res.node.key
            },
        ]
    }

    fn minimal(&self, g: &Gen, index: u64, ver: Ver) -> Rec {
        let mut r = vec![(self.res.node.key, self.key_value(g, index))];
        if self.res.timestamped {
            r.push(("LastUpdateDate", V::Ts(ver.lud, self.millis())));
        }
        r
    }

    /// Reads one page.
    pub(crate) fn page(&self, g: &Gen, sel: &Select<'_>) -> Page {
        let ov = self.read();
        let pure_set = self.pure_fields();
        let pred_pure = sel.pred.is_none_or(|p| {
            let mut used = Vec::new();
            fields_used(p, &mut used);
            used.iter().all(|f| pure_set.contains(&f.as_str()))
        });
        let key = self.res.node.key;
        let timeline_order = self.res.timestamped
            && matches!(
                sel.order,
                [("LastUpdateDate", false)] | [("LastUpdateDate", false), (_, false)]
            )
            && sel.order.get(1).is_none_or(|(f, _)| *f == key);
        let key_order = sel.order.is_empty() || matches!(sel.order, [(f, false)] if *f == key);
        let cx = Scan {
            t: self,
            g,
            ov: &ov,
            pred: sel.pred,
            pure: pred_pure,
            records: sel.records,
        };
        if timeline_order {
            cx.timeline_page(sel)
        } else if key_order {
            cx.key_page(sel)
        } else {
            cx.general_page(sel)
        }
    }
}

struct Scan<'a> {
    t: &'a Table,
    g: &'a Gen,
    ov: &'a Overlay,
    pred: Option<&'a Pred>,
    pure: bool,
    /// [`Select::records`].
    records: bool,
}

/// Iterates `(LastUpdateDate, index)` in order over base and overlay.
struct Timeline<'a> {
    g: &'a Gen,
    kind: Kind,
    millis: bool,
    base_pos: u64,
    base_end: u64,
    shadow: &'a BTreeSet<u64>,
    over: std::iter::Peekable<std::collections::btree_set::Range<'a, (i64, u64)>>,
    ub: Option<i64>,
}

impl Timeline<'_> {
    fn skip_shadowed(&mut self) {
        while self.base_pos < self.base_end && self.shadow.contains(&self.base_pos) {
            self.base_pos += 1;
        }
    }

    /// Skips `n` rows when every row in the window matches.
    fn skip_all_matching(&mut self, mut n: u64) {
        while n > 0 {
            let o = self.over.peek().map(|x| **x);
            let limit = match o {
                Some((l, i)) => {
                    let a = self.g.first_index_at_or_after(self.kind, l, self.millis);
                    let b = self.g.first_index_after(self.kind, l, self.millis);
                    let c = a.max(i.saturating_add(1));
                    if c < b { c } else { b }
                }
                None => self.base_end,
            }
            .min(self.base_end)
            .max(self.base_pos);
            let shadowed = self.shadow.range(self.base_pos..limit).count() as u64;
            let count = limit - self.base_pos - shadowed;
            if n < count {
                let mut target = self.base_pos + n;
                for s in self.shadow.range(self.base_pos..) {
                    if *s <= target {
                        target += 1;
                    } else {
                        break;
                    }
                }
                self.base_pos = target;
                return;
            }
            n -= count;
            self.base_pos = limit;
            if n == 0 {
                return;
            }
            match o {
                Some((l, _)) if self.ub.is_none_or(|ub| l <= ub) => {
                    self.over.next();
                    n -= 1;
                }
                _ => {
                    self.base_pos = self.base_end;
                    return;
                }
            }
        }
    }
}

impl Iterator for Timeline<'_> {
    type Item = (i64, u64);

    fn next(&mut self) -> Option<(i64, u64)> {
        self.skip_shadowed();
        let b = (self.base_pos < self.base_end).then(|| {
            (
                self.g.base_lud(self.kind, self.base_pos, self.millis),
                self.base_pos,
            )
        });
        let o = self.over.peek().map(|x| **x);
        let pick = match (b, o) {
            (Some(b), Some(o)) if o < b => {
                self.over.next();
                o
            }
            (Some(b), _) => {
                self.base_pos += 1;
                b
            }
            (None, Some(o)) => {
                self.over.next();
                o
            }
            (None, None) => return None,
        };
        if self.ub.is_some_and(|ub| pick.0 > ub) {
            self.base_pos = self.base_end;
            return None;
        }
        Some(pick)
    }
}

fn ts_bound(v: Option<V>) -> Option<i64> {
    match v {
        Some(V::Ts(t, _)) => Some(t),
        _ => None,
    }
}

impl Scan<'_> {
    fn ver(&self, index: u64) -> Option<Ver> {
        self.t.state(self.g, self.ov, index)
    }

    /// Whether `index` matches; returns the full record when it had to be
    /// generated.
    fn test(&self, index: u64, ver: Ver) -> (bool, Option<Rec>) {
        let Some(p) = self.pred else {
            return (true, None);
        };
        if self.pure {
            let rec = self.t.minimal(self.g, index, ver);
            (eval(p, &rec, &mut |_| Vec::new()), None)
        } else {
            let rec = self.t.record(self.g, index, ver);
            let kind = self.t.kind();
            let millis = self.t.millis();
            let ok = eval(p, &rec, &mut |c| {
                self.g.children(kind, index, ver, millis, None, c)
            });
            (ok, Some(rec))
        }
    }

    fn item(&self, index: u64, ver: Ver, rec: Option<Rec>) -> Item {
        Item {
            index,
            ver,
            rec: match rec {
                None if self.records => Some(self.t.record(self.g, index, ver)),
                rec => rec,
            },
        }
    }

    /// Skips `offset` matches, takes `limit`, then looks for one more.
    /// Returns the items, whether more follow, and how many candidates
    /// were looked at.
    fn collect(
        &self,
        it: &mut dyn Iterator<Item = u64>,
        mut offset: u64,
        limit: u64,
    ) -> (Vec<Item>, bool, u64) {
        let mut items = Vec::new();
        let mut scanned = 0u64;
        for index in it {
            let Some(ver) = self.ver(index) else { continue };
            scanned += 1;
            let (ok, rec) = self.test(index, ver);
            if !ok {
                continue;
            }
            if offset > 0 {
                offset -= 1;
                continue;
            }
            if items.len() as u64 == limit {
                return (items, true, scanned);
            }
            items.push(self.item(index, ver, rec));
        }
        (items, false, scanned)
    }

    fn timeline_from(&self, lb: Option<i64>, ub: Option<i64>) -> Timeline<'_> {
        let kind = self.t.kind();
        let millis = self.t.millis();
        let base_pos = lb.map_or(0, |l| self.g.first_index_at_or_after(kind, l, millis));
        let base_end = ub.map_or(self.t.base_n, |u| self.g.first_index_after(kind, u, millis));
        let over = match lb {
            Some(l) => self.ov.timeline.range((l, 0)..),
            None => self.ov.timeline.range(..),
        }
        .peekable();
        Timeline {
            g: self.g,
            kind,
            millis,
            base_pos,
            base_end: base_end.max(base_pos),
            shadow: &self.ov.shadow,
            over,
            ub,
        }
    }

    fn timeline_page(&self, sel: &Select<'_>) -> Page {
        let (lo, hi) = self
            .pred
            .map_or((None, None), |p| bounds(p, "LastUpdateDate"));
        let (lb, ub) = (ts_bound(lo), ts_bound(hi));
        let contiguous = self.pred.is_none_or(|p| is_range_on(p, "LastUpdateDate"));
        let mut tl = self.timeline_from(lb, ub);
        let mut offset = sel.offset;
        if contiguous {
            // Everything between the (exact, inclusive) bounds matches:
            // skip by arithmetic.
            tl.skip_all_matching(offset);
            offset = 0;
        }
        let mut it = tl.by_ref().map(|(_, i)| i);
        let (items, has_more, _) = self.collect(&mut it, offset, sel.limit);
        let total = sel.total.then(|| {
            let counted = if self.pure || self.candidates(lb, ub) <= EXACT_COUNT_LIMIT {
                let mut all = self.timeline_from(lb, ub).map(|(_, i)| i);
                Some(self.count(&mut all))
            } else {
                None
            };
            counted.unwrap_or_else(|| estimate(sel, &items, has_more, self.candidates(lb, ub)))
        });
        Page {
            items,
            has_more,
            total,
        }
    }

    fn candidates(&self, lb: Option<i64>, ub: Option<i64>) -> u64 {
        let tl = self.timeline_from(lb, ub);
        tl.base_end - tl.base_pos + self.ov.timeline.len() as u64
    }

    fn count(&self, it: &mut dyn Iterator<Item = u64>) -> u64 {
        let mut n = 0;
        for index in it {
            if let Some(ver) = self.ver(index)
                && self.test(index, ver).0
            {
                n += 1;
            }
        }
        n
    }

    /// The index range a key filter allows, and whether it is exact (the
    /// bounds are integer keys, so the range is precisely the matches of a
    /// plain key-range filter).
    fn key_range(&self) -> (u64, u64, bool) {
        let span = self.t.span(self.ov);
        let key = self.t.res.node.key;
        let (lo, hi) = self.pred.map_or((None, None), |p| bounds(p, key));
        let int_or_none = |v: &Option<V>| matches!(v, None | Some(V::Int(_)));
        let exact = self.t.res.node.key_ty() == crate::model::Ty::Int
            && int_or_none(&lo)
            && int_or_none(&hi);
        let start = match lo {
            Some(ref v @ V::Int(_)) => self.t.index_of(self.g, v).unwrap_or(0),
            _ => 0,
        };
        let end = match hi {
            Some(V::Int(k)) => match self.g.index_of_int(self.t.kind(), k) {
                Some(i) => i.saturating_add(1).min(span),
                None => 0,
            },
            _ => span,
        };
        (start.min(span), end.max(start.min(span)), exact)
    }

    fn key_page(&self, sel: &Select<'_>) -> Page {
        let (start, end, exact) = self.key_range();
        let key = self.t.res.node.key;
        let contiguous = self.pred.is_none_or(|p| exact && is_range_on(p, key));
        let mut pos = start;
        let mut offset = sel.offset;
        if contiguous {
            // Skip deleted indices arithmetically.
            let mut target = start.saturating_add(offset);
            for d in self.ov.deleted.range(start..) {
                if *d <= target {
                    target += 1;
                } else {
                    break;
                }
            }
            pos = target.min(end);
            offset = 0;
        }
        let mut it = pos..end;
        let (items, has_more, _) = self.collect(&mut it, offset, sel.limit);
        let total = sel.total.then(|| {
            if contiguous {
                end - start - self.ov.deleted.range(start..end).count() as u64
            } else if self.pure || end - start <= EXACT_COUNT_LIMIT {
                self.count(&mut (start..end))
            } else {
                estimate(sel, &items, has_more, end - start)
            }
        });
        Page {
            items,
            has_more,
            total,
        }
    }

    fn general_page(&self, sel: &Select<'_>) -> Page {
        let (start, end, _) = self.key_range();
        let pure_set = self.t.pure_fields();
        let order_pure = sel.order.iter().all(|(f, _)| pure_set.contains(f));
        let mut rows: Vec<(Vec<V>, u64, Ver)> = Vec::new();
        for index in start..end {
            let Some(ver) = self.ver(index) else { continue };
            let (ok, rec) = self.test(index, ver);
            if !ok {
                continue;
            }
            let rec = match rec {
                Some(r) => r,
                None if order_pure => self.t.minimal(self.g, index, ver),
                None => self.t.record(self.g, index, ver),
            };
            let keys = sel
                .order
                .iter()
                .map(|(f, _)| crate::model::get(&rec, f).cloned().unwrap_or(V::Null))
                .collect();
            rows.push((keys, index, ver));
        }
        rows.sort_by(|a, b| {
            for (k, (_, desc)) in sel.order.iter().enumerate() {
                let o = a.0[k].order(&b.0[k]);
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            a.1.cmp(&b.1)
        });
        let total = rows.len() as u64;
        let from = usize::try_from(sel.offset)
            .unwrap_or(usize::MAX)
            .min(rows.len());
        let to = from
            .saturating_add(usize::try_from(sel.limit).unwrap_or(usize::MAX))
            .min(rows.len());
        let items = rows[from..to]
            .iter()
            .map(|(_, index, ver)| self.item(*index, *ver, None))
            .collect();
        Page {
            items,
            has_more: to < rows.len(),
            total: sel.total.then_some(total),
        }
    }
}

/// An estimate never below what the page proves.
fn estimate(sel: &Select<'_>, items: &[Item], has_more: bool, candidates: u64) -> u64 {
    let seen = sel.offset.saturating_add(items.len() as u64);
    if has_more {
        seen.max(candidates).max(seen.saturating_add(1))
    } else {
        seen
    }
}

/// All tables of one sandbox.
#[derive(Debug)]
pub(crate) struct Store {
    /// The generator.
    pub data: Gen,
    tables: Vec<Table>,
}

impl Store {
    /// A store over the generator's data.
    pub(crate) fn new(data: Gen) -> Self {
        let tables = crate::resources::RESOURCES
            .iter()
            .map(|res| Table {
                res,
                base_n: data.base_count(res.kind),
                ov: RwLock::new(Overlay::default()),
            })
            .collect();
        Self { data, tables }
    }

    /// The table of resource `name`.
    pub(crate) fn table(&self, name: &str) -> Option<&Table> {
        self.tables.iter().find(|t| t.res.node.name == name)
    }

    /// All tables.
    pub(crate) fn tables(&self) -> &[Table] {
        &self.tables
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Sizes;
    use crate::query::parse_v2;

    const T0: i64 = 1_704_067_200_000_000;

    fn store(n: u64, same: u64) -> Store {
        Store::new(Gen::new(42, Sizes::for_invoices(n), same))
    }

    /// Reference implementation: every live record, filtered and sorted
    /// naively.
    fn naive(s: &Store, pred: Option<&Pred>, order: &[(&'static str, bool)]) -> Vec<(i64, i64)> {
        let t = s.table("invoices").unwrap();
        let mut rows: Vec<Rec> = t
            .live_indices()
            .into_iter()
            .map(|i| t.record(&s.data, i, t.get(&s.data, i).unwrap()))
            .filter(|r| pred.is_none_or(|p| eval(p, r, &mut |_| Vec::new())))
            .collect();
        rows.sort_by(|a, b| {
            for (f, desc) in order {
                let o = crate::model::get(a, f)
                    .unwrap()
                    .order(crate::model::get(b, f).unwrap());
                let o = if *desc { o.reverse() } else { o };
                if o != Ordering::Equal {
                    return o;
                }
            }
            crate::model::get(a, "InvoiceId")
                .unwrap()
                .order(crate::model::get(b, "InvoiceId").unwrap())
        });
        rows.iter().map(ident).collect()
    }

    fn ident(r: &Rec) -> (i64, i64) {
        let k = match crate::model::get(r, "InvoiceId") {
            Some(V::Int(k)) => *k,
            _ => 0,
        };
        let t = match crate::model::get(r, "LastUpdateDate") {
            Some(V::Ts(t, _)) => *t,
            _ => 0,
        };
        (k, t)
    }

    fn pages(
        s: &Store,
        pred: Option<&Pred>,
        order: &[(&'static str, bool)],
        limit: u64,
    ) -> Vec<(i64, i64)> {
        let t = s.table("invoices").unwrap();
        let mut out = Vec::new();
        let mut offset = 0;
        loop {
            let p = t.page(
                &s.data,
                &Select {
                    pred,
                    order,
                    offset,
                    limit,
                    total: true,
                    records: true,
                },
            );
            let total = p.total.unwrap();
            assert!(total >= offset + p.items.len() as u64);
            if p.items.is_empty() {
                assert!(!p.has_more);
            }
            out.extend(p.items.iter().map(|i| ident(i.rec.as_ref().unwrap())));
            offset += p.items.len() as u64;
            if !p.has_more {
                assert_eq!(total, offset, "exact total for this shape of query");
                break;
            }
        }
        out
    }

    fn mutate(s: &Store) {
        let t = s.table("invoices").unwrap();
        for (k, i) in [5u64, 17, 17, 100, 250, 3].iter().enumerate() {
            assert!(t.update(&s.data, *i, T0 + 400_000_000 + k as i64 * 1000));
        }
        // Late commit: stamped inside the base range.
        assert!(t.update(&s.data, 299, T0 + 50_500_000));
        t.insert(T0 + 600_000_000);
        t.insert(T0 + 120_000_000);
        assert!(t.delete(&s.data, 7));
        assert!(t.delete(&s.data, 100));
        assert!(!t.delete(&s.data, 100));
        assert!(!t.update(&s.data, 7, T0 + 700_000_000));
    }

    #[test]
    fn every_plan_agrees_with_a_naive_scan() {
        for same in [1, 10, 1000] {
            let s = store(300, same);
            mutate(&s);
            let inv = &crate::resources::resource("invoices").unwrap().node;
            let filters = [
                None,
                Some("LastUpdateDate >= '2024-01-01T00:01:00Z'"),
                Some(
                    "LastUpdateDate > '2024-01-01T00:00:50.500Z' and LastUpdateDate <= '2024-01-01T00:04:00Z'",
                ),
                Some(
                    "LastUpdateDate > '2024-01-01T00:01:00Z' or (LastUpdateDate = '2024-01-01T00:01:00Z' and InvoiceId > 300100000000060)",
                ),
                Some("InvoiceId >= 300100000000010 and InvoiceId < 300100000000200"),
                Some("InvoiceCurrency = 'EUR'"),
                Some("LastUpdateDate >= '2024-01-01T00:02:00Z' and InvoiceCurrency = 'USD'"),
            ];
            let orders: [&[(&str, bool)]; 4] = [
                &[("LastUpdateDate", false), ("InvoiceId", false)],
                &[],
                &[("LastUpdateDate", true)],
                &[("InvoiceCurrency", false), ("InvoiceId", true)],
            ];
            for f in filters {
                let pred = f.map(|q| parse_v2(inv, q).unwrap());
                for order in orders {
                    let want = naive(&s, pred.as_ref(), order);
                    for limit in [3, 499] {
                        let got = pages(&s, pred.as_ref(), order, limit);
                        assert_eq!(
                            got, want,
                            "same={same} filter={f:?} order={order:?} limit={limit}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn string_keys_and_fractional_bounds_are_filtered_row_by_row() {
        let s = store(100, 1);
        let vs = s.table("valueSets").unwrap();
        let node = &crate::resources::resource("valueSets").unwrap().node;
        let pred = parse_v2(node, "ValueSetCode = 'CORP_LOCATION'").unwrap();
        let sel = Select {
            pred: Some(&pred),
            order: &[],
            offset: 0,
            limit: 25,
            total: true,
            records: true,
        };
        let p = vs.page(&s.data, &sel);
        assert_eq!(p.items.len(), 1);
        assert_eq!(p.total, Some(1));
        let inv = s.table("invoices").unwrap();
        let node = &crate::resources::resource("invoices").unwrap().node;
        let pred = parse_v2(node, "InvoiceId >= 300100000000090.5").unwrap();
        let p = inv.page(
            &s.data,
            &Select {
                pred: Some(&pred),
                order: &[],
                offset: 2,
                limit: 25,
                total: true,
                records: true,
            },
        );
        assert_eq!(p.total, Some(9));
        assert_eq!(p.items.len(), 7);
        assert_eq!(p.items[0].index, 93);
    }

    #[test]
    fn deep_offsets_on_a_huge_table_are_immediate() {
        let s = store(5_000_000, 1000);
        let t = s.table("invoices").unwrap();
        t.update(&s.data, 4_999_999, T0 + 10_000_000_000_000);
        let p = t.page(
            &s.data,
            &Select {
                pred: None,
                order: &[],
                offset: 4_999_990,
                limit: 25,
                total: true,
                records: true,
            },
        );
        assert_eq!(p.items.len(), 10);
        assert!(!p.has_more);
        assert_eq!(p.total, Some(5_000_000));
        let inv = &crate::resources::resource("invoices").unwrap().node;
        let pred = parse_v2(inv, "LastUpdateDate >= '2024-01-01T00:00:00Z'").unwrap();
        let p = t.page(
            &s.data,
            &Select {
                pred: Some(&pred),
                order: &[("LastUpdateDate", false), ("InvoiceId", false)],
                offset: 4_999_998,
                limit: 25,
                total: true,
                records: true,
            },
        );
        assert_eq!(p.items.len(), 2);
        assert_eq!(p.items[1].index, 4_999_999, "the updated record sorts last");
        assert_eq!(p.total, Some(5_000_000));
    }
}

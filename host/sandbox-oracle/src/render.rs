//! JSON text of items, collections and `describe`, written by hand so
//! amounts keep their exact decimal digits.
//!
//! Items carry `links` (`self` with `properties.changeIndicator`,
//! `canonical`, `parent` for child items, one `child` per child
//! collection) unless `onlyData=true`. Expanded children are arrays under
//! framework versions 1 and 2 and collection objects from version 3.
//!
//! Speed: a first load reads every record once, so nothing is cached
//! across requests; each item is cheap to write instead. With
//! `onlyData=true` (what clients pulling data send) rows go from the
//! generator straight to JSON text ([`write_data_item`]) and never become
//! records; keys are copied ready-made ([`Shape`] keeps them per request),
//! and the timestamps and dates a record shares with its child rows are
//! written once ([`Recent`]). Items with links go through records
//! ([`write_item`]).

use std::fmt::Write as _;
use std::io::Write as _;

use crate::generator::{Fields, Gen, Row, Rows, Ver};
use crate::model::{
    Out, Rec, Recent, V, get, into_text, push_fixed, write_int, write_json, write_key, write_str,
};
use crate::resources::{Node, PathKey, RESOURCES, Resource, encode_uniq};

/// Which attributes and children of a node to write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    /// Attributes to write (`None`: all).
    pub fields: Option<Vec<&'static str>>,
    /// Children to inline, each with its own shape.
    pub children: Vec<(&'static Node, Shape)>,
    /// The node's attribute keys in wire order, ready to copy (empty:
    /// keys are written one piece at a time).
    keys: Vec<Key>,
}

/// The longest `,"Name":` kept ready.
const KEY_LEN: usize = 48;

/// `,"Name":` of one attribute, copied with one fixed-size move: rows
/// repeat their keys, and this is a tenth of the text.
#[derive(Clone, Copy, Debug)]
struct Key {
    name: &'static str,
    text: [u8; KEY_LEN],
    len: usize,
}

impl Key {
    /// `None` for a name too long to keep ready.
    fn new(name: &'static str) -> Option<Key> {
        let len = name.len() + 4;
        if len > KEY_LEN {
            return None;
        }
        let mut text = [0u8; KEY_LEN];
        text[..2].copy_from_slice(b",\"");
        text[2..len - 2].copy_from_slice(name.as_bytes());
        text[len - 2..len].copy_from_slice(b"\":");
        Some(Key { name, text, len })
    }
}

/// Why `fields` or `expand` was refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError(pub String);

impl Shape {
    /// Makes the keys of `node` and of every child, ready to copy.
    fn with_keys(mut self, node: &'static Node) -> Shape {
        self.keys = node
            .fields
            .iter()
            .map(|f| Key::new(f.name))
            .collect::<Option<Vec<_>>>()
            .unwrap_or_default();
        self.children = std::mem::take(&mut self.children)
            .into_iter()
            .map(|(child, shape)| (child, shape.with_keys(child)))
            .collect();
        self
    }

    fn child_mut(&mut self, node: &'static Node) -> &mut Shape {
        if let Some(pos) = self
            .children
            .iter()
            .position(|(n, _)| std::ptr::eq(*n, node))
        {
            &mut self.children[pos].1
        } else {
            self.children.push((node, Shape::default()));
            let last = self.children.len() - 1;
            &mut self.children[last].1
        }
    }

    /// Walks `a.b.c` from `root`, creating expansions on the way.
    fn path_mut(&mut self, root: &'static Node, path: &str) -> Result<&mut Shape, ShapeError> {
        let mut node = root;
        let mut shape = self;
        for part in path.split('.') {
            let child = node.child(part).ok_or_else(|| {
                ShapeError(format!("The child {part} is not found in {}.", node.name))
            })?;
            shape = shape.child_mut(child);
            node = child;
        }
        Ok(shape)
    }

    /// Builds the shape from `fields` and `expand`; with both, only
    /// `fields` applies (as Oracle documents).
    pub(crate) fn parse(
        root: &'static Node,
        fields: Option<&str>,
        expand: Option<&str>,
    ) -> Result<Shape, ShapeError> {
        let mut shape = Shape::default();
        if let Some(fields) = fields {
            for (i, seg) in fields.split(';').enumerate() {
                let (path, list) = match seg.split_once(':') {
                    Some((p, l)) => (Some(p.trim()), l),
                    None if i == 0 => (None, seg),
                    None => {
                        return Err(ShapeError(format!(
                            "The fields parameter segment {seg} must name a child (child:Attr,...)."
                        )));
                    }
                };
                let (node, target) = match path {
                    None => (root, &mut shape),
                    Some(p) => {
                        let mut node = root;
                        for part in p.split('.') {
                            node = node.child(part).ok_or_else(|| {
                                ShapeError(format!(
                                    "The child {part} is not found in {}.",
                                    node.name
                                ))
                            })?;
                        }
                        (node, shape.path_mut(root, p)?)
                    }
                };
                let mut names = Vec::new();
                for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                    let def = node.field(name).ok_or_else(|| {
                        ShapeError(format!(
                            "The attribute {name} is not found in {}.",
                            node.name
                        ))
                    })?;
                    names.push(def.name);
                }
                target.fields = Some(names);
            }
            return Ok(shape.with_keys(root));
        }
        if let Some(expand) = expand {
            for item in expand.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if item.eq_ignore_ascii_case("all") {
                    // `all` inlines every direct child (one level).
                    for c in root.children {
                        shape.child_mut(c);
                    }
                } else {
                    shape.path_mut(root, item)?;
                }
            }
        }
        Ok(shape.with_keys(root))
    }
}

/// Rendering switches from the request.
#[derive(Clone, Debug)]
pub(crate) struct Opts {
    /// `onlyData=true`: no item links.
    pub only_data: bool,
    /// `links=self,canonical`: keep only these relations.
    pub links: Option<Vec<String>>,
    /// `REST-Framework-Version` (1..=9).
    pub version: u8,
}

/// Where an item sits, for its links and children.
pub(crate) struct At<'a> {
    /// Generator.
    pub g: &'a Gen,
    /// Top-level resource.
    pub res: &'static Resource,
    /// Top-level record index.
    pub index: u64,
    /// Top-level record state.
    pub ver: Ver,
}

/// The path segment of a row under `node`.
pub(crate) fn key_segment(node: &Node, rec: &Rec) -> String {
    match node.path {
        PathKey::Raw | PathKey::RawOrHash => match get(rec, node.key) {
            Some(V::Int(i)) => i.to_string(),
            Some(V::Str(s)) => s.to_string(),
            _ => String::new(),
        },
        PathKey::Hash => {
            let parts: Vec<i64> = node
                .hash_fields
                .iter()
                .map(|f| match get(rec, f) {
                    Some(V::Int(i)) => *i,
                    _ => 0,
                })
                .collect();
            encode_uniq(&parts)
        }
    }
}

fn change_indicator(at: &At<'_>, extra: &str) -> String {
    use sha2::Digest as _;
    let mut h = sha2::Sha256::new();
    h.update(at.res.node.name.as_bytes());
    h.update(at.index.to_le_bytes());
    h.update(at.ver.version.to_le_bytes());
    h.update(at.ver.lud.to_le_bytes());
    h.update(extra.as_bytes());
    let digest = h.finalize();
    format!("ACED0005770400000001{}", hex::encode_upper(&digest[..12]))
}

/// One entry of a `links` array.
struct Link<'a> {
    rel: &'a str,
    href: &'a str,
    name: &'a str,
    kind: &'a str,
    change_indicator: Option<&'a str>,
}

impl<'a> Link<'a> {
    fn new(rel: &'a str, href: &'a str, name: &'a str, kind: &'a str) -> Self {
        Self {
            rel,
            href,
            name,
            kind,
            change_indicator: None,
        }
    }
}

fn link(out: &mut Out, first: &mut bool, opts: &Opts, l: &Link<'_>) {
    if let Some(keep) = &opts.links
        && !keep.iter().any(|k| k == l.rel)
    {
        return;
    }
    if !*first {
        out.push(b',');
    }
    *first = false;
    out.extend_from_slice(b"{\"rel\":");
    write_str(out, l.rel);
    out.extend_from_slice(b",\"href\":");
    write_str(out, l.href);
    out.extend_from_slice(b",\"name\":");
    write_str(out, l.name);
    out.extend_from_slice(b",\"kind\":");
    write_str(out, l.kind);
    if let Some(ci) = l.change_indicator {
        out.extend_from_slice(b",\"properties\":{\"changeIndicator\":");
        write_str(out, ci);
        out.push(b'}');
    }
    out.push(b'}');
}

/// Where one item is written: its URL, its parent item (URL and
/// collection name) for child items, and whether it is a top-level record
/// (its children hang from the record itself, not from a child row).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Place<'a> {
    /// The item's URL.
    pub href: &'a str,
    /// The parent item's URL and name.
    pub parent: Option<(&'a str, &'a str)>,
    /// A top-level record.
    pub is_top: bool,
}

/// Writes one item at `place`, links included; returns how many child
/// rows it inlined (at any depth). With `onlyData=true` (no links) the
/// item goes through [`write_data_item`], and `place.href` may be empty.
pub(crate) fn write_item(
    out: &mut Out,
    at: &At<'_>,
    node: &'static Node,
    rec: &Rec,
    shape: &Shape,
    opts: &Opts,
    place: Place<'_>,
) -> u64 {
    if opts.only_data {
        return write_data_item(out, at, Some(rec), shape, opts.version, place.is_top);
    }
    let href = place.href;
    let mut inlined = 0u64;
    out.push(b'{');
    let mut first = true;
    for (name, v) in rec {
        if let Some(keep) = &shape.fields
            && !keep.contains(name)
        {
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(out, name);
        write_json(out, v);
    }
    for (child, child_shape) in &shape.children {
        let rows = at.g.children(
            at.res.kind,
            at.index,
            at.ver,
            at.res.ts_millis,
            if place.is_top { None } else { Some(rec) },
            child.name,
        );
        if !first {
            out.push(b',');
        }
        first = false;
        write_key(out, child.name);
        let coll_href = format!("{href}/child/{}", child.name);
        // Children go straight into `out`: `[…]` before version 3, a
        // collection object from version 3.
        out.extend_from_slice(if opts.version >= 3 {
            b"{\"items\":["
        } else {
            b"["
        });
        let mut row_href = String::new();
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            row_href.clear();
            let _ = write!(row_href, "{coll_href}/{}", key_segment(child, row));
            inlined += 1 + write_item(
                out,
                at,
                child,
                row,
                child_shape,
                opts,
                Place {
                    href: &row_href,
                    parent: Some((href, node.name)),
                    is_top: false,
                },
            );
        }
        out.push(b']');
        if opts.version >= 3 {
            out.extend_from_slice(b",\"count\":");
            write_int(out, i64::try_from(rows.len()).unwrap_or(i64::MAX));
            out.extend_from_slice(b",\"hasMore\":false,\"limit\":25,\"offset\":0,\"links\":[");
            let mut f = true;
            link(
                out,
                &mut f,
                opts,
                &Link::new("self", &coll_href, child.name, "collection"),
            );
            out.extend_from_slice(b"]}");
        }
    }
    if !first {
        out.push(b',');
    }
    out.extend_from_slice(b"\"links\":[");
    let mut f = true;
    let ci = change_indicator(at, href);
    link(
        out,
        &mut f,
        opts,
        &Link {
            change_indicator: Some(&ci),
            ..Link::new("self", href, node.name, "item")
        },
    );
    link(
        out,
        &mut f,
        opts,
        &Link::new("canonical", href, node.name, "item"),
    );
    if let Some((phref, pname)) = place.parent {
        link(
            out,
            &mut f,
            opts,
            &Link::new("parent", phref, pname, "item"),
        );
    }
    let mut chref = String::new();
    for c in node.children {
        chref.clear();
        let _ = write!(chref, "{href}/child/{}", c.name);
        link(
            out,
            &mut f,
            opts,
            &Link::new("child", &chref, c.name, "collection"),
        );
    }
    out.push(b']');
    out.push(b'}');
    inlined
}

/// Whether two attribute names are the same, compared 8 bytes at a time
/// (names are short; a general comparison is a call).
fn same_name(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let n = a.len();
    if n != b.len() {
        return false;
    }
    if n < 8 {
        return a.iter().zip(b).all(|(x, y)| x == y);
    }
    let word = |s: &[u8], at: usize| {
        let mut w = [0u8; 8];
        w.copy_from_slice(&s[at..at + 8]);
        u64::from_le_bytes(w)
    };
    let mut at = 0;
    while at + 8 <= n {
        if word(a, at) != word(b, at) {
            return false;
        }
        at += 8;
    }
    at == n || word(a, n - 8) == word(b, n - 8)
}

/// The integer attributes of the row being written, kept for its
/// grandchildren (which are generated from their parent's keys).
#[derive(Debug, Default)]
struct Ints(Vec<(&'static str, i64)>);

impl Fields for Ints {
    fn int(&self, name: &str) -> Option<i64> {
        self.0.iter().find(|(n, _)| *n == name).map(|(_, i)| *i)
    }
}

/// The `onlyData=true` fast path: the rows of one collection (or one
/// top-level record) written as JSON the moment the generator makes them,
/// never becoming records. The text is the one [`write_item`] writes
/// without links: attributes in order (those `fields` keeps), then each
/// expanded child collection.
struct JsonRows<'a> {
    out: &'a mut Out,
    recent: &'a mut Recent,
    at: &'a At<'a>,
    shape: &'a Shape,
    version: u8,
    /// Rows of a top-level record: their children hang from the record.
    top: bool,
    /// A row is open (its `}` not yet written).
    open: bool,
    /// No attribute written yet in the open row.
    first: bool,
    /// Attributes of the open row so far.
    pos: usize,
    /// Rows started.
    rows: u64,
    /// Child rows inlined into them, at any depth.
    inlined: u64,
    /// Integer attributes of the open row, when its children need them.
    ints: Option<Ints>,
}

impl<'a> JsonRows<'a> {
    fn new(
        out: &'a mut Out,
        recent: &'a mut Recent,
        at: &'a At<'a>,
        shape: &'a Shape,
        version: u8,
        top: bool,
    ) -> Self {
        let ints = (!top && !shape.children.is_empty()).then(Ints::default);
        Self {
            out,
            recent,
            at,
            shape,
            version,
            top,
            open: false,
            first: true,
            pos: 0,
            rows: 0,
            inlined: 0,
            ints,
        }
    }

    /// One attribute of the open row.
    fn field(&mut self, name: &'static str, v: &V) {
        let pos = self.pos;
        self.pos += 1;
        if let (Some(ints), V::Int(i)) = (&mut self.ints, v) {
            ints.0.push((name, *i));
        }
        if let Some(keep) = &self.shape.fields
            && !keep.contains(&name)
        {
            return;
        }
        if self.first {
            self.first = false;
            write_key(self.out, name);
        } else {
            match self.shape.keys.get(pos) {
                // Rows come in wire order; the name check keeps any other
                // order right, only slower.
                Some(key) if same_name(key.name, name) => {
                    push_fixed(self.out, &key.text, key.len);
                }
                _ => {
                    self.out.push(b',');
                    write_key(self.out, name);
                }
            }
        }
        self.recent.write_json(self.out, v);
    }

    /// Writes the open row's expanded children and its `}`.
    fn close(&mut self) {
        if !self.open {
            return;
        }
        self.open = false;
        let shape = self.shape;
        for (child, child_shape) in &shape.children {
            if !self.first {
                self.out.push(b',');
            }
            self.first = false;
            write_key(self.out, child.name);
            let parent = if self.top {
                None
            } else {
                self.ints.as_ref().map(|i| i as &dyn Fields)
            };
            self.inlined += write_data_children(
                self.out,
                self.recent,
                self.at,
                child,
                child_shape,
                self.version,
                parent,
            );
        }
        self.out.push(b'}');
    }

    /// Closes the last row; returns `(rows, child rows inlined)`.
    fn finish(mut self) -> (u64, u64) {
        self.close();
        (self.rows, self.inlined)
    }
}

impl Row for JsonRows<'_> {
    fn push(&mut self, (name, v): (&'static str, V)) {
        self.field(name, &v);
    }
}

impl Rows for JsonRows<'_> {
    type Row = Self;

    fn row(&mut self) -> &mut Self {
        self.close();
        if self.rows > 0 {
            self.out.push(b',');
        }
        self.out.push(b'{');
        self.rows += 1;
        self.open = true;
        self.first = true;
        self.pos = 0;
        if let Some(ints) = &mut self.ints {
            ints.0.clear();
        }
        self
    }
}

/// Writes the expanded collection `child` of the item `at` (of the row
/// whose integer attributes `parent` answers, below the top level) for
/// `onlyData=true`: `[…]` before version 3, a collection object from
/// version 3. Returns the rows written, at any depth.
fn write_data_children(
    out: &mut Out,
    recent: &mut Recent,
    at: &At<'_>,
    child: &'static Node,
    shape: &Shape,
    version: u8,
    parent: Option<&dyn Fields>,
) -> u64 {
    out.extend_from_slice(if version >= 3 { b"{\"items\":[" } else { b"[" });
    let mut rows = JsonRows::new(out, recent, at, shape, version, false);
    at.g.children_into(
        at.res.kind,
        at.index,
        at.ver,
        at.res.ts_millis,
        parent,
        child.name,
        &mut rows,
    );
    let (count, inlined) = rows.finish();
    out.push(b']');
    if version >= 3 {
        out.extend_from_slice(b",\"count\":");
        write_int(out, i64::try_from(count).unwrap_or(i64::MAX));
        out.extend_from_slice(b",\"hasMore\":false,\"limit\":25,\"offset\":0}");
    }
    count + inlined
}

/// Writes one item for `onlyData=true` (no links): from `rec` when the
/// caller has it, else straight from the generator (a top-level record
/// at `at`). Returns how many child rows it inlined, at any depth.
pub(crate) fn write_data_item(
    out: &mut Out,
    at: &At<'_>,
    rec: Option<&Rec>,
    shape: &Shape,
    version: u8,
    is_top: bool,
) -> u64 {
    let mut recent = Recent::default();
    let mut rows = JsonRows::new(out, &mut recent, at, shape, version, is_top);
    let row = rows.row();
    match rec {
        Some(rec) => {
            for (name, v) in rec {
                row.field(name, v);
            }
        }
        None => {
            at.g.record_into(at.res.kind, at.index, at.ver, at.res.ts_millis, row)
        }
    }
    rows.finish().1
}

/// The members of a collection envelope besides `items`.
#[derive(Debug)]
pub(crate) struct Envelope<'a> {
    /// Items on this page.
    pub count: usize,
    /// More pages follow.
    pub has_more: bool,
    /// The page size actually used.
    pub limit: u64,
    /// The offset asked for.
    pub offset: u64,
    /// `totalResults`, when asked for.
    pub total: Option<u64>,
    /// The collection's URL.
    pub href: &'a str,
    /// The collection's name.
    pub name: &'a str,
}

/// Starts a collection envelope: the caller writes the items (comma
/// separated) after this, then calls [`end_collection`].
pub(crate) fn begin_collection(out: &mut Out) {
    out.extend_from_slice(b"{\"items\":[");
}

/// Ends a collection envelope begun with [`begin_collection`]. Collection
/// `links` stay even with `onlyData=true`: the reference lists `links` as a
/// required envelope member. A `next` link is UNCONFIRMED and not sent
/// (clients page with `offset += count`). Claims that `hasMore` or
/// `totalResults` go wrong at non-zero offsets are UNCONFIRMED: here they
/// are always right (`totalResults` may over-estimate, never under).
pub(crate) fn end_collection(out: &mut Out, env: &Envelope<'_>) {
    out.push(b']');
    if let Some(t) = env.total {
        let _ = write!(out, ",\"totalResults\":{t}");
    }
    let _ = write!(
        out,
        ",\"count\":{},\"hasMore\":{},\"limit\":{},\"offset\":{},\"links\":[",
        env.count, env.has_more, env.limit, env.offset
    );
    out.extend_from_slice(b"{\"rel\":\"self\",\"href\":");
    write_str(out, env.href);
    out.extend_from_slice(b",\"name\":");
    write_str(out, env.name);
    out.extend_from_slice(b",\"kind\":\"collection\"}]}");
}

/// A record's attributes as a JSON object (no links, no children).
pub(crate) fn record_json(rec: &Rec) -> String {
    let mut out = Out::from(b"{");
    for (i, (name, v)) in rec.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_key(&mut out, name);
        write_json(&mut out, v);
    }
    out.push(b'}');
    into_text(out)
}

fn describe_node(node: &Node, href: &str, finders: &[(&str, Vec<&str>)]) -> serde_json::Value {
    let attributes: Vec<serde_json::Value> = node
        .fields
        .iter()
        .map(|f| {
            serde_json::json!({
                "name": f.name,
                "type": f.ty.describe_name(),
                "updatable": f.name != node.key,
                "mandatory": f.name == node.key,
                "queryable": f.queryable,
                "allowChanges": if f.name == node.key { "never" } else { "always" },
                "annotations": {"description": f.name},
            })
        })
        .collect();
    let finders: Vec<serde_json::Value> = finders
        .iter()
        .map(|(name, vars)| {
            serde_json::json!({
                "name": name,
                "title": name,
                "attributes": vars.iter().map(|v| {
                    let ty = node.field(v).map_or("string", |f| f.ty.describe_name());
                    serde_json::json!({"name": v, "type": ty, "updatable": true, "mandatory": false, "queryable": false})
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    let children: serde_json::Map<String, serde_json::Value> = node
        .children
        .iter()
        .map(|c| {
            let pk = vec![("PrimaryKey", vec![c.key])];
            (
                c.name.to_owned(),
                describe_node(c, &format!("{href}/{{id}}/child/{}", c.name), &pk),
            )
        })
        .collect();
    let child_links: Vec<serde_json::Value> = node
        .children
        .iter()
        .map(|c| {
            serde_json::json!({"rel": "child", "href": format!("{href}/{{id}}/child/{}", c.name),
                "name": c.name, "kind": "collection"})
        })
        .collect();
    serde_json::json!({
        "discrColumnType": false,
        "title": node.title,
        "titlePlural": node.title,
        "attributes": attributes,
        "collection": {
            "rangeSize": 25,
            "finders": finders,
            "links": [{"rel": "self", "href": href, "name": "self", "kind": "collection"}],
            "actions": [{"name": "get", "method": "GET",
                "responseType": ["application/json", "application/vnd.oracle.adf.resourcecollection+json"]}],
        },
        "item": {
            "links": child_links,
            "actions": [{"name": "get", "method": "GET",
                "responseType": ["application/json", "application/vnd.oracle.adf.resourceitem+json"]}],
        },
        "children": children,
    })
}

/// `describe` of a child collection at `href`.
pub(crate) fn describe_child(href: &str, node: &Node) -> serde_json::Value {
    let pk = vec![("PrimaryKey", vec![node.key])];
    let mut map = serde_json::Map::new();
    map.insert(node.name.to_owned(), describe_node(node, href, &pk));
    serde_json::json!({ "Resources": map })
}

/// `describe` of one resource (or of all when `only` is `None`).
pub(crate) fn describe(base: &str, only: Option<&'static Resource>) -> serde_json::Value {
    let mut map = serde_json::Map::new();
    for res in RESOURCES {
        if only.is_some_and(|o| !std::ptr::eq(o, res)) {
            continue;
        }
        let mut finders = vec![("PrimaryKey", vec![res.node.key])];
        for f in res.finders {
            finders.push((f.name, f.vars.to_vec()));
        }
        let href = format!("{base}/{}", res.node.name);
        map.insert(
            res.node.name.to_owned(),
            describe_node(&res.node, &href, &finders),
        );
    }
    serde_json::json!({ "Resources": map })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generator::Sizes;
    use crate::resources::resource;

    /// The `onlyData` text of an item, the plain way: records first, then
    /// JSON (what the sandbox wrote before its fast path).
    fn reference(at: &At<'_>, rec: &Rec, shape: &Shape, version: u8, is_top: bool) -> String {
        let mut out = String::from("{");
        let mut first = true;
        for (name, v) in rec {
            if shape
                .fields
                .as_ref()
                .is_some_and(|keep| !keep.contains(name))
            {
                continue;
            }
            if !first {
                out.push(',');
            }
            first = false;
            let mut value = Out::new();
            write_json(&mut value, v);
            out.push_str(&format!("\"{name}\":{}", String::from_utf8(value).unwrap()));
        }
        for (child, child_shape) in &shape.children {
            let rows = at.g.children(
                at.res.kind,
                at.index,
                at.ver,
                at.res.ts_millis,
                if is_top { None } else { Some(rec) },
                child.name,
            );
            if !first {
                out.push(',');
            }
            first = false;
            let items: Vec<String> = rows
                .iter()
                .map(|row| reference(at, row, child_shape, version, false))
                .collect();
            let items = format!("[{}]", items.join(","));
            if version >= 3 {
                out.push_str(&format!(
                    "\"{}\":{{\"items\":{items},\"count\":{},\"hasMore\":false,\"limit\":25,\"offset\":0}}",
                    child.name,
                    rows.len()
                ));
            } else {
                out.push_str(&format!("\"{}\":{items}", child.name));
            }
        }
        out.push('}');
        out
    }

    /// Child rows an item inlines, at any depth.
    fn inlined_rows(at: &At<'_>, rec: &Rec, shape: &Shape, is_top: bool) -> u64 {
        shape
            .children
            .iter()
            .map(|(child, child_shape)| {
                let parent = if is_top { None } else { Some(rec) };
                at.g.children(
                    at.res.kind,
                    at.index,
                    at.ver,
                    at.res.ts_millis,
                    parent,
                    child.name,
                )
                .iter()
                .map(|row| 1 + inlined_rows(at, row, child_shape, false))
                .sum::<u64>()
            })
            .sum()
    }

    #[test]
    fn the_only_data_fast_path_writes_what_records_give() {
        let g = Gen::new(11, Sizes::for_invoices(400), 1);
        let shapes = [
            (None, Some("all")),
            (None, None),
            (
                None,
                Some("invoiceLines,invoiceLines.invoiceDistributions,invoiceInstallments"),
            ),
            (None, Some("lines.schedules")),
            (None, Some("journalHeaders.journalLines")),
            (
                Some(
                    "InvoiceId,InvoiceAmount;invoiceLines:LineNumber,LineAmount;invoiceLines.invoiceDistributions:DistributionAmount",
                ),
                None,
            ),
        ];
        let mut compared = 0;
        for res in crate::resources::RESOURCES {
            for (fields, expand) in shapes {
                let Ok(shape) = Shape::parse(&res.node, fields, expand) else {
                    continue;
                };
                for index in 0..g.base_count(res.kind).min(25) {
                    for version in [0, 3] {
                        let ver = Ver {
                            version,
                            ..g.base_ver(res.kind, index, res.ts_millis)
                        };
                        let at = At {
                            g: &g,
                            res,
                            index,
                            ver,
                        };
                        let rec = g.record(res.kind, index, ver, res.ts_millis);
                        for fv in [1, 3] {
                            let want = reference(&at, &rec, &shape, fv, true);
                            for from_rec in [Some(&rec), None] {
                                let mut out = Out::new();
                                let inlined =
                                    write_data_item(&mut out, &at, from_rec, &shape, fv, true);
                                assert_eq!(
                                    String::from_utf8(out).unwrap(),
                                    want,
                                    "{} {index} v{version} fv{fv} {fields:?} {expand:?}",
                                    res.node.name
                                );
                                assert_eq!(inlined, inlined_rows(&at, &rec, &shape, true));
                            }
                            compared += 1;
                        }
                    }
                }
                // A child row written on its own (a child collection's
                // item) takes its grandchildren from itself.
                if let Some((child, child_shape)) = shape.children.first() {
                    let ver = g.base_ver(res.kind, 0, res.ts_millis);
                    let at = At {
                        g: &g,
                        res,
                        index: 0,
                        ver,
                    };
                    for row in g.children(res.kind, 0, ver, res.ts_millis, None, child.name) {
                        let mut out = Out::new();
                        write_data_item(&mut out, &at, Some(&row), child_shape, 3, false);
                        assert_eq!(
                            String::from_utf8(out).unwrap(),
                            reference(&at, &row, child_shape, 3, false)
                        );
                    }
                }
            }
        }
        assert!(compared > 500, "{compared}");
    }

    #[test]
    fn fields_and_expand_shapes() {
        let inv = &resource("invoices").unwrap().node;
        let s = Shape::parse(
            inv,
            Some("InvoiceId,InvoiceAmount;invoiceLines:LineNumber"),
            Some("all"),
        )
        .unwrap();
        assert_eq!(s.fields, Some(vec!["InvoiceId", "InvoiceAmount"]));
        assert_eq!(
            s.children.len(),
            1,
            "expand is ignored when fields is given"
        );
        assert_eq!(s.children[0].1.fields, Some(vec!["LineNumber"]));
        let s = Shape::parse(inv, None, Some("all")).unwrap();
        assert_eq!(s.children.len(), inv.children.len());
        let s = Shape::parse(inv, None, Some("invoiceLines.invoiceDistributions")).unwrap();
        assert_eq!(s.children[0].0.name, "invoiceLines");
        assert_eq!(s.children[0].1.children[0].0.name, "invoiceDistributions");
        assert!(Shape::parse(inv, Some("Nope"), None).is_err());
        assert!(Shape::parse(inv, None, Some("nope")).is_err());
    }

    #[test]
    fn describe_lists_attributes_and_queryability() {
        let d = describe("http://x", resource("invoices"));
        let attrs = d["Resources"]["invoices"]["attributes"].as_array().unwrap();
        let liab = attrs
            .iter()
            .find(|a| a["name"] == "LiabilityDistribution")
            .unwrap();
        assert_eq!(liab["queryable"], false);
        assert!(d["Resources"]["invoices"]["children"]["invoiceLines"].is_object());
    }
}

//! JSON text of items, collections and `describe`, written by hand so
//! amounts keep their exact decimal digits.
//!
//! Items carry `links` (`self` with `properties.changeIndicator`,
//! `canonical`, `parent` for child items, one `child` per child
//! collection) unless `onlyData=true`. Expanded children are arrays under
//! framework versions 1 and 2 and collection objects from version 3.

use std::fmt::Write as _;

use crate::generator::{Gen, Ver};
use crate::model::{Rec, V, get, write_json, write_str};
use crate::resources::{Node, PathKey, RESOURCES, Resource, encode_uniq};

/// Which attributes and children of a node to write.
#[derive(Clone, Debug, Default)]
pub(crate) struct Shape {
    /// Attributes to write (`None`: all).
    pub fields: Option<Vec<&'static str>>,
    /// Children to inline, each with its own shape.
    pub children: Vec<(&'static Node, Shape)>,
}

/// Why `fields` or `expand` was refused (a 400).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ShapeError(pub String);

impl Shape {
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
            return Ok(shape);
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
        Ok(shape)
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

fn link(out: &mut String, first: &mut bool, opts: &Opts, l: &Link<'_>) {
    if let Some(keep) = &opts.links
        && !keep.iter().any(|k| k == l.rel)
    {
        return;
    }
    if !*first {
        out.push(',');
    }
    *first = false;
    out.push_str("{\"rel\":");
    write_str(out, l.rel);
    out.push_str(",\"href\":");
    write_str(out, l.href);
    out.push_str(",\"name\":");
    write_str(out, l.name);
    out.push_str(",\"kind\":");
    write_str(out, l.kind);
    if let Some(ci) = l.change_indicator {
        out.push_str(",\"properties\":{\"changeIndicator\":");
        write_str(out, ci);
        out.push('}');
    }
    out.push('}');
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

/// Writes one item at `place`.
pub(crate) fn write_item(
    out: &mut String,
    at: &At<'_>,
    node: &'static Node,
    rec: &Rec,
    shape: &Shape,
    opts: &Opts,
    place: Place<'_>,
) {
    let href = place.href;
    out.push('{');
    let mut first = true;
    for (name, v) in rec {
        if let Some(keep) = &shape.fields
            && !keep.contains(name)
        {
            continue;
        }
        if !first {
            out.push(',');
        }
        first = false;
        write_str(out, name);
        out.push(':');
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
            out.push(',');
        }
        first = false;
        write_str(out, child.name);
        out.push(':');
        let coll_href = format!("{href}/child/{}", child.name);
        let mut items = String::new();
        items.push('[');
        for (i, row) in rows.iter().enumerate() {
            if i > 0 {
                items.push(',');
            }
            let row_href = format!("{coll_href}/{}", key_segment(child, row));
            write_item(
                &mut items,
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
        items.push(']');
        if opts.version >= 3 {
            let _ = write!(
                out,
                "{{\"items\":{items},\"count\":{},\"hasMore\":false,\"limit\":25,\"offset\":0",
                rows.len()
            );
            if !opts.only_data {
                out.push_str(",\"links\":[");
                let mut f = true;
                link(
                    out,
                    &mut f,
                    opts,
                    &Link::new("self", &coll_href, child.name, "collection"),
                );
                out.push(']');
            }
            out.push('}');
        } else {
            out.push_str(&items);
        }
    }
    if !opts.only_data {
        if !first {
            out.push(',');
        }
        out.push_str("\"links\":[");
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
        for c in node.children {
            let chref = format!("{href}/child/{}", c.name);
            link(
                out,
                &mut f,
                opts,
                &Link::new("child", &chref, c.name, "collection"),
            );
        }
        out.push(']');
    }
    out.push('}');
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

/// Writes a collection envelope around already-written items. Collection
/// `links` stay even with `onlyData=true`: the reference lists `links` as a
/// required envelope member. A `next` link is UNCONFIRMED and not sent
/// (clients page with `offset += count`). Claims that `hasMore` or
/// `totalResults` go wrong at non-zero offsets are UNCONFIRMED: here they
/// are always right (`totalResults` may over-estimate, never under).
pub(crate) fn write_collection(out: &mut String, items: &str, env: &Envelope<'_>) {
    out.push_str("{\"items\":");
    out.push_str(items);
    if let Some(t) = env.total {
        let _ = write!(out, ",\"totalResults\":{t}");
    }
    let _ = write!(
        out,
        ",\"count\":{},\"hasMore\":{},\"limit\":{},\"offset\":{},\"links\":[",
        env.count, env.has_more, env.limit, env.offset
    );
    out.push_str("{\"rel\":\"self\",\"href\":");
    write_str(out, env.href);
    out.push_str(",\"name\":");
    write_str(out, env.name);
    out.push_str(",\"kind\":\"collection\"}]}");
}

/// A record's attributes as a JSON object (no links, no children).
pub(crate) fn record_json(rec: &Rec) -> String {
    let mut out = String::from("{");
    for (i, (name, v)) in rec.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(&mut out, name);
        out.push(':');
        write_json(&mut out, v);
    }
    out.push('}');
    out
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
    use crate::resources::resource;

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

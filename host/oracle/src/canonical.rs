//! Canonical content of one Oracle item, and the facts the pull needs from it.
//!
//! The content hash must be equal for two reads of the same record version
//! and differ when any value differs, whatever order Oracle writes the fields
//! in. The canonical form sorts object members by name, drops `links`
//! (hrefs name the host and carry the `changeIndicator`, both covered by the
//! content and `LastUpdateDate`), writes strings in one escape style and
//! copies numbers exactly as sent: amounts never pass through `f64`, so two
//! amounts that differ in the 17th digit still hash differently. A change in
//! how Oracle renders a number (`1250.00` vs `1250.0`) makes a new hash,
//! which only re-exports the record: safe, never lossy.
//!
//! While walking the item it also reads the key and timestamp members and
//! spots truncated expanded children: a collection object (framework
//! version 3+) whose `hasMore` is `true` holds only part of the children.
//!
//! Speed (this runs once per record of every pull): the walk feeds the
//! top-level object's canonical form straight into SHA-256 instead of
//! building it as one string, and each nesting level reuses its member
//! buffers from one record to the next (kept per thread), so a record
//! costs no allocation beyond its key and timestamp texts. The canonical
//! bytes, and so every hash, are the same as when the form was built whole.

use std::cell::RefCell;

use sha2::{Digest as _, Sha256};

/// Where canonical bytes go: a buffer (a nested value, before its parent
/// sorts it in) or the hash itself (the top-level object).
trait Sink {
    fn put(&mut self, bytes: &[u8]);
}

impl Sink for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        self.extend_from_slice(bytes);
    }
}

impl Sink for Sha256 {
    fn put(&mut self, bytes: &[u8]) {
        self.update(bytes);
    }
}

/// (name start, name end, value start, value end) of one member in its
/// object's buffer.
type Member = (usize, usize, usize, usize);

/// Buffers of each nesting level, reused from record to record.
#[derive(Default)]
struct Buffers {
    scratch: Vec<Vec<u8>>,
    members: Vec<Vec<Member>>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// Runs `f` with this thread's buffers (fresh ones if they are in use,
/// which only a re-entrant call could cause).
fn with_buffers<T>(f: impl FnOnce(&mut Buffers) -> T) -> T {
    BUFFERS.with(|cell| match cell.try_borrow_mut() {
        Ok(mut b) => f(&mut b),
        Err(_) => f(&mut Buffers::default()),
    })
}

/// What the pull reads from one item.
#[derive(Debug)]
pub struct ItemFacts {
    /// The key member as text (a number as written, a string decoded);
    /// `None` when missing or null.
    pub key: Option<String>,
    /// The timestamp member decoded; `None` when missing or null.
    pub timestamp: Option<String>,
    /// SHA-256 of the canonical content.
    pub hash: [u8; 32],
    /// Dotted path of the first expanded child collection with `hasMore: true`.
    pub truncated_child: Option<String>,
}

/// Reads the facts of one item (`raw` is valid JSON, already checked by the
/// envelope parser). `Err` says why the item is unusable.
pub fn inspect(raw: &str, key_field: &str, ts_field: Option<&str>) -> Result<ItemFacts, String> {
    with_buffers(|bufs| {
        let mut w = Walker {
            b: raw.as_bytes(),
            i: 0,
            path: Vec::new(),
            truncated: None,
            bufs,
        };
        w.ws();
        if w.peek() != Some(b'{') {
            return Err("the item is not a JSON object".into());
        }
        let mut hasher = Sha256::new();
        let mut top = TopFields {
            key_field: key_field.as_bytes(),
            ts_field: ts_field.map(str::as_bytes),
            key: None,
            ts: None,
        };
        w.object(&mut hasher, Some(&mut top))?;
        Ok(ItemFacts {
            key: top.key,
            timestamp: top.ts,
            hash: hasher.finalize().into(),
            truncated_child: w.truncated,
        })
    })
}

/// SHA-256 of the canonical form of any JSON text (used by tests and by
/// callers that hash records they build themselves).
pub fn content_hash(raw: &str) -> Result<[u8; 32], String> {
    with_buffers(|bufs| {
        let mut w = Walker {
            b: raw.as_bytes(),
            i: 0,
            path: Vec::new(),
            truncated: None,
            bufs,
        };
        let mut out = Vec::with_capacity(raw.len());
        w.value(&mut out)?;
        Ok(Sha256::digest(&out).into())
    })
}

struct TopFields<'f> {
    key_field: &'f [u8],
    ts_field: Option<&'f [u8]>,
    key: Option<String>,
    ts: Option<String>,
}

struct Walker<'a, 'b> {
    b: &'a [u8],
    i: usize,
    /// Member names from the top down to the value being walked; its
    /// length is the nesting depth, which indexes `bufs`.
    path: Vec<&'a [u8]>,
    truncated: Option<String>,
    bufs: &'b mut Buffers,
}

impl<'a> Walker<'a, '_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    fn expect(&mut self, c: u8) -> Result<(), String> {
        self.ws();
        if self.peek() == Some(c) {
            self.i += 1;
            Ok(())
        } else {
            Err(format!(
                "expected {:?} at byte {} of the item",
                c as char, self.i
            ))
        }
    }

    fn value<S: Sink>(&mut self, out: &mut S) -> Result<(), String> {
        self.ws();
        match self.peek() {
            Some(b'{') => self.object(out, None),
            Some(b'[') => self.array(out),
            Some(b'"') => {
                let token = self.string_token()?;
                canonical_string(token, out)
            }
            Some(_) => {
                let start = self.i;
                while matches!(
                    self.peek(),
                    Some(b'-' | b'+' | b'.' | b'0'..=b'9' | b'e' | b'E' | b'a'..=b'z')
                ) {
                    self.i += 1;
                }
                if start == self.i {
                    return Err(format!("unexpected byte at {} of the item", self.i));
                }
                out.put(&self.b[start..self.i]);
                Ok(())
            }
            None => Err("the item ends early".into()),
        }
    }

    /// The raw string token, quotes included.
    fn string_token(&mut self) -> Result<&'a [u8], String> {
        let start = self.i;
        self.i += 1;
        loop {
            match self.peek() {
                Some(b'"') => {
                    self.i += 1;
                    return Ok(&self.b[start..self.i]);
                }
                Some(b'\\') => self.i += 2,
                Some(_) => self.i += 1,
                None => return Err("unterminated string in the item".into()),
            }
        }
    }

    fn array<S: Sink>(&mut self, out: &mut S) -> Result<(), String> {
        self.i += 1;
        out.put(b"[");
        self.ws();
        if self.peek() == Some(b']') {
            self.i += 1;
            out.put(b"]");
            return Ok(());
        }
        loop {
            self.value(out)?;
            self.ws();
            match self.peek() {
                Some(b',') => {
                    self.i += 1;
                    out.put(b",");
                }
                Some(b']') => {
                    self.i += 1;
                    out.put(b"]");
                    return Ok(());
                }
                _ => return Err(format!("bad array at byte {} of the item", self.i)),
            }
        }
    }

    fn object<S: Sink>(
        &mut self,
        out: &mut S,
        top: Option<&mut TopFields<'_>>,
    ) -> Result<(), String> {
        // This level's buffers, taken from the pool (an empty `Vec` is left
        // in their place, which allocates nothing) and given back after.
        let depth = self.path.len();
        if self.bufs.scratch.len() <= depth {
            self.bufs.scratch.resize_with(depth + 1, Vec::new);
            self.bufs.members.resize_with(depth + 1, Vec::new);
        }
        let mut scratch = std::mem::take(&mut self.bufs.scratch[depth]);
        let mut members = std::mem::take(&mut self.bufs.members[depth]);
        scratch.clear();
        members.clear();
        let result = self.object_in(out, top, &mut scratch, &mut members);
        self.bufs.scratch[depth] = scratch;
        self.bufs.members[depth] = members;
        result
    }

    fn object_in<S: Sink>(
        &mut self,
        out: &mut S,
        mut top: Option<&mut TopFields<'_>>,
        scratch: &mut Vec<u8>,
        members: &mut Vec<Member>,
    ) -> Result<(), String> {
        self.i += 1;
        let mut items_seen = false;
        let mut has_more_true = false;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
        } else {
            loop {
                self.ws();
                if self.peek() != Some(b'"') {
                    return Err(format!(
                        "expected a member name at byte {} of the item",
                        self.i
                    ));
                }
                let name_token = self.string_token()?;
                let name_raw = &name_token[1..name_token.len() - 1];
                self.expect(b':')?;
                if name_raw == b"links" {
                    self.value(&mut Discard)?;
                } else {
                    let ks = scratch.len();
                    canonical_string(name_token, scratch)?;
                    let ke = scratch.len();
                    self.path.push(name_raw);
                    self.value(scratch)?;
                    self.path.pop();
                    let ve = scratch.len();
                    let value = &scratch[ke..ve];
                    match name_raw {
                        b"items" => items_seen = true,
                        b"hasMore" => has_more_true = value == b"true",
                        _ => {}
                    }
                    if let Some(top) = top.as_deref_mut() {
                        if name_raw == top.key_field {
                            top.key = scalar_text(value)?;
                        } else if Some(name_raw) == top.ts_field {
                            top.ts = scalar_text(value)?;
                        }
                    }
                    members.push((ks, ke, ke, ve));
                }
                self.ws();
                match self.peek() {
                    Some(b',') => self.i += 1,
                    Some(b'}') => {
                        self.i += 1;
                        break;
                    }
                    _ => return Err(format!("bad object at byte {} of the item", self.i)),
                }
            }
        }
        if items_seen && has_more_true && self.truncated.is_none() {
            let path: Vec<String> = self
                .path
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            self.truncated = Some(path.join("."));
        }
        members.sort_by(|a, b| scratch[a.0..a.1].cmp(&scratch[b.0..b.1]));
        // Canonical names are equal exactly when the decoded names are, and
        // sorting put repeats side by side. A repeated member would be read
        // one way by one reader and another way by the next (and hashed as
        // both), so the item is refused.
        if let Some(pair) = members
            .windows(2)
            .find(|w| scratch[w[0].0..w[0].1] == scratch[w[1].0..w[1].1])
        {
            let name = String::from_utf8_lossy(&scratch[pair[0].0..pair[0].1]).into_owned();
            let at: Vec<String> = self
                .path
                .iter()
                .map(|p| String::from_utf8_lossy(p).into_owned())
                .collect();
            let within = if at.is_empty() {
                String::new()
            } else {
                format!(" (in {})", at.join("."))
            };
            return Err(format!("member {name} appears twice in one object{within}"));
        }
        out.put(b"{");
        for (n, (ks, ke, vs, ve)) in members.iter().enumerate() {
            if n > 0 {
                out.put(b",");
            }
            out.put(&scratch[*ks..*ke]);
            out.put(b":");
            out.put(&scratch[*vs..*ve]);
        }
        out.put(b"}");
        Ok(())
    }
}

/// Swallows a value that is not content (`links`).
struct Discard;

impl Sink for Discard {
    fn put(&mut self, _: &[u8]) {}
}

/// Writes a string token in canonical escaping.
fn canonical_string<S: Sink>(token: &[u8], out: &mut S) -> Result<(), String> {
    if !token.contains(&b'\\') {
        out.put(token);
        return Ok(());
    }
    let decoded: String =
        serde_json::from_slice(token).map_err(|e| format!("bad string in the item: {e}"))?;
    let encoded = serde_json::to_vec(&decoded).map_err(|e| format!("re-encoding a string: {e}"))?;
    out.put(&encoded);
    Ok(())
}

/// A canonical scalar as text: strings decoded, numbers as written, null
/// as `None`. Objects, arrays and booleans are not usable as keys.
fn scalar_text(canonical: &[u8]) -> Result<Option<String>, String> {
    match canonical.first() {
        Some(b'"') => serde_json::from_slice::<String>(canonical)
            .map(Some)
            .map_err(|e| format!("bad string: {e}")),
        Some(b'-' | b'0'..=b'9') => Ok(Some(String::from_utf8_lossy(canonical).into_owned())),
        _ if canonical == b"null" => Ok(None),
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_member_is_refused_wherever_it_is() {
        let top = r#"{"InvoiceId":1,"InvoiceAmount":1,"InvoiceAmount":2}"#;
        let err = inspect(top, "InvoiceId", None).unwrap_err();
        assert_eq!(
            err, r#"member "InvoiceAmount" appears twice in one object"#,
            "{err}"
        );
        // Decoded names are compared: `\u0041` is `A`.
        let escaped = r#"{"InvoiceId":1,"A":1,"\u0041":2}"#;
        let err = inspect(escaped, "InvoiceId", None).unwrap_err();
        assert!(err.contains(r#""A" appears twice"#), "{err}");
        let nested = r#"{"InvoiceId":1,"invoiceLines":[{"LineNumber":1,"LineNumber":1}]}"#;
        let err = inspect(nested, "InvoiceId", None).unwrap_err();
        assert_eq!(
            err, r#"member "LineNumber" appears twice in one object (in invoiceLines)"#,
            "{err}"
        );
        // The same name in sibling objects is not a repeat.
        inspect(
            r#"{"InvoiceId":1,"invoiceLines":[{"LineNumber":1},{"LineNumber":2}]}"#,
            "InvoiceId",
            None,
        )
        .unwrap();
        assert!(content_hash(r#"[{"a":1,"a":1}]"#).is_err());
    }

    #[test]
    fn field_order_and_links_do_not_matter() {
        let a = r#"{"InvoiceId":1,"Amount":1250.00,"LastUpdateDate":"2024-05-03T09:02:51.077+00:00","links":[{"rel":"self","href":"http://a/1"}]}"#;
        let b = r#"{ "LastUpdateDate" : "2024-05-03T09:02:51.077+00:00", "Amount":1250.00, "InvoiceId":1 }"#;
        let fa = inspect(a, "InvoiceId", Some("LastUpdateDate")).unwrap();
        let fb = inspect(b, "InvoiceId", Some("LastUpdateDate")).unwrap();
        assert_eq!(fa.hash, fb.hash);
        assert_eq!(fa.key.as_deref(), Some("1"));
        assert_eq!(
            fa.timestamp.as_deref(),
            Some("2024-05-03T09:02:51.077+00:00")
        );
    }

    #[test]
    fn every_value_counts_exactly() {
        let base = inspect(r#"{"K":"a","Amt":12345678901234567.01}"#, "K", None).unwrap();
        let other = inspect(r#"{"K":"a","Amt":12345678901234567.02}"#, "K", None).unwrap();
        assert_ne!(
            base.hash, other.hash,
            "amounts beyond f64 precision must differ"
        );
        let nested_a = content_hash(r#"{"lines":[{"n":1},{"n":2}]}"#).unwrap();
        let nested_b = content_hash(r#"{"lines":[{"n":2},{"n":1}]}"#).unwrap();
        assert_ne!(nested_a, nested_b, "array order is content");
        let esc = content_hash(r#"{"s":"\u0041\"b"}"#).unwrap();
        let plain = content_hash(r#"{"s":"A\"b"}"#).unwrap();
        assert_eq!(esc, plain);
        assert_eq!(
            inspect(r#"{"K":"x\u00e9"}"#, "K", None)
                .unwrap()
                .key
                .as_deref(),
            Some("xé")
        );
    }

    #[test]
    fn missing_key_and_truncated_children() {
        let f = inspect(
            r#"{"Other":1,"LastUpdateDate":null}"#,
            "K",
            Some("LastUpdateDate"),
        )
        .unwrap();
        assert!(f.key.is_none() && f.timestamp.is_none());
        let f = inspect(
            r#"{"K":1,"journalHeaders":{"items":[{"journalLines":{"items":[],"count":0,"hasMore":true}}],"count":1,"hasMore":false}}"#,
            "K",
            None,
        )
        .unwrap();
        assert_eq!(
            f.truncated_child.as_deref(),
            Some("journalHeaders.items.journalLines")
        );
        assert!(inspect("[1]", "K", None).is_err());
    }

    #[test]
    fn the_hash_is_sha256_of_the_canonical_form_whatever_came_before() {
        let item = r#"{"b":1,"a":{"d":"x\u0041","c":[{"f":1,"e":2.50}]},"links":[{"rel":"self"}]}"#;
        let canonical = r#"{"a":{"c":[{"e":2.50,"f":1}],"d":"xA"},"b":1}"#;
        let want: [u8; 32] = Sha256::digest(canonical.as_bytes()).into();
        assert_eq!(inspect(item, "b", None).unwrap().hash, want);
        assert_eq!(content_hash(item).unwrap(), want);
        // The per-thread buffers hold nothing over from an earlier record,
        // a deeper one or one that failed half-way.
        inspect(r#"{"z":{"y":{"x":{"w":[1,2,3]}}},"b":2}"#, "b", None).unwrap();
        assert!(inspect(r#"{"b":1,"a":{"c":1,"c":2}}"#, "b", None).is_err());
        assert_eq!(inspect(item, "b", None).unwrap().hash, want);
    }
}

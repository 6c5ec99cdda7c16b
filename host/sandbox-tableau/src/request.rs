//! Reading requests: bodies with a size cap, `<tsRequest>` XML or its JSON
//! form as one element tree, `multipart/mixed` publish and upload bodies,
//! and query strings.

use std::collections::HashMap;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use quick_xml::Reader;
use quick_xml::events::Event;

use crate::error::ApiError;

/// Reads a whole body. Above `limit` the rest is drained (so the client
/// sees the answer instead of a reset connection) and `Err(total)` returned.
pub async fn read_body(body: Body, limit: u64) -> Result<Result<Bytes, u64>, ApiError> {
    let mut stream = body.into_data_stream();
    let mut buf = BytesMut::new();
    let mut total: u64 = 0;
    let mut over = false;
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::bad_request(format!("could not read the body: {e}")))?;
        total = total.saturating_add(chunk.len() as u64);
        if total > limit {
            over = true;
            buf.clear();
            continue;
        }
        buf.extend_from_slice(&chunk);
    }
    if over {
        Ok(Err(total))
    } else {
        Ok(Ok(buf.freeze()))
    }
}

/// A parsed request element: XML element or JSON object.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Element {
    /// Local name (namespace prefix dropped).
    pub name: String,
    /// Attributes (JSON: scalar members).
    pub attrs: HashMap<String, String>,
    /// Child elements (JSON: object members and array items).
    pub children: Vec<Element>,
    /// Text content.
    pub text: String,
}

impl Element {
    /// An attribute value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attrs.get(key).map(String::as_str)
    }

    /// The first child with this name.
    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }
}

/// Parses a `<tsRequest>` body: JSON when the content type says so,
/// XML otherwise. Returns the root (`tsRequest`, or a synthetic root for
/// JSON whose children are the top-level members).
pub fn parse_ts_request(headers: &HeaderMap, body: &[u8]) -> Result<Element, ApiError> {
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().contains("json"));
    if json {
        let value: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("Payload is not valid JSON: {e}")))?;
        Ok(json_to_element("tsRequest", &value))
    } else {
        parse_xml(body)
    }
}

/// Turns a JSON value into an element tree the way Tableau maps its JSON
/// bodies onto the XML schema.
fn json_to_element(name: &str, value: &serde_json::Value) -> Element {
    let mut element = Element {
        name: name.to_owned(),
        ..Element::default()
    };
    match value {
        serde_json::Value::Object(map) => {
            for (key, member) in map {
                match member {
                    serde_json::Value::Object(_) => {
                        element.children.push(json_to_element(key, member));
                    }
                    serde_json::Value::Array(items) => {
                        for item in items {
                            element.children.push(json_to_element(key, item));
                        }
                    }
                    serde_json::Value::String(s) => {
                        element.attrs.insert(key.clone(), s.clone());
                    }
                    serde_json::Value::Null => {}
                    other => {
                        element.attrs.insert(key.clone(), other.to_string());
                    }
                }
            }
        }
        serde_json::Value::String(s) => element.text = s.clone(),
        serde_json::Value::Null => {}
        other => element.text = other.to_string(),
    }
    element
}

/// Parses an XML document into its root element.
pub fn parse_xml(body: &[u8]) -> Result<Element, ApiError> {
    let malformed = |what: String| {
        ApiError::bad_request(format!(
            "Payload is either malformed or incomplete ({what})"
        ))
    };
    let text = std::str::from_utf8(body).map_err(|e| malformed(e.to_string()))?;
    let mut reader = Reader::from_str(text);
    let mut stack: Vec<Element> = Vec::new();
    let mut root: Option<Element> = None;
    loop {
        let event = reader.read_event().map_err(|e| malformed(e.to_string()))?;
        match event {
            Event::Start(_) | Event::Empty(_) if root.is_some() => {
                return Err(malformed("content after the root element".into()));
            }
            Event::Start(start) => {
                stack.push(start_element(&start).map_err(malformed)?);
                if stack.len() > 32 {
                    return Err(malformed("nesting too deep".into()));
                }
            }
            Event::Empty(start) => {
                let element = start_element(&start).map_err(malformed)?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::End(_) => {
                let element = stack
                    .pop()
                    .ok_or_else(|| malformed("unbalanced end tag".into()))?;
                match stack.last_mut() {
                    Some(parent) => parent.children.push(element),
                    None => root = Some(element),
                }
            }
            Event::Text(t) => {
                if let Some(current) = stack.last_mut() {
                    let decoded = t.decode().map_err(|e| malformed(e.to_string()))?;
                    current.text.push_str(&decoded);
                }
            }
            Event::CData(c) => {
                if let Some(current) = stack.last_mut() {
                    let decoded = c.decode().map_err(|e| malformed(e.to_string()))?;
                    current.text.push_str(&decoded);
                }
            }
            Event::GeneralRef(r) => {
                if let Some(current) = stack.last_mut() {
                    let name = r.decode().map_err(|e| malformed(e.to_string()))?;
                    current
                        .text
                        .push_str(&resolve_entity(&name).map_err(malformed)?);
                }
            }
            Event::Eof => break,
            Event::Decl(_) | Event::PI(_) | Event::Comment(_) | Event::DocType(_) => {}
        }
    }
    if !stack.is_empty() {
        return Err(malformed("unclosed element".into()));
    }
    root.ok_or_else(|| malformed("empty document".into()))
}

/// Resolves `&name;` in text.
fn resolve_entity(name: &str) -> Result<String, String> {
    let c = match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        _ => {
            let code = if let Some(hex) = name.strip_prefix("#x") {
                u32::from_str_radix(hex, 16).ok()
            } else if let Some(dec) = name.strip_prefix('#') {
                dec.parse().ok()
            } else {
                None
            };
            code.and_then(char::from_u32)
                .ok_or_else(|| format!("unknown entity &{name};"))?
        }
    };
    Ok(c.to_string())
}

/// Builds an element from a start tag.
fn start_element(start: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
    let name = String::from_utf8_lossy(start.local_name().as_ref()).into_owned();
    let mut attrs = HashMap::new();
    for attr in start.attributes() {
        let attr = attr.map_err(|e| e.to_string())?;
        let key = String::from_utf8_lossy(attr.key.local_name().as_ref()).into_owned();
        if attr.key.as_ref().starts_with(b"xmlns") {
            continue;
        }
        let value = attr.unescape_value().map_err(|e| e.to_string())?;
        attrs.insert(key, value.into_owned());
    }
    Ok(Element {
        name,
        attrs,
        ..Element::default()
    })
}

/// One part of a `multipart/mixed` body.
#[derive(Clone, Debug)]
pub struct Part {
    /// The `name` from `Content-Disposition`.
    pub name: String,
    /// The `filename` from `Content-Disposition`, when given.
    pub filename: Option<String>,
    /// The part body.
    pub data: Bytes,
}

/// Splits a `multipart/mixed` (or `multipart/form-data`) body. Accepts
/// `Content-Disposition: form-data; name="..."` and the bare `name="..."`
/// form, with or without `filename`.
pub fn parse_multipart(headers: &HeaderMap, body: &Bytes) -> Result<Vec<Part>, ApiError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let lower = content_type.to_ascii_lowercase();
    if !lower.starts_with("multipart/") {
        return Err(ApiError::new(
            axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "415000",
            "Unsupported Media Type",
            format!("Content type '{content_type}' is not supported; use multipart/mixed."),
        ));
    }
    let boundary = header_param(content_type, "boundary")
        .ok_or_else(|| ApiError::bad_request("The multipart content type has no boundary."))?;
    let delimiter = format!("--{boundary}");
    let delimiter = delimiter.as_bytes();
    let mut parts = Vec::new();
    let mut pos = find(body, delimiter, 0)
        .ok_or_else(|| ApiError::bad_request("The multipart body has no opening boundary."))?;
    loop {
        pos += delimiter.len();
        if body[pos..].starts_with(b"--") {
            break;
        }
        // Skip to the end of the boundary line.
        let line_end = find(body, b"\r\n", pos)
            .ok_or_else(|| ApiError::bad_request("Truncated multipart body."))?;
        let headers_start = line_end + 2;
        let headers_end = find(body, b"\r\n\r\n", headers_start)
            .map(|p| (p, p + 4))
            .or_else(|| {
                // A part with no headers at all starts with an empty line.
                body[headers_start..]
                    .starts_with(b"\r\n")
                    .then_some((headers_start, headers_start + 2))
            })
            .ok_or_else(|| ApiError::bad_request("Truncated multipart part headers."))?;
        let next = find(body, delimiter, headers_end.1)
            .ok_or_else(|| ApiError::bad_request("The multipart body has no closing boundary."))?;
        let mut data_end = next;
        if data_end >= 2 && &body[data_end - 2..data_end] == b"\r\n" {
            data_end -= 2;
        }
        let head = String::from_utf8_lossy(&body[headers_start..headers_end.0]).into_owned();
        let mut name = None;
        let mut filename = None;
        for line in head.split("\r\n") {
            if let Some((key, value)) = line.split_once(':')
                && key.trim().eq_ignore_ascii_case("content-disposition")
            {
                name = header_param(value, "name");
                filename = header_param(value, "filename");
            }
        }
        let name = name.ok_or_else(|| {
            ApiError::bad_request("A multipart part has no Content-Disposition name.")
        })?;
        parts.push(Part {
            name,
            filename,
            data: body.slice(headers_end.1.min(data_end)..data_end),
        });
        pos = next;
    }
    Ok(parts)
}

/// A `key=value` parameter of a header value (quotes removed).
fn header_param(value: &str, key: &str) -> Option<String> {
    for piece in value.split(';') {
        let piece = piece.trim();
        if let Some((k, v)) = piece.split_once('=')
            && k.trim().eq_ignore_ascii_case(key)
        {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(v);
            return Some(v.to_owned());
        }
    }
    None
}

/// Finds `needle` in `hay` from `from`.
fn find(hay: &[u8], needle: &[u8], from: usize) -> Option<usize> {
    if needle.is_empty() || from > hay.len() {
        return None;
    }
    memchr::memmem::find(&hay[from..], needle).map(|p| p + from)
}

/// Parses a query string into decoded pairs (first value of a key wins).
pub fn parse_query(query: Option<&str>) -> HashMap<String, String> {
    let mut out = HashMap::new();
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(key))
            .or_insert_with(|| percent_decode(value));
    }
    out
}

/// Decodes `%XX` escapes and `+` as a space.
pub fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok();
                match hex.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(b) => {
                        out.push(b);
                        i += 3;
                    }
                    None => {
                        out.push(b'%');
                        i += 1;
                    }
                }
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            b => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decodes a path segment (`%XX` only; `+` stays).
pub fn decode_segment(segment: &str) -> String {
    percent_decode(&segment.replace('+', "%2B"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    #[test]
    fn xml_and_json_sign_in_bodies_parse_alike() {
        let xml = br#"<?xml version="1.0"?><tsRequest><credentials personalAccessTokenName="p" personalAccessTokenSecret="s&amp;1"><site contentUrl="acme"/></credentials></tsRequest>"#;
        let root = parse_xml(xml).unwrap();
        let creds = root.child("credentials").unwrap();
        assert_eq!(creds.attr("personalAccessTokenSecret"), Some("s&1"));
        assert_eq!(
            creds.child("site").unwrap().attr("contentUrl"),
            Some("acme")
        );

        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        let json = br#"{"credentials":{"personalAccessTokenName":"p","personalAccessTokenSecret":"s&1","site":{"contentUrl":"acme"}}}"#;
        let root2 = parse_ts_request(&headers, json).unwrap();
        let creds2 = root2.child("credentials").unwrap();
        assert_eq!(creds2.attr("personalAccessTokenName"), Some("p"));
        assert_eq!(
            creds2.child("site").unwrap().attr("contentUrl"),
            Some("acme")
        );
    }

    #[test]
    fn malformed_xml_is_400000() {
        let err = parse_xml(b"<tsRequest><a></tsRequest>").unwrap_err();
        assert_eq!(err.code, "400000");
    }

    #[test]
    fn multipart_with_and_without_form_data() {
        let body = Bytes::from_static(
            b"--XyZ\r\nContent-Disposition: form-data; name=\"request_payload\"; filename=\"\"\r\nContent-Type: text/xml\r\n\r\n<tsRequest/>\r\n--XyZ\r\nContent-Disposition: name=\"tableau_datasource\"; filename=\"a.hyper\"\r\nContent-Type: application/octet-stream\r\n\r\n\x00\x01\r\n\x02\r\n--XyZ--\r\n",
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("multipart/mixed; boundary=XyZ"),
        );
        let parts = parse_multipart(&headers, &body).unwrap();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0].name, "request_payload");
        assert_eq!(&parts[0].data[..], b"<tsRequest/>");
        assert_eq!(parts[1].filename.as_deref(), Some("a.hyper"));
        assert_eq!(&parts[1].data[..], b"\x00\x01\r\n\x02");
    }

    #[test]
    fn query_decoding() {
        let q = parse_query(Some("filter=name%3Aeq%3Aa+b&pageSize=5"));
        assert_eq!(q["filter"], "name:eq:a b");
        assert_eq!(q["pageSize"], "5");
    }
}

//! Response rendering: one element tree, written as Tableau's XML
//! (`<tsResponse xmlns="http://tableau.com/api">`) or as its JSON form
//! (attributes become keys, list containers hold arrays, an element with
//! both attributes and text keeps the text under `value`).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json};

/// The XML namespace of every REST response.
pub const NAMESPACE: &str = "http://tableau.com/api";

/// The representation a client asked for with `Accept`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `application/xml` (the default).
    Xml,
    /// `application/json`.
    Json,
}

impl Format {
    /// JSON when `Accept` names `application/json`, XML otherwise.
    pub fn from_headers(headers: &HeaderMap) -> Self {
        let wants_json = headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.to_ascii_lowercase().contains("application/json"));
        if wants_json { Self::Json } else { Self::Xml }
    }
}

/// One response element.
#[derive(Clone, Debug, Default)]
pub struct Node {
    /// Element name.
    pub name: String,
    /// Attributes in output order; JSON keeps their JSON type.
    pub attrs: Vec<(String, Json)>,
    /// Child elements.
    pub children: Vec<Node>,
    /// Text content.
    pub text: Option<String>,
    /// A container whose children form a JSON array (`<datasources>`).
    pub list: bool,
}

impl Node {
    /// An empty element.
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_owned(),
            ..Self::default()
        }
    }

    /// A list container (`<projects>`, `<datasources>` ...).
    pub fn list(name: &str, items: Vec<Node>) -> Self {
        Self {
            name: name.to_owned(),
            children: items,
            list: true,
            ..Self::default()
        }
    }

    /// Adds a string attribute.
    pub fn attr(mut self, key: &str, value: impl Into<String>) -> Self {
        self.attrs
            .push((key.to_owned(), Json::String(value.into())));
        self
    }

    /// Adds a string attribute when `value` is present.
    pub fn attr_opt(self, key: &str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.attr(key, v),
            None => self,
        }
    }

    /// Adds a boolean attribute (`"true"` in XML, `true` in JSON).
    pub fn attr_bool(mut self, key: &str, value: bool) -> Self {
        self.attrs.push((key.to_owned(), Json::Bool(value)));
        self
    }

    /// Adds a child element.
    pub fn child(mut self, child: Node) -> Self {
        self.children.push(child);
        self
    }

    /// Sets the text content.
    pub fn text(mut self, text: impl Into<String>) -> Self {
        self.text = Some(text.into());
        self
    }

    /// Writes the element as XML.
    fn write_xml(&self, out: &mut String, root: bool) {
        out.push('<');
        out.push_str(&self.name);
        if root {
            out.push_str(" xmlns=\"");
            out.push_str(NAMESPACE);
            out.push_str("\" xmlns:xsi=\"http://www.w3.org/2001/XMLSchema-instance\"");
        }
        for (key, value) in &self.attrs {
            out.push(' ');
            out.push_str(key);
            out.push_str("=\"");
            match value {
                Json::String(s) => escape_into(out, s, true),
                other => escape_into(out, &other.to_string(), true),
            }
            out.push('"');
        }
        if self.children.is_empty() && self.text.is_none() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        if let Some(text) = &self.text {
            escape_into(out, text, false);
        }
        for child in &self.children {
            child.write_xml(out, false);
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }

    /// The element's JSON value (its name is the key chosen by the parent).
    fn to_json(&self) -> Json {
        if self.attrs.is_empty()
            && self.children.is_empty()
            && !self.list
            && let Some(text) = &self.text
        {
            return Json::String(text.clone());
        }
        let mut map = Map::new();
        for (key, value) in &self.attrs {
            map.insert(key.clone(), value.clone());
        }
        if let Some(text) = &self.text {
            map.insert("value".to_owned(), Json::String(text.clone()));
        }
        if self.list {
            let mut groups: Vec<(String, Vec<Json>)> = Vec::new();
            for child in &self.children {
                match groups.iter_mut().find(|(name, _)| *name == child.name) {
                    Some((_, items)) => items.push(child.to_json()),
                    None => groups.push((child.name.clone(), vec![child.to_json()])),
                }
            }
            for (name, items) in groups {
                map.insert(name, Json::Array(items));
            }
        } else {
            for child in &self.children {
                map.insert(child.name.clone(), child.to_json());
            }
        }
        Json::Object(map)
    }
}

/// Escapes XML special characters into `out`.
fn escape_into(out: &mut String, text: &str, attribute: bool) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' if attribute => out.push_str("&quot;"),
            '\n' if attribute => out.push_str("&#10;"),
            c => out.push(c),
        }
    }
}

/// Renders `<tsResponse>` with `children` in the requested format.
pub fn ts_response(format: Format, status: StatusCode, children: Vec<Node>) -> Response {
    let root = Node {
        name: "tsResponse".to_owned(),
        children,
        ..Node::default()
    };
    let (body, content_type) = match format {
        Format::Xml => {
            let mut out = String::from("<?xml version='1.0' encoding='UTF-8'?>");
            root.write_xml(&mut out, true);
            (out, "application/xml;charset=utf-8")
        }
        Format::Json => (root.to_json().to_string(), "application/json;charset=utf-8"),
    };
    let mut response = (status, body).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xml_escapes_and_nests() {
        let node = Node::new("datasource")
            .attr("name", "a<b & \"c\"")
            .child(Node::new("project").attr("id", "p"));
        let mut out = String::new();
        node.write_xml(&mut out, false);
        assert_eq!(
            out,
            "<datasource name=\"a&lt;b &amp; &quot;c&quot;\"><project id=\"p\"/></datasource>"
        );
    }

    #[test]
    fn json_groups_lists_and_keeps_text() {
        let node = Node::new("x")
            .child(Node::list(
                "items",
                vec![
                    Node::new("item").attr("id", "1"),
                    Node::new("item").attr("id", "2"),
                ],
            ))
            .child(Node::new("version").attr("build", "b").text("2026.1"))
            .child(Node::new("api").text("3.28"));
        assert_eq!(
            node.to_json().to_string(),
            r#"{"items":{"item":[{"id":"1"},{"id":"2"}]},"version":{"build":"b","value":"2026.1"},"api":"3.28"}"#
        );
    }
}

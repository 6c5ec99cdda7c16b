//! List queries: `filter=field:op:value[,field:op:value]`, `sort=field:asc|desc`,
//! and `pageSize` (default 100, 1..=1000) / `pageNumber` (from 1).

use std::cmp::Ordering;
use std::collections::HashMap;

use axum::http::StatusCode;
use mlc_common::time::parse_timestamp;

use crate::error::ApiError;
use crate::render::Node;

/// Default page size.
pub const DEFAULT_PAGE_SIZE: usize = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: usize = 1000;

/// A field value of a listed item.
#[derive(Clone, Debug, PartialEq)]
pub enum Field {
    /// Text (names, ids).
    Text(String),
    /// Boolean.
    Bool(bool),
    /// Timestamp, µs.
    Time(i64),
    /// Number.
    Number(i64),
}

/// One filter clause.
#[derive(Clone, Debug)]
struct Filter {
    field: String,
    op: String,
    values: Vec<String>,
}

/// A parsed list request.
#[derive(Clone, Debug)]
pub struct ListQuery {
    filters: Vec<Filter>,
    sorts: Vec<(String, bool)>,
    /// Items per page.
    pub page_size: usize,
    /// Page, from 1.
    pub page_number: usize,
}

fn invalid(code: &str, detail: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, "Bad Request", detail)
}

impl ListQuery {
    /// Parses the query parameters, allowing only the given fields.
    pub fn parse(
        params: &HashMap<String, String>,
        filter_fields: &[&str],
        sort_fields: &[&str],
    ) -> Result<Self, ApiError> {
        let page_size = match params.get("pageSize") {
            None => DEFAULT_PAGE_SIZE,
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=MAX_PAGE_SIZE).contains(n))
                .ok_or_else(|| {
                    invalid(
                        "400006",
                        format!(
                            "Invalid page size '{v}': it must be between 1 and {MAX_PAGE_SIZE}."
                        ),
                    )
                })?,
        };
        let page_number = match params.get("pageNumber") {
            None => 1,
            Some(v) => v.parse::<usize>().ok().filter(|n| *n >= 1).ok_or_else(|| {
                invalid(
                    "400006",
                    format!("Invalid page number '{v}': it must be a positive integer."),
                )
            })?,
        };
        let mut filters = Vec::new();
        if let Some(text) = params.get("filter").filter(|t| !t.is_empty()) {
            for clause in split_clauses(text) {
                let mut pieces = clause.splitn(3, ':');
                let (Some(field), Some(op), Some(value)) =
                    (pieces.next(), pieces.next(), pieces.next())
                else {
                    return Err(invalid(
                        "400065",
                        format!("Invalid filter '{clause}': expected field:operator:value."),
                    ));
                };
                if !filter_fields.contains(&field) {
                    return Err(invalid(
                        "400065",
                        format!("Invalid filter field '{field}'."),
                    ));
                }
                if !["eq", "cieq", "in", "gt", "gte", "lt", "lte", "has"].contains(&op) {
                    return Err(invalid(
                        "400065",
                        format!("Invalid filter operator '{op}' for field '{field}'."),
                    ));
                }
                let values = if op == "in" {
                    let inner = value
                        .strip_prefix('[')
                        .and_then(|v| v.strip_suffix(']'))
                        .ok_or_else(|| {
                            invalid("400065", format!("The 'in' value '{value}' needs [a,b]."))
                        })?;
                    inner.split(',').map(str::to_owned).collect()
                } else {
                    vec![value.to_owned()]
                };
                filters.push(Filter {
                    field: field.to_owned(),
                    op: op.to_owned(),
                    values,
                });
            }
        }
        let mut sorts = Vec::new();
        if let Some(text) = params.get("sort").filter(|t| !t.is_empty()) {
            for clause in text.split(',') {
                let (field, dir) = clause.split_once(':').unwrap_or((clause, "asc"));
                if !sort_fields.contains(&field) {
                    return Err(invalid("400065", format!("Invalid sort field '{field}'.")));
                }
                let desc = match dir {
                    "asc" => false,
                    "desc" => true,
                    other => {
                        return Err(invalid(
                            "400065",
                            format!("Invalid sort direction '{other}'."),
                        ));
                    }
                };
                sorts.push((field.to_owned(), desc));
            }
        }
        Ok(Self {
            filters,
            sorts,
            page_size,
            page_number,
        })
    }

    /// Filters, sorts and pages `items`; returns the page and the total.
    pub fn apply<T>(&self, items: Vec<T>, field: impl Fn(&T, &str) -> Field) -> (Vec<T>, usize) {
        let mut kept: Vec<T> = items
            .into_iter()
            .filter(|item| {
                self.filters
                    .iter()
                    .all(|f| matches(&field(item, &f.field), f))
            })
            .collect();
        if !self.sorts.is_empty() {
            kept.sort_by(|a, b| {
                for (name, desc) in &self.sorts {
                    let ord = compare(&field(a, name), &field(b, name));
                    let ord = if *desc { ord.reverse() } else { ord };
                    if ord != Ordering::Equal {
                        return ord;
                    }
                }
                Ordering::Equal
            });
        }
        let total = kept.len();
        let start = (self.page_number - 1).saturating_mul(self.page_size);
        let page = kept.into_iter().skip(start).take(self.page_size).collect();
        (page, total)
    }

    /// The `<pagination>` element.
    pub fn pagination(&self, total: usize) -> Node {
        Node::new("pagination")
            .attr("pageNumber", self.page_number.to_string())
            .attr("pageSize", self.page_size.to_string())
            .attr("totalAvailable", total.to_string())
    }
}

/// Splits on commas that are not inside `[...]`.
fn split_clauses(text: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                out.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&text[start..]);
    out
}

fn compare(a: &Field, b: &Field) -> Ordering {
    match (a, b) {
        (Field::Text(x), Field::Text(y)) => x.to_lowercase().cmp(&y.to_lowercase()),
        (Field::Bool(x), Field::Bool(y)) => x.cmp(y),
        (Field::Time(x), Field::Time(y)) | (Field::Number(x), Field::Number(y)) => x.cmp(y),
        _ => Ordering::Equal,
    }
}

/// `*` matches any run of characters.
fn glob(pattern: &str, text: &str, fold: bool) -> bool {
    let (p, t) = if fold {
        (pattern.to_lowercase(), text.to_lowercase())
    } else {
        (pattern.to_owned(), text.to_owned())
    };
    if !p.contains('*') {
        return p == t;
    }
    let parts: Vec<&str> = p.split('*').collect();
    let mut rest = t.as_str();
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            match rest.strip_prefix(part) {
                Some(r) => rest = r,
                None => return false,
            }
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            match rest.find(part) {
                Some(pos) => rest = &rest[pos + part.len()..],
                None => return false,
            }
        }
    }
    true
}

fn matches(value: &Field, filter: &Filter) -> bool {
    let wanted = &filter.values;
    match value {
        Field::Text(text) => match filter.op.as_str() {
            "eq" => glob(&wanted[0], text, false),
            "cieq" => glob(&wanted[0], text, true),
            "in" => wanted.iter().any(|w| w == text),
            "has" => text.to_lowercase().contains(&wanted[0].to_lowercase()),
            "gt" => text.as_str() > wanted[0].as_str(),
            "gte" => text.as_str() >= wanted[0].as_str(),
            "lt" => text.as_str() < wanted[0].as_str(),
            "lte" => text.as_str() <= wanted[0].as_str(),
            _ => false,
        },
        Field::Bool(b) => {
            let parsed = wanted[0].eq_ignore_ascii_case("true");
            filter.op == "eq" && *b == parsed
        }
        Field::Time(t) | Field::Number(t) => {
            let parse = |w: &String| match value {
                Field::Time(_) => parse_timestamp(w).ok(),
                _ => w.parse::<i64>().ok(),
            };
            let Some(w) = parse(&wanted[0]) else {
                return false;
            };
            match filter.op.as_str() {
                "eq" => *t == w,
                "gt" => *t > w,
                "gte" => *t >= w,
                "lt" => *t < w,
                "lte" => *t <= w,
                "in" => wanted.iter().filter_map(parse).any(|x| x == *t),
                _ => false,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn filter_sort_page() {
        let items = vec!["orders", "Orders2", "invoices", "payments"];
        let q = ListQuery::parse(
            &params(&[
                ("filter", "name:in:[orders,payments]"),
                ("sort", "name:desc"),
            ]),
            &["name"],
            &["name"],
        )
        .unwrap();
        let (page, total) = q.apply(items.clone(), |i, _| Field::Text((*i).to_owned()));
        assert_eq!((page, total), (vec!["payments", "orders"], 2));

        let q = ListQuery::parse(
            &params(&[
                ("filter", "name:cieq:ORD*"),
                ("pageSize", "1"),
                ("pageNumber", "2"),
            ]),
            &["name"],
            &[],
        )
        .unwrap();
        let (page, total) = q.apply(items, |i, _| Field::Text((*i).to_owned()));
        assert_eq!((page, total), (vec!["Orders2"], 2));
    }

    #[test]
    fn bad_queries_are_refused() {
        assert_eq!(
            ListQuery::parse(&params(&[("pageSize", "1001")]), &[], &[])
                .unwrap_err()
                .code,
            "400006"
        );
        assert_eq!(
            ListQuery::parse(&params(&[("filter", "color:eq:red")]), &["name"], &[])
                .unwrap_err()
                .code,
            "400065"
        );
        assert_eq!(
            ListQuery::parse(&params(&[("filter", "name:like:x")]), &["name"], &[])
                .unwrap_err()
                .code,
            "400065"
        );
    }
}

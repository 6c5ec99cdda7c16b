//! Validation samples and the record texts they carry.
//!
//! A [`Sample`] is read from JSON with every record kept as the exact text
//! written ([`records_of`]), and a record in which an object repeats a
//! member name is refused ([`UniqueMembers`]): the plugin contract promises
//! plugins records the host has parsed.

use std::collections::BTreeMap;

use crate::error::PluginError;

/// Records used to validate a component before it is swapped in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Sample {
    /// Records mapped as every resource the plugin declares.
    Records(Vec<String>),
    /// Records per resource.
    PerResource(BTreeMap<String, Vec<String>>),
}

impl Sample {
    /// Reads a sample: a JSON array of records (mapped as every resource),
    /// or an object `{ "<resource>": [records...] }`. Record texts are kept
    /// exactly as written, so numbers keep every digit.
    pub fn from_json(origin: &str, text: &str) -> Result<Self, PluginError> {
        use serde_json::value::RawValue;
        let bad = |detail: String| PluginError::BadSample {
            origin: origin.to_owned(),
            detail,
        };
        let trimmed = text.trim_start();
        if trimmed.starts_with('[') {
            let records: Vec<Box<RawValue>> =
                serde_json::from_str(text).map_err(|e| bad(e.to_string()))?;
            Ok(Self::Records(records_of(records).map_err(bad)?))
        } else if trimmed.starts_with('{') {
            let map: BTreeMap<String, Vec<Box<RawValue>>> = serde_json::from_str(text)
                .map_err(|e| bad(format!("expected {{\"<resource>\": [records...]}}: {e}")))?;
            let mut out = BTreeMap::new();
            for (resource, records) in map {
                out.insert(resource, records_of(records).map_err(bad)?);
            }
            Ok(Self::PerResource(out))
        } else {
            Err(bad("expected a JSON array of records".into()))
        }
    }
}

impl Sample {
    /// Records and bytes of record text, over all resources.
    pub fn size(&self) -> (usize, usize) {
        let lists: Vec<&Vec<String>> = match self {
            Self::Records(records) => vec![records],
            Self::PerResource(map) => map.values().collect(),
        };
        lists.iter().fold((0, 0), |(n, bytes), list| {
            (
                n + list.len(),
                bytes + list.iter().map(String::len).sum::<usize>(),
            )
        })
    }
}

/// Records of a JSON array, each an exact JSON object text in which no
/// object (at any depth) names the same member twice: the contract promises
/// plugins records the host has parsed, and a repeated member would be read
/// differently by different readers.
pub fn records_of(records: Vec<Box<serde_json::value::RawValue>>) -> Result<Vec<String>, String> {
    records
        .into_iter()
        .enumerate()
        .map(|(i, raw)| {
            let text = raw.get();
            if !text.starts_with('{') {
                return Err(format!("record {i} is not a JSON object"));
            }
            serde_json::from_str::<UniqueMembers>(text).map_err(|e| format!("record {i}: {e}"))?;
            Ok(text.to_owned())
        })
        .collect()
}

/// Deserializes any JSON value, failing when an object repeats a member.
pub(crate) struct UniqueMembers;

impl<'de> serde::Deserialize<'de> for UniqueMembers {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueMembersVisitor)
    }
}

struct UniqueMembersVisitor;

impl<'de> serde::de::Visitor<'de> for UniqueMembersVisitor {
    type Value = UniqueMembers;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_i64<E>(self, _: i64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_u64<E>(self, _: u64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_f64<E>(self, _: f64) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_str<E>(self, _: &str) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }
    fn visit_unit<E>(self) -> Result<UniqueMembers, E> {
        Ok(UniqueMembers)
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(
        self,
        mut seq: A,
    ) -> Result<UniqueMembers, A::Error> {
        while seq.next_element::<UniqueMembers>()?.is_some() {}
        Ok(UniqueMembers)
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(
        self,
        mut map: A,
    ) -> Result<UniqueMembers, A::Error> {
        let mut seen = std::collections::HashSet::new();
        while let Some(name) = map.next_key::<String>()? {
            map.next_value::<UniqueMembers>()?;
            if let Some(name) = seen.replace(name) {
                return Err(serde::de::Error::custom(format_args!(
                    "member {name:?} appears twice in one object"
                )));
            }
        }
        Ok(UniqueMembers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_keep_record_text_exactly() {
        let sample = Sample::from_json(
            "inline",
            r#"[{"InvoiceId": 1, "InvoiceAmount": 12345678901234567890.123456789}, {"InvoiceId":2}]"#,
        )
        .unwrap();
        assert_eq!(
            sample,
            Sample::Records(vec![
                r#"{"InvoiceId": 1, "InvoiceAmount": 12345678901234567890.123456789}"#.into(),
                r#"{"InvoiceId":2}"#.into(),
            ])
        );
        let per =
            Sample::from_json("inline", r#"{"invoices": [{"a": 1}], "suppliers": []}"#).unwrap();
        let Sample::PerResource(map) = per else {
            panic!("expected per-resource sample");
        };
        assert_eq!(map["invoices"], vec![r#"{"a": 1}"#.to_owned()]);
        assert!(map["suppliers"].is_empty());
        for bad in ["", "3", "[1]", "{\"invoices\": 3}", "[{]"] {
            let err = Sample::from_json("s.json", bad).unwrap_err();
            assert!(matches!(err, PluginError::BadSample { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn records_repeating_a_member_are_refused_at_any_depth() {
        for (text, member) in [
            (r#"[{"InvoiceId": 1, "InvoiceId": 2}]"#, "InvoiceId"),
            // The same name, once escaped: decoded names are compared.
            (r#"[{"a": 1, "\u0061": 2}]"#, "a"),
            (
                r#"[{"InvoiceId": 1, "lines": [{"n": 1}, {"n": 2, "m": {"x": 1, "x": 1}}]}]"#,
                "x",
            ),
        ] {
            let err = Sample::from_json("s.json", text).unwrap_err().to_string();
            assert!(
                err.contains(&format!("member \"{member}\" appears twice"))
                    && err.contains("record 0")
                    && err.contains("s.json"),
                "{text}: {err}"
            );
        }
        // Equal names in different objects are fine.
        Sample::from_json("s.json", r#"[{"a": {"a": 1}, "b": [{"a": 2}, {"a": 3}]}]"#).unwrap();
    }
}

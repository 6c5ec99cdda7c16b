//! What a compiled script reads of a record: the attributes of the record
//! itself and, per expanded child collection, the attributes of its rows.
//!
//! The host uses it to ask Oracle for only those (`fields=`, and `expand`
//! of only those children) instead of whole records. Every way a script
//! reads a record counts: a column's `source` path, the field references
//! of a column's `expr` and of the `filter` (a `lookup`'s key expression
//! included; the reference record it finds is not read from Oracle), and
//! the row expansion over `expand` itself, which needs the child
//! collections even where no attribute of them is read.
//!
//! A path names one attribute of the object at its level: `Supplier.Name`
//! (a nested object attribute, not an expanded child) reads the attribute
//! `Supplier`, and `invoiceLines.LineAmount` under `expand =
//! "invoiceLines"` reads `LineAmount` of each line.

use std::collections::BTreeSet;

/// The attributes a script reads, level by level.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// Attributes of the record itself, sorted.
    pub attributes: BTreeSet<String>,
    /// One entry per level of the script's `expand`, outermost first (the
    /// script's expansion is one chain: `journalHeaders.journalLines` gives
    /// `journalHeaders`, then `journalHeaders.journalLines`).
    pub children: Vec<ChildReads>,
}

/// The attributes a script reads of the rows of one expanded child
/// collection.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChildReads {
    /// The collection's path from the record, dot-separated
    /// (`invoiceLines.invoiceDistributions`).
    pub path: String,
    /// Attributes of each of its rows, sorted; empty when the script only
    /// expands over the collection (counts its rows) without reading any.
    pub attributes: BTreeSet<String>,
}

impl Reads {
    /// The reads of a script expanding over `expand` (outermost first) whose
    /// columns and filter name the field `paths`.
    pub(crate) fn of<'p>(expand: &[String], paths: impl IntoIterator<Item = &'p str>) -> Reads {
        let mut reads = Reads {
            attributes: BTreeSet::new(),
            children: (0..expand.len())
                .map(|level| ChildReads {
                    path: expand[..=level].join("."),
                    attributes: BTreeSet::new(),
                })
                .collect(),
        };
        for path in paths {
            let segments: Vec<&str> = path.split('.').collect();
            // The same rule as the compiler's: a path's level is how many
            // leading segments follow the expansion chain.
            let level = segments
                .iter()
                .zip(expand)
                .take_while(|(s, e)| **s == e.as_str())
                .count();
            let Some(first) = segments.get(level) else {
                // The collection itself: the compiler refuses such a path.
                continue;
            };
            let set = match level {
                0 => &mut reads.attributes,
                l => &mut reads.children[l - 1].attributes,
            };
            set.insert((*first).to_owned());
        }
        reads
    }

    /// True when every attribute and child `self` reads, `other` reads too.
    pub fn is_within(&self, other: &Reads) -> bool {
        self.attributes.is_subset(&other.attributes)
            && self.children.iter().all(|c| {
                other
                    .children
                    .iter()
                    .any(|o| o.path == c.path && c.attributes.is_subset(&o.attributes))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Script;

    fn reads(text: &str) -> Reads {
        match Script::compile(text) {
            Ok(s) => s.reads(),
            Err(e) => panic!("script refused: {e}"),
        }
    }

    fn set(names: &[&str]) -> BTreeSet<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn sources_of_the_record_itself() {
        let r = reads(
            r#"
resource = "invoices"
[[column]]
name = "Invoice ID"
type = "integer"
key = true
source = "InvoiceId"
[[column]]
name = "Amount"
type = "decimal(18,2)"
source = "InvoiceAmount"
[[column]]
name = "Supplier name"
type = "text"
source = "Supplier.Name"
"#,
        );
        assert_eq!(
            r.attributes,
            set(&["InvoiceAmount", "InvoiceId", "Supplier"]),
            "a nested object path reads its first attribute"
        );
        assert!(r.children.is_empty());
    }

    #[test]
    fn exprs_filters_and_lookup_keys_are_walked() {
        let r = reads(
            r#"
resource = "invoices"
filter = "PaidStatus != 'Paid' and not(CanceledFlag)"
[[column]]
name = "Invoice ID"
type = "integer"
key = true
source = "InvoiceId"
[[column]]
name = "Open"
type = "decimal(18,2)"
expr = "InvoiceAmount - coalesce(AmountPaid, 0)"
[[column]]
name = "Parent"
type = "text"
expr = "lookup('suppliers', upper(SupplierNumber), 'ParentSupplier')"
"#,
        );
        assert_eq!(
            r.attributes,
            set(&[
                "AmountPaid",
                "CanceledFlag",
                "InvoiceAmount",
                "InvoiceId",
                "PaidStatus",
                "SupplierNumber",
            ]),
            "the lookup's field (ParentSupplier) is the reference record's, not Oracle's"
        );
    }

    #[test]
    fn expanded_children_per_level() {
        let r = reads(
            r#"
resource = "journalBatches"
expand = "journalHeaders.journalLines"
filter = "journalHeaders.journalLines.EnteredDr > 0"
[[column]]
name = "Batch"
type = "integer"
key = true
source = "JeBatchId"
[[column]]
name = "Line"
type = "integer"
key = true
expr = "journalHeaders.journalLines.JeLineNumber"
[[column]]
name = "Period"
type = "text"
source = "journalHeaders.PeriodName"
"#,
        );
        assert_eq!(r.attributes, set(&["JeBatchId"]));
        assert_eq!(
            r.children,
            vec![
                ChildReads {
                    path: "journalHeaders".into(),
                    attributes: set(&["PeriodName"]),
                },
                ChildReads {
                    path: "journalHeaders.journalLines".into(),
                    attributes: set(&["EnteredDr", "JeLineNumber"]),
                },
            ]
        );
    }

    #[test]
    fn an_expansion_read_for_its_rows_only_is_still_a_child() {
        let r = reads(
            r#"
resource = "invoices"
expand = "invoiceLines"
[[column]]
name = "Invoice ID"
type = "integer"
key = true
source = "InvoiceId"
"#,
        );
        assert_eq!(r.attributes, set(&["InvoiceId"]));
        assert_eq!(r.children.len(), 1);
        assert_eq!(r.children[0].path, "invoiceLines");
        assert!(r.children[0].attributes.is_empty());
    }

    #[test]
    fn within() {
        let narrow = Reads::of(&["lines".into()], ["A", "lines.X"]);
        let wide = Reads::of(&["lines".into()], ["A", "B", "lines.X", "lines.Y"]);
        let flat = Reads::of(&[], ["A", "B"]);
        assert!(narrow.is_within(&wide));
        assert!(!wide.is_within(&narrow));
        assert!(flat.is_within(&wide));
        assert!(!narrow.is_within(&flat), "flat has no lines");
        assert!(narrow.is_within(&narrow));
    }
}

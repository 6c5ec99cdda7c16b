//! The resource catalogue: names, keys, attributes (with `queryable`),
//! children and finders, as `describe` reports them and as the reference
//! (`shared/reference/oracle-fusion-rest.md`) names them.

use crate::model::Ty;

/// One attribute of a resource or child.
#[derive(Debug, Clone, Copy)]
pub(crate) struct FieldDef {
    /// Attribute name, exactly as on the wire.
    pub name: &'static str,
    /// Declared type.
    pub ty: Ty,
    /// Whether `q` may filter on it (a filter on a non-queryable attribute
    /// is a 400).
    pub queryable: bool,
}

const fn f(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        queryable: true,
    }
}

const fn nq(name: &'static str, ty: Ty) -> FieldDef {
    FieldDef {
        name,
        ty,
        queryable: false,
    }
}

/// How an item's key appears in its URL path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathKey {
    /// The raw key value (`/invoices/300100000000001`).
    Raw,
    /// A server-made `…UniqID` hex segment of the composite key; clients
    /// must take it from `links[]`.
    Hash,
    /// Either the raw key or the hash: the reference gives both forms for
    /// `invoices` (raw ids in Oracle's samples, `invoicesUniqID` in the
    /// operation names); the sandbox takes the tolerant reading.
    RawOrHash,
}

/// A resource or child collection.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node {
    /// Collection name in the path.
    pub name: &'static str,
    /// Human title for `describe`.
    pub title: &'static str,
    /// The business key attribute (unique within the parent).
    pub key: &'static str,
    /// How the key appears in the path.
    pub path: PathKey,
    /// Attributes hashed into the `…UniqID` segment (for `Hash` paths).
    pub hash_fields: &'static [&'static str],
    /// Attributes in wire order.
    pub fields: &'static [FieldDef],
    /// Child collections.
    pub children: &'static [Node],
}

impl Node {
    /// The attribute named `name`.
    pub(crate) fn field(&self, name: &str) -> Option<&'static FieldDef> {
        self.fields.iter().find(|f| f.name == name)
    }

    /// The child collection named `name`.
    pub(crate) fn child(&self, name: &str) -> Option<&'static Node> {
        self.children.iter().find(|c| c.name == name)
    }

    /// Type of the key attribute.
    pub(crate) fn key_ty(&self) -> Ty {
        self.field(self.key).map_or(Ty::Int, |f| f.ty)
    }
}

/// Which generator builds a top-level resource.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    /// Payables invoices.
    Invoices,
    /// Payables payments.
    Payments,
    /// Suppliers.
    Suppliers,
    /// Purchase orders.
    PurchaseOrders,
    /// Receivables invoices.
    ReceivablesInvoices,
    /// GL journal batches.
    JournalBatches,
    /// GL account combinations.
    AccountCombinations,
    /// Charts of accounts.
    ChartsOfAccounts,
    /// Ledgers.
    Ledgers,
    /// Segment value sets.
    ValueSets,
}

/// A named finder with its bind variables.
#[derive(Debug)]
pub(crate) struct FinderDef {
    /// Finder name (`PrimaryKey`, `invoiceSearch`).
    pub name: &'static str,
    /// Bind variable names; each must be an attribute of the resource.
    pub vars: &'static [&'static str],
}

/// A top-level resource.
#[derive(Debug)]
pub(crate) struct Resource {
    /// Generator.
    pub kind: Kind,
    /// Shape.
    pub node: Node,
    /// Carries `LastUpdateDate` (incremental polling possible).
    pub timestamped: bool,
    /// Timestamps render with milliseconds (`false`: whole seconds, as
    /// some Fusion resources send them).
    pub ts_millis: bool,
    /// Live mutations (updates, inserts, deletes) apply to it.
    pub mutable: bool,
    /// Finders other than `PrimaryKey` (which every resource has).
    pub finders: &'static [FinderDef],
}

use Ty::{Bool, Date, Int, Num, Str, Ts};

const INVOICE_DISTRIBUTION_FIELDS: &[FieldDef] = &[
    f("InvoiceDistributionId", Int),
    f("LineNumber", Int),
    f("DistributionLineNumber", Int),
    // Amount and type names are UNCONFIRMED in the reference; the sandbox
    // uses the names the line carries (`DistributionAmount` by analogy with
    // `LineAmount`, `DistributionLineType` by analogy with `LineType`).
    f("DistributionLineType", Str),
    f("DistributionAmount", Num),
    f("DistributionCombination", Str),
    f("AccountingDate", Date),
    f("Description", Str),
    // Distribution timestamps are UNCONFIRMED; audit columns are included
    // (tolerant: a client may ignore them).
    f("CreationDate", Ts),
    f("CreatedBy", Str),
    f("LastUpdateDate", Ts),
    f("LastUpdatedBy", Str),
];

const INVOICE_CHILDREN: &[Node] = &[
    Node {
        name: "invoiceLines",
        title: "Invoice Lines",
        key: "LineNumber",
        path: PathKey::Hash,
        hash_fields: &["InvoiceId", "LineNumber"],
        fields: &[
            f("InvoiceId", Int),
            f("LineNumber", Int),
            f("LineType", Str),
            f("LineAmount", Num),
            f("AccountingDate", Date),
            f("Description", Str),
            f("DistributionCombination", Str),
            f("Quantity", Num),
            f("UnitPrice", Num),
            f("CanceledFlag", Bool),
            f("CreationDate", Ts),
            f("CreatedBy", Str),
            f("LastUpdateDate", Ts),
            f("LastUpdatedBy", Str),
        ],
        children: &[Node {
            name: "invoiceDistributions",
            title: "Invoice Distributions",
            key: "InvoiceDistributionId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: INVOICE_DISTRIBUTION_FIELDS,
            children: &[],
        }],
    },
    // Oracle also lists distributions directly under the invoice; the
    // sandbox serves both paths with the same rows.
    Node {
        name: "invoiceDistributions",
        title: "Invoice Distributions",
        key: "InvoiceDistributionId",
        path: PathKey::Raw,
        hash_fields: &[],
        fields: INVOICE_DISTRIBUTION_FIELDS,
        children: &[],
    },
    Node {
        name: "invoiceInstallments",
        title: "Invoice Installments",
        key: "InstallmentNumber",
        // The installment path segment is not named in the reference:
        // tolerant reading, raw number or hash both accepted.
        path: PathKey::RawOrHash,
        hash_fields: &["InvoiceId", "InstallmentNumber"],
        fields: &[
            f("InvoiceId", Int),
            f("InstallmentNumber", Int),
            f("DueDate", Date),
            f("GrossAmount", Num),
            f("UnpaidAmount", Num),
            f("HoldFlag", Bool),
            f("CreationDate", Ts),
            f("CreatedBy", Str),
            f("LastUpdateDate", Ts),
            f("LastUpdatedBy", Str),
        ],
        children: &[],
    },
];

const AUDIT: [FieldDef; 4] = [
    f("CreationDate", Ts),
    f("CreatedBy", Str),
    f("LastUpdateDate", Ts),
    f("LastUpdatedBy", Str),
];

macro_rules! with_audit {
    ($($x:expr),* $(,)?) => {
        &[$($x,)* AUDIT[0], AUDIT[1], AUDIT[2], AUDIT[3]]
    };
}

/// Every top-level resource the sandbox serves.
pub(crate) static RESOURCES: &[Resource] = &[
    Resource {
        kind: Kind::Invoices,
        node: Node {
            name: "invoices",
            title: "Invoices",
            key: "InvoiceId",
            path: PathKey::RawOrHash,
            hash_fields: &["InvoiceId"],
            fields: with_audit![
                f("InvoiceId", Int),
                f("InvoiceNumber", Str),
                f("InvoiceAmount", Num),
                f("AmountPaid", Num),
                f("InvoiceCurrency", Str),
                f("PaymentCurrency", Str),
                f("InvoiceDate", Date),
                f("AccountingDate", Date),
                f("BusinessUnit", Str),
                f("Supplier", Str),
                f("SupplierNumber", Str),
                f("SupplierSite", Str),
                f("LegalEntity", Str),
                f("InvoiceType", Str),
                f("InvoiceSource", Str),
                f("Description", Str),
                f("PaymentTerms", Str),
                f("ValidationStatus", Str),
                f("ApprovalStatus", Str),
                f("PaidStatus", Str),
                f("AccountingStatus", Str),
                f("CanceledFlag", Bool),
                // A concatenated, derived value: not queryable.
                nq("LiabilityDistribution", Str),
            ],
            children: INVOICE_CHILDREN,
        },
        timestamped: true,
        ts_millis: true,
        mutable: true,
        finders: &[],
    },
    Resource {
        kind: Kind::Payments,
        node: Node {
            name: "payablesPayments",
            title: "Payables Payments",
            key: "CheckId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: with_audit![
                f("CheckId", Int),
                // `PaymentId` is UNCONFIRMED (a public client filters on it);
                // tolerant reading: present, equal to `CheckId`.
                f("PaymentId", Int),
                f("PaymentNumber", Int),
                f("PaymentDate", Date),
                f("PaymentAmount", Num),
                f("PaymentCurrency", Str),
                f("PaymentStatus", Str),
                f("Payee", Str),
                f("SupplierNumber", Str),
                f("PaymentMethod", Str),
                f("DisbursementBankAccountName", Str),
                f("BusinessUnit", Str),
                f("AccountingStatus", Str),
            ],
            children: &[Node {
                name: "relatedInvoices",
                title: "Related Invoices",
                key: "InvoicePaymentId",
                path: PathKey::Raw,
                hash_fields: &[],
                fields: &[
                    f("InvoicePaymentId", Int),
                    f("InvoiceId", Int),
                    f("InvoiceNumber", Str),
                    f("AmountPaid", Num),
                    f("InvoiceCurrency", Str),
                    f("AccountingDate", Date),
                ],
                children: &[],
            }],
        },
        // REST `LastUpdateDate` on payments is UNCONFIRMED; tolerant
        // reading: present, so a client can poll incrementally.
        timestamped: true,
        ts_millis: true,
        mutable: true,
        finders: &[],
    },
    Resource {
        kind: Kind::Suppliers,
        node: Node {
            name: "suppliers",
            title: "Suppliers",
            key: "SupplierId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: with_audit![
                f("SupplierId", Int),
                f("SupplierPartyId", Int),
                f("Supplier", Str),
                f("SupplierNumber", Str),
                f("AlternateName", Str),
                f("SupplierType", Str),
                f("SupplierTypeCode", Str),
                f("TaxOrganizationType", Str),
                f("Status", Str),
                f("InactiveDate", Date),
                f("BusinessRelationship", Str),
                f("ParentSupplierId", Int),
                f("DUNSNumber", Str),
                nq("TaxpayerId", Str),
                f("TaxpayerCountry", Str),
                f("OneTimeSupplierFlag", Bool),
            ],
            children: &[Node {
                name: "sites",
                title: "Sites",
                key: "SupplierSiteId",
                path: PathKey::Raw,
                hash_fields: &[],
                fields: with_audit![
                    f("SupplierSiteId", Int),
                    f("SupplierSite", Str),
                    f("ProcurementBU", Str),
                    f("ProcurementBUId", Int),
                    f("AddressName", Str),
                    f("PurchasingSiteFlag", Bool),
                    f("PaySiteFlag", Bool),
                    f("PrimaryPaySiteFlag", Bool),
                    f("SourcingOnlySiteFlag", Bool),
                    f("PaymentTerms", Str),
                    f("InactiveDate", Date),
                ],
                children: &[],
            }],
        },
        timestamped: true,
        // Supplier timestamps come without milliseconds in the public
        // sync code the reference cites.
        ts_millis: false,
        mutable: true,
        finders: &[],
    },
    Resource {
        kind: Kind::PurchaseOrders,
        node: Node {
            name: "purchaseOrders",
            title: "Purchase Orders",
            key: "POHeaderId",
            path: PathKey::Hash,
            hash_fields: &["POHeaderId"],
            fields: with_audit![
                f("POHeaderId", Int),
                f("OrderNumber", Str),
                f("ProcurementBU", Str),
                f("Supplier", Str),
                f("SupplierId", Int),
                f("SupplierSite", Str),
                f("Buyer", Str),
                f("Status", Str),
                f("CurrencyCode", Str),
                f("Total", Num),
                f("Ordered", Num),
                f("Description", Str),
                f("PaymentTerms", Str),
            ],
            children: &[Node {
                name: "lines",
                title: "Lines",
                key: "POLineId",
                path: PathKey::Raw,
                hash_fields: &[],
                fields: &[
                    f("POLineId", Int),
                    f("LineNumber", Int),
                    f("ItemDescription", Str),
                    f("Quantity", Num),
                    f("UOM", Str),
                    f("Price", Num),
                    f("Ordered", Num),
                    f("CategoryName", Str),
                ],
                children: &[Node {
                    name: "schedules",
                    title: "Schedules",
                    key: "LineLocationId",
                    path: PathKey::Hash,
                    hash_fields: &["LineLocationId"],
                    fields: &[
                        f("LineLocationId", Int),
                        f("ScheduleNumber", Int),
                        f("Quantity", Num),
                        f("RequestedDeliveryDate", Date),
                        f("ShipToLocation", Str),
                    ],
                    children: &[],
                }],
            }],
        },
        // `LastUpdateDate` on purchase orders is UNCONFIRMED; present.
        timestamped: true,
        ts_millis: true,
        mutable: true,
        finders: &[],
    },
    Resource {
        kind: Kind::ReceivablesInvoices,
        node: Node {
            name: "receivablesInvoices",
            title: "Receivables Invoices",
            key: "CustomerTransactionId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: with_audit![
                f("CustomerTransactionId", Int),
                f("TransactionNumber", Str),
                f("TransactionDate", Date),
                f("TransactionType", Str),
                f("TransactionSource", Str),
                f("BusinessUnit", Str),
                f("BillToCustomerName", Str),
                f("BillToCustomerNumber", Str),
                f("BillToSite", Str),
                f("InvoiceCurrencyCode", Str),
                f("EnteredAmount", Num),
                f("InvoiceBalanceAmount", Num),
                f("InvoiceStatus", Str),
                f("DueDate", Date),
                f("PaymentTerms", Str),
                f("AccountingDate", Date),
                f("CrossReference", Str),
            ],
            children: &[Node {
                name: "receivablesInvoiceLines",
                title: "Receivables Invoice Lines",
                key: "CustomerTransactionLineId",
                path: PathKey::Raw,
                hash_fields: &[],
                fields: &[
                    f("CustomerTransactionLineId", Int),
                    f("LineNumber", Int),
                    f("Description", Str),
                    f("Quantity", Num),
                    f("UnitSellingPrice", Num),
                    f("LineAmount", Num),
                ],
                children: &[],
            }],
        },
        // REST `LastUpdateDate` on receivables invoices is UNCONFIRMED; present.
        timestamped: true,
        ts_millis: true,
        mutable: true,
        finders: &[FinderDef {
            name: "invoiceSearch",
            vars: &["BusinessUnit", "BillToCustomerName", "TransactionNumber"],
        }],
    },
    Resource {
        kind: Kind::JournalBatches,
        node: Node {
            name: "journalBatches",
            title: "Journal Batches",
            key: "JeBatchId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: with_audit![
                f("JeBatchId", Int),
                f("BatchName", Str),
                f("BatchDescription", Str),
                f("DefaultPeriodName", Str),
                f("AccountedPeriodType", Str),
                f("Status", Str),
                f("StatusMeaning", Str),
                f("ApprovalStatusMeaning", Str),
                f("PostedDate", Date),
                f("ActualFlagMeaning", Str),
                f("UserJeSourceName", Str),
                f("ChartOfAccountsName", Str),
                f("ControlTotal", Num),
                f("RunningTotalDr", Num),
                f("RunningTotalCr", Num),
                f("RunningTotalAccountedDr", Num),
                f("RunningTotalAccountedCr", Num),
                f("ReversalFlag", Str),
                f("ReversalPeriod", Str),
            ],
            children: &[Node {
                name: "journalHeaders",
                title: "Journal Headers",
                key: "JeHeaderId",
                path: PathKey::Hash,
                hash_fields: &["JeHeaderId"],
                fields: &[
                    f("JeHeaderId", Int),
                    f("JournalName", Str),
                    f("Description", Str),
                    f("PeriodName", Str),
                    f("DefaultEffectiveDate", Date),
                    f("LedgerName", Str),
                    f("LegalEntityName", Str),
                    f("UserJeCategoryName", Str),
                    f("CurrencyCode", Str),
                    f("CurrencyConversionRate", Num),
                    f("RunningTotalAccountedDr", Num),
                    f("RunningTotalAccountedCr", Num),
                    f("ExternalReference", Str),
                    f("CreationDate", Ts),
                    f("LastUpdateDate", Ts),
                ],
                children: &[Node {
                    name: "journalLines",
                    title: "Journal Lines",
                    key: "JeLineNumber",
                    path: PathKey::Hash,
                    hash_fields: &["JeHeaderId", "JeLineNumber"],
                    fields: &[
                        f("JeHeaderId", Int),
                        f("JeLineNumber", Int),
                        f("AccountCombination", Str),
                        f("EnteredDr", Num),
                        f("EnteredCr", Num),
                        f("AccountedDr", Num),
                        f("AccountedCr", Num),
                        f("CurrencyCode", Str),
                        f("Description", Str),
                        f("Reference1", Str),
                        f("Reference2", Str),
                        f("Reference3", Str),
                        f("Reference4", Str),
                        f("Reference5", Str),
                        f("Reference6", Str),
                        f("Reference7", Str),
                        f("Reference8", Str),
                        f("Reference9", Str),
                        f("Reference10", Str),
                    ],
                    children: &[],
                }],
            }],
        },
        timestamped: true,
        ts_millis: true,
        mutable: true,
        finders: &[],
    },
    Resource {
        kind: Kind::AccountCombinations,
        node: Node {
            name: "accountCombinationsLOV",
            title: "Account Combinations List of Values",
            key: "_CODE_COMBINATION_ID",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: &[
                f("_CODE_COMBINATION_ID", Int),
                f("_CHART_OF_ACCOUNTS_ID", Int),
                f("AccountType", Str),
                f("EnabledFlag", Str),
                f("StartDateActive", Date),
                f("EndDateActive", Date),
                f("SummaryFlag", Str),
                f("DetailPostingAllowedFlag", Str),
                f("DetailBudgetingAllowedFlag", Str),
                f("FinancialCategory", Str),
                f("entity", Str),
                f("department", Str),
                f("account", Str),
                f("subAccount", Str),
                f("location", Str),
            ],
            children: &[],
        },
        timestamped: false,
        ts_millis: true,
        mutable: false,
        finders: &[],
    },
    Resource {
        kind: Kind::ChartsOfAccounts,
        node: Node {
            name: "chartOfAccountsLOV",
            title: "Charts of Accounts List of Values",
            key: "StructureInstanceId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: &[
                f("StructureInstanceId", Int),
                f("StructureInstanceNumber", Int),
                f("StructureInstanceCode", Str),
                f("Name", Str),
                f("EnabledFlag", Str),
            ],
            children: &[],
        },
        timestamped: false,
        ts_millis: true,
        mutable: false,
        finders: &[],
    },
    Resource {
        kind: Kind::Ledgers,
        node: Node {
            name: "ledgersLOV",
            title: "Ledgers List of Values",
            key: "LedgerId",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: &[
                f("LedgerId", Int),
                f("LedgerName", Str),
                f("LedgerType", Str),
                f("CurrencyCode", Str),
                f("ChartOfAccountsStructureId", Int),
                f("AccountingCalendar", Str),
            ],
            children: &[],
        },
        timestamped: false,
        ts_millis: true,
        mutable: false,
        finders: &[],
    },
    Resource {
        kind: Kind::ValueSets,
        node: Node {
            name: "valueSets",
            title: "Value Sets",
            key: "ValueSetCode",
            path: PathKey::Raw,
            hash_fields: &[],
            fields: &[
                f("ValueSetId", Int),
                f("ValueSetCode", Str),
                f("Description", Str),
                f("ModuleName", Str),
                f("ValidationType", Str),
                f("ValueDataType", Str),
                f("MaximumLength", Int),
            ],
            children: &[Node {
                name: "values",
                title: "Values",
                // `ValueId` is UNCONFIRMED in the reference; tolerant
                // reading: present and used as the item key.
                key: "ValueId",
                path: PathKey::Raw,
                hash_fields: &[],
                fields: &[
                    f("ValueId", Int),
                    f("Value", Str),
                    f("Description", Str),
                    f("EnabledFlag", Str),
                    f("StartDateActive", Date),
                    f("EndDateActive", Date),
                    f("SortOrder", Int),
                ],
                children: &[],
            }],
        },
        timestamped: false,
        ts_millis: true,
        mutable: false,
        finders: &[],
    },
];

/// The resource named `name`.
#[cfg(test)]
pub(crate) fn resource(name: &str) -> Option<&'static Resource> {
    RESOURCES.iter().find(|r| r.node.name == name)
}

/// The resource built by `kind`.
#[cfg(test)]
pub(crate) fn by_kind(kind: Kind) -> &'static Resource {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind)
        .unwrap_or(&RESOURCES[0])
}

/// Encodes a composite key as an opaque `…UniqID` path segment: uppercase
/// hex of a serialised key, shaped like Oracle's (a part count, then per
/// part a fixed marker and the 64-bit value).
pub(crate) fn encode_uniq(parts: &[i64]) -> String {
    use std::fmt::Write as _;
    let mut out = format!("{:08X}", parts.len());
    for p in parts {
        let _ = write!(out, "ACED000577080000{:016X}", *p as u64);
    }
    out
}

/// Decodes a segment made by [`encode_uniq`].
pub(crate) fn decode_uniq(text: &str) -> Option<Vec<i64>> {
    let count = usize::from_str_radix(text.get(0..8)?, 16).ok()?;
    let rest = &text[8..];
    if count == 0 || count > 8 || rest.len() != count * 32 {
        return None;
    }
    let mut parts = Vec::with_capacity(count);
    for i in 0..count {
        let chunk = &rest[i * 32..(i + 1) * 32];
        if !chunk.starts_with("ACED000577080000") {
            return None;
        }
        let value = u64::from_str_radix(&chunk[16..], 16).ok()?;
        parts.push(value as i64);
    }
    Some(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniq_ids_round_trip() {
        let parts = [300_100_000_000_001_i64, 3];
        let s = encode_uniq(&parts);
        assert!(s.chars().all(|c| c.is_ascii_hexdigit()), "{s}");
        assert_eq!(decode_uniq(&s).unwrap(), parts);
        assert_eq!(decode_uniq("300100000000001"), None);
        assert_eq!(decode_uniq(&s[..s.len() - 1]), None);
    }

    #[test]
    fn keys_and_hash_fields_are_attributes() {
        fn check(node: &Node) {
            assert!(
                node.field(node.key).is_some(),
                "{}: key {}",
                node.name,
                node.key
            );
            for h in node.hash_fields {
                assert!(node.field(h).is_some(), "{}: hash field {h}", node.name);
            }
            for c in node.children {
                check(c);
            }
        }
        for r in RESOURCES {
            check(&r.node);
            if r.timestamped {
                assert!(r.node.field("LastUpdateDate").is_some(), "{}", r.node.name);
            }
        }
    }
}

//! Example custom plugin written against the SDK.
//!
//! - `journalBatches` (expanded with `journalHeaders.journalLines`): one row
//!   per journal line, its AccountCombination split into Company, Cost
//!   Center, Account and Sub-account with the descriptions of the first
//!   three looked up in the tenant's `companies`, `cost-centers` and
//!   `accounts` reference data. Children may be arrays or, under REST
//!   framework v3+, `{"items": [...]}`.
//! - `invoices`: the 12-column invoice mapping used by the benchmark (the
//!   same mapping as the demo's scripted one).
//!
//! It takes no configuration.

use mlc_plugin_sdk::column::{self, ColumnExt};
use mlc_plugin_sdk::{
    Column, Lookups, MapError, Mapper, Object, PluginError, Rejection, Rows, Value,
};

struct GlJournalLines {
    lookups: Lookups,
}

const JOURNALS: &str = "journalBatches";
const INVOICES: &str = "invoices";

fn text_or_null(s: Option<String>) -> Value {
    s.map_or(Value::Null, Value::Text)
}

impl GlJournalLines {
    fn journal_lines(&self, batch: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        let batch_id = batch.integer("JeBatchId")?;
        let batch_period = batch.opt_text("DefaultPeriodName")?;
        let updated = batch.timestamp("LastUpdateDate")?;
        for header in batch.children("journalHeaders")? {
            let period = match header.opt_text("PeriodName")? {
                Value::Null => batch_period.clone(),
                period => period,
            };
            let header_currency = header.opt_text("CurrencyCode")?;
            for line in header.children("journalLines")? {
                let combination = line.str("AccountCombination")?;
                let separator = if combination.contains('-') { '-' } else { '.' };
                let [company, cost_center, account, sub_account] = split4(&combination, separator)
                    .ok_or_else(|| {
                        Rejection::field(
                            "AccountCombination",
                            format!("{combination:?} is not Company-CostCenter-Account-SubAccount"),
                        )
                    })?;
                let currency = match line.opt_text("CurrencyCode")? {
                    Value::Null => header_currency.clone(),
                    currency => currency,
                };
                rows.push(vec![
                    batch_id.clone(),
                    batch.opt_text("BatchName")?,
                    batch.opt_text("Status")?,
                    period.clone(),
                    header.integer("JeHeaderId")?,
                    header.opt_text("JournalName")?,
                    header.opt_text("LedgerName")?,
                    header.opt_text("UserJeCategoryName")?,
                    header.opt_date("DefaultEffectiveDate")?,
                    line.integer("JeLineNumber")?,
                    Value::Text(combination.to_string()),
                    Value::Text(company.to_owned()),
                    text_or_null(self.lookups.description("companies", company)?),
                    Value::Text(cost_center.to_owned()),
                    text_or_null(self.lookups.description("cost-centers", cost_center)?),
                    Value::Text(account.to_owned()),
                    text_or_null(self.lookups.description("accounts", account)?),
                    Value::Text(sub_account.to_owned()),
                    line.opt_decimal("EnteredDr", 18, 2)?,
                    line.opt_decimal("EnteredCr", 18, 2)?,
                    line.opt_decimal("AccountedDr", 18, 2)?,
                    line.opt_decimal("AccountedCr", 18, 2)?,
                    currency,
                    line.opt_text("Description")?,
                    updated.clone(),
                ]);
            }
        }
        Ok(())
    }

    fn invoice(rec: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        rows.push(vec![
            rec.integer("InvoiceId")?,
            rec.text("InvoiceNumber")?,
            rec.decimal("InvoiceAmount", 18, 2)?,
            rec.opt_decimal("AmountPaid", 18, 2)?,
            rec.text("InvoiceCurrency")?,
            rec.date("InvoiceDate")?,
            rec.opt_date("AccountingDate")?,
            rec.text("Supplier")?,
            rec.text("SupplierNumber")?,
            rec.text("BusinessUnit")?,
            rec.boolean("CanceledFlag")?,
            rec.timestamp("LastUpdateDate")?,
        ]);
        Ok(())
    }
}

/// `a-b-c-d` as four non-empty segments.
fn split4(text: &str, separator: char) -> Option<[&str; 4]> {
    let mut parts = text.split(separator);
    let segments = [parts.next()?, parts.next()?, parts.next()?, parts.next()?];
    (parts.next().is_none() && segments.iter().all(|s| !s.is_empty())).then_some(segments)
}

impl Mapper for GlJournalLines {
    fn configure(config: &str) -> Result<Self, PluginError> {
        if !config.trim().is_empty() {
            return Err(PluginError::invalid_config(
                "gl-journal-lines takes no configuration",
            ));
        }
        Ok(Self {
            lookups: Lookups::new(),
        })
    }

    fn resources(&self) -> Vec<String> {
        vec![JOURNALS.into(), INVOICES.into()]
    }

    fn schema(&self, resource: &str) -> Option<Vec<Column>> {
        match resource {
            JOURNALS => Some(vec![
                column::integer("Batch ID").key(),
                column::text("Batch Name").nullable(),
                column::text("Batch Status").nullable(),
                column::text("Period").nullable(),
                column::integer("Journal ID").key(),
                column::text("Journal Name").nullable(),
                column::text("Ledger").nullable(),
                column::text("Category").nullable(),
                column::date("Effective Date").nullable(),
                column::integer("Line Number").key(),
                column::text("Account Combination"),
                column::text("Company"),
                column::text("Company Name").nullable(),
                column::text("Cost Center"),
                column::text("Cost Center Name").nullable(),
                column::text("Account"),
                column::text("Account Name").nullable(),
                column::text("Sub-account"),
                column::decimal("Entered Dr", 18, 2).nullable(),
                column::decimal("Entered Cr", 18, 2).nullable(),
                column::decimal("Accounted Dr", 18, 2).nullable(),
                column::decimal("Accounted Cr", 18, 2).nullable(),
                column::text("Currency").nullable(),
                column::text("Line Description").nullable(),
                column::timestamp("Last Updated"),
            ]),
            INVOICES => Some(vec![
                column::integer("Invoice ID").key(),
                column::text("Invoice Number"),
                column::decimal("Invoice Amount", 18, 2),
                column::decimal("Amount Paid", 18, 2).nullable(),
                column::text("Currency"),
                column::date("Invoice Date"),
                column::date("Accounting Date").nullable(),
                column::text("Supplier"),
                column::text("Supplier Number"),
                column::text("Business Unit"),
                column::boolean("Canceled"),
                column::timestamp("Last Updated"),
            ]),
            _ => None,
        }
    }

    fn map(&self, resource: &str, rec: &Object<'_>, rows: &mut Rows) -> Result<(), MapError> {
        match resource {
            INVOICES => Self::invoice(rec, rows),
            _ => self.journal_lines(rec, rows),
        }
    }
}

mlc_plugin_sdk::export_mapper!(GlJournalLines);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_four_segments() {
        assert_eq!(
            split4("101-110-4010-0000", '-'),
            Some(["101", "110", "4010", "0000"])
        );
        assert_eq!(
            split4("101.110.4010.0000", '.'),
            Some(["101", "110", "4010", "0000"])
        );
        assert_eq!(split4("101-110-4010", '-'), None);
        assert_eq!(split4("101-110-4010-0000-9", '-'), None);
        assert_eq!(split4("101--4010-0000", '-'), None);
    }

    #[test]
    fn invoice_rows_have_the_twelve_columns() {
        let acme = r#"{"InvoiceId":300100412233001,"InvoiceNumber":"ACME-2024-0042","InvoiceAmount":1250.00,
                "AmountPaid":null,"InvoiceCurrency":"USD","InvoiceDate":"2024-05-02","AccountingDate":"2024-05-03",
                "BusinessUnit":"US1 Business Unit","Supplier":"Acme Office Supply","SupplierNumber":"1253",
                "CanceledFlag":"N","LastUpdateDate":"2024-05-03T09:02:51.077+00:00"}"#;
        let mapper = GlJournalLines::configure("").unwrap();
        let schema = mapper.schema(INVOICES).unwrap();
        assert_eq!(schema.len(), 12);
        let out =
            mlc_plugin_sdk::__private::map_batch(&mapper, INVOICES, &[acme.to_owned(), rec_text()])
                .unwrap();
        assert!(out.rejects.is_empty(), "{:?}", out.rejects);
        let rows = out.rows();
        assert_eq!(rows.len(), 2);
        assert!(rows.iter().all(|r| r.values.len() == schema.len()));
        assert_eq!(rows[0].values[0], Value::Integer(300100412233001));
        assert_eq!(rows[0].values[3], Value::Null);
        assert_eq!(rows[0].values[10], Value::Boolean(false));
        assert_eq!(rows[1].values[6], Value::Null);
    }

    fn rec_text() -> String {
        r#"{"InvoiceId":1,"InvoiceNumber":"N","InvoiceAmount":"12.5","InvoiceCurrency":"EUR","InvoiceDate":"2024-01-31",
            "BusinessUnit":"BU","Supplier":"S","SupplierNumber":"7","CanceledFlag":false,"LastUpdateDate":"2024-02-01T00:00:00Z"}"#
            .to_owned()
    }
}

//! The deterministic ERP generator: every record is a pure function of
//! `(seed, resource, index, version)`, so a sandbox of millions of invoices
//! holds no records in memory and the same seed always gives the same data.
//!
//! Consistency: invoices name existing suppliers and sites and book to
//! existing account combinations; payments pay existing invoices (amount,
//! currency and supplier agree); purchase orders name existing suppliers;
//! journal lines book to existing combinations and balance per header;
//! every combination's segment values exist in their value sets.

use std::borrow::Cow;

use mlc_common::time::days_from_civil;

use crate::model::{Rec, V};
use crate::resources::Kind;

/// 2024-01-01T00:00:00Z: base `LastUpdateDate` of index 0.
const EPOCH_MICROS: i64 = 1_704_067_200_000_000;
/// Base timestamps advance one second per group of records.
const STEP_MICROS: i64 = 1_000_000;
const DAY_MICROS: i64 = 86_400_000_000;

const ID_INVOICE: i64 = 300_100_000_000_000;
const ID_INVOICE_DIST: i64 = 300_110_000_000_000;
const ID_CHECK: i64 = 300_300_000_000_000;
const ID_INVOICE_PAYMENT: i64 = 300_310_000_000_000;
const ID_SUPPLIER: i64 = 300_400_000_000_000;
const ID_SUPPLIER_PARTY: i64 = 300_410_000_000_000;
const ID_SUPPLIER_SITE: i64 = 300_420_000_000_000;
const ID_PO: i64 = 300_500_000_000_000;
const ID_PO_LINE: i64 = 300_510_000_000_000;
const ID_PO_SCHEDULE: i64 = 300_520_000_000_000;
const ID_AR: i64 = 300_600_000_000_000;
const ID_AR_LINE: i64 = 300_610_000_000_000;
const ID_BATCH: i64 = 300_700_000_000_000;
const ID_HEADER: i64 = 300_710_000_000_000;
const ID_COMBINATION: i64 = 300_800_000_000_000;
const ID_LEDGER: i64 = 300_900_000_000_000;
const ID_COA: i64 = 300_950_000_000_000;
const ID_VALUE_SET: i64 = 300_990_000_000_000;
const ID_VALUE: i64 = 301_000_000_000_000;
const ID_BU_US: i64 = 300_000_000_204_011;

/// The chart of accounts number (`_CHART_OF_ACCOUNTS_ID`,
/// `StructureInstanceNumber`).
const COA_NUMBER: i64 = 101;

/// One segment value set of the chart of accounts.
struct SegmentSet {
    code: &'static str,
    description: &'static str,
    segment: &'static str,
    count: u64,
}

/// Value sets in code order (the `valueSets` key order).
const VALUE_SETS: [SegmentSet; 5] = [
    SegmentSet {
        code: "CORP_ACCOUNT",
        description: "Corporate natural account",
        segment: "account",
        count: 60,
    },
    SegmentSet {
        code: "CORP_COST_CENTER",
        description: "Corporate cost center (department, FA_COST_CTR qualifier)",
        segment: "department",
        count: 24,
    },
    SegmentSet {
        code: "CORP_ENTITY",
        description: "Corporate legal entity",
        segment: "entity",
        count: 4,
    },
    SegmentSet {
        code: "CORP_LOCATION",
        description: "Corporate location",
        segment: "location",
        count: 10,
    },
    SegmentSet {
        code: "CORP_SUB_ACCOUNT",
        description: "Corporate sub-account",
        segment: "subAccount",
        count: 6,
    },
];

const ASSETS: [&str; 10] = [
    "Cash",
    "Petty Cash",
    "Accounts Receivable",
    "Inventory",
    "Prepaid Expenses",
    "Fixed Assets",
    "Accumulated Depreciation",
    "Deposits",
    "Intercompany Receivable",
    "Other Assets",
];
const LIABILITIES: [&str; 8] = [
    "Accounts Payable",
    "Accrued Liabilities",
    "Payroll Liabilities",
    "Sales Tax Payable",
    "Deferred Revenue",
    "Notes Payable",
    "Intercompany Payable",
    "Other Liabilities",
];
const EQUITY: [&str; 4] = [
    "Common Stock",
    "Retained Earnings",
    "Additional Paid-in Capital",
    "Dividends",
];
const REVENUE: [&str; 8] = [
    "Product Revenue",
    "Service Revenue",
    "Subscription Revenue",
    "Freight Revenue",
    "Discounts",
    "Returns",
    "Interest Income",
    "Other Income",
];
const EXPENSES: [&str; 30] = [
    "Office Supplies",
    "Travel",
    "Meals",
    "Software",
    "Hardware",
    "Rent",
    "Utilities",
    "Telephone",
    "Consulting",
    "Legal",
    "Audit",
    "Marketing",
    "Advertising",
    "Freight",
    "Insurance",
    "Repairs",
    "Training",
    "Recruiting",
    "Salaries",
    "Benefits",
    "Payroll Taxes",
    "Bank Fees",
    "Depreciation",
    "Amortization",
    "Subscriptions",
    "Postage",
    "Printing",
    "Licenses",
    "Entertainment",
    "Miscellaneous",
];

const NAME_A: [&str; 16] = [
    "Acme",
    "Globex",
    "Initech",
    "Umbrella",
    "Stark",
    "Wayne",
    "Wonka",
    "Soylent",
    "Tyrell",
    "Cyberdyne",
    "Hooli",
    "Vandelay",
    "Oscorp",
    "Gringotts",
    "Nakatomi",
    "Monarch",
];
const NAME_B: [&str; 12] = [
    "Office Supply",
    "Logistics",
    "Industrial",
    "Consulting",
    "Foods",
    "Metals",
    "Software",
    "Energy",
    "Freight",
    "Packaging",
    "Chemicals",
    "Services",
];
const NAME_C: [&str; 4] = ["Inc", "LLC", "Ltd", "Corp"];
const CUSTOMERS: [&str; 12] = [
    "Northwind Traders",
    "Contoso Retail",
    "Fabrikam Stores",
    "Tailspin Toys",
    "Adventure Works",
    "Litware Health",
    "Proseware Labs",
    "Wide World Importers",
    "Blue Yonder Air",
    "Coho Vineyard",
    "Alpine Ski House",
    "Margie's Travel",
];
const TERMS: [&str; 4] = ["Net 30", "Net 45", "Net 60", "Immediate"];
const BUYERS: [&str; 5] = [
    "Smith, Pat",
    "Garcia, Lee",
    "Chen, Alex",
    "Okafor, Sam",
    "Novak, Jo",
];
const ITEMS: [&str; 8] = [
    "Laptop computer",
    "Office chair",
    "Printer toner",
    "Network switch",
    "Cleaning service",
    "Shipping pallets",
    "Safety gloves",
    "Software license",
];

/// Where the attributes of one generated row go, in wire order: a
/// [`Rec`], or JSON text written at once (`render`'s fast path, which
/// never builds the record).
pub(crate) trait Row {
    /// One attribute.
    fn push(&mut self, field: (&'static str, V));

    /// Several attributes, in order.
    fn fields<const N: usize>(&mut self, fields: [(&'static str, V); N]) {
        for f in fields {
            self.push(f);
        }
    }
}

impl Row for Rec {
    fn push(&mut self, field: (&'static str, V)) {
        Vec::push(self, field);
    }
}

/// Where the rows of a child collection go, one after the other.
pub(crate) trait Rows {
    /// A row's destination.
    type Row: Row + ?Sized;

    /// Starts the next row.
    fn row(&mut self) -> &mut Self::Row;
}

impl Rows for Vec<Rec> {
    type Row = Rec;

    fn row(&mut self) -> &mut Rec {
        self.push(Vec::with_capacity(16));
        let last = self.len() - 1;
        &mut self[last]
    }
}

/// The integer attributes of a parent row (grandchildren are generated
/// from their parent's keys).
pub(crate) trait Fields {
    /// The integer attribute `name`, if there is one.
    fn int(&self, name: &str) -> Option<i64>;
}

impl Fields for Rec {
    fn int(&self, name: &str) -> Option<i64> {
        match crate::model::get(self, name) {
            Some(V::Int(i)) => Some(*i),
            _ => None,
        }
    }
}

/// The most account combinations a sandbox has.
const MAX_COMBINATIONS: u64 = 20_000;

/// `entity-department-account-subAccount-location` of every combination
/// any sandbox can have (they do not depend on the seed), built once per
/// process on first use: invoices and journals name them on every record,
/// borrowed, never copied. One text and the end of each combination in
/// it: the ones a sandbox uses sit together in memory.
static COMBINATIONS: std::sync::OnceLock<(String, Vec<usize>)> = std::sync::OnceLock::new();

/// Record counts, all derived from the number of invoices.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Sizes {
    /// Payables invoices.
    pub invoices: u64,
    /// Suppliers.
    pub suppliers: u64,
    /// Payables payments (each pays one invoice).
    pub payments: u64,
    /// Purchase orders.
    pub purchase_orders: u64,
    /// Receivables invoices.
    pub receivables: u64,
    /// Journal batches.
    pub batches: u64,
    /// Account combinations.
    pub combinations: u64,
}

impl Sizes {
    /// Sizes for `invoices` invoices.
    pub(crate) fn for_invoices(invoices: u64) -> Self {
        Self {
            invoices,
            suppliers: (invoices / 20).max(5),
            payments: invoices * 3 / 5,
            purchase_orders: (invoices / 4).max(3),
            receivables: (invoices / 2).max(3),
            batches: (invoices / 10).max(3),
            combinations: (invoices / 10).clamp(50, MAX_COMBINATIONS),
        }
    }
}

/// Versioned state of one record: base records have version 0 and their
/// generated timestamps; the overlay supplies later versions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Ver {
    /// 0 for the generated original, then +1 per update.
    pub version: u32,
    /// `LastUpdateDate`, microseconds UTC.
    pub lud: i64,
    /// `CreationDate`, microseconds UTC.
    pub created: i64,
}

/// The generator for one seed and size.
#[derive(Clone)]
pub(crate) struct Gen {
    seed: u64,
    sizes: Sizes,
    same_ts: u64,
}

impl std::fmt::Debug for Gen {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gen")
            .field("seed", &self.seed)
            .field("sizes", &self.sizes)
            .field("same_ts", &self.same_ts)
            .finish_non_exhaustive()
    }
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

fn kind_salt(kind: Kind) -> u64 {
    match kind {
        Kind::Invoices => 1,
        Kind::Payments => 2,
        Kind::Suppliers => 3,
        Kind::PurchaseOrders => 4,
        Kind::ReceivablesInvoices => 5,
        Kind::JournalBatches => 6,
        Kind::AccountCombinations => 7,
        Kind::ChartsOfAccounts => 8,
        Kind::Ledgers => 9,
        Kind::ValueSets => 10,
    }
}

fn pick<T: Copy>(list: &[T], h: u64) -> T {
    list[(h % list.len() as u64) as usize]
}

fn ms(micros: i64) -> i64 {
    micros - micros.rem_euclid(1000)
}

fn day_of(micros: i64) -> i32 {
    i32::try_from(micros.div_euclid(DAY_MICROS)).unwrap_or(0)
}

fn period_name(days: i32) -> String {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let (y, m, _) = mlc_common::time::civil_from_days(days);
    format!(
        "{}-{:02}",
        MONTHS[(m as usize + 11) % 12],
        y.rem_euclid(100)
    )
}

/// Appends the decimal digits of `n`, zero-padded to `width` (what
/// `format!("{n:0width$}")` writes, without the formatting machinery:
/// every invoice names a few numbers).
fn push_number(text: &mut String, mut n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for _ in digits.len() - at..width {
        text.push('0');
    }
    for &d in &digits[at..] {
        text.push(char::from(d));
    }
}

fn dec(cents: i64) -> V {
    V::cents(cents)
}

/// The segment values of combination `c`.
struct Combination {
    entity: u64,
    department: u64,
    account: u64,
    sub: u64,
    location: u64,
}

impl Gen {
    /// A generator for `seed` with `sizes`; `same_ts` records share each
    /// base timestamp (1 = every record its own).
    pub(crate) fn new(seed: u64, sizes: Sizes, same_ts: u64) -> Self {
        Self {
            seed,
            sizes,
            same_ts: same_ts.max(1),
        }
    }

    /// The sizes.
    #[cfg(test)]
    pub(crate) fn sizes(&self) -> Sizes {
        self.sizes
    }

    fn h(&self, kind: Kind, index: u64, k: u64) -> u64 {
        splitmix(
            self.seed
                ^ splitmix(kind_salt(kind).wrapping_mul(0x1000_0000_01B3) ^ k.wrapping_mul(31))
                ^ splitmix(index.wrapping_add(0x5151)),
        )
    }

    /// Number of generated (base) records of a resource.
    pub(crate) fn base_count(&self, kind: Kind) -> u64 {
        match kind {
            Kind::Invoices => self.sizes.invoices,
            Kind::Payments => self.sizes.payments,
            Kind::Suppliers => self.sizes.suppliers,
            Kind::PurchaseOrders => self.sizes.purchase_orders,
            Kind::ReceivablesInvoices => self.sizes.receivables,
            Kind::JournalBatches => self.sizes.batches,
            Kind::AccountCombinations => self.sizes.combinations,
            Kind::ChartsOfAccounts => 1,
            Kind::Ledgers => 2,
            Kind::ValueSets => VALUE_SETS.len() as u64,
        }
    }

    /// The integer key of record `index` (keys rise with the index).
    pub(crate) fn int_key(&self, kind: Kind, index: u64) -> i64 {
        let i = index as i64;
        match kind {
            Kind::Invoices => ID_INVOICE + i,
            Kind::Payments => ID_CHECK + i,
            Kind::Suppliers => ID_SUPPLIER + i,
            Kind::PurchaseOrders => ID_PO + i,
            Kind::ReceivablesInvoices => ID_AR + i,
            Kind::JournalBatches => ID_BATCH + i,
            Kind::AccountCombinations => ID_COMBINATION + i,
            Kind::ChartsOfAccounts => ID_COA + i + 1,
            Kind::Ledgers => ID_LEDGER + i + 1,
            Kind::ValueSets => ID_VALUE_SET + i + 1,
        }
    }

    /// The index of integer key `key`, if it is in the key space (it may
    /// still be deleted or not yet inserted).
    pub(crate) fn index_of_int(&self, kind: Kind, key: i64) -> Option<u64> {
        let first = self.int_key(kind, 0);
        u64::try_from(key.checked_sub(first)?).ok()
    }

    /// The string key (value set code) of a value set.
    pub(crate) fn value_set_code(index: u64) -> Option<&'static str> {
        VALUE_SETS.get(index as usize).map(|s| s.code)
    }

    /// The index of a value set code.
    pub(crate) fn value_set_index(code: &str) -> Option<u64> {
        VALUE_SETS
            .iter()
            .position(|s| s.code == code)
            .map(|p| p as u64)
    }

    /// Base `LastUpdateDate` of group `g` (records `g*same_ts ..`).
    fn group_lud(&self, kind: Kind, g: u64, millis: bool) -> i64 {
        let h = self.h(kind, g, 99);
        let jitter = if !millis || h.is_multiple_of(8) {
            0
        } else {
            ((h >> 8) % 1000) as i64 * 1000
        };
        EPOCH_MICROS + g as i64 * STEP_MICROS + jitter
    }

    /// Base `LastUpdateDate` of record `index`: non-decreasing in `index`.
    pub(crate) fn base_lud(&self, kind: Kind, index: u64, millis: bool) -> i64 {
        self.group_lud(kind, index / self.same_ts, millis)
    }

    /// The first index whose base `LastUpdateDate` is `>= micros`.
    pub(crate) fn first_index_at_or_after(&self, kind: Kind, micros: i64, millis: bool) -> u64 {
        let n = self.base_count(kind);
        let groups = n.div_ceil(self.same_ts);
        let (mut lo, mut hi) = (0u64, groups);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.group_lud(kind, mid, millis) < micros {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        (lo * self.same_ts).min(n)
    }

    /// The first index whose base `LastUpdateDate` is `> micros`.
    pub(crate) fn first_index_after(&self, kind: Kind, micros: i64, millis: bool) -> u64 {
        self.first_index_at_or_after(kind, micros.saturating_add(1), millis)
    }

    /// The version-0 state of base record `index`.
    pub(crate) fn base_ver(&self, kind: Kind, index: u64, millis: bool) -> Ver {
        let lud = self.base_lud(kind, index, millis);
        let back = (self.h(kind, index, 98) % (20 * 86_400)) as i64 * 1_000_000;
        let back_ms = if millis {
            (self.h(kind, index, 97) % 1000) as i64 * 1000
        } else {
            0
        };
        Ver {
            version: 0,
            lud,
            created: (lud - back - back_ms).max(EPOCH_MICROS - 30 * DAY_MICROS),
        }
    }

    fn ts(micros: i64, millis: bool) -> V {
        if millis {
            V::Ts(ms(micros), true)
        } else {
            V::Ts(micros - micros.rem_euclid(1_000_000), false)
        }
    }

    fn supplier_name(s: u64) -> String {
        let a = NAME_A[(s % 16) as usize];
        let b = NAME_B[((s / 16) % 12) as usize];
        let c = NAME_C[((s / 192) % 4) as usize];
        let round = s / 768;
        let mut name = String::with_capacity(a.len() + b.len() + c.len() + 24);
        for (i, part) in [a, b, c].into_iter().enumerate() {
            if i > 0 {
                name.push(' ');
            }
            name.push_str(part);
        }
        if round > 0 {
            name.push(' ');
            push_number(&mut name, round + 1, 0);
        }
        name
    }

    fn supplier_number(s: u64) -> String {
        let mut number = String::with_capacity(20);
        push_number(&mut number, 1000 + s, 0);
        number
    }

    fn supplier_site_count(&self, s: u64) -> u64 {
        1 + self.h(Kind::Suppliers, s, 1) % 3
    }

    fn site_name(s: u64, k: u64) -> String {
        const SITES: [&str; 3] = ["US1 MAIN", "US1 REMIT", "UK1 MAIN"];
        let site = SITES[(k % 3) as usize];
        let mut name = String::with_capacity(site.len() + 21);
        name.push_str(site);
        name.push(' ');
        push_number(&mut name, 1000 + s, 0);
        name
    }

    fn combination(c: u64) -> Combination {
        if c < 4 {
            // The AP liability combination of each entity.
            return Combination {
                entity: c,
                department: 0,
                account: ASSETS.len() as u64,
                sub: 5,
                location: 0,
            };
        }
        const PRODUCT: u64 = 4 * 24 * 60 * 5 * 10;
        let mut x = ((c - 4) * 7919 + 13) % PRODUCT;
        let entity = x % 4;
        x /= 4;
        let department = x % 24;
        x /= 24;
        let account = x % 60;
        x /= 60;
        let sub = x % 5;
        x /= 5;
        Combination {
            entity,
            department,
            account,
            sub,
            location: x % 10,
        }
    }

    /// The code and description of value `k` of value set `set`.
    fn segment_value(set: usize, k: u64) -> (String, String, char) {
        match VALUE_SETS[set].segment {
            "account" => {
                let k = k as usize;
                let (base, names, kk, ty) = if k < 10 {
                    (1100, &ASSETS[..], k, 'A')
                } else if k < 18 {
                    (2100, &LIABILITIES[..], k - 10, 'L')
                } else if k < 22 {
                    (3100, &EQUITY[..], k - 18, 'O')
                } else if k < 30 {
                    (4100, &REVENUE[..], k - 22, 'R')
                } else {
                    (5100, &EXPENSES[..], k - 30, 'E')
                };
                let name = names.get(kk).copied().unwrap_or("Other");
                ((base + 10 * kk).to_string(), name.to_owned(), ty)
            }
            "department" => {
                const DEPTS: [&str; 8] = [
                    "Finance",
                    "Sales",
                    "Marketing",
                    "Engineering",
                    "Operations",
                    "Human Resources",
                    "Legal",
                    "Facilities",
                ];
                (
                    (1100 + 100 * k).to_string(),
                    format!("{} {}", DEPTS[(k % 8) as usize], k / 8 + 1),
                    ' ',
                )
            }
            "entity" => {
                const ENTITIES: [&str; 4] = [
                    "US Operations",
                    "UK Operations",
                    "Germany Operations",
                    "Canada Operations",
                ];
                (
                    (101 + k).to_string(),
                    ENTITIES[(k % 4) as usize].to_owned(),
                    ' ',
                )
            }
            "location" => {
                const CITIES: [&str; 10] = [
                    "New York", "Chicago", "Austin", "Seattle", "Boston", "London", "Berlin",
                    "Toronto", "Denver", "Atlanta",
                ];
                (
                    (100 + 10 * k).to_string(),
                    CITIES[(k % 10) as usize].to_owned(),
                    ' ',
                )
            }
            _ => (
                format!("{k:03}"),
                if k == 0 {
                    "No sub-account".to_owned()
                } else {
                    format!("Sub-account {k}")
                },
                ' ',
            ),
        }
    }

    fn segment_index(segment: &str) -> usize {
        VALUE_SETS
            .iter()
            .position(|s| s.segment == segment)
            .unwrap_or(0)
    }

    fn segment_code(segment: &str, k: u64) -> String {
        Self::segment_value(Self::segment_index(segment), k).0
    }

    /// `entity-department-account-subAccount-location` of combination `c`.
    pub(crate) fn combination_string(&self, c: u64) -> Cow<'static, str> {
        let (text, ends) = COMBINATIONS.get_or_init(|| {
            let mut text = String::new();
            let mut ends = Vec::with_capacity(MAX_COMBINATIONS as usize);
            for c in 0..MAX_COMBINATIONS {
                text.push_str(&Self::build_combination_string(c));
                ends.push(text.len());
            }
            (text, ends)
        });
        let span = usize::try_from(c).ok().and_then(|i| {
            let start = if i == 0 { 0 } else { *ends.get(i - 1)? };
            text.get(start..*ends.get(i)?)
        });
        match span {
            Some(s) => Cow::Borrowed(s),
            None => Cow::Owned(Self::build_combination_string(c)),
        }
    }

    fn build_combination_string(c: u64) -> String {
        let x = Self::combination(c);
        format!(
            "{}-{}-{}-{}-{}",
            Self::segment_code("entity", x.entity),
            Self::segment_code("department", x.department),
            Self::segment_code("account", x.account),
            Self::segment_code("subAccount", x.sub),
            Self::segment_code("location", x.location)
        )
    }

    /// An expense combination chosen by `h`.
    fn expense_combination(&self, h: u64) -> u64 {
        let n = self.sizes.combinations.max(5);
        let start = 4 + h % (n - 4);
        for step in 0..n {
            let c = 4 + (start - 4 + step) % (n - 4);
            if Self::combination(c).account >= 30 {
                return c;
            }
        }
        start
    }

    /// Invoice `i`'s supplier index.
    fn invoice_supplier(&self, i: u64) -> u64 {
        self.h(Kind::Invoices, i, 1) % self.sizes.suppliers.max(1)
    }

    fn invoice_line_cents(&self, i: u64, line: u64) -> i64 {
        let h = self.h(Kind::Invoices, i, 100 + line);
        let cents = 1_000 + (h % 500_000) as i64;
        if self.invoice_is_credit(i) {
            -cents
        } else {
            cents
        }
    }

    /// Credit memos are among the unpaid invoices.
    fn invoice_is_credit(&self, i: u64) -> bool {
        self.h(Kind::Invoices, i, 2).is_multiple_of(20) && self.invoice_payment(i).is_none()
    }

    fn invoice_lines(&self, i: u64) -> u64 {
        1 + self.h(Kind::Invoices, i, 3) % 3
    }

    fn invoice_total(&self, i: u64) -> i64 {
        (0..self.invoice_lines(i))
            .map(|l| self.invoice_line_cents(i, l))
            .sum()
    }

    fn invoice_currency(&self, i: u64) -> &'static str {
        if self.h(Kind::Invoices, i, 4).is_multiple_of(10) {
            "EUR"
        } else {
            "USD"
        }
    }

    /// The invoice index paid by payment `j`.
    pub(crate) fn payment_invoice(&self, j: u64) -> u64 {
        let n = u128::from(self.sizes.invoices);
        let p = u128::from(self.sizes.payments.max(1));
        (u128::from(j) * n / p) as u64
    }

    /// The payment paying base invoice `i`, if any.
    fn invoice_payment(&self, i: u64) -> Option<u64> {
        if i >= self.sizes.invoices || self.sizes.payments == 0 {
            return None;
        }
        let n = u128::from(self.sizes.invoices);
        let p = u128::from(self.sizes.payments);
        let j = (u128::from(i) * p).div_ceil(n) as u64;
        (j < self.sizes.payments && self.payment_invoice(j) == i).then_some(j)
    }

    /// The top-level record `index` of `kind` at `ver`.
    pub(crate) fn record(&self, kind: Kind, index: u64, ver: Ver, millis: bool) -> Rec {
        let mut r: Rec = Vec::with_capacity(32);
        self.record_into(kind, index, ver, millis, &mut r);
        r
    }

    /// The attributes of [`record`](Self::record), in wire order, into `r`
    /// (a record, or JSON text straight away).
    pub(crate) fn record_into<R: Row + ?Sized>(
        &self,
        kind: Kind,
        index: u64,
        ver: Ver,
        millis: bool,
        r: &mut R,
    ) {
        let key = self.int_key(kind, index);
        let h = |k: u64| self.h(kind, index, k);
        let v = ver.version;
        let created_day = day_of(ver.created);
        match kind {
            Kind::Invoices => {
                let s = self.invoice_supplier(index);
                let total = self.invoice_total(index);
                let cur = self.invoice_currency(index);
                let paid = self.invoice_payment(index).is_some();
                let canceled = !paid && h(5) % 50 == 0;
                let entity = if cur == "EUR" { 1 } else { 0 };
                let inv_day = created_day - (h(6) % 10) as i32;
                r.push(("InvoiceId", V::Int(key)));
                let mut number = String::with_capacity(24);
                number.push_str("INV-");
                push_number(&mut number, index + 1, 9);
                r.push(("InvoiceNumber", V::str(number)));
                r.push(("InvoiceAmount", dec(total)));
                r.push(("AmountPaid", dec(if paid { total } else { 0 })));
                r.push(("InvoiceCurrency", V::str(cur)));
                r.push(("PaymentCurrency", V::str(cur)));
                r.push(("InvoiceDate", V::Date(inv_day)));
                r.push(("AccountingDate", V::Date(inv_day)));
                r.push((
                    "BusinessUnit",
                    V::str(if cur == "EUR" {
                        "UK1 Business Unit"
                    } else {
                        "US1 Business Unit"
                    }),
                ));
                r.push(("Supplier", V::str(Self::supplier_name(s))));
                r.push(("SupplierNumber", V::str(Self::supplier_number(s))));
                r.push(("SupplierSite", V::str(Self::site_name(s, 0))));
                r.push((
                    "LegalEntity",
                    V::str(if cur == "EUR" {
                        "UK1 Legal Entity"
                    } else {
                        "US1 Legal Entity"
                    }),
                ));
                r.push((
                    "InvoiceType",
                    V::str(if self.invoice_is_credit(index) {
                        "Credit memo"
                    } else {
                        "Standard"
                    }),
                ));
                r.push((
                    "InvoiceSource",
                    V::str(pick(
                        &["Manual Invoice Entry", "Spreadsheet", "EDI Gateway"],
                        h(7),
                    )),
                ));
                let item = pick(&ITEMS, h(8));
                let mut desc = String::with_capacity(item.len() + 24);
                desc.push_str(item);
                desc.push_str(" order");
                if v > 0 {
                    desc.push_str(&format!(" (revision {v})"));
                }
                r.push(("Description", V::str(desc)));
                r.push(("PaymentTerms", V::str(pick(&TERMS, h(9)))));
                let validated = v > 0 || paid || h(10) % 5 != 0;
                r.push((
                    "ValidationStatus",
                    V::str(if validated {
                        "Validated"
                    } else {
                        "Needs revalidation"
                    }),
                ));
                r.push((
                    "ApprovalStatus",
                    V::str(if validated { "Approved" } else { "Initiated" }),
                ));
                r.push(("PaidStatus", V::str(if paid { "Paid" } else { "Unpaid" })));
                r.push((
                    "AccountingStatus",
                    V::str(if validated {
                        "Accounted"
                    } else {
                        "Unaccounted"
                    }),
                ));
                r.push(("CanceledFlag", V::Bool(canceled)));
                r.push((
                    "LiabilityDistribution",
                    V::str(self.combination_string(entity)),
                ));
                self.audit(r, ver, millis, "AP.CLERK", "AP.MANAGER");
            }
            Kind::Payments => {
                let i = self.payment_invoice(index.min(self.sizes.payments.saturating_sub(1)));
                let inserted = index >= self.sizes.payments;
                let s = self.invoice_supplier(i);
                let cur = self.invoice_currency(i);
                let amount = if inserted {
                    1_000 + (h(1) % 100_000) as i64
                } else {
                    self.invoice_total(i)
                };
                r.push(("CheckId", V::Int(key)));
                r.push(("PaymentId", V::Int(key)));
                r.push(("PaymentNumber", V::Int(10_000 + index as i64)));
                r.push(("PaymentDate", V::Date(created_day)));
                r.push(("PaymentAmount", dec(amount)));
                r.push(("PaymentCurrency", V::str(cur)));
                r.push((
                    "PaymentStatus",
                    V::str(pick(&["Negotiable", "Cleared", "Reconciled"], u64::from(v))),
                ));
                r.push(("Payee", V::str(Self::supplier_name(s))));
                r.push(("SupplierNumber", V::str(Self::supplier_number(s))));
                r.push((
                    "PaymentMethod",
                    V::str(pick(&["Check", "Electronic", "Wire"], h(2))),
                ));
                r.push((
                    "DisbursementBankAccountName",
                    V::str(if cur == "EUR" {
                        "Barclays-EUR-118"
                    } else {
                        "BofA-USD-204"
                    }),
                ));
                r.push((
                    "BusinessUnit",
                    V::str(if cur == "EUR" {
                        "UK1 Business Unit"
                    } else {
                        "US1 Business Unit"
                    }),
                ));
                r.push((
                    "AccountingStatus",
                    V::str(if v > 0 || h(3) % 4 != 0 {
                        "Accounted"
                    } else {
                        "Unaccounted"
                    }),
                ));
                self.audit(r, ver, millis, "AP.PAYMENTS", "AP.MANAGER");
            }
            Kind::Suppliers => {
                let parent = (index >= 5 && h(1) % 4 == 0).then(|| h(2) % index);
                let inactive = h(3) % 25 == 0;
                r.push(("SupplierId", V::Int(key)));
                r.push(("SupplierPartyId", V::Int(ID_SUPPLIER_PARTY + index as i64)));
                r.push(("Supplier", V::str(Self::supplier_name(index))));
                r.push(("SupplierNumber", V::str(Self::supplier_number(index))));
                r.push((
                    "AlternateName",
                    if v > 0 {
                        V::str(format!("{} (rev {v})", Self::supplier_name(index)))
                    } else {
                        V::Null
                    },
                ));
                r.push(("SupplierType", V::str("Supplier")));
                r.push(("SupplierTypeCode", V::str("SUPPLIER")));
                r.push(("TaxOrganizationType", V::str("Corporation")));
                r.push((
                    "Status",
                    V::str(if inactive { "INACTIVE" } else { "ACTIVE" }),
                ));
                r.push((
                    "InactiveDate",
                    if inactive {
                        V::Date(created_day)
                    } else {
                        V::Null
                    },
                ));
                r.push(("BusinessRelationship", V::str("SPEND_AUTHORIZED")));
                r.push((
                    "ParentSupplierId",
                    parent.map_or(V::Null, |p| V::Int(ID_SUPPLIER + p as i64)),
                ));
                r.push(("DUNSNumber", V::str(format!("{:09}", h(4) % 1_000_000_000))));
                r.push((
                    "TaxpayerId",
                    V::str(format!("{:02}-{:07}", h(5) % 100, h(6) % 10_000_000)),
                ));
                r.push(("TaxpayerCountry", V::str("United States")));
                r.push(("OneTimeSupplierFlag", V::Bool(h(7) % 30 == 0)));
                self.audit(r, ver, millis, "PROC.ADMIN", "PROC.ADMIN");
            }
            Kind::PurchaseOrders => {
                let s = self.h(kind, index, 1) % self.sizes.suppliers.max(1);
                let total = self.po_total(index);
                r.push(("POHeaderId", V::Int(key)));
                r.push(("OrderNumber", V::str(format!("US{}", 164_000 + index))));
                r.push(("ProcurementBU", V::str("US1 Business Unit")));
                r.push(("Supplier", V::str(Self::supplier_name(s))));
                r.push(("SupplierId", V::Int(ID_SUPPLIER + s as i64)));
                r.push(("SupplierSite", V::str(Self::site_name(s, 0))));
                r.push(("Buyer", V::str(pick(&BUYERS, h(2)))));
                r.push((
                    "Status",
                    V::str(pick(
                        &[
                            "OPEN",
                            "CLOSED FOR RECEIVING",
                            "CLOSED FOR INVOICING",
                            "CLOSED",
                        ],
                        h(3) + u64::from(v),
                    )),
                ));
                r.push(("CurrencyCode", V::str("USD")));
                r.push(("Total", dec(total)));
                r.push(("Ordered", dec(total)));
                let mut desc = format!("{} purchase", pick(&ITEMS, h(4)));
                if v > 0 {
                    desc.push_str(&format!(" (revision {v})"));
                }
                r.push(("Description", V::str(desc)));
                r.push(("PaymentTerms", V::str(pick(&TERMS, h(5)))));
                self.audit(r, ver, millis, "PROC.BUYER", "PROC.BUYER");
            }
            Kind::ReceivablesInvoices => {
                let cust = (h(1) % CUSTOMERS.len() as u64) as usize;
                let total = self.ar_total(index);
                let paid_part = if v > 0 { total / 2 } else { total };
                r.push(("CustomerTransactionId", V::Int(key)));
                r.push(("TransactionNumber", V::str(format!("{}", 500_000 + index))));
                r.push(("TransactionDate", V::Date(created_day)));
                r.push(("TransactionType", V::str("Invoice")));
                r.push(("TransactionSource", V::str("Manual")));
                r.push(("BusinessUnit", V::str("US1 Business Unit")));
                r.push(("BillToCustomerName", V::str(CUSTOMERS[cust])));
                r.push(("BillToCustomerNumber", V::str(format!("{}", 20_000 + cust))));
                r.push(("BillToSite", V::str(format!("{}", 30_000 + cust))));
                r.push(("InvoiceCurrencyCode", V::str("USD")));
                r.push(("EnteredAmount", dec(total)));
                r.push(("InvoiceBalanceAmount", dec(paid_part)));
                r.push((
                    "InvoiceStatus",
                    V::str(if h(2) % 6 == 0 && v == 0 {
                        "Incomplete"
                    } else {
                        "Complete"
                    }),
                ));
                r.push(("DueDate", V::Date(created_day + 30)));
                r.push(("PaymentTerms", V::str("Net 30")));
                r.push(("AccountingDate", V::Date(created_day)));
                r.push((
                    "CrossReference",
                    if v > 0 {
                        V::str(format!("REV-{v}"))
                    } else {
                        V::Null
                    },
                ));
                self.audit(r, ver, millis, "AR.CLERK", "AR.MANAGER");
            }
            Kind::JournalBatches => {
                let (dr, _) = self.batch_totals(index);
                let day = created_day;
                let period = period_name(day);
                r.push(("JeBatchId", V::Int(key)));
                r.push((
                    "BatchName",
                    V::str(format!("Manual {} {}", key % 100_000_000, period)),
                ));
                r.push((
                    "BatchDescription",
                    V::str(if v > 0 {
                        format!("Accruals {period} (revision {v})")
                    } else {
                        format!("Accruals {period}")
                    }),
                ));
                r.push(("DefaultPeriodName", V::str(period)));
                r.push(("AccountedPeriodType", V::str("Month")));
                r.push(("Status", V::str("P")));
                r.push(("StatusMeaning", V::str("Posted")));
                r.push(("ApprovalStatusMeaning", V::str("Not required")));
                r.push(("PostedDate", V::Date(day)));
                r.push(("ActualFlagMeaning", V::str("Actual")));
                r.push((
                    "UserJeSourceName",
                    V::str(pick(
                        &["Manual", "Spreadsheet", "Payables", "Receivables"],
                        h(1),
                    )),
                ));
                r.push(("ChartOfAccountsName", V::str("US Chart of Accounts")));
                r.push(("ControlTotal", V::Null));
                r.push(("RunningTotalDr", dec(dr)));
                r.push(("RunningTotalCr", dec(dr)));
                r.push(("RunningTotalAccountedDr", dec(dr)));
                r.push(("RunningTotalAccountedCr", dec(dr)));
                r.push(("ReversalFlag", V::str("N")));
                r.push(("ReversalPeriod", V::Null));
                self.audit(r, ver, millis, "GL.ACCOUNTANT", "GL.ACCOUNTANT");
            }
            Kind::AccountCombinations => {
                let x = Self::combination(index);
                let (_, _, ty) = Self::segment_value(Self::segment_index("account"), x.account);
                r.push(("_CODE_COMBINATION_ID", V::Int(key)));
                r.push(("_CHART_OF_ACCOUNTS_ID", V::Int(COA_NUMBER)));
                r.push(("AccountType", V::str(ty.to_string())));
                r.push((
                    "EnabledFlag",
                    V::str(if h(1) % 40 == 0 { "N" } else { "Y" }),
                ));
                r.push(("StartDateActive", V::Date(days_from_civil(2020, 1, 1))));
                r.push(("EndDateActive", V::Null));
                r.push(("SummaryFlag", V::str("N")));
                r.push(("DetailPostingAllowedFlag", V::str("Y")));
                r.push(("DetailBudgetingAllowedFlag", V::str("Y")));
                r.push(("FinancialCategory", V::Null));
                r.push(("entity", V::str(Self::segment_code("entity", x.entity))));
                r.push((
                    "department",
                    V::str(Self::segment_code("department", x.department)),
                ));
                r.push(("account", V::str(Self::segment_code("account", x.account))));
                r.push((
                    "subAccount",
                    V::str(Self::segment_code("subAccount", x.sub)),
                ));
                r.push((
                    "location",
                    V::str(Self::segment_code("location", x.location)),
                ));
            }
            Kind::ChartsOfAccounts => {
                r.push(("StructureInstanceId", V::Int(key)));
                r.push(("StructureInstanceNumber", V::Int(COA_NUMBER)));
                r.push(("StructureInstanceCode", V::str("US_COA")));
                r.push(("Name", V::str("US Chart of Accounts")));
                r.push(("EnabledFlag", V::str("Y")));
            }
            Kind::Ledgers => {
                let (name, cur) = if index == 0 {
                    ("US Primary Ledger", "USD")
                } else {
                    ("UK Primary Ledger", "GBP")
                };
                r.push(("LedgerId", V::Int(key)));
                r.push(("LedgerName", V::str(name)));
                r.push(("LedgerType", V::str("PRIMARY")));
                r.push(("CurrencyCode", V::str(cur)));
                r.push(("ChartOfAccountsStructureId", V::Int(COA_NUMBER)));
                r.push(("AccountingCalendar", V::str("Monthly")));
            }
            Kind::ValueSets => {
                let set = &VALUE_SETS[(index as usize).min(VALUE_SETS.len() - 1)];
                r.push(("ValueSetId", V::Int(key)));
                r.push(("ValueSetCode", V::str(set.code)));
                r.push(("Description", V::str(set.description)));
                r.push(("ModuleName", V::str("General Ledger")));
                r.push(("ValidationType", V::str("INDEPENDENT")));
                r.push(("ValueDataType", V::str("VARCHAR2")));
                r.push(("MaximumLength", V::Int(25)));
            }
        }
    }

    fn audit<R: Row + ?Sized>(
        &self,
        r: &mut R,
        ver: Ver,
        millis: bool,
        creator: &'static str,
        updater: &'static str,
    ) {
        r.push(("CreationDate", Self::ts(ver.created, millis)));
        r.push(("CreatedBy", V::str(creator)));
        r.push(("LastUpdateDate", Self::ts(ver.lud, millis)));
        r.push((
            "LastUpdatedBy",
            V::str(if ver.version > 0 { updater } else { creator }),
        ));
    }

    fn po_lines(&self, p: u64) -> u64 {
        1 + self.h(Kind::PurchaseOrders, p, 10) % 3
    }

    fn po_line(&self, p: u64, l: u64) -> (i64, i64) {
        let qty = 1 + (self.h(Kind::PurchaseOrders, p, 20 + l) % 20) as i64;
        let price = 500 + (self.h(Kind::PurchaseOrders, p, 40 + l) % 200_000) as i64;
        (qty, price)
    }

    fn po_total(&self, p: u64) -> i64 {
        (0..self.po_lines(p))
            .map(|l| {
                let (q, c) = self.po_line(p, l);
                q * c
            })
            .sum()
    }

    fn ar_lines(&self, a: u64) -> u64 {
        1 + self.h(Kind::ReceivablesInvoices, a, 10) % 3
    }

    fn ar_line(&self, a: u64, l: u64) -> (i64, i64) {
        let qty = 1 + (self.h(Kind::ReceivablesInvoices, a, 20 + l) % 10) as i64;
        let price = 1_000 + (self.h(Kind::ReceivablesInvoices, a, 40 + l) % 90_000) as i64;
        (qty, price)
    }

    fn ar_total(&self, a: u64) -> i64 {
        (0..self.ar_lines(a))
            .map(|l| {
                let (q, c) = self.ar_line(a, l);
                q * c
            })
            .sum()
    }

    fn batch_headers(&self, b: u64) -> u64 {
        1 + self.h(Kind::JournalBatches, b, 10) % 2
    }

    fn header_lines(&self, b: u64, hd: u64) -> u64 {
        2 + self.h(Kind::JournalBatches, b, 20 + hd) % 3
    }

    fn header_line_cents(&self, b: u64, hd: u64, l: u64) -> i64 {
        1_000 + (self.h(Kind::JournalBatches, b, 1000 + hd * 16 + l) % 1_000_000) as i64
    }

    /// (debits, credits) of a header: every debit line but the last is
    /// random and the last line credits the sum, so each header balances.
    fn header_total(&self, b: u64, hd: u64) -> i64 {
        let n = self.header_lines(b, hd);
        (0..n - 1).map(|l| self.header_line_cents(b, hd, l)).sum()
    }

    fn batch_totals(&self, b: u64) -> (i64, i64) {
        let t: i64 = (0..self.batch_headers(b))
            .map(|hd| self.header_total(b, hd))
            .sum();
        (t, t)
    }

    /// Rows of child collection `child` under the top-level record
    /// `(kind, index, ver)`; `parent` is the child row the collection hangs
    /// from for grandchildren (`None` for direct children).
    ///
    /// Child rows share their top-level record's version and timestamps:
    /// whether a child edit bumps the header's `LastUpdateDate` is
    /// UNCONFIRMED, and the sandbox takes the reading under which a poller
    /// that re-reads children of changed parents sees every child change.
    /// Journal lines carry no `LastUpdateDate` (UNCONFIRMED in the
    /// reference); value-set values carry none either.
    pub(crate) fn children(
        &self,
        kind: Kind,
        index: u64,
        ver: Ver,
        millis: bool,
        parent: Option<&Rec>,
        child: &str,
    ) -> Vec<Rec> {
        let mut rows = Vec::new();
        self.children_into(
            kind,
            index,
            ver,
            millis,
            parent.map(|p| p as &dyn Fields),
            child,
            &mut rows,
        );
        rows
    }

    /// The rows of [`children`](Self::children), in order, into `rows`
    /// (records, or JSON text straight away); `parent` answers the integer
    /// attributes of the child row the collection hangs from.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn children_into<R: Rows + ?Sized>(
        &self,
        kind: Kind,
        index: u64,
        ver: Ver,
        millis: bool,
        parent: Option<&dyn Fields>,
        child: &str,
        rows: &mut R,
    ) {
        let key = self.int_key(kind, index);
        let day = day_of(ver.created);
        let pint = |f: &str| parent.and_then(|p| p.int(f));
        match (kind, child) {
            (Kind::Invoices, "invoiceLines") => {
                for l in 0..self.invoice_lines(index) {
                    let cents = self.invoice_line_cents(index, l);
                    let qty = 1 + (self.h(kind, index, 200 + l) % 5) as i64;
                    let r = rows.row();
                    r.push(("InvoiceId", V::Int(key)));
                    r.push(("LineNumber", V::Int(l as i64 + 1)));
                    r.push(("LineType", V::str("Item")));
                    r.push(("LineAmount", dec(cents)));
                    r.push(("AccountingDate", V::Date(day)));
                    r.push((
                        "Description",
                        V::str(pick(&ITEMS, self.h(kind, index, 300 + l))),
                    ));
                    r.push((
                        "DistributionCombination",
                        V::str(self.combination_string(self.invoice_dist_combination(index, l))),
                    ));
                    r.push(("Quantity", V::Dec(qty, 0)));
                    // Unit price to 4 places; the line amount stays the
                    // authoritative figure.
                    r.push(("UnitPrice", V::Dec(cents * 100 / qty, 4)));
                    r.push(("CanceledFlag", V::Bool(false)));
                    self.audit(r, ver, millis, "AP.CLERK", "AP.MANAGER");
                }
            }
            (Kind::Invoices, "invoiceDistributions") => {
                let only_line = pint("LineNumber");
                for l in 0..self.invoice_lines(index) {
                    if only_line.is_some_and(|n| n != l as i64 + 1) {
                        continue;
                    }
                    let r = rows.row();
                    r.push((
                        "InvoiceDistributionId",
                        V::Int(ID_INVOICE_DIST + index as i64 * 8 + l as i64),
                    ));
                    r.push(("LineNumber", V::Int(l as i64 + 1)));
                    r.push(("DistributionLineNumber", V::Int(1)));
                    r.push(("DistributionLineType", V::str("Item")));
                    r.push(("DistributionAmount", dec(self.invoice_line_cents(index, l))));
                    r.push((
                        "DistributionCombination",
                        V::str(self.combination_string(self.invoice_dist_combination(index, l))),
                    ));
                    r.push(("AccountingDate", V::Date(day)));
                    r.push((
                        "Description",
                        V::str(pick(&ITEMS, self.h(kind, index, 300 + l))),
                    ));
                    self.audit(r, ver, millis, "AP.CLERK", "AP.MANAGER");
                }
            }
            (Kind::Invoices, "invoiceInstallments") => {
                let total = self.invoice_total(index);
                let n = 1 + self.h(kind, index, 400) % 2;
                let paid = self.invoice_payment(index).is_some();
                let mut left = total;
                for k in 0..n {
                    let gross = if k + 1 == n { left } else { total / 2 };
                    left -= gross;
                    let r = rows.row();
                    r.push(("InvoiceId", V::Int(key)));
                    r.push(("InstallmentNumber", V::Int(k as i64 + 1)));
                    r.push(("DueDate", V::Date(day + 30 * (k as i32 + 1))));
                    r.push(("GrossAmount", dec(gross)));
                    r.push(("UnpaidAmount", dec(if paid { 0 } else { gross })));
                    r.push(("HoldFlag", V::Bool(false)));
                    self.audit(r, ver, millis, "AP.CLERK", "AP.MANAGER");
                }
            }
            (Kind::Payments, "relatedInvoices") if index < self.sizes.payments => {
                let i = self.payment_invoice(index);
                rows.row().fields([
                    (
                        "InvoicePaymentId",
                        V::Int(ID_INVOICE_PAYMENT + index as i64),
                    ),
                    ("InvoiceId", V::Int(ID_INVOICE + i as i64)),
                    ("InvoiceNumber", V::str(format!("INV-{:09}", i + 1))),
                    ("AmountPaid", dec(self.invoice_total(i))),
                    ("InvoiceCurrency", V::str(self.invoice_currency(i))),
                    ("AccountingDate", V::Date(day)),
                ]);
            }
            (Kind::Suppliers, "sites") => {
                for k in 0..self.supplier_site_count(index) {
                    let r = rows.row();
                    r.push((
                        "SupplierSiteId",
                        V::Int(ID_SUPPLIER_SITE + index as i64 * 4 + k as i64),
                    ));
                    r.push(("SupplierSite", V::str(Self::site_name(index, k))));
                    let uk = k % 3 == 2;
                    r.push((
                        "ProcurementBU",
                        V::str(if uk {
                            "UK1 Business Unit"
                        } else {
                            "US1 Business Unit"
                        }),
                    ));
                    r.push(("ProcurementBUId", V::Int(ID_BU_US + i64::from(uk))));
                    r.push((
                        "AddressName",
                        V::str(format!("{} HQ", Self::supplier_name(index))),
                    ));
                    r.push(("PurchasingSiteFlag", V::Bool(k % 3 != 1)));
                    r.push(("PaySiteFlag", V::Bool(true)));
                    r.push(("PrimaryPaySiteFlag", V::Bool(k == 0)));
                    r.push(("SourcingOnlySiteFlag", V::Bool(false)));
                    r.push((
                        "PaymentTerms",
                        V::str(pick(&TERMS, self.h(kind, index, 50 + k))),
                    ));
                    r.push(("InactiveDate", V::Null));
                    self.audit(r, ver, millis, "PROC.ADMIN", "PROC.ADMIN");
                }
            }
            (Kind::PurchaseOrders, "lines") => {
                for l in 0..self.po_lines(index) {
                    let (q, c) = self.po_line(index, l);
                    rows.row().fields([
                        ("POLineId", V::Int(ID_PO_LINE + index as i64 * 4 + l as i64)),
                        ("LineNumber", V::Int(l as i64 + 1)),
                        (
                            "ItemDescription",
                            V::str(pick(&ITEMS, self.h(kind, index, 60 + l))),
                        ),
                        ("Quantity", V::Dec(q, 0)),
                        ("UOM", V::str("Each")),
                        ("Price", dec(c)),
                        ("Ordered", dec(q * c)),
                        ("CategoryName", V::str("Miscellaneous")),
                    ]);
                }
            }
            (Kind::PurchaseOrders, "schedules") => {
                if let Some(line_id) = pint("POLineId") {
                    let l = (line_id - ID_PO_LINE - index as i64 * 4).max(0) as u64;
                    let (q, _) = self.po_line(index, l);
                    rows.row().fields([
                        (
                            "LineLocationId",
                            V::Int(ID_PO_SCHEDULE + index as i64 * 4 + l as i64),
                        ),
                        ("ScheduleNumber", V::Int(1)),
                        ("Quantity", V::Dec(q, 0)),
                        ("RequestedDeliveryDate", V::Date(day + 14)),
                        ("ShipToLocation", V::str("New York HQ")),
                    ]);
                }
            }
            (Kind::ReceivablesInvoices, "receivablesInvoiceLines") => {
                for l in 0..self.ar_lines(index) {
                    let (q, c) = self.ar_line(index, l);
                    rows.row().fields([
                        (
                            "CustomerTransactionLineId",
                            V::Int(ID_AR_LINE + index as i64 * 4 + l as i64),
                        ),
                        ("LineNumber", V::Int(l as i64 + 1)),
                        (
                            "Description",
                            V::str(pick(&ITEMS, self.h(kind, index, 60 + l))),
                        ),
                        ("Quantity", V::Dec(q, 0)),
                        ("UnitSellingPrice", dec(c)),
                        ("LineAmount", dec(q * c)),
                    ]);
                }
            }
            (Kind::JournalBatches, "journalHeaders") => {
                let period = period_name(day);
                for hd in 0..self.batch_headers(index) {
                    let t = self.header_total(index, hd);
                    let r = rows.row();
                    r.push((
                        "JeHeaderId",
                        V::Int(ID_HEADER + index as i64 * 4 + hd as i64),
                    ));
                    r.push((
                        "JournalName",
                        V::str(format!("Accrual {} {}", hd + 1, period)),
                    ));
                    r.push((
                        "Description",
                        V::str(format!("Month-end accrual {}", hd + 1)),
                    ));
                    r.push(("PeriodName", V::str(period.clone())));
                    r.push(("DefaultEffectiveDate", V::Date(day)));
                    r.push(("LedgerName", V::str("US Primary Ledger")));
                    r.push(("LegalEntityName", V::str("US1 Legal Entity")));
                    r.push(("UserJeCategoryName", V::str("Accrual")));
                    r.push(("CurrencyCode", V::str("USD")));
                    r.push(("CurrencyConversionRate", V::Dec(1, 0)));
                    r.push(("RunningTotalAccountedDr", dec(t)));
                    r.push(("RunningTotalAccountedCr", dec(t)));
                    r.push(("ExternalReference", V::Null));
                    r.push(("CreationDate", Self::ts(ver.created, millis)));
                    r.push(("LastUpdateDate", Self::ts(ver.lud, millis)));
                }
            }
            (Kind::JournalBatches, "journalLines") => {
                if let Some(header_id) = pint("JeHeaderId") {
                    let hd = (header_id - ID_HEADER - index as i64 * 4).max(0) as u64;
                    let n = self.header_lines(index, hd);
                    let total = self.header_total(index, hd);
                    for l in 0..n {
                        let last = l + 1 == n;
                        let amount = if last {
                            total
                        } else {
                            self.header_line_cents(index, hd, l)
                        };
                        let combo = 4 + self.h(kind, index, 2000 + hd * 16 + l)
                            % (self.sizes.combinations.max(5) - 4);
                        let (dr, cr) = if last {
                            (V::Null, dec(amount))
                        } else {
                            (dec(amount), V::Null)
                        };
                        let r = rows.row();
                        r.fields([
                            ("JeHeaderId", V::Int(header_id)),
                            ("JeLineNumber", V::Int(l as i64 + 1)),
                            ("AccountCombination", V::str(self.combination_string(combo))),
                            ("EnteredDr", dr.clone()),
                            ("EnteredCr", cr.clone()),
                            ("AccountedDr", dr),
                            ("AccountedCr", cr),
                            ("CurrencyCode", V::str("USD")),
                            ("Description", V::str(format!("Accrual line {}", l + 1))),
                            ("Reference1", V::str(format!("ACR-{}", key % 1_000_000))),
                        ]);
                        for name in [
                            "Reference2",
                            "Reference3",
                            "Reference4",
                            "Reference5",
                            "Reference6",
                            "Reference7",
                            "Reference8",
                            "Reference9",
                            "Reference10",
                        ] {
                            r.push((name, V::Null));
                        }
                    }
                }
            }
            (Kind::ValueSets, "values") => {
                let set = (index as usize).min(VALUE_SETS.len() - 1);
                for k in 0..VALUE_SETS[set].count {
                    let (code, desc, _) = Self::segment_value(set, k);
                    rows.row().fields([
                        (
                            "ValueId",
                            V::Int(ID_VALUE + set as i64 * 100_000 + k as i64),
                        ),
                        ("Value", V::str(code)),
                        ("Description", V::str(desc)),
                        ("EnabledFlag", V::str("Y")),
                        ("StartDateActive", V::Date(days_from_civil(2020, 1, 1))),
                        // 4712-12-31: Oracle's open-ended end date.
                        ("EndDateActive", V::Date(days_from_civil(4712, 12, 31))),
                        ("SortOrder", V::Int(k as i64 + 1)),
                    ]);
                }
            }
            _ => {}
        }
    }

    fn invoice_dist_combination(&self, i: u64, l: u64) -> u64 {
        self.expense_combination(self.h(Kind::Invoices, i, 500 + l))
    }

    /// A pseudo-random number for live behaviour, from the seed and a
    /// counter (deterministic per sandbox run).
    pub(crate) fn live_random(&self, counter: u64) -> u64 {
        splitmix(self.seed ^ 0xDEAD_BEEF ^ splitmix(counter))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::get;
    use crate::resources::{RESOURCES, by_kind};

    fn names(r: &Rec) -> Vec<&'static str> {
        r.iter().map(|(n, _)| *n).collect()
    }

    fn check_node(
        g: &Gen,
        kind: Kind,
        index: u64,
        ver: Ver,
        node: &crate::resources::Node,
        parent: Option<&Rec>,
    ) {
        for child in node.children {
            let rows = g.children(kind, index, ver, true, parent, child.name);
            for row in &rows {
                let want: Vec<_> = child.fields.iter().map(|f| f.name).collect();
                assert_eq!(names(row), want, "{}/{}", node.name, child.name);
                check_node(g, kind, index, ver, child, Some(row));
            }
        }
    }

    #[test]
    fn numbers_are_written_as_format_writes_them() {
        for (n, width) in [
            (0, 0),
            (7, 0),
            (1087, 0),
            (1, 9),
            (123_456_789, 9),
            (u64::MAX, 9),
            (5, 25),
        ] {
            let mut text = String::from("x");
            push_number(&mut text, n, width);
            assert_eq!(text, format!("x{n:0width$}"));
        }
        for s in [0, 15, 16, 767, 768, 5_000, 250_000] {
            let (a, b, c) = (
                NAME_A[(s % 16) as usize],
                NAME_B[((s / 16) % 12) as usize],
                NAME_C[((s / 192) % 4) as usize],
            );
            let want = match s / 768 {
                0 => format!("{a} {b} {c}"),
                round => format!("{a} {b} {c} {}", round + 1),
            };
            assert_eq!(Gen::supplier_name(s), want);
            assert_eq!(Gen::supplier_number(s), (1000 + s).to_string());
            assert_eq!(Gen::site_name(s, 4), format!("US1 REMIT {}", 1000 + s));
        }
    }

    #[test]
    fn records_match_their_declared_fields() {
        let g = Gen::new(7, Sizes::for_invoices(200), 1);
        for res in RESOURCES {
            for index in 0..g.base_count(res.kind).min(30) {
                let ver = g.base_ver(res.kind, index, res.ts_millis);
                let rec = g.record(res.kind, index, ver, res.ts_millis);
                let want: Vec<_> = res.node.fields.iter().map(|f| f.name).collect();
                assert_eq!(names(&rec), want, "{}", res.node.name);
                let top_children: Vec<_> = res.node.children.iter().map(|c| c.name).collect();
                for c in top_children {
                    assert!(
                        !g.children(res.kind, index, ver, true, None, c).is_empty()
                            || res.kind == Kind::Payments,
                        "{} has no {c}",
                        res.node.name
                    );
                }
                let top_rows: Vec<Rec> = Vec::new();
                drop(top_rows);
                check_node(&g, res.kind, index, ver, &res.node, None);
            }
        }
    }

    #[test]
    fn base_timestamps_are_monotonic_and_searchable() {
        for same in [1, 7, 1000] {
            let g = Gen::new(3, Sizes::for_invoices(5000), same);
            let mut prev = i64::MIN;
            for i in 0..5000 {
                let t = g.base_lud(Kind::Invoices, i, true);
                assert!(t >= prev, "index {i}");
                if i % same != 0 {
                    assert_eq!(t, prev, "index {i} shares its group's timestamp");
                }
                prev = t;
            }
            let probe = g.base_lud(Kind::Invoices, 2345, true);
            let first = g.first_index_at_or_after(Kind::Invoices, probe, true);
            assert_eq!(first, 2345 / same * same);
            let after = g.first_index_after(Kind::Invoices, probe, true);
            assert_eq!(after, ((2345 / same) + 1) * same);
        }
    }

    #[test]
    fn payments_pay_distinct_existing_invoices_with_their_amounts() {
        let g = Gen::new(11, Sizes::for_invoices(1000), 1);
        let mut seen = std::collections::HashSet::new();
        for j in 0..g.sizes().payments {
            let i = g.payment_invoice(j);
            assert!(i < 1000);
            assert!(seen.insert(i), "invoice {i} paid twice");
            let inv = g.record(Kind::Invoices, i, g.base_ver(Kind::Invoices, i, true), true);
            let pay = g.record(Kind::Payments, j, g.base_ver(Kind::Payments, j, true), true);
            assert_eq!(get(&inv, "InvoiceAmount"), get(&pay, "PaymentAmount"));
            assert_eq!(get(&inv, "SupplierNumber"), get(&pay, "SupplierNumber"));
            assert_eq!(
                get(&inv, "PaidStatus"),
                Some(&V::str("Paid")),
                "invoice {i}"
            );
        }
    }

    #[test]
    fn combinations_are_unique_and_use_existing_values() {
        let g = Gen::new(5, Sizes::for_invoices(200_000), 1);
        let n = g.sizes().combinations;
        let mut seen = std::collections::HashSet::new();
        for c in 0..n {
            assert!(
                seen.insert(g.combination_string(c)),
                "duplicate combination {c}"
            );
        }
        let res = by_kind(Kind::ValueSets);
        let mut values = std::collections::HashSet::new();
        for s in 0..5 {
            let ver = g.base_ver(Kind::ValueSets, s, true);
            for row in g.children(Kind::ValueSets, s, ver, true, None, "values") {
                if let Some(V::Str(v)) = get(&row, "Value") {
                    let v = v.to_string();
                    values.insert(v.clone());
                }
            }
        }
        assert_eq!(res.node.name, "valueSets");
        for c in 0..n.min(500) {
            for part in g.combination_string(c).split('-') {
                assert!(
                    values.contains(part),
                    "segment value {part} of combination {c}"
                );
            }
        }
    }

    #[test]
    fn journal_headers_balance() {
        let g = Gen::new(9, Sizes::for_invoices(100), 1);
        for b in 0..g.sizes().batches {
            let ver = g.base_ver(Kind::JournalBatches, b, true);
            for hd in g.children(Kind::JournalBatches, b, ver, true, None, "journalHeaders") {
                let lines = g.children(
                    Kind::JournalBatches,
                    b,
                    ver,
                    true,
                    Some(&hd),
                    "journalLines",
                );
                assert!(lines.len() >= 2);
                let sum = |f: &str| -> i64 {
                    lines
                        .iter()
                        .filter_map(|l| match get(l, f) {
                            Some(V::Dec(c, 2)) => Some(*c),
                            _ => None,
                        })
                        .sum()
                };
                assert_eq!(sum("EnteredDr"), sum("EnteredCr"), "batch {b}");
            }
        }
    }
}

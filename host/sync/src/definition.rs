//! The tenant definition file: what `ml-connector tenant apply FILE` reads.
//!
//! One TOML file per tenant says how to reach its Oracle Fusion pod and its
//! Tableau site, which reference datasets its mappings look up, and which
//! pipelines (Oracle resource → mapping → Tableau data source) run how often.
//! The field-by-field reference, with every default and range, is
//! `host/sync/TENANT_FILE.md`.
//!
//! [`parse`] reads the file into a [`TenantDefinition`] and checks it whole:
//! unknown fields are refused, every tunable has an explicit default, ranges
//! are enforced, and secrets are never written in the file: a secret field
//! holds a reference `secret:NAME` ([`SecretRef`]) to a secret stored with
//! `ml-connector secret set TENANT NAME`. Every refusal is a
//! [`DefinitionError`] that names the file, the line and column, and the
//! field path (`pipeline[0].every`; pipelines count from 0).
//!
//! The definition is what the operator asked for, not state: whether a
//! pipeline is paused, its cursor and its batches live in the store.
//! [`TenantDefinition`] serializes (to JSON, for storing and showing) with
//! the file's keys, secrets as `secret:NAME` and durations as `10m`; to read
//! one back, keep the file's text and [`parse`] it again.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::ops::Range;
use std::str::FromStr;
use std::time::Duration;

use mlc_oracle::ResourceSpec;
use mlc_tableau::ApiVersion;
use mlc_tableau::config::{MAX_API_VERSION, MIN_API_VERSION};
use serde::{Deserialize, Serialize, Serializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::{DEFAULT_MAX_RECORDS_PER_BATCH, ReferenceSources};

/// Default `[oracle] rest_path`: the Fusion REST API resource root.
pub const DEFAULT_REST_PATH: &str = "/fscmRestApi/resources/11.13.18.05";
/// Default `[oracle] max_concurrency`.
pub const DEFAULT_MAX_CONCURRENCY: usize = 4;
/// Largest `[oracle] max_concurrency`.
pub const MAX_CONCURRENCY: usize = 32;
/// Default `[oracle] page_size`: Oracle's effective cap.
pub const DEFAULT_PAGE_SIZE: u32 = mlc_oracle::config::MAX_PAGE_SIZE;
/// Default `[oracle] overlap_secs`.
pub const DEFAULT_OVERLAP_SECS: u64 = 300;
/// Largest `[oracle] overlap_secs`: one day.
pub const MAX_OVERLAP_SECS: u64 = 86_400;
/// Default `[[pipeline]] every`.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(600);
/// Shortest `[[pipeline]] every` and `reconcile`.
pub const MIN_EVERY: Duration = Duration::from_secs(60);
/// Longest `[[pipeline]] every`.
pub const MAX_EVERY: Duration = Duration::from_secs(24 * 3600);
/// Longest `[[pipeline]] reconcile`.
pub const MAX_RECONCILE: Duration = Duration::from_secs(7 * 24 * 3600);

/// The reference dataset names the host fills itself, which a
/// `[reference.value_sets]` entry may not take.
const RESERVED_DATASETS: [&str; 2] = ["suppliers", "account-combinations"];

/// The rule tenant ids, pipeline ids, secret names, plugin names and dataset
/// names follow, as shown in error messages.
const NAME_RULE: &str = "1 to 63 characters of a-z, 0-9, - and _, starting with a-z or 0-9";

// ---------------------------------------------------------------------------
// The definition
// ---------------------------------------------------------------------------

/// One tenant: its connections, its reference data and its pipelines.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TenantDefinition {
    /// Tenant id, `[a-z0-9][a-z0-9-_]{0,62}` (it names files). Required.
    pub id: String,
    /// `[oracle]`: the Oracle Fusion pod. Required.
    pub oracle: OracleSection,
    /// `[tableau]`: the Tableau site. Required.
    pub tableau: TableauSection,
    /// `[reference]`: reference datasets synced before the pipelines run
    /// (default: none).
    pub reference: ReferenceSection,
    /// `[[pipeline]]`: the pipelines, in file order (default: none).
    #[serde(rename = "pipeline")]
    pub pipelines: Vec<PipelineDefinition>,
}

impl TenantDefinition {
    /// The pipeline with this id.
    pub fn pipeline(&self, id: &str) -> Option<&PipelineDefinition> {
        self.pipelines.iter().find(|p| p.id == id)
    }

    /// Every secret the definition references, in file order.
    pub fn secrets(&self) -> Vec<&SecretRef> {
        let mut out: Vec<&SecretRef> = self.oracle.client_secret.iter().collect();
        out.push(&self.tableau.pat_secret);
        out
    }
}

/// `[oracle]`: how to reach and read the tenant's Oracle Fusion pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OracleSection {
    /// Pod root, `http://` or `https://`, e.g.
    /// `https://acme.fa.us2.oraclecloud.com`. Required.
    pub url: String,
    /// REST resource root under `url` (default [`DEFAULT_REST_PATH`]).
    pub rest_path: String,
    /// OAuth 2.0 token endpoint of the identity domain, `http(s)://`.
    /// Required.
    pub token_url: String,
    /// Client id of the confidential application. Required.
    pub client_id: String,
    /// Client secret of the confidential application, as `secret:NAME`.
    /// Required when `grant` is `client_credentials`, optional otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_secret: Option<SecretRef>,
    /// OAuth scope, e.g.
    /// `urn:opc:resource:fa:instanceid=<id>urn:opc:resource:consumer::all`.
    /// Required.
    pub scope: String,
    /// OAuth grant (default `client_credentials`).
    pub grant: Grant,
    /// Authorization endpoint, `http(s)://`. Required when `grant` is
    /// `authorization_code`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub authorize_url: Option<String>,
    /// Redirect URI registered for the application, `http(s)://`. Optional
    /// with `authorization_code`, refused otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect_uri: Option<String>,
    /// Requests in flight at once for this tenant, 1 to 32 (default 4).
    pub max_concurrency: usize,
    /// Records per page, 1 to 499 (default 499, Oracle's cap).
    pub page_size: u32,
    /// Seconds an incremental pull re-reads before its cursor, 0 to 86400
    /// (default 300).
    pub overlap_secs: u64,
}

impl OracleSection {
    /// The resource root the client reads: `url` without its trailing `/`,
    /// then `rest_path`, e.g.
    /// `https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05`.
    pub fn base_url(&self) -> String {
        format!(
            "{}{}",
            self.url.trim_end_matches('/'),
            self.rest_path.trim_end_matches('/')
        )
    }
}

/// The OAuth 2.0 grant the tenant's Oracle application uses.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Grant {
    /// Client credentials: the runtime gets tokens on its own (default).
    #[default]
    ClientCredentials,
    /// Authorization code: an operator signs in once; the runtime refreshes.
    AuthorizationCode,
}

impl Grant {
    /// The name as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::ClientCredentials => "client_credentials",
            Self::AuthorizationCode => "authorization_code",
        }
    }
}

/// `[tableau]`: the Tableau site the data sources are published to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct TableauSection {
    /// Server or pod root, `http(s)://`, e.g.
    /// `https://prod-useast-a.online.tableau.com`. Required.
    pub url: String,
    /// REST API version, e.g. `3.24` (default: negotiated with the server).
    #[serde(
        serialize_with = "serialize_api_version",
        skip_serializing_if = "Option::is_none"
    )]
    pub api_version: Option<ApiVersion>,
    /// Site content URL (default `""`, the default site of Tableau Server).
    pub site: String,
    /// Project the data sources are published into. Required.
    pub project: String,
    /// Name of the personal access token. Required.
    pub pat_name: String,
    /// Secret of the personal access token, as `secret:NAME`. Required.
    pub pat_secret: SecretRef,
}

/// `[reference]`: reference datasets the tenant's mappings look up, synced
/// in full from Oracle before the pipelines run. The default is none.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ReferenceSection {
    /// Fill the `suppliers` dataset (default false).
    pub suppliers: bool,
    /// Segment value sets: dataset name → Oracle value set code, e.g.
    /// `companies = "CORP_ENTITY"` (default empty).
    pub value_sets: BTreeMap<String, String>,
    /// Segment attributes of `accountCombinationsLOV`, in segment order, that
    /// key the `account-combinations` dataset (default empty: no such
    /// dataset).
    pub account_combination_segments: Vec<String>,
}

impl ReferenceSection {
    /// True when the tenant syncs no reference data.
    pub fn is_empty(&self) -> bool {
        !self.suppliers
            && self.value_sets.is_empty()
            && self.account_combination_segments.is_empty()
    }

    /// What the reference sync reads.
    pub fn sources(&self) -> ReferenceSources {
        ReferenceSources::from(self)
    }
}

impl From<&ReferenceSection> for ReferenceSources {
    fn from(section: &ReferenceSection) -> Self {
        Self {
            suppliers: section.suppliers,
            value_sets: section
                .value_sets
                .iter()
                .map(|(dataset, code)| (code.clone(), dataset.clone()))
                .collect(),
            combination_segments: section.account_combination_segments.clone(),
        }
    }
}

/// `[[pipeline]]`: one Oracle resource, mapped, into one Tableau data source.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PipelineDefinition {
    /// Pipeline id, `[a-z0-9][a-z0-9-_]{0,62}`, unique within the tenant.
    /// Required.
    pub id: String,
    /// The Oracle resource read. Required.
    pub resource: Resource,
    /// Tableau data source name, unique within the tenant (ignoring case).
    /// Required.
    pub datasource: String,
    /// How records are mapped: `mapping = "FILE.toml"` or `plugin = "NAME"`.
    /// Exactly one is required.
    #[serde(flatten)]
    pub mapping: Mapping,
    /// Time between cycles, 1m to 24h (default 10m).
    #[serde(serialize_with = "serialize_duration")]
    pub every: Duration,
    /// Time between full reconciliations, 1m to 7d (default: never).
    #[serde(
        serialize_with = "serialize_optional_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub reconcile: Option<Duration>,
    /// An incremental batch stops taking pages at this many records, at least
    /// 1 (default 200000).
    pub max_records_per_batch: usize,
    /// What is asked of Oracle: `"whole-records"` (default) or, for a
    /// mapping script only, `"mapped-fields"`.
    pub pull: Pull,
}

/// `pull`: what a pipeline asks Oracle for, and so what its store keeps of
/// each record.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Pull {
    /// `"whole-records"` (the default): every attribute of each record and
    /// every child collection of the resource. The store holds the records
    /// as Oracle has them, so any later mapping can be diffed, promoted
    /// and re-exported from the store.
    #[default]
    WholeRecords,
    /// `"mapped-fields"`: only what the mapping script reads (`fields=` the
    /// key, the timestamp and the attributes its columns, expressions,
    /// filter and lookup keys name; only the children it expands over).
    /// Several times less to receive, parse, hash and store; a later
    /// mapping that reads more makes the next batch pull every record
    /// again instead of re-exporting from the store. A mapping script only.
    MappedFields,
}

impl Pull {
    /// The value as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::WholeRecords => "whole-records",
            Self::MappedFields => "mapped-fields",
        }
    }
}

impl PipelineDefinition {
    /// What the pipeline pulls from Oracle.
    pub fn resource_spec(&self) -> ResourceSpec {
        self.resource.spec()
    }
}

/// How a pipeline's records are mapped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub enum Mapping {
    /// `mapping = "FILE"`: a mapping script, relative to
    /// `<mappings-dir>/<tenant>/`, ending in `.toml`.
    #[serde(rename = "mapping")]
    Script(String),
    /// `plugin = "NAME"`: a plugin the tenant loaded.
    #[serde(rename = "plugin")]
    Plugin(String),
}

/// An Oracle resource a pipeline can read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `invoices`: payables invoices with lines and distributions.
    Invoices,
    /// `payablesPayments`.
    PayablesPayments,
    /// `suppliers`.
    Suppliers,
    /// `purchaseOrders`.
    PurchaseOrders,
    /// `receivablesInvoices`.
    ReceivablesInvoices,
    /// `journalBatches`.
    JournalBatches,
    /// `accountCombinationsLOV`.
    AccountCombinationsLov,
}

impl Resource {
    /// Every resource, in the order the documentation lists them.
    pub const ALL: [Self; 7] = [
        Self::Invoices,
        Self::PayablesPayments,
        Self::Suppliers,
        Self::PurchaseOrders,
        Self::ReceivablesInvoices,
        Self::JournalBatches,
        Self::AccountCombinationsLov,
    ];

    /// Oracle's name, as written in the file.
    pub fn name(self) -> &'static str {
        match self {
            Self::Invoices => "invoices",
            Self::PayablesPayments => "payablesPayments",
            Self::Suppliers => "suppliers",
            Self::PurchaseOrders => "purchaseOrders",
            Self::ReceivablesInvoices => "receivablesInvoices",
            Self::JournalBatches => "journalBatches",
            Self::AccountCombinationsLov => "accountCombinationsLOV",
        }
    }

    /// The resource with this name (exact case).
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|r| r.name() == name)
    }

    /// What the client pulls for it.
    pub fn spec(self) -> ResourceSpec {
        match self {
            Self::Invoices => ResourceSpec::invoices(),
            Self::PayablesPayments => ResourceSpec::payables_payments(),
            Self::Suppliers => ResourceSpec::suppliers(),
            Self::PurchaseOrders => ResourceSpec::purchase_orders(),
            Self::ReceivablesInvoices => ResourceSpec::receivables_invoices(),
            Self::JournalBatches => ResourceSpec::journal_batches(),
            Self::AccountCombinationsLov => ResourceSpec::account_combinations(),
        }
    }
}

impl fmt::Display for Resource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

// ---------------------------------------------------------------------------
// Secret references
// ---------------------------------------------------------------------------

/// A reference to a stored secret: `secret:NAME` in the file. Holds the
/// name only, never the secret.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct SecretRef(String);

/// Why a text is not a secret reference. Neither variant carries the text:
/// it may be the secret itself.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SecretRefError {
    /// The text does not start with `secret:`: a literal secret.
    #[error("a literal secret is not allowed here")]
    Literal,
    /// The name after `secret:` breaks the naming rule.
    #[error("the secret name after `secret:` must be {NAME_RULE}")]
    BadName,
}

impl SecretRef {
    /// The prefix of a reference.
    pub const PREFIX: &'static str = "secret:";

    /// A reference to the secret with this name.
    pub fn new(name: &str) -> Result<Self, SecretRefError> {
        if is_name(name) {
            Ok(Self(name.to_owned()))
        } else {
            Err(SecretRefError::BadName)
        }
    }

    /// The secret's name (without `secret:`).
    pub fn name(&self) -> &str {
        &self.0
    }
}

impl FromStr for SecretRef {
    type Err = SecretRefError;

    /// Parses `secret:NAME`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.strip_prefix(Self::PREFIX) {
            Some(name) => Self::new(name),
            None => Err(SecretRefError::Literal),
        }
    }
}

impl fmt::Display for SecretRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", Self::PREFIX, self.0)
    }
}

impl Serialize for SecretRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// Why a definition file was refused, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "{file}:{line}:{column}: {}{message}",
    .field.as_ref().map(|f| format!("{f}: ")).unwrap_or_default()
)]
pub struct DefinitionError {
    /// The file name given to [`parse`].
    pub file: String,
    /// Line, from 1.
    pub line: usize,
    /// Column in characters, from 1.
    pub column: usize,
    /// Field path, e.g. `pipeline[0].every` (pipelines count from 0); `None`
    /// for a TOML syntax error.
    pub field: Option<String>,
    /// What is wrong. Never contains a secret's value.
    pub message: String,
}

// ---------------------------------------------------------------------------
// Parsing
// ---------------------------------------------------------------------------

/// Reads and checks a tenant definition. `file_name` is only used in errors.
pub fn parse(file_name: &str, text: &str) -> Result<TenantDefinition, DefinitionError> {
    let cx = Cx {
        file: file_name,
        text,
    };
    let raw: RawTenant = toml::from_str(text).map_err(|e| cx.toml_error(&e))?;
    cx.tenant(raw)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawTenant {
    id: Spanned<String>,
    oracle: Spanned<RawOracle>,
    tableau: Spanned<RawTableau>,
    #[serde(default)]
    reference: Option<Spanned<RawReference>>,
    #[serde(default)]
    pipeline: Vec<Spanned<RawPipeline>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawOracle {
    url: Spanned<String>,
    rest_path: Option<Spanned<String>>,
    token_url: Spanned<String>,
    client_id: Spanned<String>,
    client_secret: Option<Spanned<String>>,
    scope: Spanned<String>,
    grant: Option<Spanned<String>>,
    authorize_url: Option<Spanned<String>>,
    redirect_uri: Option<Spanned<String>>,
    max_concurrency: Option<Spanned<i64>>,
    page_size: Option<Spanned<i64>>,
    overlap_secs: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawTableau {
    url: Spanned<String>,
    api_version: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    project: Spanned<String>,
    pat_name: Spanned<String>,
    pat_secret: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawReference {
    #[serde(default)]
    suppliers: bool,
    #[serde(default)]
    value_sets: BTreeMap<Spanned<String>, Spanned<String>>,
    #[serde(default)]
    account_combination_segments: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawPipeline {
    id: Spanned<String>,
    resource: Spanned<String>,
    datasource: Spanned<String>,
    mapping: Option<Spanned<String>>,
    plugin: Option<Spanned<String>>,
    every: Option<Spanned<String>>,
    reconcile: Option<Spanned<String>>,
    max_records_per_batch: Option<Spanned<i64>>,
    pull: Option<Spanned<String>>,
}

/// The file being read, for locating errors.
struct Cx<'a> {
    file: &'a str,
    text: &'a str,
}

type Checked<T> = Result<T, DefinitionError>;

impl Cx<'_> {
    fn error(&self, span: Range<usize>, field: Option<String>, message: String) -> DefinitionError {
        let (line, column) = line_column(self.text, span.start);
        DefinitionError {
            file: self.file.to_owned(),
            line,
            column,
            field,
            message,
        }
    }

    fn at<T>(
        &self,
        value: &Spanned<T>,
        field: &str,
        message: impl Into<String>,
    ) -> DefinitionError {
        self.error(value.span(), Some(field.to_owned()), message.into())
    }

    /// A serde or syntax error from the toml crate, with the field path
    /// worked out from its span.
    fn toml_error(&self, e: &toml::de::Error) -> DefinitionError {
        let span = e.span().unwrap_or(0..0);
        let message = e.message().trim().to_owned();
        let field = DeTable::parse(self.text).ok().map(|table| {
            if let Some(missing) = message
                .strip_prefix("missing field `")
                .and_then(|rest| rest.split('`').next())
            {
                // The span is the table's (its header, or 0..0 for the file).
                let table_path = owner_path(table.get_ref(), &span, "").unwrap_or_default();
                join(&table_path, missing)
            } else {
                path_at(table.get_ref(), &span, "").unwrap_or_default()
            }
        });
        let field = field.filter(|f| !f.is_empty());
        self.error(span, field, message)
    }

    fn tenant(&self, raw: RawTenant) -> Checked<TenantDefinition> {
        let id = self.name(&raw.id, "id")?;
        let oracle = self.oracle(raw.oracle, &id)?;
        let tableau = self.tableau(raw.tableau, &id)?;
        let reference = match raw.reference {
            Some(r) => self.reference(r.into_inner())?,
            None => ReferenceSection::default(),
        };
        let mut pipelines: Vec<PipelineDefinition> = Vec::with_capacity(raw.pipeline.len());
        let mut ids: HashMap<String, usize> = HashMap::new();
        let mut datasources: HashMap<String, usize> = HashMap::new();
        for (i, p) in raw.pipeline.into_iter().enumerate() {
            let path = format!("pipeline[{i}]");
            if let Some(first) = ids.get(p.get_ref().id.get_ref().as_str()) {
                return Err(self.at(
                    &p.get_ref().id,
                    &format!("{path}.id"),
                    format!(
                        "{:?} is already the id of pipeline[{first}]",
                        p.get_ref().id.get_ref()
                    ),
                ));
            }
            let key = p.get_ref().datasource.get_ref().trim().to_lowercase();
            if let Some(first) = datasources.get(&key) {
                return Err(self.at(
                    &p.get_ref().datasource,
                    &format!("{path}.datasource"),
                    format!(
                        "{:?} is already the data source of pipeline[{first}] (names are compared ignoring case)",
                        p.get_ref().datasource.get_ref()
                    ),
                ));
            }
            let pipeline = self.pipeline(p, &path)?;
            ids.insert(pipeline.id.clone(), i);
            datasources.insert(key, i);
            pipelines.push(pipeline);
        }
        Ok(TenantDefinition {
            id,
            oracle,
            tableau,
            reference,
            pipelines,
        })
    }

    fn oracle(&self, raw: Spanned<RawOracle>, tenant: &str) -> Checked<OracleSection> {
        let header = raw.span();
        let raw = raw.into_inner();
        let url = self.url(&raw.url, "oracle.url")?;
        if url.contains("/fscmRestApi") {
            return Err(self.at(
                &raw.url,
                "oracle.url",
                "give the pod root only, e.g. https://acme.fa.us2.oraclecloud.com; the REST path goes in rest_path",
            ));
        }
        let rest_path = match &raw.rest_path {
            None => DEFAULT_REST_PATH.to_owned(),
            Some(p) => {
                let text = p.get_ref();
                if !text.starts_with('/')
                    || text.chars().any(|c| c.is_whitespace() || c.is_control())
                    || text.contains(['?', '#'])
                {
                    return Err(self.at(
                        p,
                        "oracle.rest_path",
                        format!(
                            "{text:?} is not a URL path like {DEFAULT_REST_PATH} (starts with /, no spaces, query or fragment)"
                        ),
                    ));
                }
                text.clone()
            }
        };
        let token_url = self.url(&raw.token_url, "oracle.token_url")?;
        let client_id = self.text(&raw.client_id, "oracle.client_id")?;
        let grant = match &raw.grant {
            None => Grant::default(),
            Some(g) => match g.get_ref().as_str() {
                "client_credentials" => Grant::ClientCredentials,
                "authorization_code" => Grant::AuthorizationCode,
                other => {
                    return Err(self.at(
                        g,
                        "oracle.grant",
                        format!(
                            "{other:?} is not a grant; use client_credentials or authorization_code"
                        ),
                    ));
                }
            },
        };
        let client_secret = match &raw.client_secret {
            Some(s) => Some(self.secret(s, "oracle.client_secret", tenant)?),
            None if grant == Grant::ClientCredentials => {
                return Err(self.error(
                    header,
                    Some("oracle.client_secret".to_owned()),
                    "required with grant = client_credentials (the default)".to_owned(),
                ));
            }
            None => None,
        };
        let scope = self.text(&raw.scope, "oracle.scope")?;
        let authorize_url = match (&raw.authorize_url, grant) {
            (Some(u), Grant::AuthorizationCode) => Some(self.url(u, "oracle.authorize_url")?),
            (None, Grant::AuthorizationCode) => {
                let span = raw.grant.as_ref().map_or(header, Spanned::span);
                return Err(self.error(
                    span,
                    Some("oracle.authorize_url".to_owned()),
                    "required with grant = authorization_code".to_owned(),
                ));
            }
            (Some(u), Grant::ClientCredentials) => {
                return Err(self.at(
                    u,
                    "oracle.authorize_url",
                    "only used with grant = authorization_code",
                ));
            }
            (None, Grant::ClientCredentials) => None,
        };
        let redirect_uri = match (&raw.redirect_uri, grant) {
            (Some(u), Grant::AuthorizationCode) => Some(self.url(u, "oracle.redirect_uri")?),
            (Some(u), Grant::ClientCredentials) => {
                return Err(self.at(
                    u,
                    "oracle.redirect_uri",
                    "only used with grant = authorization_code",
                ));
            }
            (None, _) => None,
        };
        let max_concurrency = self.int(
            raw.max_concurrency.as_ref(),
            "oracle.max_concurrency",
            1,
            MAX_CONCURRENCY as i64,
            DEFAULT_MAX_CONCURRENCY as i64,
        )?;
        let page_size = self.int(
            raw.page_size.as_ref(),
            "oracle.page_size",
            1,
            i64::from(mlc_oracle::config::MAX_PAGE_SIZE),
            i64::from(DEFAULT_PAGE_SIZE),
        )?;
        let overlap_secs = self.int(
            raw.overlap_secs.as_ref(),
            "oracle.overlap_secs",
            0,
            MAX_OVERLAP_SECS as i64,
            DEFAULT_OVERLAP_SECS as i64,
        )?;
        Ok(OracleSection {
            url,
            rest_path,
            token_url,
            client_id,
            client_secret,
            scope,
            grant,
            authorize_url,
            redirect_uri,
            // The ranges above keep every value within its type.
            max_concurrency: usize::try_from(max_concurrency).unwrap_or(DEFAULT_MAX_CONCURRENCY),
            page_size: u32::try_from(page_size).unwrap_or(DEFAULT_PAGE_SIZE),
            overlap_secs: u64::try_from(overlap_secs).unwrap_or(DEFAULT_OVERLAP_SECS),
        })
    }

    fn tableau(&self, raw: Spanned<RawTableau>, tenant: &str) -> Checked<TableauSection> {
        let raw = raw.into_inner();
        let url = self.url(&raw.url, "tableau.url")?;
        let api_version = match &raw.api_version {
            None => None,
            Some(v) => {
                let text = v.get_ref();
                let plain = text.split('.').count() == 2
                    && text
                        .split('.')
                        .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_digit()));
                match ApiVersion::parse(text).filter(|_| plain) {
                    Some(version) if version.is_supported() => Some(version),
                    Some(_) => {
                        return Err(self.at(
                            v,
                            "tableau.api_version",
                            format!(
                                "{text:?} is not supported; this client speaks {MIN_API_VERSION} to {MAX_API_VERSION}"
                            ),
                        ));
                    }
                    None => {
                        return Err(self.at(
                            v,
                            "tableau.api_version",
                            format!("{text:?} is not a REST API version like 3.24"),
                        ));
                    }
                }
            }
        };
        let site = match &raw.site {
            None => String::new(),
            Some(s) => {
                let text = s.get_ref();
                if !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                {
                    return Err(self.at(
                        s,
                        "tableau.site",
                        format!(
                            "{text:?} is not a site content URL (letters, digits, - and _; \"\" for the default site)"
                        ),
                    ));
                }
                text.clone()
            }
        };
        let project = self.text(&raw.project, "tableau.project")?;
        let pat_name = self.text(&raw.pat_name, "tableau.pat_name")?;
        let pat_secret = self.secret(&raw.pat_secret, "tableau.pat_secret", tenant)?;
        Ok(TableauSection {
            url,
            api_version,
            site,
            project,
            pat_name,
            pat_secret,
        })
    }

    fn reference(&self, raw: RawReference) -> Checked<ReferenceSection> {
        let mut value_sets = BTreeMap::new();
        for (dataset, code) in &raw.value_sets {
            let path = format!("reference.value_sets.{}", dataset.get_ref());
            let name = self.name(dataset, &path)?;
            if RESERVED_DATASETS.contains(&name.as_str()) {
                return Err(self.at(
                    dataset,
                    &path,
                    format!("{name:?} is a dataset the host fills itself; choose another name"),
                ));
            }
            let text = code.get_ref();
            if text.is_empty()
                || text.len() > 80
                || !text
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
            {
                return Err(self.at(
                    code,
                    &path,
                    format!(
                        "{text:?} is not a value set code like CORP_ENTITY (1 to 80 of A-Z, a-z, 0-9, _, - and .)"
                    ),
                ));
            }
            value_sets.insert(name, text.clone());
        }
        let mut segments: Vec<String> = Vec::new();
        for (i, s) in raw.account_combination_segments.iter().enumerate() {
            let path = format!("reference.account_combination_segments[{i}]");
            let text = s.get_ref();
            let identifier = text.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
                && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
            if !identifier {
                return Err(self.at(
                    s,
                    &path,
                    format!(
                        "{text:?} is not a segment attribute name like department (letters, digits and _, starting with a letter)"
                    ),
                ));
            }
            if segments.contains(text) {
                return Err(self.at(s, &path, format!("{text:?} is listed twice")));
            }
            segments.push(text.clone());
        }
        Ok(ReferenceSection {
            suppliers: raw.suppliers,
            value_sets,
            account_combination_segments: segments,
        })
    }

    fn pipeline(&self, raw: Spanned<RawPipeline>, path: &str) -> Checked<PipelineDefinition> {
        let header = raw.span();
        let raw = raw.into_inner();
        let id = self.name(&raw.id, &format!("{path}.id"))?;
        let resource = Resource::from_name(raw.resource.get_ref()).ok_or_else(|| {
            let names: Vec<&str> = Resource::ALL.iter().map(|r| r.name()).collect();
            self.at(
                &raw.resource,
                &format!("{path}.resource"),
                format!(
                    "{:?} is not a resource; use one of {}",
                    raw.resource.get_ref(),
                    names.join(", ")
                ),
            )
        })?;
        let datasource = self.text(&raw.datasource, &format!("{path}.datasource"))?;
        let mapping = match (&raw.mapping, &raw.plugin) {
            (Some(_), Some(plugin)) => {
                return Err(self.at(
                    plugin,
                    &format!("{path}.plugin"),
                    "set either mapping (a script) or plugin, not both",
                ));
            }
            (None, None) => {
                return Err(self.error(
                    header,
                    Some(format!("{path}.mapping")),
                    "set mapping (a script file such as invoices.toml) or plugin (a plugin name)"
                        .to_owned(),
                ));
            }
            (Some(script), None) => {
                let field = format!("{path}.mapping");
                let text = script.get_ref();
                if !is_script_path(text) {
                    return Err(self.at(
                        script,
                        &field,
                        format!(
                            "{text:?} is not a mapping script: a relative path ending in .toml, without .. or \\"
                        ),
                    ));
                }
                Mapping::Script(text.clone())
            }
            (None, Some(plugin)) => Mapping::Plugin(self.name(plugin, &format!("{path}.plugin"))?),
        };
        let every = match &raw.every {
            None => DEFAULT_EVERY,
            Some(e) => self.duration(e, &format!("{path}.every"), MAX_EVERY, "1m to 24h")?,
        };
        let reconcile = match &raw.reconcile {
            None => None,
            Some(r) => {
                Some(self.duration(r, &format!("{path}.reconcile"), MAX_RECONCILE, "1m to 7d")?)
            }
        };
        let max_records = self.int(
            raw.max_records_per_batch.as_ref(),
            &format!("{path}.max_records_per_batch"),
            1,
            i64::MAX,
            i64::try_from(DEFAULT_MAX_RECORDS_PER_BATCH).unwrap_or(i64::MAX),
        )?;
        let pull = match &raw.pull {
            None => Pull::default(),
            Some(v) => {
                let field = format!("{path}.pull");
                let pull = [Pull::WholeRecords, Pull::MappedFields]
                    .into_iter()
                    .find(|p| p.name() == v.get_ref())
                    .ok_or_else(|| {
                        self.at(
                            v,
                            &field,
                            format!(
                                "{:?} is not a pull; use \"whole-records\" or \"mapped-fields\"",
                                v.get_ref()
                            ),
                        )
                    })?;
                if pull == Pull::MappedFields && matches!(mapping, Mapping::Plugin(_)) {
                    return Err(self.at(
                        v,
                        &field,
                        "pull = \"mapped-fields\" needs a mapping script (mapping = \"FILE.toml\"): what a plugin reads is not known, so it pulls whole records",
                    ));
                }
                pull
            }
        };
        Ok(PipelineDefinition {
            id,
            resource,
            datasource,
            mapping,
            every,
            reconcile,
            max_records_per_batch: usize::try_from(max_records).unwrap_or(usize::MAX),
            pull,
        })
    }

    /// An id or name under [`NAME_RULE`].
    fn name(&self, value: &Spanned<String>, field: &str) -> Checked<String> {
        let text = value.get_ref();
        if is_name(text) {
            Ok(text.clone())
        } else {
            Err(self.at(value, field, format!("{text:?} must be {NAME_RULE}")))
        }
    }

    /// Free text: not blank, no control characters.
    fn text(&self, value: &Spanned<String>, field: &str) -> Checked<String> {
        let text = value.get_ref();
        if text.trim().is_empty() {
            return Err(self.at(value, field, "must not be empty"));
        }
        if text.chars().any(char::is_control) {
            return Err(self.at(value, field, "must not contain control characters"));
        }
        if text.trim() != text {
            return Err(self.at(
                value,
                field,
                format!("{text:?} must not start or end with spaces"),
            ));
        }
        Ok(text.clone())
    }

    /// An `http://` or `https://` URL with a host and no query or fragment.
    fn url(&self, value: &Spanned<String>, field: &str) -> Checked<String> {
        let text = value.get_ref();
        let Some(rest) = text
            .strip_prefix("https://")
            .or_else(|| text.strip_prefix("http://"))
        else {
            return Err(self.at(
                value,
                field,
                format!("{text:?} must start with https:// or http://"),
            ));
        };
        let host = rest.split(['/', '?', '#']).next().unwrap_or_default();
        if host.is_empty() {
            return Err(self.at(value, field, format!("{text:?} has no host")));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(self.at(value, field, format!("{text:?} must not contain spaces")));
        }
        if rest.contains(['?', '#']) {
            return Err(self.at(
                value,
                field,
                format!("{text:?} must not have a query or fragment"),
            ));
        }
        Ok(text.clone())
    }

    /// A `secret:NAME` reference; never echoes a literal.
    fn secret(&self, value: &Spanned<String>, field: &str, tenant: &str) -> Checked<SecretRef> {
        value.get_ref().parse().map_err(|e| match e {
            SecretRefError::Literal => self.at(
                value,
                field,
                format!(
                    "a literal secret is not allowed here: store it with `ml-connector secret set {tenant} NAME` and reference it as \"secret:NAME\""
                ),
            ),
            SecretRefError::BadName => self.at(value, field, e.to_string()),
        })
    }

    /// An integer in `min..=max`, or `default` when absent.
    fn int(
        &self,
        value: Option<&Spanned<i64>>,
        field: &str,
        min: i64,
        max: i64,
        default: i64,
    ) -> Checked<i64> {
        let Some(value) = value else {
            return Ok(default);
        };
        let n = *value.get_ref();
        if (min..=max).contains(&n) {
            Ok(n)
        } else if max == i64::MAX {
            Err(self.at(value, field, format!("{n} is out of range: at least {min}")))
        } else {
            Err(self.at(value, field, format!("{n} is out of range: {min} to {max}")))
        }
    }

    /// A duration between [`MIN_EVERY`] and `max` (`range` says so in words).
    fn duration(
        &self,
        value: &Spanned<String>,
        field: &str,
        max: Duration,
        range: &str,
    ) -> Checked<Duration> {
        let text = value.get_ref();
        let Some(d) = parse_duration(text) else {
            return Err(self.at(
                value,
                field,
                format!("{text:?} is not a duration like 10m, 1h or 1h30m"),
            ));
        };
        if d < MIN_EVERY || d > max {
            return Err(self.at(value, field, format!("{text:?} is out of range: {range}")));
        }
        Ok(d)
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// `[a-z0-9][a-z0-9-_]{0,62}`.
fn is_name(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit());
    first_ok
        && text.len() <= 63
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
}

/// A relative `/`-separated path ending in `.toml`, with no empty, `.` or
/// `..` component and no `\`.
fn is_script_path(text: &str) -> bool {
    text.len() > ".toml".len()
        && text.ends_with(".toml")
        && !text.starts_with('/')
        && !text.contains('\\')
        && !text.chars().any(char::is_control)
        && text
            .split('/')
            .all(|part| !part.is_empty() && part != "." && part != "..")
}

/// Parses `90s`, `10m`, `1h30m`, `7d`: whole numbers, each unit once, in the
/// order d, h, m, s.
pub fn parse_duration(text: &str) -> Option<Duration> {
    const UNITS: [(char, u64); 4] = [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)];
    let mut rest = text;
    let mut next_unit = 0;
    let mut total: u64 = 0;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits == 0 || digits > 9 {
            return None;
        }
        let n: u64 = rest.get(..digits)?.parse().ok()?;
        let unit = rest.get(digits..)?.chars().next()?;
        let offset = UNITS
            .get(next_unit..)?
            .iter()
            .position(|(u, _)| *u == unit)?;
        let (_, secs) = UNITS.get(next_unit + offset)?;
        total = total.checked_add(n.checked_mul(*secs)?)?;
        next_unit += offset + 1;
        rest = rest.get(digits + unit.len_utf8()..)?;
    }
    Some(Duration::from_secs(total))
}

/// Writes a duration as [`parse_duration`] reads it: `10m`, `1h30m`, `0s`.
pub fn format_duration(d: Duration) -> String {
    let mut secs = d.as_secs();
    if secs == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    for (unit, size) in [('d', 86_400), ('h', 3_600), ('m', 60), ('s', 1)] {
        if secs >= size {
            out.push_str(&(secs / size).to_string());
            out.push(unit);
            secs %= size;
        }
    }
    out
}

fn serialize_duration<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&format_duration(*d))
}

fn serialize_optional_duration<S: Serializer>(
    d: &Option<Duration>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_str(&format_duration(*d)),
        None => s.serialize_none(),
    }
}

fn serialize_api_version<S: Serializer>(v: &Option<ApiVersion>, s: S) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => s.collect_str(v),
        None => s.serialize_none(),
    }
}

/// Line and column (in characters), both from 1, of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut offset = offset.min(text.len());
    while !text.is_char_boundary(offset) {
        offset -= 1;
    }
    let before = text.get(..offset).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .unwrap_or_default()
        .chars()
        .count()
        + 1;
    (line, column)
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn contains(outer: &Range<usize>, inner: &Range<usize>) -> bool {
    outer.start <= inner.start && inner.end <= outer.end && !outer.is_empty()
}

/// The deepest key or value whose span holds `span`. A `[table]` header's
/// span covers the header only, so children are searched first.
fn path_at(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    table.iter().find_map(|(key, value)| {
        let path = join(prefix, key.get_ref());
        if contains(&key.span(), span) {
            return Some(path);
        }
        value_path_at(value, span, path)
    })
}

fn value_path_at(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: String,
) -> Option<String> {
    let inner = match value.get_ref() {
        DeValue::Table(t) => path_at(t, span, &path),
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| value_path_at(v, span, format!("{path}[{i}]"))),
        _ => None,
    };
    inner.or_else(|| contains(&value.span(), span).then_some(path))
}

/// The path of the table whose span is exactly `span` (a "missing field"
/// error's location); `None` for the top level.
fn owner_path(table: &DeTable<'_>, span: &Range<usize>, prefix: &str) -> Option<String> {
    table
        .iter()
        .find_map(|(key, value)| owner_value_path(value, span, join(prefix, key.get_ref())))
}

fn owner_value_path(
    value: &Spanned<DeValue<'_>>,
    span: &Range<usize>,
    path: String,
) -> Option<String> {
    match value.get_ref() {
        DeValue::Table(t) => {
            if value.span() == *span {
                return Some(path);
            }
            owner_path(t, span, &path)
        }
        DeValue::Array(a) => a
            .iter()
            .enumerate()
            .find_map(|(i, v)| owner_value_path(v, span, format!("{path}[{i}]"))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"id = "acme"

[oracle]
url = "https://acme.fa.us2.oraclecloud.com"
token_url = "https://idcs-1234.identity.oraclecloud.com/oauth2/v1/token"
client_id = "0a1b2c3d"
client_secret = "secret:oracle-client-secret"   # the name of a stored secret
scope = "urn:opc:resource:fa:instanceid=1234urn:opc:resource:consumer::all"

[tableau]
url = "https://prod-useast-a.online.tableau.com"
api_version = "3.24"
site = "acme"
project = "Finance"
pat_name = "ml-connector"
pat_secret = "secret:tableau-pat"

[[pipeline]]
id = "ap-invoices"
resource = "invoices"
datasource = "AP Invoices"
mapping = "invoices.toml"      # a script in <mappings-dir>/<tenant>/, or plugin = "name"
every = "10m"                  # 1m to 24h; default 10m
"#;

    /// The example with `from` replaced by `to` (which must occur once).
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(
            EXAMPLE.matches(from).count(),
            1,
            "{from:?} must occur once in the example"
        );
        EXAMPLE.replacen(from, to, 1)
    }

    fn ok(text: &str) -> TenantDefinition {
        match parse("acme.toml", text) {
            Ok(d) => d,
            Err(e) => panic!("expected the file to parse, got: {e}\n--- file ---\n{text}"),
        }
    }

    /// Asserts the refusal's line, field and a fragment of its message.
    #[track_caller]
    fn refused(text: &str, line: usize, field: &str, fragment: &str) -> DefinitionError {
        let e = match parse("acme.toml", text) {
            Ok(d) => panic!(
                "expected a refusal at line {line} ({field}), got {d:#?}\n--- file ---\n{text}"
            ),
            Err(e) => e,
        };
        let shown = format!("{e}");
        assert_eq!(
            (e.line, e.field.as_deref()),
            (line, Some(field)),
            "wrong location in: {shown}\n--- file ---\n{text}"
        );
        assert!(
            e.message.contains(fragment),
            "message lacks {fragment:?}: {shown}"
        );
        assert_eq!(e.file, "acme.toml");
        e
    }

    #[test]
    fn the_example_parses_with_defaults() {
        let d = ok(EXAMPLE);
        assert_eq!(d.id, "acme");
        assert_eq!(
            d.oracle.base_url(),
            "https://acme.fa.us2.oraclecloud.com/fscmRestApi/resources/11.13.18.05"
        );
        assert_eq!(d.oracle.rest_path, DEFAULT_REST_PATH);
        assert_eq!(
            d.oracle.client_secret.as_ref().map(SecretRef::name),
            Some("oracle-client-secret")
        );
        assert_eq!(d.oracle.grant, Grant::ClientCredentials);
        assert_eq!(d.oracle.authorize_url, None);
        assert_eq!(d.oracle.max_concurrency, 4);
        assert_eq!(d.oracle.page_size, 499);
        assert_eq!(d.oracle.overlap_secs, 300);
        assert_eq!(d.tableau.api_version, ApiVersion::parse("3.24"));
        assert_eq!(d.tableau.site, "acme");
        assert_eq!(d.tableau.project, "Finance");
        assert_eq!(d.tableau.pat_secret.name(), "tableau-pat");
        assert!(d.reference.is_empty());
        assert_eq!(d.pipelines.len(), 1);
        let p = &d.pipelines[0];
        assert_eq!(p.id, "ap-invoices");
        assert_eq!(p.resource, Resource::Invoices);
        assert_eq!(p.resource_spec().path, ResourceSpec::invoices().path);
        assert_eq!(p.datasource, "AP Invoices");
        assert_eq!(p.mapping, Mapping::Script("invoices.toml".into()));
        assert_eq!(p.every, Duration::from_secs(600));
        assert_eq!(p.reconcile, None);
        assert_eq!(p.max_records_per_batch, 200_000);
        assert_eq!(p.pull, Pull::WholeRecords);
        assert!(d.pipeline("ap-invoices").is_some());
        let names: Vec<&str> = d.secrets().into_iter().map(SecretRef::name).collect();
        assert_eq!(names, ["oracle-client-secret", "tableau-pat"]);
    }

    #[test]
    fn optional_sections_and_fields_default() {
        let text = r#"id = "t1"
[oracle]
url = "http://127.0.0.1:8080/"
token_url = "http://127.0.0.1:8080/token"
client_id = "c"
client_secret = "secret:c"
scope = "s"
[tableau]
url = "http://127.0.0.1:9090"
project = "Default"
pat_name = "p"
pat_secret = "secret:p"
"#;
        let d = ok(text);
        assert_eq!(
            d.oracle.base_url(),
            "http://127.0.0.1:8080/fscmRestApi/resources/11.13.18.05"
        );
        assert_eq!(d.tableau.api_version, None);
        assert_eq!(d.tableau.site, "");
        assert!(d.pipelines.is_empty());
        assert_eq!(d.reference, ReferenceSection::default());
    }

    #[test]
    fn every_field_set() {
        let text = edit(
            "scope = \"urn:opc:resource:fa:instanceid=1234urn:opc:resource:consumer::all\"\n",
            "scope = \"s\"\nrest_path = \"/custom/rest\"\ngrant = \"authorization_code\"\n\
             authorize_url = \"https://idcs-1234.identity.oraclecloud.com/oauth2/v1/authorize\"\n\
             redirect_uri = \"https://connector.example.com/oauth/callback\"\n\
             max_concurrency = 32\npage_size = 1\noverlap_secs = 0\n\
             [reference]\nsuppliers = true\n\
             account_combination_segments = [\"entity\", \"department\", \"account\", \"subAccount\", \"location\"]\n\
             [reference.value_sets]\ncompanies = \"CORP_ENTITY\"\ncost-centers = \"CORP_COST_CENTER\"\n",
        ) + "reconcile = \"6h\"\nmax_records_per_batch = 1\n\n[[pipeline]]\nid = \"suppliers\"\n\
             resource = \"accountCombinationsLOV\"\ndatasource = \"Combinations\"\nplugin = \"combos\"\nevery = \"1h30m\"\n";
        let d = ok(&text);
        assert_eq!(
            d.oracle.base_url(),
            "https://acme.fa.us2.oraclecloud.com/custom/rest"
        );
        assert_eq!(d.oracle.grant, Grant::AuthorizationCode);
        assert!(d.oracle.authorize_url.is_some() && d.oracle.redirect_uri.is_some());
        assert_eq!(
            (
                d.oracle.max_concurrency,
                d.oracle.page_size,
                d.oracle.overlap_secs
            ),
            (32, 1, 0)
        );
        let sources = d.reference.sources();
        assert!(sources.suppliers);
        assert_eq!(
            sources.value_sets,
            [
                ("CORP_ENTITY".to_owned(), "companies".to_owned()),
                ("CORP_COST_CENTER".to_owned(), "cost-centers".to_owned())
            ]
        );
        assert_eq!(sources.combination_segments.len(), 5);
        assert_eq!(
            d.pipelines[0].reconcile,
            Some(Duration::from_secs(6 * 3600))
        );
        assert_eq!(d.pipelines[0].max_records_per_batch, 1);
        let p = &d.pipelines[1];
        assert_eq!(p.resource, Resource::AccountCombinationsLov);
        assert_eq!(p.mapping, Mapping::Plugin("combos".into()));
        assert_eq!(p.every, Duration::from_secs(5400));
    }

    #[test]
    fn pull_is_whole_records_or_mapped_fields_of_a_script() {
        let d = ok(&(EXAMPLE.to_owned() + "pull = \"mapped-fields\"\n"));
        assert_eq!(d.pipelines[0].pull, Pull::MappedFields);
        let json = serde_json::to_value(&d).expect("serializes");
        assert_eq!(json["pipeline"][0]["pull"], "mapped-fields");
        let d = ok(&(EXAMPLE.to_owned() + "pull = \"whole-records\"\n"));
        assert_eq!(d.pipelines[0].pull, Pull::WholeRecords);
        refused(
            &(EXAMPLE.to_owned() + "pull = \"some\"\n"),
            EXAMPLE.lines().count() + 1,
            "pipeline[0].pull",
            "use \"whole-records\" or \"mapped-fields\"",
        );
        refused(
            &(edit("mapping = \"invoices.toml\"", "plugin = \"combos\"")
                + "pull = \"mapped-fields\"\n"),
            EXAMPLE.lines().count() + 1,
            "pipeline[0].pull",
            "needs a mapping script",
        );
    }

    #[test]
    fn serializes_with_the_files_keys_and_no_secrets() {
        let d = ok(EXAMPLE);
        let json = serde_json::to_value(&d).unwrap_or_default();
        assert_eq!(
            json["oracle"]["client_secret"],
            "secret:oracle-client-secret"
        );
        assert_eq!(json["tableau"]["pat_secret"], "secret:tableau-pat");
        assert_eq!(json["tableau"]["api_version"], "3.24");
        assert_eq!(json["oracle"]["grant"], "client_credentials");
        let p = &json["pipeline"][0];
        assert_eq!(p["mapping"], "invoices.toml");
        assert_eq!(p["every"], "10m");
        assert_eq!(p["resource"], "invoices");
        assert!(p.get("reconcile").is_none(), "{p}");
    }

    #[test]
    fn every_resource_has_a_spec() {
        for r in Resource::ALL {
            assert_eq!(Resource::from_name(r.name()), Some(r));
            let text = edit("resource = \"invoices\"", &format!("resource = \"{r}\""));
            assert_eq!(ok(&text).pipelines[0].resource_spec().path, r.spec().path);
        }
    }

    #[test]
    fn durations() {
        let secs = |t: &str| parse_duration(t).map(|d| d.as_secs());
        assert_eq!(secs("90s"), Some(90));
        assert_eq!(secs("10m"), Some(600));
        assert_eq!(secs("1h30m"), Some(5400));
        assert_eq!(secs("7d"), Some(604_800));
        assert_eq!(secs("1d2h3m4s"), Some(93_784));
        for bad in [
            "", "10", "m", "90m0", "1m1h", "1h1h", "1.5h", " 1h", "1h ", "-1m", "1H", "1w",
        ] {
            assert_eq!(parse_duration(bad), None, "{bad:?} must not parse");
        }
        for d in [60, 90, 600, 5400, 86_400, 93_784] {
            let d = Duration::from_secs(d);
            assert_eq!(parse_duration(&format_duration(d)), Some(d));
        }
    }

    #[test]
    fn error_display_names_file_line_column_and_field() {
        let e = refused(
            &edit("every = \"10m\"", "every = \"90m0\""),
            23,
            "pipeline[0].every",
            "",
        );
        assert_eq!(
            e.to_string(),
            "acme.toml:23:9: pipeline[0].every: \"90m0\" is not a duration like 10m, 1h or 1h30m"
        );
        assert_eq!(e.column, 9);
    }

    #[test]
    fn syntax_error_has_a_location_but_no_field() {
        let e = match parse("acme.toml", "id = \"acme\"\n[oracle\n") {
            Ok(d) => panic!("expected a refusal, got {d:?}"),
            Err(e) => e,
        };
        assert_eq!((e.line, e.field.as_deref()), (2, None), "{e}");
    }

    #[test]
    fn unknown_fields_are_refused_in_every_section() {
        refused(
            &edit("id = \"acme\"\n", "id = \"acme\"\nname = \"Acme\"\n"),
            2,
            "name",
            "unknown field `name`",
        );
        refused(
            &edit(
                "client_id = \"0a1b2c3d\"\n",
                "client_id = \"0a1b2c3d\"\nbase_url = \"x\"\n",
            ),
            7,
            "oracle.base_url",
            "unknown field `base_url`",
        );
        refused(
            &edit("site = \"acme\"\n", "site = \"acme\"\nsite_id = \"x\"\n"),
            14,
            "tableau.site_id",
            "unknown field `site_id`",
        );
        refused(
            &(EXAMPLE.to_owned() + "\n[reference]\nsupplier = true\n"),
            26,
            "reference.supplier",
            "unknown field `supplier`",
        );
        refused(
            &edit("every = \"10m\"", "every = \"10m\"\npaused = true"),
            24,
            "pipeline[0].paused",
            "unknown field `paused`",
        );
    }

    #[test]
    fn a_table_of_the_wrong_type_does_not_leak_internal_names() {
        let e = refused(
            "id = \"acme\"\noracle = 3\n",
            2,
            "oracle",
            "expected a table",
        );
        assert!(!e.message.contains("Raw"), "{e}");
    }

    #[test]
    fn missing_required_fields() {
        refused(
            &edit("client_id = \"0a1b2c3d\"\n", ""),
            3,
            "oracle.client_id",
            "missing field `client_id`",
        );
        refused(
            &edit("project = \"Finance\"\n", ""),
            10,
            "tableau.project",
            "missing field `project`",
        );
        refused(
            &edit("datasource = \"AP Invoices\"\n", ""),
            18,
            "pipeline[0].datasource",
            "missing field `datasource`",
        );
        refused(&edit("id = \"acme\"\n", ""), 1, "id", "missing field `id`");
        let no_tableau = EXAMPLE.split("[tableau]").next().unwrap_or_default();
        refused(no_tableau, 1, "tableau", "missing field `tableau`");
        refused(
            &edit(
                "client_secret = \"secret:oracle-client-secret\"   # the name of a stored secret\n",
                "",
            ),
            3,
            "oracle.client_secret",
            "required with grant = client_credentials",
        );
    }

    #[test]
    fn literal_secrets_are_refused_and_not_echoed() {
        let e = refused(
            &edit("\"secret:oracle-client-secret\"", "\"hunter2-very-secret\""),
            7,
            "oracle.client_secret",
            "`ml-connector secret set acme NAME`",
        );
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert!(e.message.contains("\"secret:NAME\""), "{e}");
        let e = refused(
            &edit("\"secret:tableau-pat\"", "\"Zm9vYmFyLXBhdA==\""),
            16,
            "tableau.pat_secret",
            "a literal secret is not allowed here",
        );
        assert!(!e.to_string().contains("Zm9vYmFy"), "{e}");
        let e = refused(
            &edit("\"secret:tableau-pat\"", "\"secret:Tableau PAT\""),
            16,
            "tableau.pat_secret",
            "the secret name after `secret:` must be",
        );
        assert!(!e.to_string().contains("Tableau PAT"), "{e}");
    }

    #[test]
    fn bad_ids_and_names() {
        refused(
            &edit("id = \"acme\"", "id = \"Acme\""),
            1,
            "id",
            "must be 1 to 63 characters",
        );
        refused(
            &edit("id = \"acme\"", "id = \"-acme\""),
            1,
            "id",
            "must be 1 to 63",
        );
        refused(
            &edit("id = \"acme\"", &format!("id = \"{}\"", "a".repeat(64))),
            1,
            "id",
            "must be 1 to 63",
        );
        ok(&edit(
            "id = \"acme\"",
            &format!("id = \"{}\"", "a".repeat(63)),
        ));
        refused(
            &edit("id = \"ap-invoices\"", "id = \"ap invoices\""),
            19,
            "pipeline[0].id",
            "must be 1 to 63",
        );
        refused(
            &edit("id = \"ap-invoices\"", "id = \"\""),
            19,
            "pipeline[0].id",
            "must be 1 to 63",
        );
        refused(
            &edit("mapping = \"invoices.toml\"", "plugin = \"My.Plugin\""),
            22,
            "pipeline[0].plugin",
            "must be 1 to 63",
        );
    }

    fn second_pipeline(id: &str, datasource: &str) -> String {
        format!(
            "{EXAMPLE}\n[[pipeline]]\nid = \"{id}\"\nresource = \"payablesPayments\"\ndatasource = \"{datasource}\"\nplugin = \"payments\"\n"
        )
    }

    #[test]
    fn duplicate_pipeline_ids_and_datasources() {
        ok(&second_pipeline("ap-payments", "AP Payments"));
        refused(
            &second_pipeline("ap-invoices", "AP Payments"),
            26,
            "pipeline[1].id",
            "already the id of pipeline[0]",
        );
        refused(
            &second_pipeline("ap-payments", "ap invoices"),
            28,
            "pipeline[1].datasource",
            "already the data source of pipeline[0]",
        );
    }

    #[test]
    fn mapping_or_plugin_exactly_one() {
        refused(
            &edit("every = \"10m\"", "plugin = \"invoices\"\nevery = \"10m\""),
            23,
            "pipeline[0].plugin",
            "not both",
        );
        refused(
            &edit(
                "mapping = \"invoices.toml\"      # a script in <mappings-dir>/<tenant>/, or plugin = \"name\"\n",
                "",
            ),
            18,
            "pipeline[0].mapping",
            "set mapping",
        );
        for bad in [
            "../other/invoices.toml",
            "/etc/invoices.toml",
            "invoices.json",
            ".toml",
            "a//b.toml",
            "a\\\\b.toml",
        ] {
            refused(
                &edit("\"invoices.toml\"", &format!("\"{bad}\"")),
                22,
                "pipeline[0].mapping",
                "is not a mapping script",
            );
        }
        let d = ok(&edit("\"invoices.toml\"", "\"ap/invoices.toml\""));
        assert_eq!(
            d.pipelines[0].mapping,
            Mapping::Script("ap/invoices.toml".into())
        );
    }

    #[test]
    fn unknown_resource_lists_the_valid_ones() {
        let e = refused(
            &edit("resource = \"invoices\"", "resource = \"Invoices\""),
            20,
            "pipeline[0].resource",
            "\"Invoices\" is not a resource",
        );
        for r in Resource::ALL {
            assert!(e.message.contains(r.name()), "{e}");
        }
    }

    #[test]
    fn every_and_reconcile_ranges() {
        let every = |v: &str| edit("every = \"10m\"", &format!("every = \"{v}\""));
        refused(
            &every("59s"),
            23,
            "pipeline[0].every",
            "out of range: 1m to 24h",
        );
        refused(
            &every("24h1s"),
            23,
            "pipeline[0].every",
            "out of range: 1m to 24h",
        );
        refused(&every("2d"), 23, "pipeline[0].every", "out of range");
        refused(&every("0m"), 23, "pipeline[0].every", "out of range");
        assert_eq!(ok(&every("1m")).pipelines[0].every, MIN_EVERY);
        assert_eq!(ok(&every("24h")).pipelines[0].every, MAX_EVERY);
        assert_eq!(
            ok(&every("90s")).pipelines[0].every,
            Duration::from_secs(90)
        );
        refused(
            &every("ten minutes"),
            23,
            "pipeline[0].every",
            "is not a duration like 10m",
        );
        refused(&every("90m0"), 23, "pipeline[0].every", "is not a duration");
        refused(
            &edit("every = \"10m\"", "every = 10"),
            23,
            "pipeline[0].every",
            "invalid type",
        );
        let reconcile = |v: &str| EXAMPLE.to_owned() + &format!("reconcile = \"{v}\"\n");
        refused(
            &reconcile("30s"),
            24,
            "pipeline[0].reconcile",
            "out of range: 1m to 7d",
        );
        refused(
            &reconcile("7d1s"),
            24,
            "pipeline[0].reconcile",
            "out of range: 1m to 7d",
        );
        assert_eq!(
            ok(&reconcile("7d")).pipelines[0].reconcile,
            Some(MAX_RECONCILE)
        );
        refused(
            &reconcile("6 h"),
            24,
            "pipeline[0].reconcile",
            "is not a duration",
        );
    }

    #[test]
    fn integer_ranges() {
        let add = |line: &str| edit("scope = ", &format!("{line}\nscope = "));
        refused(
            &add("max_concurrency = 0"),
            8,
            "oracle.max_concurrency",
            "0 is out of range: 1 to 32",
        );
        refused(
            &add("max_concurrency = 33"),
            8,
            "oracle.max_concurrency",
            "1 to 32",
        );
        refused(&add("page_size = 500"), 8, "oracle.page_size", "1 to 499");
        refused(&add("page_size = 0"), 8, "oracle.page_size", "1 to 499");
        refused(
            &add("overlap_secs = -1"),
            8,
            "oracle.overlap_secs",
            "0 to 86400",
        );
        refused(
            &add("page_size = \"499\""),
            8,
            "oracle.page_size",
            "invalid type",
        );
        refused(
            &(EXAMPLE.to_owned() + "max_records_per_batch = 0\n"),
            24,
            "pipeline[0].max_records_per_batch",
            "at least 1",
        );
    }

    #[test]
    fn bad_urls() {
        refused(
            &edit("url = \"https://acme.fa", "url = \"ftp://acme.fa"),
            4,
            "oracle.url",
            "must start with https:// or http://",
        );
        refused(
            &edit("url = \"https://prod-useast-a", "url = \"prod-useast-a"),
            11,
            "tableau.url",
            "must start with https:// or http://",
        );
        refused(
            &edit(
                "token_url = \"https://idcs-1234.identity.oraclecloud.com",
                "token_url = \"https://",
            ),
            5,
            "oracle.token_url",
            "has no host",
        );
        refused(
            &edit(
                ".oraclecloud.com\"\n",
                ".oraclecloud.com/fscmRestApi/resources/11.13.18.05\"\n",
            ),
            4,
            "oracle.url",
            "pod root",
        );
        refused(
            &edit("/oauth2/v1/token\"", "/oauth2/v1/token?x=1\""),
            5,
            "oracle.token_url",
            "query",
        );
    }

    #[test]
    fn authorization_code_needs_authorize_url() {
        refused(
            &edit("scope = ", "grant = \"authorization_code\"\nscope = "),
            8,
            "oracle.authorize_url",
            "required with grant = authorization_code",
        );
        refused(
            &edit(
                "scope = ",
                "authorize_url = \"https://idcs/authorize\"\nscope = ",
            ),
            8,
            "oracle.authorize_url",
            "only used with grant = authorization_code",
        );
        refused(
            &edit("scope = ", "grant = \"password\"\nscope = "),
            8,
            "oracle.grant",
            "not a grant",
        );
        // With authorization_code the client secret may be left out.
        let d = ok(&edit(
            "client_secret = \"secret:oracle-client-secret\"   # the name of a stored secret\n",
            "grant = \"authorization_code\"\nauthorize_url = \"https://idcs-1234.identity.oraclecloud.com/oauth2/v1/authorize\"\n",
        ));
        assert_eq!(d.oracle.client_secret, None);
        assert_eq!(d.secrets().len(), 1);
    }

    #[test]
    fn tableau_fields() {
        refused(
            &edit("\"3.24\"", "\"3.2x\""),
            12,
            "tableau.api_version",
            "not a REST API version",
        );
        refused(
            &edit("\"3.24\"", "\"3.24.1\""),
            12,
            "tableau.api_version",
            "not a REST API version",
        );
        refused(
            &edit("\"3.24\"", "\"2.8\""),
            12,
            "tableau.api_version",
            "not supported",
        );
        refused(
            &edit("site = \"acme\"", "site = \"acme corp\""),
            13,
            "tableau.site",
            "site content URL",
        );
        refused(
            &edit("project = \"Finance\"", "project = \" \""),
            14,
            "tableau.project",
            "must not be empty",
        );
        refused(
            &edit("datasource = \"AP Invoices\"", "datasource = \"\""),
            21,
            "pipeline[0].datasource",
            "must not be empty",
        );
    }

    #[test]
    fn reference_section() {
        let with = |body: &str| format!("{EXAMPLE}\n[reference]\n{body}\n");
        refused(
            &with("value_sets = { suppliers = \"X\" }"),
            26,
            "reference.value_sets.suppliers",
            "fills itself",
        );
        refused(
            &with("value_sets = { Companies = \"X\" }"),
            26,
            "reference.value_sets.Companies",
            "must be 1 to 63",
        );
        refused(
            &with("value_sets = { companies = \"CORP ENTITY\" }"),
            26,
            "reference.value_sets.companies",
            "not a value set code",
        );
        refused(
            &with("account_combination_segments = [\"entity\", \"sub account\"]"),
            26,
            "reference.account_combination_segments[1]",
            "not a segment attribute name",
        );
        refused(
            &with("account_combination_segments = [\"entity\", \"entity\"]"),
            26,
            "reference.account_combination_segments[1]",
            "listed twice",
        );
    }
}

//! A tenant definition written from endpoints known at run time: what the
//! demo applies for its sandboxes, and what the tests apply. The text goes
//! through [`crate::definition::parse`] like any operator's file.

use std::fmt::Write;

/// Where a tenant's Oracle pod and Tableau site are.
#[derive(Clone, Debug)]
pub struct Endpoints {
    /// Oracle pod root (no REST path), e.g. `http://127.0.0.1:4000`.
    pub oracle_url: String,
    /// Oracle's token URL.
    pub token_url: String,
    /// OAuth client id.
    pub client_id: String,
    /// OAuth scope.
    pub scope: String,
    /// Tableau server root.
    pub tableau_url: String,
    /// Tableau site content URL.
    pub site: String,
    /// Tableau project.
    pub project: String,
    /// Tableau PAT name.
    pub pat_name: String,
}

/// One `[[pipeline]]` of the template.
#[derive(Clone, Debug)]
pub struct PipelineTemplate {
    /// The pipeline id.
    pub id: String,
    /// The Oracle resource, as Oracle names it.
    pub resource: String,
    /// The data source written.
    pub datasource: String,
    /// The mapping script's file name under `<mappings-dir>/<tenant>/`.
    pub script: String,
    /// How often it polls Oracle (`None`: the definition's default).
    pub every: Option<std::time::Duration>,
}

/// The secret names the template refers to.
pub const ORACLE_SECRET: &str = "oracle-client-secret";
/// The Tableau PAT's secret name in the template.
pub const TABLEAU_SECRET: &str = "tableau-pat";

/// A definition for `tenant`: the endpoints, the secrets as
/// [`ORACLE_SECRET`] and [`TABLEAU_SECRET`], the demo company's reference
/// datasets when `reference` is set, and `pipelines`.
pub fn definition_text(
    tenant: &str,
    e: &Endpoints,
    reference: bool,
    pipelines: &[PipelineTemplate],
) -> String {
    let quote = |s: &str| toml_string(s);
    let mut t = String::new();
    let _ = writeln!(t, "id = {}\n", quote(tenant));
    let _ = writeln!(t, "[oracle]");
    let _ = writeln!(t, "url = {}", quote(&e.oracle_url));
    let _ = writeln!(t, "token_url = {}", quote(&e.token_url));
    let _ = writeln!(t, "client_id = {}", quote(&e.client_id));
    let _ = writeln!(t, "client_secret = \"secret:{ORACLE_SECRET}\"");
    let _ = writeln!(t, "scope = {}\n", quote(&e.scope));
    let _ = writeln!(t, "[tableau]");
    let _ = writeln!(t, "url = {}", quote(&e.tableau_url));
    let _ = writeln!(t, "site = {}", quote(&e.site));
    let _ = writeln!(t, "project = {}", quote(&e.project));
    let _ = writeln!(t, "pat_name = {}", quote(&e.pat_name));
    let _ = writeln!(t, "pat_secret = \"secret:{TABLEAU_SECRET}\"");
    if reference {
        t.push_str(
            "\n[reference]\nsuppliers = true\n\
             account_combination_segments = [\"entity\", \"department\", \"account\", \"subAccount\", \"location\"]\n\n\
             [reference.value_sets]\ncompanies = \"CORP_ENTITY\"\ncost-centers = \"CORP_COST_CENTER\"\naccounts = \"CORP_ACCOUNT\"\n",
        );
    }
    for p in pipelines {
        let _ = writeln!(t, "\n[[pipeline]]");
        let _ = writeln!(t, "id = {}", quote(&p.id));
        let _ = writeln!(t, "resource = {}", quote(&p.resource));
        let _ = writeln!(t, "datasource = {}", quote(&p.datasource));
        let _ = writeln!(t, "mapping = {}", quote(&p.script));
        if let Some(every) = p.every {
            let _ = writeln!(t, "every = \"{}s\"", every.as_secs());
        }
    }
    t
}

/// A TOML basic string.
fn toml_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{:04X}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A pipeline id from a script's file stem: `journalBatches` →
/// `journal-batches`, `accountCombinationsLOV` → `account-combinations-lov`.
pub fn pipeline_id(stem: &str) -> String {
    let mut out = String::new();
    let mut prev: Option<char> = None;
    for c in stem.chars() {
        if c.is_ascii_uppercase() {
            if prev.is_some_and(|p| p.is_ascii_lowercase() || p.is_ascii_digit()) {
                out.push('-');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
            out.push(c);
        } else {
            out.push('-');
        }
        prev = Some(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_parses_as_a_definition() {
        let e = Endpoints {
            oracle_url: "http://127.0.0.1:4000".into(),
            token_url: "http://127.0.0.1:4000/oauth2/v1/token".into(),
            client_id: "client \"x\"".into(),
            scope: "urn:opc:resource:consumer::all".into(),
            tableau_url: "http://127.0.0.1:4001".into(),
            site: "sandbox".into(),
            project: "Finance".into(),
            pat_name: "pat".into(),
        };
        let pipelines = [PipelineTemplate {
            id: pipeline_id("journalBatches"),
            resource: "journalBatches".into(),
            datasource: "Demo Journal Batches".into(),
            script: "journalBatches.toml".into(),
            every: Some(std::time::Duration::from_secs(120)),
        }];
        let text = definition_text("demo", &e, true, &pipelines);
        let def = crate::definition::parse("template", &text).expect("parses");
        assert_eq!(def.oracle.client_id, "client \"x\"");
        assert_eq!(def.pipelines[0].id, "journal-batches");
        assert_eq!(def.pipelines[0].every, std::time::Duration::from_secs(120));
        assert_eq!(def.reference.value_sets.len(), 3);
    }

    #[test]
    fn pipeline_ids_from_stems() {
        assert_eq!(
            pipeline_id("accountCombinationsLOV"),
            "account-combinations-lov"
        );
        assert_eq!(pipeline_id("invoice-lines"), "invoice-lines");
        assert_eq!(pipeline_id("payablesPayments"), "payables-payments");
    }
}

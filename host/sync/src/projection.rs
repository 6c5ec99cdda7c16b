//! What a pipeline asks Oracle for: whole records, or only what its
//! mapping script reads (`pull = "mapped-fields"`), and whether the records
//! in the store hold what the mapping reads now.
//!
//! The projection is worked out at the start of every cycle from the
//! script the plugin runtime serves at that moment (so an edited script
//! that `serve` reloaded is pulled for at once): the script is compiled
//! natively ([`mlc_scripted_core::Script::reads`]) and its reads become
//! the resource's `fields=` ([`mlc_oracle::ResourceSpec::projected`]).
//!
//! Each pulling batch records the projection its records were pulled with,
//! and its confirmation makes it the pipeline's (`pulled_with` in the
//! store; `None`: whole records). When the mapping now reads something
//! the stored records do not hold, [`needs_repull`] says so, and the
//! journal opens a full batch, a pull from Oracle, where it would otherwise
//! re-export from the store or read only the changes.

use mlc_oracle::{Projection, ResourceSpec};
use mlc_plugin::PluginRuntime;
use mlc_scripted_core::{Reads, Script};

use crate::PipelineSpec;
use crate::definition::Pull;

/// Why a pipeline's projection could not be worked out.
#[derive(Debug, thiserror::Error)]
#[error("pipeline {pipeline}: which fields to pull: {reason}")]
pub struct ProjectionError {
    /// `tenant/name`.
    pub pipeline: String,
    /// Why.
    pub reason: String,
}

/// `spec` with its resource projected to what its mapping reads when it
/// pulls mapped fields; `spec` unchanged otherwise.
pub(crate) fn pulled_spec(
    spec: &PipelineSpec,
    plugins: &PluginRuntime,
) -> Result<PipelineSpec, ProjectionError> {
    let mut out = spec.clone();
    if spec.pull != Pull::MappedFields {
        return Ok(out);
    }
    let failed = |reason: String| ProjectionError {
        pipeline: format!("{}/{}", spec.tenant, spec.name),
        reason,
    };
    let text = plugins
        .config(&spec.tenant, &spec.plugin)
        .map_err(|e| failed(format!("the mapping script is not loaded: {e}")))?;
    let script = Script::compile(&text)
        .map_err(|e| failed(format!("the mapping script does not compile here: {e}")))?;
    out.resource = project(spec.resource.clone(), &script.reads());
    Ok(out)
}

/// `resource` asking for only what `reads` names; whole records when a
/// child would be read with no attribute (see [`ResourceSpec::projected`]).
pub fn project(resource: ResourceSpec, reads: &Reads) -> ResourceSpec {
    let children = reads
        .children
        .iter()
        .map(|c| (c.path.as_str(), c.attributes.iter().cloned().collect()));
    let attributes = reads.attributes.iter().map(String::as_str);
    match resource.clone().projected(attributes, children) {
        Some(projected) => projected,
        None => {
            tracing::info!(
                resource = %resource.path,
                "the mapping expands over a child collection without reading any of its attributes: pulling whole records"
            );
            resource
        }
    }
}

/// The text a batch stores for `projection` (`None`: whole records).
pub(crate) fn stored(projection: Option<&Projection>) -> Option<String> {
    projection.map(|p| serde_json::to_string(p).unwrap_or_default())
}

/// True when records pulled with `pulled_with` (as stored; `None`: whole
/// records) lack something a pull with `now` would hold: the mapping reads
/// more than the store has, and only Oracle has it.
pub fn needs_repull(pulled_with: Option<&str>, now: Option<&Projection>) -> bool {
    let Some(text) = pulled_with else {
        return false;
    };
    let Ok(stored) = serde_json::from_str::<Projection>(text) else {
        // Unreadable: assume the worst, a pull costs time, not data.
        return true;
    };
    match now {
        None => true,
        Some(now) => !now.is_within(&stored),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(text: &str) -> Reads {
        Script::compile(text).expect("compiles").reads()
    }

    const LINES: &str = r#"
resource = "invoices"
expand = "invoiceLines"
[[column]]
name = "Invoice ID"
type = "integer"
key = true
source = "InvoiceId"
[[column]]
name = "Line"
type = "integer"
key = true
source = "invoiceLines.LineNumber"
[[column]]
name = "Amount"
type = "decimal(18,2)"
expr = "invoiceLines.LineAmount"
"#;

    #[test]
    fn a_script_projects_its_resource() {
        let spec = project(ResourceSpec::invoices(), &reads(LINES));
        assert_eq!(spec.expand, ["invoiceLines"]);
        assert_eq!(
            spec.fields.as_ref().map(Projection::query).as_deref(),
            Some("InvoiceId,LastUpdateDate;invoiceLines:LineAmount,LineNumber")
        );
        let counted = project(
            ResourceSpec::invoices(),
            &reads(
                "resource = \"invoices\"\nexpand = \"invoiceLines\"\n[[column]]\nname = \"I\"\ntype = \"integer\"\nkey = true\nsource = \"InvoiceId\"\n",
            ),
        );
        assert_eq!(
            counted,
            ResourceSpec::invoices(),
            "rows of a child read for nothing: whole records"
        );
    }

    #[test]
    fn a_repull_is_needed_only_when_the_store_lacks_what_is_read() {
        let lines = project(ResourceSpec::invoices(), &reads(LINES)).fields;
        let header = project(
            ResourceSpec::invoices(),
            &reads(
                "resource = \"invoices\"\n[[column]]\nname = \"I\"\ntype = \"integer\"\nkey = true\nsource = \"InvoiceId\"\n",
            ),
        )
        .fields;
        let stored_lines = stored(lines.as_ref());
        assert!(
            !needs_repull(None, lines.as_ref()),
            "whole records hold all"
        );
        assert!(!needs_repull(None, None));
        assert!(!needs_repull(stored_lines.as_deref(), lines.as_ref()));
        assert!(
            !needs_repull(stored_lines.as_deref(), header.as_ref()),
            "reads less than stored"
        );
        assert!(
            needs_repull(stored(header.as_ref()).as_deref(), lines.as_ref()),
            "lines are not in the store"
        );
        assert!(
            needs_repull(stored_lines.as_deref(), None),
            "whole records wanted, projected stored"
        );
        assert!(needs_repull(Some("not json"), lines.as_ref()));
    }
}

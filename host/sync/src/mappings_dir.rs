//! The mappings directory, the one owner of its layout:
//! `<mappings-dir>/<tenant>/<file>.toml` holds a pipeline's mapping script,
//! `<mappings-dir>/<tenant>/samples/<stem>.json` its validation sample, and
//! `<mappings-dir>/<tenant>/.versions/<stem>.<version>.toml` the scripts a
//! promote replaced (the directory watcher and `missing_scripts` ignore
//! it: only the files a pipeline names are read).

use std::path::{Path, PathBuf};

use crate::definition::{Mapping, TenantDefinition};

/// A mapping script `file` of `tenant` under `mappings_dir`, and its
/// sample: `<mappings-dir>/<tenant>/<file>` and
/// `<mappings-dir>/<tenant>/samples/<stem>.json` (the one owner of that
/// layout).
pub fn mapping_paths(mappings_dir: &Path, tenant: &str, file: &str) -> (PathBuf, PathBuf) {
    let dir = mappings_dir.join(tenant);
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(file);
    (
        dir.join(file),
        dir.join("samples").join(format!("{stem}.json")),
    )
}

/// Where a promote keeps the script `file` of `tenant` it replaced, as
/// `<mappings-dir>/<tenant>/.versions/<stem>.<version>.toml` (the scripted
/// mapper's version of it).
pub fn kept_script_path(mappings_dir: &Path, tenant: &str, file: &str, version: &str) -> PathBuf {
    let stem = Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or(file);
    mappings_dir
        .join(tenant)
        .join(".versions")
        .join(format!("{stem}.{version}.toml"))
}

/// The mapping scripts a definition names that are not under
/// `mappings_dir` yet (paths, for `tenant apply` to report).
pub fn missing_scripts(mappings_dir: &Path, definition: &TenantDefinition) -> Vec<String> {
    definition
        .pipelines
        .iter()
        .filter_map(|p| match &p.mapping {
            Mapping::Script(f) => {
                let (path, _) = mapping_paths(mappings_dir, &definition.id, f);
                (!path.exists()).then(|| path.display().to_string())
            }
            Mapping::Plugin(_) => None,
        })
        .collect()
}

//! Components importing what plugins may not use.

use mlc_plugin::LoadOptions;

use crate::support::{Case, component};

/// A component importing `interface` (an empty instance).
fn importing(interface: &str) -> Vec<u8> {
    format!(r#"(component (import "{interface}" (instance)))"#).into_bytes()
}

fn forbidden_case(name: &'static str, wasm: &[u8], import: &str) {
    let mut case = Case::new(name);
    case.refused(
        wasm,
        LoadOptions::default(),
        "forbidden-import",
        &[&format!("it imports `{import}`, which plugins may not use")],
    );
    case.finish();
}

#[test]
fn importing_sockets_is_refused() {
    forbidden_case(
        "sockets",
        &importing("wasi:sockets/tcp@0.2.6"),
        "wasi:sockets/tcp@0.2.6",
    );
}

#[test]
fn importing_name_lookup_is_refused() {
    let import = "wasi:sockets/ip-name-lookup@0.2.6";
    forbidden_case("ip name lookup", &importing(import), import);
}

#[test]
fn importing_the_filesystem_is_refused() {
    let import = "wasi:filesystem/preopens@0.2.6";
    forbidden_case("filesystem", &importing(import), import);
}

#[test]
fn a_rust_guest_reading_a_file_is_refused_for_its_filesystem_import() {
    let mut case = Case::new("rust guest reading /etc/passwd");
    case.refused(
        &component("misbehave-import"),
        LoadOptions::default(),
        "forbidden-import",
        &["wasi:filesystem/"],
    );
    case.finish();
}

#[test]
fn importing_the_wall_clock_is_refused() {
    let import = "wasi:clocks/wall-clock@0.2.6";
    forbidden_case("wall clock", &importing(import), import);
}

#[test]
fn importing_the_monotonic_clock_is_refused() {
    let import = "wasi:clocks/monotonic-clock@0.2.6";
    forbidden_case("monotonic clock", &importing(import), import);
}

#[test]
fn importing_http_is_refused() {
    let import = "wasi:http/outgoing-handler@0.2.6";
    forbidden_case("http", &importing(import), import);
}

#[test]
fn importing_secure_random_is_refused() {
    let import = "wasi:random/random@0.2.6";
    forbidden_case("random", &importing(import), import);
}

#[test]
fn importing_an_allowed_interface_at_an_unknown_version_is_refused() {
    let import = "wasi:io/streams@0.3.0";
    forbidden_case("wasi 0.3", &importing(import), import);
}

#[test]
fn importing_another_contract_version_is_told_so() {
    let mut case = Case::new("contract version");
    case.refused(
        &importing("ml-connector:mapping/host@0.2.0"),
        LoadOptions::default(),
        "contract-version",
        &["ml-connector:mapping@0.2.0", "rebuild it"],
    );
    case.finish();
}

//! The instance-shape check: what a component's core modules declare
//! (tables, table sizes, memories, globals, functions, data segments) and
//! how many core modules and instances it has, measured from the binary
//! before anything is compiled, against [`ShapeLimits`].
//!
//! The per-call limiter and the pool bound what an instance may *grow* to;
//! this bounds what it *starts* with, so a component that would pass the
//! call limits but fail (or exhaust the pool) at instantiation is refused
//! at load with the limit named ([`PluginError::ShapeLimit`]). It reads the
//! binary with `wasmparser` (the version wasmtime 48 uses) without
//! validating it: validation is the compiler's job, and bytes that do not
//! parse are left to it to refuse as a compile error. WAT text is turned
//! into binary first (wasmtime accepts it too), so text is no way around
//! the check.

use wasmparser::{Encoding, Parser, Payload, TypeRef};

use crate::error::{PluginError, PluginRef};
use crate::limits::ShapeLimits;

/// What a component declares, summed over its core modules.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    pub tables: u64,
    /// The largest initial table size, and the core module (1-based)
    /// declaring it.
    pub table_elements: (u64, u64),
    pub memories: u64,
    pub globals: u64,
    pub functions: u64,
    pub data_bytes: u64,
    pub core_modules: u64,
    /// Core instances instantiated from a module.
    pub core_instances: u64,
}

/// Measures `wasm` (binary or WAT); `None` when it does not parse (the
/// compiler then says why).
pub(crate) fn measure(wasm: &[u8]) -> Option<Shape> {
    let binary = wat::parse_bytes(wasm).ok()?;
    measure_binary(&binary).ok()
}

fn measure_binary(wasm: &[u8]) -> wasmparser::Result<Shape> {
    let mut shape = Shape::default();
    for payload in Parser::new(0).parse_all(wasm) {
        match payload? {
            Payload::Version {
                encoding: Encoding::Module,
                ..
            } => shape.core_modules += 1,
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    match import?.ty {
                        TypeRef::Func(_) | TypeRef::FuncExact(_) => shape.functions += 1,
                        TypeRef::Table(table) => shape.table(table.initial),
                        TypeRef::Memory(_) => shape.memories += 1,
                        TypeRef::Global(_) => shape.globals += 1,
                        TypeRef::Tag(_) => {}
                    }
                }
            }
            Payload::FunctionSection(reader) => shape.functions += u64::from(reader.count()),
            Payload::TableSection(reader) => {
                for table in reader {
                    shape.table(table?.ty.initial);
                }
            }
            Payload::MemorySection(reader) => shape.memories += u64::from(reader.count()),
            Payload::GlobalSection(reader) => shape.globals += u64::from(reader.count()),
            Payload::DataSection(reader) => {
                for data in reader {
                    shape.data_bytes += data?.data.len() as u64;
                }
            }
            Payload::InstanceSection(reader) => {
                // Bags of exports (`FromExports`) instantiate nothing.
                for instance in reader {
                    if let wasmparser::Instance::Instantiate { .. } = instance? {
                        shape.core_instances += 1;
                    }
                }
            }
            _ => {}
        }
    }
    Ok(shape)
}

impl Shape {
    fn table(&mut self, initial: u64) {
        self.tables += 1;
        if initial > self.table_elements.0 {
            self.table_elements = (initial, self.core_modules);
        }
    }

    /// The first limit this shape is over, if any.
    pub(crate) fn check(
        &self,
        plugin: &PluginRef,
        limits: &ShapeLimits,
    ) -> Result<(), PluginError> {
        let whole = || "the component".to_owned();
        let checks: [(&'static str, u64, u64, String); 8] = [
            (
                "core-modules",
                self.core_modules,
                limits.max_core_modules,
                whole(),
            ),
            (
                "core-instances",
                self.core_instances,
                limits.max_core_instances,
                whole(),
            ),
            ("tables", self.tables, limits.max_tables, whole()),
            (
                "table-elements",
                self.table_elements.0,
                limits.max_table_elements,
                format!("a table of core module {}", self.table_elements.1),
            ),
            ("memories", self.memories, limits.max_memories, whole()),
            ("globals", self.globals, limits.max_globals, whole()),
            ("functions", self.functions, limits.max_functions, whole()),
            (
                "data-bytes",
                self.data_bytes,
                limits.max_data_bytes,
                whole(),
            ),
        ];
        match checks.into_iter().find(|(_, actual, max, _)| actual > max) {
            None => Ok(()),
            Some((limit, actual, max, where_)) => Err(PluginError::ShapeLimit {
                plugin: plugin.clone(),
                limit,
                where_,
                actual,
                max,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_every_core_module_of_a_component() {
        let shape = measure(
            br#"(component
                (core module $a
                    (import "x" "f" (func))
                    (import "x" "m" (memory 1))
                    (table 10 funcref)
                    (global i32 (i32.const 0))
                    (func) (func)
                    (memory 1)
                    (data (i32.const 0) "hello"))
                (core module $b (table 300 funcref) (table 2 funcref))
                (core instance (instantiate $b)))"#,
        )
        .expect("valid WAT");
        assert_eq!(
            shape,
            Shape {
                tables: 3,
                table_elements: (300, 2),
                memories: 2,
                globals: 1,
                functions: 3,
                data_bytes: 5,
                core_modules: 2,
                core_instances: 1,
            }
        );
        assert_eq!(measure(b"not wasm"), None);
    }

    #[test]
    fn deeply_nested_wat_does_not_overflow_a_small_stack() {
        let depth = 1_000_000;
        let wat = format!(
            "(component (core module (func {}{})))",
            "(block ".repeat(depth),
            ")".repeat(depth)
        );
        let measured = std::thread::Builder::new()
            .stack_size(2 << 20)
            .spawn(move || measure(wat.as_bytes()).is_some())
            .unwrap()
            .join();
        eprintln!("nested WAT measured: {measured:?}");
        assert!(measured.is_ok(), "measuring nested WAT crashed its thread");
    }

    #[test]
    fn the_shipped_guests_fit_the_default_limits_with_room() {
        let plugin = PluginRef {
            tenant: "t".into(),
            plugin: "p".into(),
            version: crate::VersionId::from_hex("00"),
        };
        let limits = ShapeLimits::default();
        for name in ["misbehave", "scripted", "misbehave-import"] {
            let wasm = crate::runtime::test_support::component(name);
            let shape = measure(&wasm).unwrap_or_else(|| panic!("{name} does not parse"));
            eprintln!("{name}: {shape:?}");
            shape
                .check(&plugin, &limits)
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            // Room: every count at most half its limit.
            let halves = ShapeLimits {
                max_tables: limits.max_tables / 2,
                max_table_elements: limits.max_table_elements / 2,
                max_memories: limits.max_memories / 2,
                max_globals: limits.max_globals / 2,
                max_functions: limits.max_functions / 2,
                max_data_bytes: limits.max_data_bytes / 2,
                max_core_modules: limits.max_core_modules / 2,
                max_core_instances: limits.max_core_instances / 2,
                ..limits.clone()
            };
            shape
                .check(&plugin, &halves)
                .unwrap_or_else(|e| panic!("{name} is close to a default limit: {e}"));
        }
    }
}

//! The compile worker: reads a WebAssembly component on stdin, compiles it
//! with the plugin runtime's engine settings and writes the serialized
//! artifact to stdout. Started by the runtime under OS limits (see
//! `mlc_plugin::compile_worker`); not meant to be run by hand.

fn main() {
    std::process::exit(mlc_plugin::compile_worker::worker_main());
}

//! Host-side bindings of `duet:probe`.

/// Host-side bindings of `duet:probe` (probe plugins). Async, so a call stuck in the host (a
/// connect to a silent address) can be cut off at its deadline.
pub mod probe {
    wasmtime::component::bindgen!({
        world: "probe-plugin",
        path: "../../wit/probe",
        imports: { default: async },
        exports: { default: async },
    });
}

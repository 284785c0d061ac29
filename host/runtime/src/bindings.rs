//! Host-side bindings of `duet:core` (one `bindgen!` per WIT package) and their conversions.

wasmtime::component::bindgen!({
    world: "core",
    path: "../../wit/core",
});

duet_core::wit_conversions!(duet::core::types);

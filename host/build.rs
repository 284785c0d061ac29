//! Builds what `duet` embeds: the default core (`core/component` → core.wasm, wasm32-wasip2)
//! and the web UI (`web/` → wasm32-unknown-unknown, then wasm-bindgen), both from this workspace.

#[path = "../xtask/src/guest.rs"]
mod guest;

use std::path::Path;

fn main() {
    let env = guest::build_env(&[
        "wit",
        "core/src",
        "core/Cargo.toml",
        "core/component",
        "web",
        "Cargo.lock",
    ]);

    let wasm = guest::build(
        &env.workspace,
        &env.target,
        "wasm32-wasip2",
        &["duet-core-component"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let core = env.out_dir.join("core.wasm");
    std::fs::copy(wasm.join("duet_core_component.wasm"), &core)
        .expect("copy core.wasm into OUT_DIR");
    println!("cargo:rustc-env=DUET_EMBEDDED_CORE={}", core.display());

    let wasm = guest::build(
        &env.workspace,
        &env.target,
        "wasm32-unknown-unknown",
        &["duet-web"],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let web = env.out_dir.join("web");
    bindgen(&wasm.join("duet-web.wasm"), &web);
    for asset in ["index.html", "style.css"] {
        std::fs::copy(
            env.workspace.join("web/assets").join(asset),
            web.join(asset),
        )
        .unwrap_or_else(|e| panic!("copy web/assets/{asset}: {e}"));
    }
    println!("cargo:rustc-env=DUET_WEB_DIR={}", web.display());
}

fn bindgen(input: &Path, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("create the web output folder");
    let mut b = wasm_bindgen_cli_support::Bindgen::new();
    b.input_path(input)
        .web(true)
        .expect("wasm-bindgen --target web")
        .omit_default_module_path(false);
    b.generate(out)
        .unwrap_or_else(|e| panic!("wasm-bindgen failed on {}: {e:#}", input.display()));
}

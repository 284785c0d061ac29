//! Builds the web UI `duet` serves: `web/` → wasm32-unknown-unknown, then wasm-bindgen, from
//! this workspace.

#[allow(dead_code)]
#[path = "../../xtask/src/guest.rs"]
mod guest;

use std::path::Path;

fn main() {
    let env = guest::build_env(&["web", "core/src", "core/Cargo.toml", "Cargo.lock"]);

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

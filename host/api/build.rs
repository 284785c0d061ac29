//! Builds the web UI `duet` serves: `web/` → wasm32-unknown-unknown, then wasm-bindgen, from
//! this workspace; each file precompressed (gzip, brotli) and versioned by its content's hash,
//! listed in `$OUT_DIR/assets.rs` for `src/web.rs`.

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
    std::fs::copy(
        env.workspace.join("web/assets/style.css"),
        web.join("style.css"),
    )
    .unwrap_or_else(|e| panic!("copy web/assets/style.css: {e}"));
    // Every file but the page itself is named with its content's hash (`?v=`), so a browser
    // keeps it until the bundle changes; the page is revalidated by its ETag.
    let mut table = String::from("[\n");
    let mut page = std::fs::read_to_string(env.workspace.join("web/assets/index.html"))
        .expect("read web/assets/index.html");
    for (name, content_type) in [
        ("style.css", "text/css; charset=utf-8"),
        ("duet-web.js", "text/javascript; charset=utf-8"),
        ("duet-web_bg.wasm", "application/wasm"),
    ] {
        let version = precompress(&web, name);
        page = page.replace(&format!("'/{name}'"), &format!("'/{name}?v={version}'"));
        page = page.replace(&format!("\"/{name}\""), &format!("\"/{name}?v={version}\""));
        table.push_str(&asset(
            &web,
            name,
            &format!("/{name}"),
            content_type,
            &version,
        ));
    }
    std::fs::write(web.join("index.html"), page).expect("write index.html");
    let version = precompress(&web, "index.html");
    table.push_str(&asset(
        &web,
        "index.html",
        "/",
        "text/html; charset=utf-8",
        &version,
    ));
    table.push(']');
    std::fs::write(env.out_dir.join("assets.rs"), table).expect("write assets.rs");
}

/// Writes `<name>.gz` and `<name>.br` beside `<name>` (both at their best compression: it is
/// done once per build) and returns the content's version: the start of its SHA-256.
fn precompress(dir: &Path, name: &str) -> String {
    use std::io::Write as _;

    use sha2::Digest as _;

    let path = dir.join(name);
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&bytes).expect("gzip in memory");
    let gz = gz.finish().expect("gzip in memory");
    std::fs::write(dir.join(format!("{name}.gz")), gz).expect("write the gzip file");
    let mut br = Vec::new();
    let params = brotli::enc::BrotliEncoderParams {
        quality: 11,
        lgwin: 22,
        ..Default::default()
    };
    brotli::BrotliCompress(&mut bytes.as_slice(), &mut br, &params).expect("brotli in memory");
    std::fs::write(dir.join(format!("{name}.br")), br).expect("write the brotli file");
    sha2::Sha256::digest(&bytes)
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One entry of the served files' table (`web::Asset`), its three encodings embedded.
fn asset(dir: &Path, name: &str, path: &str, content_type: &str, version: &str) -> String {
    let file = |suffix: &str| {
        format!(
            "{:?}",
            dir.join(format!("{name}{suffix}")).display().to_string()
        )
    };
    format!(
        "Asset {{ path: {path:?}, content_type: {content_type:?}, version: {version:?}, \
         identity: include_bytes!({}), gzip: include_bytes!({}), brotli: include_bytes!({}) }},\n",
        file(""),
        file(".gz"),
        file(".br"),
    )
}

fn bindgen(input: &Path, out: &Path) {
    let _ = std::fs::remove_dir_all(out);
    std::fs::create_dir_all(out).expect("create the web output folder");
    let mut b = wasm_bindgen_cli_support::Bindgen::new();
    b.input_path(input)
        .web(true)
        .expect("wasm-bindgen --target web")
        .omit_default_module_path(false)
        // Every browser downloads the bundle: no function names, no producers section.
        .remove_name_section(true)
        .remove_producers_section(true);
    b.generate(out)
        .unwrap_or_else(|e| panic!("wasm-bindgen failed on {}: {e:#}", input.display()));
}

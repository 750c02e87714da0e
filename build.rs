//! Embeds the built-in message templates (src/rules/templates/*.yaml) into the binary: generates
//! the list of them, so adding a template is adding a file.

use std::path::Path;

fn main() {
    let dir = Path::new("src/rules/templates");
    println!("cargo::rerun-if-changed={}", dir.display());
    let mut entries: Vec<(String, String)> = std::fs::read_dir(dir)
        .map(|read| {
            read.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
                .filter_map(|p| {
                    let name = p.file_stem()?.to_str()?.to_owned();
                    let path = std::fs::canonicalize(&p).ok()?.to_str()?.to_owned();
                    Some((name, path))
                })
                .collect()
        })
        .unwrap_or_default();
    entries.sort();
    let mut code = String::from(
        "/// Built-in templates: (name, YAML).\npub static BUILTIN: &[(&str, &str)] = &[\n",
    );
    for (name, path) in &entries {
        println!("cargo::rerun-if-changed={path}");
        code.push_str(&format!("    ({name:?}, include_str!({path:?})),\n"));
    }
    code.push_str("];\n");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(Path::new(&out).join("builtin_templates.rs"), code)
        .expect("OUT_DIR is writable");
}

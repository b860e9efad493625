//! Embeds the vendored VK API schema (vendor/vk-api-schema) so the sandbox checks calls against VK's own
//! definitions without reading files at run time.

use std::env;
use std::fs;
use std::path::{Path, PathBuf};

fn main() {
    // Read at run time, not baked in with env!(): a build script reused from another checkout that shares the
    // target directory must still read this checkout's schema.
    let manifest_dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let root = Path::new(&manifest_dir).join("../../vendor/vk-api-schema");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files: Vec<PathBuf> = Vec::new();
    collect(&root, &mut files);
    files.sort();
    let mut out =
        String::from("/// Every JSON file of the vendored schema: (path relative to the schema root, contents).\n");
    out.push_str("pub static SCHEMA_FILES: &[(&str, &str)] = &[\n");
    for file in &files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().replace('\\', "/");
        let abs = fs::canonicalize(file).unwrap();
        out.push_str(&format!("    ({rel:?}, include_str!({:?})),\n", abs.to_string_lossy()));
    }
    out.push_str("];\n");
    let dest = PathBuf::from(env::var("OUT_DIR").unwrap()).join("schema_files.rs");
    fs::write(dest, out).unwrap();
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "json") {
            files.push(path);
        }
    }
}

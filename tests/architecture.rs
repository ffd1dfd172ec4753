//! The layering of `src/`, checked on the source: no module imports a module of a higher layer
//! (README, "Architecture"). A new top-level module must be placed in [`LAYERS`], or this fails.

use std::collections::BTreeMap;
use std::path::Path;

/// Lowest first. A module may use modules of its own layer and of lower ones.
const LAYERS: &[(&str, &[&str])] = &[
    // Pure rules and process-wide leaves that import nothing above them.
    (
        "leaf",
        &[
            "domain",
            "config",
            "request_id",
            "metrics",
            "cache",
            "logging",
        ],
    ),
    ("db", &["db"]),
    ("wire types", &["api"]),
    ("actors", &["actors"]),
    (
        "http",
        &["auth", "error", "state", "middleware", "routes", "openapi"],
    ),
    (
        "wiring and commands",
        &["server", "ops", "transfer", "client", "lib", "main"],
    ),
];

/// Exported macros live at the crate root but belong to a module.
const MACROS: &[(&str, &str)] = &[("on_backend", "db"), ("store_actor", "actors")];

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|(_, mods)| mods.contains(&module))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// `src/actors/mod.rs` → `actors`; `src/lib.rs` → `lib`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_owned()
}

/// The top-level modules a file names through `crate::` (comments left out).
fn uses(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let code = line.split("//").next().unwrap_or("");
        let mut rest = code;
        while let Some(i) = rest.find("crate::") {
            let before = rest[..i].chars().last();
            rest = &rest[i + "crate::".len()..];
            if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
                continue;
            }
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            let name = MACROS
                .iter()
                .find(|(m, _)| *m == name)
                .map_or(name.clone(), |(_, owner)| (*owner).to_owned());
            out.push(name);
        }
    }
    out
}

#[test]
fn no_module_imports_a_higher_layer() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut violations = BTreeMap::new();
    for f in &files {
        let module = module_of(&src, f);
        let own = layer_of(&module)
            .unwrap_or_else(|| panic!("module `{module}` is in no layer of tests/architecture.rs"));
        let text = std::fs::read_to_string(f).unwrap();
        for used in uses(&text) {
            let Some(theirs) = layer_of(&used) else {
                panic!("{}: `crate::{used}` is in no layer", f.display());
            };
            if theirs > own {
                violations
                    .entry(f.strip_prefix(&src).unwrap().display().to_string())
                    .or_insert_with(Vec::new)
                    .push(format!("{used} ({})", LAYERS[theirs].0));
            }
        }
    }
    assert!(
        violations.is_empty(),
        "modules importing a higher layer: {violations:#?}"
    );
}

#[test]
fn the_checker_sees_imports() {
    assert_eq!(
        uses("use crate::db::{a, b};\nlet x = crate::actors::Op; // crate::routes\n"),
        ["db", "actors"]
    );
    assert_eq!(uses("$crate::on_backend!(c, ...)"), ["db"]);
    assert!(uses("my_crate::x").is_empty());
    assert!(layer_of("routes") > layer_of("actors"));
    assert!(layer_of("actors") > layer_of("db"));
    assert!(layer_of("db") > layer_of("domain"));
}

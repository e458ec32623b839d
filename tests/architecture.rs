//! The module layout stays a layered architecture: no two top-level modules of the library depend on each other,
//! directly or through others. Dependencies are read from `crate::MODULE` paths in the code (comments and unit
//! test modules left out), so a new circle fails here before it sets.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

fn code_of(text: &str) -> String {
    let without_tests = match text.find("#[cfg(test)]\nmod tests") {
        Some(i) => &text[..i],
        None => text,
    };
    without_tests.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

fn top_module(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?.to_string();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_string();
    // The binary's own modules are not part of the library.
    (!matches!(name.as_str(), "main" | "lib" | "cli")).then_some(name)
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut deps: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let Some(module) = top_module(&src, &file) else { continue };
        let code = code_of(&std::fs::read_to_string(&file).unwrap());
        let entry = deps.entry(module.clone()).or_default();
        for (i, _) in code.match_indices("crate::") {
            let name: String = code[i + 7..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            if !name.is_empty() && name != module {
                entry.insert(name);
            }
        }
    }
    deps
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(deps: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(deps: &BTreeMap<String, BTreeSet<String>>, start: &str, path: &mut Vec<String>, seen: &mut BTreeSet<String>) -> bool {
        let last = path.last().unwrap().clone();
        for next in deps.get(&last).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(deps, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(deps, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_import_circles_between_modules() {
    let deps = graph();
    assert!(deps.len() >= 10, "read too few modules: {:?}", deps.keys().collect::<Vec<_>>());
    assert!(deps["estimator"].contains("backend"), "the reader sees real dependencies");
    for module in deps.keys() {
        if let Some(cycle) = cycle_from(&deps, module) {
            panic!("import circle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_reader_finds_a_circle_when_there_is_one() {
    let mut deps = graph();
    deps.get_mut("taxonomy").unwrap().insert("estimator".into());
    assert!(cycle_from(&deps, "taxonomy").is_some());
}

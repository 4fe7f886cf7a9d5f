//! Keeps the module graph acyclic: the layer order written in `src/lib.rs` is the
//! law, and a module that names (`crate::x`) a module listed after it fails this
//! test with the file and line. Test code (`#[cfg(test)]` items, `tests.rs` files
//! and `tests/` folders) is exempt: a test may build whatever it needs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One backwards reference: `file:line` of module `from` names module `to`.
#[derive(Debug, PartialEq)]
struct Violation {
    file: String,
    line: usize,
    from: String,
    to: String,
}

/// The layers of `src/lib.rs`, lowest first: its `//! N. \`module\`` lines.
fn layer_order(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.strip_prefix("//! "))
        .filter(|l| {
            let digits = l.chars().take_while(char::is_ascii_digit).count();
            digits > 0 && l[digits..].starts_with(". `")
        })
        .filter_map(|l| l.split('`').nth(1).map(str::to_owned))
        .collect()
}

/// The modules `src/lib.rs` declares (`pub mod x;`).
fn declared_modules(lib_rs: &str) -> Vec<String> {
    lib_rs
        .lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(str::to_owned)
        .collect()
}

/// The production lines of a source file: `#[cfg(test)]` items are left out
/// (an inline `mod tests { .. }` up to its closing brace, or a single item).
fn production_lines(source: &str) -> Vec<(usize, &str)> {
    let mut kept = Vec::new();
    let mut lines = source.lines().enumerate().peekable();
    while let Some((n, line)) = lines.next() {
        if line.trim() != "#[cfg(test)]" {
            kept.push((n + 1, line));
            continue;
        }
        // Skip the attributed item: until its braces balance, or its `;`.
        let mut depth = 0i32;
        let mut opened = false;
        for (_, item) in lines.by_ref() {
            let code = item.split("//").next().unwrap_or("");
            depth += code.matches('{').count() as i32 - code.matches('}').count() as i32;
            opened |= code.contains('{');
            if (opened && depth <= 0) || (!opened && code.trim_end().ends_with(';')) {
                break;
            }
        }
    }
    kept
}

/// The top-level modules a line names through `crate::`, including the ones
/// inside `use crate::{a::X, b};` groups.
fn named_modules(line: &str) -> Vec<String> {
    let code = line.split("//").next().unwrap_or("");
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        if code[..at].ends_with('$') {
            continue; // `$crate::` in a macro is the crate itself, not a module
        }
        let rest = &code[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let inner = group.split('}').next().unwrap_or(group);
            found.extend(
                inner
                    .split(',')
                    .filter_map(|p| p.trim().split("::").next())
                    .filter(|m| !m.is_empty())
                    .map(str::to_owned),
            );
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if !name.is_empty() {
                found.push(name);
            }
        }
    }
    found
}

/// The top-level module a file under `src/` belongs to (`None` for the crate
/// roots and for test files).
fn module_of(relative: &Path) -> Option<String> {
    let parts: Vec<_> = relative.iter().filter_map(|p| p.to_str()).collect();
    let is_test = parts.iter().any(|p| *p == "tests" || *p == "tests.rs");
    let first = parts.first()?;
    if is_test || *first == "lib.rs" || *first == "main.rs" {
        return None;
    }
    Some(first.trim_end_matches(".rs").to_owned())
}

/// Every backwards reference in `files` (path relative to `src/`, contents).
fn violations(order: &[String], files: &[(PathBuf, String)]) -> Vec<Violation> {
    let rank: HashMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, m)| (m.as_str(), i))
        .collect();
    let mut found = Vec::new();
    for (path, source) in files {
        let Some(from) = module_of(path) else {
            continue;
        };
        let Some(&from_rank) = rank.get(from.as_str()) else {
            continue; // reported by the declared-modules check
        };
        for (line, text) in production_lines(source) {
            for to in named_modules(text) {
                match rank.get(to.as_str()) {
                    Some(&to_rank) if to_rank > from_rank => found.push(Violation {
                        file: path.display().to_string(),
                        line,
                        from: from.clone(),
                        to,
                    }),
                    _ => {}
                }
            }
        }
    }
    found
}

fn source_files(dir: &Path, root: &Path, out: &mut Vec<(PathBuf, String)>) {
    for entry in std::fs::read_dir(dir).expect("read src/") {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            source_files(&path, root, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let text = std::fs::read_to_string(&path).expect("read source file");
            out.push((path.strip_prefix(root).expect("under src").to_path_buf(), text));
        }
    }
}

#[test]
fn no_module_imports_a_layer_above_it() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib_rs = std::fs::read_to_string(src.join("lib.rs")).expect("read src/lib.rs");
    let order = layer_order(&lib_rs);
    let mut declared = declared_modules(&lib_rs);
    let mut listed = order.clone();
    declared.sort();
    listed.sort();
    assert_eq!(
        listed, declared,
        "src/lib.rs must list every module it declares exactly once in its layer order"
    );

    let mut files = Vec::new();
    source_files(&src, &src, &mut files);
    let found = violations(&order, &files);
    assert!(
        found.is_empty(),
        "modules import layers above them (order in src/lib.rs):\n{}",
        found
            .iter()
            .map(|v| format!("  src/{}:{}: {} -> {}", v.file, v.line, v.from, v.to))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

#[test]
fn a_planted_backwards_import_is_found_and_test_code_is_exempt() {
    let order: Vec<String> = ["domain", "store", "api"].map(String::from).to_vec();
    let planted = "//! a store file\n\
                   use crate::domain::UserId;\n\
                   use crate::{api::AppState, domain::Glucose};\n\
                   fn f() { let _ = crate::api::router(); } // crate::app in a comment\n\
                   #[cfg(test)]\n\
                   mod tests {\n    use crate::api::TestOnly;\n    fn g() { }\n}\n\
                   #[cfg(test)]\n\
                   use crate::api::AlsoTestOnly;\n\
                   fn h() -> &'static str { \"$crate::api\" }\n";
    let files = vec![
        (PathBuf::from("store/planted.rs"), planted.to_owned()),
        (PathBuf::from("store/tests.rs"), "use crate::api::X;".to_owned()),
        (PathBuf::from("api/mod.rs"), "use crate::store::Store;".to_owned()),
    ];
    let found = violations(&order, &files);
    let at: Vec<(usize, &str)> = found.iter().map(|v| (v.line, v.to.as_str())).collect();
    assert_eq!(at, vec![(3, "api"), (4, "api")], "{found:?}");
    assert!(found.iter().all(|v| v.file == "store/planted.rs" && v.from == "store"));
}

#[test]
fn the_layer_order_is_read_from_numbered_doc_lines() {
    let lib = "//! Layers:\n//! 1. `domain`: types\n//! 2. `store`: traits\n//! - `x` is not a layer\npub mod domain;\npub mod store;\n";
    assert_eq!(layer_order(lib), vec!["domain", "store"]);
    assert_eq!(declared_modules(lib), vec!["domain", "store"]);
}

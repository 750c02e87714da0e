//! The layering of `src/`: imports run down the flow, never back up.
//!
//! Every `.rs` file under `src/` is parsed (syn) and every path it names through `crate::`,
//! `super::` or `self::` (in `use` trees and in code) becomes an edge from that file to the file
//! that defines the longest module prefix of the path. Two rules hold:
//!
//! 1. the files form no cycle (a parent `mod.rs` and its child count as two files: a child takes
//!    what it needs from a sibling, not back through its parent);
//! 2. a top-level module imports only from modules listed before it in [`LAYERS`], which is the
//!    flow of ARCHITECTURE.md.
//!
//! Run it alone with `cargo test --test integration layering`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use syn::visit::Visit;

/// The top-level modules of `src/`, lowest first: each may import only from those before it.
const LAYERS: &[&str] = &[
    "text", "clock", "metrics", "links", "yaml", "dingtalk", "source", "rules", "config", "outbox",
    "routing", "delivery", "intake", "console", "daemon", "cli",
];

/// A file's module path: `src/rules/compile.rs` is `["rules", "compile"]`, `src/lib.rs` is `[]`.
fn module_of(src: &Path, file: &Path) -> Vec<String> {
    let relative = file.strip_prefix(src).unwrap();
    let mut parts: Vec<String> = relative
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let last = parts.pop().unwrap();
    let stem = last.strip_suffix(".rs").unwrap();
    if stem != "mod" && stem != "lib" {
        parts.push(stem.to_owned());
    }
    parts
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Collects the absolute module paths a file names, resolving `crate`, `super` and `self` from
/// the module the path appears in (inline modules such as `mod tests` count).
struct Imports {
    /// The module of the file, then of each inline module around the current item.
    scope: Vec<String>,
    /// Every file's module path: a path may also start at a child module (`compile::Rule`).
    modules: BTreeSet<Vec<String>>,
    found: BTreeSet<Vec<String>>,
}

impl Imports {
    fn resolve(&mut self, segments: &[String]) {
        let mut resolved: Vec<String> = match segments.first().map(String::as_str) {
            Some("crate") => Vec::new(),
            Some("super") | Some("self") => self.scope.clone(),
            Some(first) => {
                let mut child = self.scope.clone();
                child.push(first.to_owned());
                if !self.modules.contains(&child) {
                    return;
                }
                self.scope.clone()
            }
            None => return,
        };
        let mut rest = segments;
        if rest[0] == "crate" {
            rest = &rest[1..];
        }
        for segment in rest {
            match segment.as_str() {
                "super" => {
                    resolved.pop();
                }
                "self" => {}
                _ => resolved.push(segment.clone()),
            }
        }
        self.found.insert(resolved);
    }

    fn use_tree(&mut self, prefix: &mut Vec<String>, tree: &syn::UseTree) {
        match tree {
            syn::UseTree::Path(path) => {
                prefix.push(path.ident.to_string());
                self.use_tree(prefix, &path.tree);
                prefix.pop();
            }
            syn::UseTree::Name(name) => {
                let mut full = prefix.clone();
                if name.ident != "self" {
                    full.push(name.ident.to_string());
                }
                self.resolve(&full);
            }
            syn::UseTree::Rename(rename) => {
                let mut full = prefix.clone();
                if rename.ident != "self" {
                    full.push(rename.ident.to_string());
                }
                self.resolve(&full);
            }
            syn::UseTree::Glob(_) => {
                let full = prefix.clone();
                self.resolve(&full);
            }
            syn::UseTree::Group(group) => {
                for tree in &group.items {
                    self.use_tree(prefix, tree);
                }
            }
        }
    }
}

impl<'ast> Visit<'ast> for Imports {
    fn visit_item_use(&mut self, item: &'ast syn::ItemUse) {
        self.use_tree(&mut Vec::new(), &item.tree);
    }

    fn visit_path(&mut self, path: &'ast syn::Path) {
        let segments: Vec<String> = path.segments.iter().map(|s| s.ident.to_string()).collect();
        self.resolve(&segments);
        syn::visit::visit_path(self, path);
    }

    /// `pub(super)` names a module, but imports nothing.
    fn visit_visibility(&mut self, _: &'ast syn::Visibility) {}

    fn visit_item_mod(&mut self, item: &'ast syn::ItemMod) {
        if item.content.is_some() {
            self.scope.push(item.ident.to_string());
            syn::visit::visit_item_mod(self, item);
            self.scope.pop();
        }
    }
}

/// Edges between files, as module paths (`rules::compile` -> `yaml::locate`).
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.retain(|f| f.file_name().unwrap() != "main.rs" && f.file_name().unwrap() != "build.rs");
    let modules: BTreeSet<Vec<String>> = files.iter().map(|f| module_of(&src, f)).collect();
    let mut graph = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let ast = syn::parse_file(&text)
            .unwrap_or_else(|e| panic!("{}: does not parse: {e}", file.display()));
        let mut imports = Imports {
            scope: module.clone(),
            modules: modules.clone(),
            found: BTreeSet::new(),
        };
        imports.visit_file(&ast);
        let mut targets = BTreeSet::new();
        for path in imports.found {
            // The file defining the longest module prefix of the path.
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| modules.contains(prefix))
                .unwrap();
            if target != module && !target.is_empty() {
                targets.insert(target.join("::"));
            }
        }
        graph.insert(module.join("::"), targets);
    }
    graph
}

/// A cycle in the graph, if there is one (depth-first search).
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match state.get(node) {
            Some(2) => return None,
            Some(1) => {
                let start = stack.iter().position(|n| n == node).unwrap();
                let mut cycle = stack[start..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            _ => {}
        }
        state.insert(node.to_owned(), 1);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, state, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        state.insert(node.to_owned(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut state, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[test]
fn files_of_src_import_each_other_without_a_cycle() {
    let graph = file_graph();
    let mut cycles = Vec::new();
    let mut graph = graph;
    // Report every cycle, not just the first: break each one found at its closing edge.
    while let Some(cycle) = find_cycle(&graph) {
        let (from, to) = (&cycle[cycle.len() - 2], &cycle[cycle.len() - 1]);
        graph.get_mut(from).unwrap().remove(to);
        cycles.push(cycle.join(" -> "));
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn top_level_modules_import_only_from_layers_below() {
    let graph = file_graph();
    let layer = |module: &str| {
        let top = module.split("::").next().unwrap();
        LAYERS
            .iter()
            .position(|l| *l == top)
            .unwrap_or_else(|| panic!("`{top}` is not in LAYERS: place it in the flow"))
    };
    let mut upward = Vec::new();
    for (from, targets) in &graph {
        if from.is_empty() {
            continue; // lib.rs declares the modules
        }
        for to in targets {
            if layer(to) > layer(from) {
                upward.push(format!("{from} -> {to}"));
            }
        }
    }
    assert!(
        upward.is_empty(),
        "imports up the flow:\n{}",
        upward.join("\n")
    );
}

#[test]
fn the_check_sees_a_cycle_and_an_upward_import() {
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("a", &["b"][..]),
        ("b", &["c"][..]),
        ("c", &["a"][..]),
        ("d", &[][..]),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.iter().map(|s| s.to_string()).collect()))
    .collect();
    assert_eq!(
        find_cycle(&graph).unwrap(),
        ["a", "b", "c", "a"].map(String::from)
    );
    let mut imports = Imports {
        scope: vec!["rules".into(), "compile".into()],
        modules: [vec!["rules".to_owned(), "compile".into(), "parse".into()]].into(),
        found: BTreeSet::new(),
    };
    let file: syn::File = syn::parse_str(
        "use super::{raw::{self, RawRule}, model::Rule}; use crate::yaml::*; \
         fn f() { crate::config::Config::load(); super::super::cli::run(); parse::raw(); other::x(); }",
    )
    .unwrap();
    imports.visit_file(&file);
    let found: Vec<String> = imports.found.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        found,
        [
            "cli::run",
            "config::Config::load",
            "rules::compile::parse::raw",
            "rules::model::Rule",
            "rules::raw",
            "rules::raw::RawRule",
            "yaml"
        ]
    );
}

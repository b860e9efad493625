//! The crate's shape, checked from its source (production code: each file up to its `#[cfg(test)]`): domain modules
//! never reach the wiring (the app, the web, the workers, the command line, settings) nor the Callback receiver, and
//! no two domain modules import each other, directly or round a longer loop. Settings reach a module only as the
//! wiring hands them in, and a new source of events plugs into the inbox instead of the receiver.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The wiring: it may import anything, and nothing outside it may import it.
const WIRING: &[&str] = &["app", "http", "workers", "main", "lib", "cli", "error", "testkit"];
/// What a domain module may not import besides the wiring.
const ALSO_FORBIDDEN: &[&str] = &["config", "receiver"];

/// Each top-level module of `src` and the top-level modules its production code names as `crate::…`.
fn module_graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let relative = path.strip_prefix(src).unwrap();
            let first = relative.components().next().unwrap().as_os_str().to_str().unwrap();
            let module = first.trim_end_matches(".rs").to_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            let production = text.split("#[cfg(test)]").next().unwrap();
            let targets = graph.entry(module.clone()).or_default();
            for target in crate_paths(production) {
                if target != module {
                    targets.insert(target);
                }
            }
        }
    }
    graph
}

/// The first segment of every `crate::` path in `code`, comments left out: `crate::store::Store` and each member of
/// `use crate::{inbox::Writer, model}`.
fn crate_paths(code: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String { s.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect() };
    let mut found = BTreeSet::new();
    for line in code.lines() {
        let line = line.split("//").next().unwrap();
        for (at, _) in line.match_indices("crate::") {
            let before = line[..at].chars().next_back();
            if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                continue; // `vk_sandbox::crate::…` is not ours (and `$crate::` is a macro's)
            }
            let rest = &line[at + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                continue_group(group, &mut found, &ident);
            } else {
                let name = ident(rest);
                if !name.is_empty() {
                    found.insert(name);
                }
            }
        }
    }
    // Groups that span lines: `use crate::{\n a,\n b::c,\n};`
    for (at, _) in code.match_indices("use crate::{") {
        let group = &code[at + "use crate::{".len()..];
        continue_group(group, &mut found, &ident);
    }
    found
}

fn continue_group(group: &str, found: &mut BTreeSet<String>, ident: &dyn Fn(&str) -> String) {
    let inside = group.split('}').next().unwrap();
    for part in inside.split(',') {
        let part = part.lines().map(|l| l.split("//").next().unwrap()).collect::<String>();
        let name = ident(part.trim());
        if !name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
            found.insert(name);
        }
    }
}

/// Groups of modules that reach each other (each a cycle of imports), among `nodes`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>, nodes: &BTreeSet<String>) -> Vec<Vec<String>> {
    let reach = |from: &String| -> BTreeSet<String> {
        let (mut seen, mut todo) = (BTreeSet::new(), vec![from.clone()]);
        while let Some(m) = todo.pop() {
            for next in graph.get(&m).into_iter().flatten().filter(|n| nodes.contains(*n)) {
                if seen.insert(next.clone()) {
                    todo.push(next.clone());
                }
            }
        }
        seen
    };
    let reachable: BTreeMap<&String, BTreeSet<String>> = nodes.iter().map(|n| (n, reach(n))).collect();
    let mut groups: Vec<Vec<String>> = Vec::new();
    for node in nodes {
        if !reachable[node].contains(node) || groups.iter().any(|g| g.contains(node)) {
            continue;
        }
        let group = nodes.iter().filter(|other| reachable[node].contains(*other) && reachable[*other].contains(node));
        groups.push(group.cloned().collect());
    }
    groups
}

#[test]
fn domain_modules_never_reach_the_wiring_and_import_no_cycle() {
    let graph = module_graph(&Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    for expected in ["inbox", "bot", "forward", "receiver", "store", "http", "app"] {
        assert!(graph.contains_key(expected), "{expected} was read: {:?}", graph.keys());
    }
    assert!(graph["bot"].contains("inbox") && graph["http"].contains("store"), "imports were read: {graph:?}");
    let wiring: BTreeSet<String> = WIRING.iter().map(|s| s.to_string()).collect();
    let mut reaching = Vec::new();
    for (module, targets) in graph.iter().filter(|(m, _)| !wiring.contains(*m)) {
        for target in targets {
            if wiring.contains(target) || ALSO_FORBIDDEN.contains(&target.as_str()) {
                reaching.push(format!("{module} -> {target}"));
            }
        }
    }
    assert_eq!(reaching, Vec::<String>::new(), "domain modules that import the wiring, settings or the receiver");
    let domain: BTreeSet<String> =
        graph.iter().flat_map(|(m, t)| std::iter::once(m).chain(t)).filter(|m| !wiring.contains(*m)).cloned().collect();
    assert_eq!(cycles(&graph, &domain), Vec::<Vec<String>>::new(), "import cycles among domain modules");
}

#[test]
fn the_checker_sees_cycles_and_grouped_imports() {
    let paths = crate_paths("use crate::{\n    inbox::Writer, // the writer\n    model,\n};\nfn f() { crate::store::now_ms(); }\n// crate::http is a comment\n");
    assert_eq!(paths, BTreeSet::from(["inbox".to_owned(), "model".to_owned(), "store".to_owned()]));
    let graph: BTreeMap<String, BTreeSet<String>> = [("a", "b"), ("b", "c"), ("c", "a"), ("d", "a")]
        .iter()
        .map(|(m, t)| (m.to_string(), BTreeSet::from([t.to_string()])))
        .collect();
    let nodes = ["a", "b", "c", "d"].iter().map(|s| s.to_string()).collect();
    assert_eq!(cycles(&graph, &nodes), vec![vec!["a".to_owned(), "b".to_owned(), "c".to_owned()]]);
}

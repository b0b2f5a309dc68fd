//! The layering rules of `src/lib.rs`, checked on the source tree: `domain` is pure, `io` never
//! reaches up into `runtime`, only the flows that wire things import `runtime::context`, and no
//! module imports another that imports it back.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

/// What a `domain` file must not use: I/O, the async runtime, the clock, the environment.
const IMPURE: &[&str] = &[
    "tokio",
    "reqwest",
    "hyper",
    "hyper_util",
    "http_body_util",
    "std::fs",
    "std::env",
    "std::net",
    "std::process",
    "std::thread",
    "SystemTime",
    "Instant",
    "TimeZone::system",
    "rand::rng",
    "make_rng",
    "now_ms()",
];

/// The modules that wire the core together and so may import the composition root.
const WIRING: &[&str] = &[
    "binding",
    "runtime::context",
    "runtime::commands",
    "runtime::login",
    "runtime::proxy",
];

/// One source file: its module path (`domain::usage`, `runtime::login::browser`) and its code
/// with the `#[cfg(test)]` part cut off, since unit tests may use anything (unit tests in a file
/// of their own, `…/tests.rs`, are left out for the same reason).
struct Source {
    module: String,
    code: String,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .filter(|path| {
            !path
                .file_stem()
                .is_some_and(|stem| stem.to_string_lossy().ends_with("tests"))
        })
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut parts: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod" || p == "lib") {
                parts.pop();
            }
            let text = fs::read_to_string(&path).unwrap();
            let code = match text.find("#[cfg(test)]") {
                Some(at) => text[..at].to_owned(),
                None => text,
            };
            let code = code
                .lines()
                .filter(|line| !line.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            Source {
                module: parts.join("::"),
                code,
            }
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Every path into the crate a file names, in `use` trees and inline, as module paths
/// (`crate::domain::{text, usage::Usage}` gives `domain::text` and `domain::usage::Usage`).
fn crate_paths(source: &Source) -> Vec<String> {
    let mut paths = Vec::new();
    let code = &source.code;
    for (start, _) in code
        .match_indices("crate::")
        .chain(code.match_indices("super::"))
    {
        if start > 0
            && code[..start].ends_with(|c: char| c.is_alphanumeric() || c == '_' || c == ':')
        {
            continue;
        }
        let rest = &code[start..];
        let (base, tail) = if let Some(tail) = rest.strip_prefix("crate::") {
            (String::new(), tail)
        } else {
            let mut parent: Vec<&str> = source.module.split("::").collect();
            let mut tail = rest;
            while let Some(after) = tail.strip_prefix("super::") {
                parent.pop();
                tail = after;
            }
            (parent.join("::"), tail)
        };
        expand(&base, tail, &mut paths);
    }
    paths
}

/// Expands one use tree (or a plain path) that starts at `text`, below `base`.
fn expand(base: &str, text: &str, out: &mut Vec<String>) {
    let join = |a: &str, b: &str| {
        if a.is_empty() {
            b.to_owned()
        } else if b.is_empty() || b == "self" {
            a.to_owned()
        } else {
            format!("{a}::{b}")
        }
    };
    let mut path = String::new();
    for (i, c) in text.char_indices() {
        match c {
            '{' => {
                // The group runs to its matching brace; each comma-separated item is a tree.
                let mut depth = 1;
                let mut end = i + 1;
                for (j, d) in text[i + 1..].char_indices() {
                    match d {
                        '{' => depth += 1,
                        '}' => depth -= 1,
                        _ => {}
                    }
                    if depth == 0 {
                        end = i + 1 + j;
                        break;
                    }
                }
                let prefix = join(base, path.trim_end_matches("::"));
                let mut level = 0;
                let mut item_start = i + 1;
                for (j, d) in text[i + 1..end].char_indices() {
                    match d {
                        '{' => level += 1,
                        '}' => level -= 1,
                        ',' if level == 0 => {
                            expand(&prefix, text[item_start..i + 1 + j].trim(), out);
                            item_start = i + 2 + j;
                        }
                        _ => {}
                    }
                }
                expand(&prefix, text[item_start..end].trim(), out);
                return;
            }
            c if c.is_alphanumeric() || c == '_' || c == ':' => path.push(c),
            _ => break,
        }
    }
    let path = path.trim_end_matches("::");
    if !path.is_empty() || !base.is_empty() {
        out.push(join(base, path));
    }
}

/// The source file a module path lands in: its longest prefix that is a module.
fn owner<'a>(path: &str, modules: &'a BTreeSet<String>) -> &'a str {
    let parts: Vec<&str> = path.split("::").collect();
    (0..=parts.len())
        .rev()
        .map(|n| parts[..n].join("::"))
        .find_map(|prefix| modules.get(&prefix))
        .map(String::as_str)
        .unwrap_or("")
}

fn layer(module: &str) -> &str {
    module.split("::").next().unwrap_or("")
}

/// Which module imports which (the root's re-exports are the public API, not imports).
fn graph(sources: &[Source]) -> BTreeMap<String, BTreeSet<String>> {
    let modules: BTreeSet<String> = sources.iter().map(|s| s.module.clone()).collect();
    sources
        .iter()
        .filter(|s| !s.module.is_empty())
        .map(|source| {
            let targets = crate_paths(source)
                .iter()
                .map(|path| owner(path, &modules).to_owned())
                .filter(|target| *target != source.module)
                .collect();
            (source.module.clone(), targets)
        })
        .collect()
}

/// Everything wrong with a tree, one line each.
fn violations(sources: &[Source]) -> Vec<String> {
    let mut wrong = Vec::new();
    let graph = graph(sources);
    for source in sources.iter().filter(|s| layer(&s.module) == "domain") {
        for word in IMPURE {
            if source.code.contains(word) {
                wrong.push(format!("{} (domain) uses {word}", source.module));
            }
        }
    }
    for (module, targets) in &graph {
        for target in targets {
            let allowed = match layer(module) {
                "domain" => matches!(layer(target), "domain" | "error"),
                "io" => !matches!(layer(target), "runtime" | "binding"),
                "error" | "config" => matches!(layer(target), "error" | "config"),
                _ => true,
            };
            if !allowed {
                wrong.push(format!("{module} imports {target}"));
            }
            let wires = WIRING
                .iter()
                .any(|w| module == w || module.starts_with(&format!("{w}::")));
            if target == "runtime::context" && !wires {
                wrong.push(format!("{module} imports runtime::context"));
            }
        }
    }
    wrong.extend(cycles(&graph));
    wrong
}

/// Each import cycle, once, as `a -> b -> a`.
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut found = BTreeSet::new();
    for start in graph.keys() {
        let mut stack = vec![(start.clone(), vec![start.clone()])];
        let mut seen = BTreeSet::new();
        while let Some((node, trail)) = stack.pop() {
            for next in graph.get(&node).into_iter().flatten() {
                if next == start {
                    let mut cycle = trail.clone();
                    // One rotation of each cycle, so it is reported once.
                    let least = cycle.iter().enumerate().min_by_key(|(_, m)| *m).unwrap().0;
                    cycle.rotate_left(least);
                    cycle.push(cycle[0].clone());
                    found.insert(cycle.join(" -> "));
                } else if seen.insert(next.clone()) {
                    let mut trail = trail.clone();
                    trail.push(next.clone());
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    found
        .into_iter()
        .map(|c| format!("import cycle: {c}"))
        .collect()
}

#[test]
fn the_source_tree_keeps_its_layers() {
    let sources = sources();
    assert!(
        sources.iter().any(|s| s.module == "domain::select"),
        "the tree was found"
    );
    let wrong = violations(&sources);
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

/// The checker itself: each rule catches what it names.
#[test]
fn each_broken_rule_is_caught() {
    let file = |module: &str, code: &str| Source {
        module: module.into(),
        code: code.into(),
    };
    let tree = |extra: Source| {
        let mut sources = vec![
            file("", ""),
            file("error", ""),
            file("domain", ""),
            file("domain::usage", "use crate::error::Error;"),
            file("domain::select", "use crate::domain::{usage::Usage, self};"),
            file("io", ""),
            file("io::store", "use crate::domain::select;"),
            file("runtime", ""),
            file("runtime::context", "use crate::io::store::Store;"),
            file("runtime::pool", "use super::super::domain::select;"),
            file("runtime::proxy", "use crate::runtime::context::Context;"),
        ];
        sources.push(extra);
        violations(&sources)
    };
    assert_eq!(tree(file("domain::text", "")), Vec::<String>::new());
    let cases = [
        (
            file("domain::clock", "use tokio::time::sleep;"),
            "uses tokio",
        ),
        (
            file("domain::flow", "use crate::runtime::pool::Pool;"),
            "domain::flow imports runtime::pool",
        ),
        (
            file("domain::fs", "fn f() { std::fs::read(\"x\"); }"),
            "uses std::fs",
        ),
        (
            file("io::up", "use crate::runtime::{pool, context::Context};"),
            "io::up imports runtime::pool",
        ),
        (
            file("runtime::usage", "use crate::runtime::context::Context;"),
            "runtime::usage imports runtime::context",
        ),
        (
            file("domain::failure", "use super::{select::Reason, loop_back};"),
            "",
        ),
    ];
    for (extra, expected) in cases {
        let module = extra.module.clone();
        let wrong = tree(extra);
        if expected.is_empty() {
            assert!(wrong.is_empty(), "{module}: {wrong:?}");
        } else {
            assert!(
                wrong.iter().any(|w| w.contains(expected)),
                "{module}: {expected:?} not in {wrong:?}"
            );
        }
    }
    // A cycle: select imports usage already; usage importing select closes it.
    let mut sources = vec![
        file("domain::usage", "use crate::domain::select::Seat;"),
        file("domain::select", "use crate::domain::usage::Usage;"),
    ];
    sources.push(file("domain", ""));
    let wrong = violations(&sources);
    assert!(
        wrong
            .iter()
            .any(|w| w == "import cycle: domain::select -> domain::usage -> domain::select"),
        "{wrong:?}"
    );
}

//! The data plane's import layers, checked from its source text.
//!
//! Every `.rs` file under `src/` belongs to one node of a graph: its top-level folder
//! (`surfaces/`, `pipeline/`, …) or, for a file directly in `src/`, the file itself (`error.rs`,
//! `limits.rs`, `lib.rs`). A path written as `crate::x…` (or a `super::` chain that climbs out of
//! the file's folder) is an edge to the node `x` (to `lib` when `x` is an item of the crate
//! root). The rule: no cycle of these edges spans more than one node — lower modules never
//! import the modules that use them. Cycles inside one folder are that folder's own business.
//!
//! A second test holds the pipeline's stages to their order: a stage names only the stages
//! before it (`pipeline/mod.rs` composes them and is named by none).
//!
//! Comments and doc comments are ignored (a doc link is not an import); string literals are not
//! stripped (none of ours spells a `crate::` path).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A reference from one file to a node, for the failure message.
#[derive(Debug, Clone)]
struct Edge {
    file: String,
    line: usize,
    path: String,
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

/// The top-level nodes: each folder and each file directly under `src/`.
fn nodes(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            if p.is_dir() {
                Some(p.file_name()?.to_str()?.to_owned())
            } else if p.extension().is_some_and(|e| e == "rs") {
                Some(p.file_stem()?.to_str()?.to_owned())
            } else {
                None
            }
        })
        .collect()
}

/// The module path of a file: `server/ladder.rs` → `[server, ladder]`, `server/mod.rs` →
/// `[server]`, `lib.rs` → `[]`.
fn module_path(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|c| c.to_str().unwrap().trim_end_matches(".rs").to_owned())
        .collect();
    if parts.last().is_some_and(|l| l == "mod" || l == "lib") {
        parts.pop();
    }
    parts
}

/// The code of a line, without its `//` comment.
fn code(line: &str) -> &str {
    match line.find("//") {
        Some(i) => &line[..i],
        None => line,
    }
}

fn ident_at(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .unwrap_or(s.len());
    &s[..end]
}

/// The first segment of each path a `crate::` or `super::` prefix leads to: `x` for `x::…`, and
/// each member's first segment for a group `{x::…, y}`.
fn heads(after: &str) -> Vec<String> {
    if let Some(group) = after.strip_prefix('{') {
        let mut depth = 0usize;
        let mut heads = Vec::new();
        let mut start = 0;
        for (i, c) in group.char_indices() {
            match c {
                '{' => depth += 1,
                '}' if depth == 0 => {
                    heads.push(ident_at(group[start..i].trim()).to_owned());
                    break;
                }
                '}' => depth -= 1,
                ',' if depth == 0 => {
                    heads.push(ident_at(group[start..i].trim()).to_owned());
                    start = i + 1;
                }
                _ => {}
            }
        }
        heads.retain(|h| !h.is_empty());
        heads
    } else {
        vec![ident_at(after).to_owned()]
    }
}

/// Every edge of the crate, by (from, to) node.
fn graph() -> BTreeMap<(String, String), Vec<Edge>> {
    let src = src();
    let nodes = nodes(&src);
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), Vec<Edge>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&src).unwrap().to_path_buf();
        let module = module_path(&rel);
        let from = module.first().cloned().unwrap_or_else(|| "lib".to_owned());
        let text = std::fs::read_to_string(&file).unwrap();
        // Inside an inline `mod x {` (tests), `super::` climbs one level less out of the file.
        let mut inline = false;
        for (n, line) in text.lines().enumerate() {
            let line = code(line);
            let t = line.trim_start();
            if (t.starts_with("mod ")
                || t.starts_with("pub mod ")
                || t.starts_with("pub(crate) mod "))
                && t.trim_end().ends_with('{')
            {
                inline = true;
            }
            let mut targets: Vec<(Vec<String>, String)> = Vec::new();
            let mut rest = line;
            while let Some(i) = rest.find("crate::") {
                let preceded = rest[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == '$');
                let after = &rest[i + "crate::".len()..];
                if !preceded {
                    for h in heads(after) {
                        targets.push((Vec::new(), h));
                    }
                }
                rest = after;
            }
            let mut rest = line;
            while let Some(i) = rest.find("super::") {
                let preceded = rest[..i]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':');
                let mut after = &rest[i..];
                if preceded {
                    rest = &rest[i + "super::".len()..];
                    continue;
                }
                let mut ups = 0usize;
                while let Some(a) = after.strip_prefix("super::") {
                    ups += 1;
                    after = a;
                }
                let ups = ups - usize::from(inline);
                // The module the chain names, from the file's own module path.
                let depth = module.len();
                let base = if ups <= depth {
                    module[..depth - ups].to_vec()
                } else {
                    Vec::new()
                };
                for h in heads(after) {
                    targets.push((base.clone(), h));
                }
                rest = after;
            }
            for (base, head) in targets {
                let to = match base.first() {
                    Some(top) => top.clone(),
                    None if nodes.contains(&head) => head.clone(),
                    None if head == "self" || head.is_empty() => continue,
                    None => "lib".to_owned(),
                };
                if to == from {
                    continue;
                }
                edges.entry((from.clone(), to)).or_default().push(Edge {
                    file: rel.display().to_string(),
                    line: n + 1,
                    path: format!(
                        "{}{head}",
                        if base.is_empty() {
                            "crate::"
                        } else {
                            "super::…::"
                        }
                    ),
                });
            }
        }
    }
    edges
}

/// Strongly connected components with more than one node (Tarjan).
fn cycles(edges: &BTreeMap<(String, String), Vec<Edge>>) -> Vec<Vec<String>> {
    let mut adj: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (from, to) in edges.keys() {
        adj.entry(from).or_default().push(to);
        adj.entry(to).or_default();
    }
    struct State<'a> {
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        next: usize,
        out: Vec<Vec<String>>,
    }
    fn visit<'a>(v: &'a str, adj: &BTreeMap<&'a str, Vec<&'a str>>, s: &mut State<'a>) {
        s.index.insert(v, s.next);
        s.low.insert(v, s.next);
        s.next += 1;
        s.stack.push(v);
        s.on_stack.insert(v);
        for &w in &adj[v] {
            if !s.index.contains_key(w) {
                visit(w, adj, s);
                let lw = s.low[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(lw);
            } else if s.on_stack.contains(w) {
                let iw = s.index[w];
                let lv = s.low.get_mut(v).unwrap();
                *lv = (*lv).min(iw);
            }
        }
        if s.low[v] == s.index[v] {
            let mut scc = Vec::new();
            while let Some(w) = s.stack.pop() {
                s.on_stack.remove(w);
                scc.push(w.to_owned());
                if w == v {
                    break;
                }
            }
            if scc.len() > 1 {
                scc.sort();
                s.out.push(scc);
            }
        }
    }
    let mut s = State {
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        next: 0,
        out: Vec::new(),
    };
    for &v in adj.keys() {
        if !s.index.contains_key(v) {
            visit(v, &adj, &mut s);
        }
    }
    s.out
}

#[test]
fn no_cycle_of_imports_spans_more_than_one_folder() {
    let edges = graph();
    let found = cycles(&edges);
    if found.is_empty() {
        return;
    }
    let mut report = String::new();
    for scc in &found {
        report.push_str(&format!("\ncycle through {}:\n", scc.join(", ")));
        for ((from, to), refs) in &edges {
            if scc.contains(from) && scc.contains(to) {
                let r = &refs[0];
                report.push_str(&format!(
                    "  {from} -> {to}: {} at {}:{} (and {} more)\n",
                    r.path,
                    r.file,
                    r.line,
                    refs.len() - 1
                ));
            }
        }
    }
    panic!("imports run upward:{report}");
}

/// The pipeline's stages, lowest first: each may name only the ones before it.
const STAGES: &[&str] = &[
    "context", "account", "parse", "admit", "cached", "plan", "attempt", "pump", "answer",
    "models", "videos",
];

#[test]
fn each_pipeline_stage_names_only_the_stages_below_it() {
    let dir = src().join("pipeline");
    if !dir.is_dir() {
        panic!("no pipeline folder: the request path is not one pipeline yet");
    }
    let mut problems = Vec::new();
    let mut files = Vec::new();
    rust_files(&dir, &mut files);
    for file in files {
        let stage = file.file_stem().unwrap().to_str().unwrap().to_owned();
        if stage == "mod" {
            continue;
        }
        let Some(rank) = STAGES.iter().position(|s| *s == stage) else {
            problems.push(format!("pipeline/{stage}.rs is not in STAGES"));
            continue;
        };
        let text = std::fs::read_to_string(&file).unwrap();
        let mut inline = false;
        for (n, line) in text.lines().enumerate() {
            let line = code(line);
            let t = line.trim_start();
            if t.starts_with("mod ") && t.trim_end().ends_with('{') {
                inline = true;
            }
            let mut names = Vec::new();
            let mut rest = line;
            while let Some(i) = rest.find("crate::pipeline::") {
                rest = &rest[i + "crate::pipeline::".len()..];
                names.extend(heads(rest));
            }
            // `super::x` from a stage file is `pipeline::x` (in its inline tests, the stage).
            let mut rest = line;
            while let Some(i) = rest.find("super::") {
                let after = &rest[i + "super::".len()..];
                if !inline {
                    names.extend(heads(after));
                }
                rest = after;
            }
            for name in names {
                if name == "super" || name == "self" || name.is_empty() {
                    continue;
                }
                match STAGES.iter().position(|s| *s == name) {
                    Some(r) if r < rank => {}
                    Some(_) => problems.push(format!(
                        "pipeline/{stage}.rs:{} names the later stage `{name}`",
                        n + 1
                    )),
                    None => problems.push(format!(
                        "pipeline/{stage}.rs:{} names `{name}` of pipeline/mod.rs",
                        n + 1
                    )),
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

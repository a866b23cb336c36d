//! The data plane's layering, checked from its sources: state and the types messages carry never
//! import the code that handles them, so the only import cycles between files are the ones
//! docs/ARCHITECTURE.md ("Data apart from handlers") names as by design.
//!
//! A file's imports are its `use crate::…` and `use super::…` paths (groups expanded), the
//! `crate::…` paths in its code, and the paths through the child modules it declares; test code
//! (from the first `#[cfg(test)]`) does not count. Each path goes to the longest module it names.

use std::{
    collections::{BTreeMap, BTreeSet},
    fs,
    path::Path,
};

/// The cycles allowed: a cycle found must lie within one of these.
const BY_DESIGN: &[&[&str]] = &[
    // The in-place owner step applies every message already in the inbox before its own.
    &[
        "route",
        "route::users",
        "route::channels",
        "route::presence",
        "admit::decide",
        "history::resume",
        "pusher::presence",
    ],
    // The shard's state holds the mesh; a `NodeMsg::Invoke` carries code run against that state.
    &["shard", "mesh", "inbox", "messages"],
    // A module and one of its children.
    &["history", "history::ring"],
    &["protocol", "protocol::parse"],
];

#[test]
fn only_the_cycles_by_design_remain() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut sources = BTreeMap::new();
    read_modules(&root, &root, &mut sources);
    assert!(sources.len() > 50, "found only {} modules", sources.len());
    let modules: BTreeSet<String> = sources.keys().cloned().collect();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (module, src) in &sources {
        let edges = graph.entry(module.clone()).or_default();
        for path in imports(module, src) {
            if let Some(target) = longest_module(&path, &modules)
                && target != *module
            {
                edges.insert(target);
            }
        }
    }
    let cycles: Vec<Vec<String>> = components(&graph)
        .into_iter()
        .filter(|c| c.len() > 1)
        .collect();
    let unexpected: Vec<&Vec<String>> = cycles
        .iter()
        .filter(|c| {
            !BY_DESIGN
                .iter()
                .any(|allowed| c.iter().all(|m| allowed.contains(&m.as_str())))
        })
        .collect();
    assert!(
        unexpected.is_empty(),
        "import cycles beyond the ones by design: {unexpected:?}\n(all cycles: {cycles:?})"
    );
    // The check sees imports at all: the routing handlers do form their cycle.
    assert!(
        cycles.iter().any(|c| c.contains(&"route".to_string())),
        "{cycles:?}"
    );
}

/// Every module's source by its path (`a::b`), `lib.rs` and `tests.rs` files left out.
fn read_modules(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
    for entry in fs::read_dir(dir).expect("read the source directory") {
        let path = entry.expect("a directory entry").path();
        if path.is_dir() {
            read_modules(root, &path, out);
            continue;
        }
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let rel = path.strip_prefix(root).expect("under the root");
        let mut parts: Vec<String> = rel
            .with_extension("")
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect();
        if parts.last().is_some_and(|p| p == "mod") {
            parts.pop();
        }
        if parts == ["lib"] || parts.last().is_some_and(|p| p == "tests") {
            continue;
        }
        out.insert(
            parts.join("::"),
            fs::read_to_string(&path).expect("read a source file"),
        );
    }
}

/// The module paths `src` (of `module`) refers to, as absolute segments.
fn imports(module: &str, src: &str) -> Vec<Vec<String>> {
    let code = code_of(src);
    let me: Vec<String> = module.split("::").map(str::to_string).collect();
    let mut paths = Vec::new();
    let mut rest = code.as_str();
    while let Some(at) = find_word(rest, "use") {
        let tail = &rest[at + 3..];
        let end = tail.find(';').unwrap_or(tail.len());
        let stmt: String = tail[..end].chars().filter(|c| !c.is_whitespace()).collect();
        for path in expand(&stmt) {
            let segs: Vec<&str> = path.split("::").collect();
            match segs.first() {
                Some(&"crate") => paths.push(segs[1..].iter().map(|s| s.to_string()).collect()),
                Some(&"super") => {
                    let ups = segs.iter().take_while(|s| **s == "super").count();
                    let mut full = me[..me.len().saturating_sub(ups)].to_vec();
                    full.extend(segs[ups..].iter().map(|s| s.to_string()));
                    paths.push(full);
                }
                _ => {}
            }
        }
        rest = &tail[end..];
    }
    let mut rest = code.as_str();
    while let Some(at) = find_word(rest, "crate::") {
        let tail = &rest[at + 7..];
        let end = tail
            .find(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .unwrap_or(tail.len());
        paths.push(tail[..end].split("::").map(str::to_string).collect());
        rest = &tail[end..];
    }
    for child in declared_children(&code) {
        if find_word(&code, &format!("{child}::")).is_some() {
            let mut full = me.clone();
            full.push(child);
            paths.push(full);
        }
    }
    paths
}

/// `src` without comments and without test code.
fn code_of(src: &str) -> String {
    let src = src.find("#[cfg(test)]").map_or(src, |at| &src[..at]);
    src.lines()
        .map(|line| line.find("//").map_or(line, |at| &line[..at]))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Where `word` starts in `s` with no identifier character or `:` right before it.
fn find_word(s: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = s[from..].find(word) {
        let at = from + i;
        let before = s[..at].chars().next_back();
        let after = s[at + word.len()..].chars().next();
        let starts = before.is_none_or(|c| !(c.is_alphanumeric() || c == '_' || c == ':'));
        let ends = word.ends_with(':') || after.is_none_or(|c| !(c.is_alphanumeric() || c == '_'));
        if starts && ends {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// The modules `code` declares: `mod x;`, `pub mod x;`, `pub(crate) mod x;`.
fn declared_children(code: &str) -> Vec<String> {
    code.lines()
        .filter_map(|line| {
            let line = line.trim();
            let decl = line.strip_suffix(';')?;
            let name = decl.rsplit_once("mod ")?.1;
            let head = decl.rsplit_once("mod ")?.0.trim();
            let visibility = head.is_empty() || head.starts_with("pub");
            (visibility && name.chars().all(|c| c.is_alphanumeric() || c == '_'))
                .then(|| name.to_string())
        })
        .collect()
}

/// A `use` tree without whitespace, its groups expanded: `a::{b,c::{d}}` → `a::b`, `a::c::d`.
fn expand(tree: &str) -> Vec<String> {
    let Some(open) = tree.find('{') else {
        return vec![tree.to_string()];
    };
    let prefix = &tree[..open];
    let body = &tree[open + 1..tree.rfind('}').unwrap_or(tree.len())];
    let (mut items, mut depth, mut start) = (Vec::new(), 0, 0);
    for (i, c) in body.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&body[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    items.push(&body[start..]);
    items
        .into_iter()
        .filter(|item| !item.is_empty())
        .flat_map(|item| {
            expand(item)
                .into_iter()
                .map(move |p| format!("{prefix}{p}"))
        })
        .collect()
}

/// The longest module that `path` names, if any.
fn longest_module(path: &[String], modules: &BTreeSet<String>) -> Option<String> {
    (1..=path.len())
        .rev()
        .map(|n| path[..n].join("::"))
        .find(|m| modules.contains(m))
}

/// The strongly connected components of `graph` (Tarjan), each sorted.
fn components(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    struct Walk<'a> {
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        index: BTreeMap<&'a str, usize>,
        low: BTreeMap<&'a str, usize>,
        stack: Vec<&'a str>,
        on_stack: BTreeSet<&'a str>,
        out: Vec<Vec<String>>,
    }
    impl<'a> Walk<'a> {
        fn visit(&mut self, v: &'a str) {
            let n = self.index.len();
            self.index.insert(v, n);
            self.low.insert(v, n);
            self.stack.push(v);
            self.on_stack.insert(v);
            for w in self.graph.get(v).into_iter().flatten() {
                let w = w.as_str();
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let low = self.low[v].min(self.low[w]);
                    self.low.insert(v, low);
                } else if self.on_stack.contains(w) {
                    let low = self.low[v].min(self.index[w]);
                    self.low.insert(v, low);
                }
            }
            if self.low[v] == self.index[v] {
                let mut component = Vec::new();
                while let Some(w) = self.stack.pop() {
                    self.on_stack.remove(w);
                    component.push(w.to_string());
                    if w == v {
                        break;
                    }
                }
                component.sort();
                self.out.push(component);
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        on_stack: BTreeSet::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v.as_str()) {
            walk.visit(v);
        }
    }
    walk.out
}

//! The import graph between a crate's files, read from its source text, and
//! the circles in it: groups of files each of which reaches the others
//! through `use crate::…`, `super::…` and inline `crate::…` paths.
//!
//! A file may use its ancestors (a module may use its parent), so an edge
//! from a file to an ancestor's file is left out; every other edge counts,
//! a parent's use of its child included. A path resolves to the file of its
//! longest prefix that is a module file (what a re-export hides stays with
//! the module that re-exports it). A file's `#[cfg(test)] mod tests` block
//! is left out: tests may reach anywhere.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A crate's module files, by module path (`[]` for `lib.rs`/`main.rs`).
pub struct Graph {
    files: BTreeMap<Vec<String>, PathBuf>,
    edges: BTreeMap<Vec<String>, BTreeSet<Vec<String>>>,
}

impl Graph {
    /// Reads every `.rs` file under `src` (a crate's `src/` folder); files
    /// under `src/bin/` are roots of their own and left out.
    pub fn read(src: &Path) -> std::io::Result<Graph> {
        let mut files = BTreeMap::new();
        for path in rust_files(src)? {
            let relative = path.strip_prefix(src).expect("under src");
            if relative.starts_with("bin") {
                continue;
            }
            files.insert(module_of(relative), path);
        }
        let mut edges = BTreeMap::new();
        for (module, path) in &files {
            let text = without_tests(&strip_comments_and_strings(&std::fs::read_to_string(path)?));
            let mut targets = BTreeSet::new();
            for reference in references(&text) {
                let Some(absolute) = resolve(module, &reference) else { continue };
                let Some(target) = longest_file(&files, &absolute) else { continue };
                if target != *module && !module.starts_with(&target) {
                    targets.insert(target);
                }
            }
            edges.insert(module.clone(), targets);
        }
        Ok(Graph { files, edges })
    }

    /// Each circle: the files (paths as read) of a strongly connected group
    /// of two or more.
    pub fn circles(&self) -> Vec<Vec<PathBuf>> {
        let nodes: Vec<&Vec<String>> = self.files.keys().collect();
        let reach = |from: &Vec<String>| -> BTreeSet<Vec<String>> {
            let mut seen = BTreeSet::new();
            let mut stack = vec![from.clone()];
            while let Some(n) = stack.pop() {
                for next in self.edges.get(&n).into_iter().flatten() {
                    if seen.insert(next.clone()) {
                        stack.push(next.clone());
                    }
                }
            }
            seen
        };
        let reaches: BTreeMap<&Vec<String>, BTreeSet<Vec<String>>> = nodes.iter().map(|n| (*n, reach(n))).collect();
        let mut placed = BTreeSet::new();
        let mut circles = vec![];
        for n in &nodes {
            if placed.contains(*n) || !reaches[n].contains(*n) {
                continue;
            }
            let group: Vec<&Vec<String>> =
                nodes.iter().copied().filter(|m| reaches[n].contains(*m) && reaches[m].contains(*n)).collect();
            placed.extend(group.iter().map(|m| (*m).clone()));
            circles.push(group.into_iter().map(|m| self.files[m].clone()).collect());
        }
        circles
    }
}

fn rust_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            out.extend(rust_files(&path)?);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
    Ok(out)
}

/// `a/b.rs` and `a/b/mod.rs` are module `[a, b]`; `lib.rs` and `main.rs` the root.
fn module_of(relative: &Path) -> Vec<String> {
    let mut parts: Vec<String> = relative.iter().map(|p| p.to_string_lossy().into_owned()).collect();
    let last = parts.pop().unwrap_or_default();
    let stem = last.trim_end_matches(".rs");
    if !(stem == "mod" || (parts.is_empty() && (stem == "lib" || stem == "main"))) {
        parts.push(stem.to_owned());
    }
    parts
}

/// The source with comments, string and character literals blanked, so a
/// path in a doc comment or a message is not an import.
fn strip_comments_and_strings(text: &str) -> String {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < chars.len() {
                if chars[i] == '/' && chars.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if chars[i] == '*' && chars.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
        } else if c == 'r' && (next == Some('#') || next == Some('"')) && !prev_is_ident(&chars, i) {
            // A raw string: r"…", r#"…"#, …
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= chars.len() {
                    break;
                }
                if chars[j] == '"' && (0..hashes).all(|k| chars.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("\"\"");
            i += 1;
        } else if c == '\'' && is_char_literal(&chars, i) {
            i += 1;
            while i < chars.len() && chars[i] != '\'' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            out.push_str("' '");
            i += 1;
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn prev_is_ident(chars: &[char], i: usize) -> bool {
    i > 0 && (chars[i - 1].is_alphanumeric() || chars[i - 1] == '_')
}

/// `'x'`, `'\n'`, `'\u{1F600}'` — not a lifetime such as `'a`.
fn is_char_literal(chars: &[char], i: usize) -> bool {
    match chars.get(i + 1) {
        Some('\\') => true,
        Some(_) => chars.get(i + 2) == Some(&'\''),
        None => false,
    }
}

/// The text without its `#[cfg(test)] mod … { … }` blocks.
fn without_tests(text: &str) -> String {
    const ATTRIBUTE: &str = "#[cfg(test)]";
    let mut out = String::new();
    let mut rest = text;
    while let Some(at) = rest.find(ATTRIBUTE) {
        let after = &rest[at + ATTRIBUTE.len()..];
        let item = after.trim_start();
        let block = item.strip_prefix("mod ").and_then(|m| {
            let open = m.find(['{', ';'])?;
            (m.as_bytes()[open] == b'{').then(|| rest.len() - m.len() + open)
        });
        match block.and_then(|open| matching_brace(rest, open)) {
            Some(end) => {
                out.push_str(&rest[..at]);
                rest = &rest[end..];
            }
            None => {
                out.push_str(&rest[..at + ATTRIBUTE.len()]);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

fn matching_brace(text: &str, open: usize) -> Option<usize> {
    let mut depth = 0;
    for (i, c) in text[open..].char_indices() {
        match c {
            '{' => depth += 1,
            '}' => {
                depth -= 1;
                if depth == 0 {
                    return Some(open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// Every `crate::…`, `super::…` and `self::…` path: each leaf of each `use`
/// tree, and each such path written inline.
fn references(text: &str) -> Vec<Vec<String>> {
    let mut out = vec![];
    let mut rest = text;
    while let Some(at) = find_word(rest, "use") {
        let tail = &rest[at + 3..];
        let Some(end) = tail.find(';') else { break };
        expand(&tail[..end], &mut vec![], &mut out);
        rest = &tail[end..];
    }
    for word in ["crate", "super", "self"] {
        let mut rest = text;
        while let Some(at) = find_word(rest, word) {
            let path: String = rest[at..]
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || c.is_whitespace())
                .filter(|c| !c.is_whitespace())
                .collect();
            let parts: Vec<String> = path.split("::").filter(|p| !p.is_empty()).map(str::to_owned).collect();
            if parts.len() > 1 {
                out.push(parts);
            }
            rest = &rest[at + word.len()..];
        }
    }
    out
}

/// The offset of `word` standing alone (not inside an identifier).
fn find_word(text: &str, word: &str) -> Option<usize> {
    let mut from = 0;
    while let Some(i) = text[from..].find(word) {
        let at = from + i;
        let before = text[..at].chars().next_back();
        let after = text[at + word.len()..].chars().next();
        let ident = |c: Option<char>| c.is_some_and(|c| c.is_alphanumeric() || c == '_');
        if !ident(before) && !ident(after) {
            return Some(at);
        }
        from = at + word.len();
    }
    None
}

/// Expands a `use` tree (`a::{b, c::{d as e}}`) into its paths.
fn expand(tree: &str, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    for item in split_top(tree) {
        let item = item.trim();
        let depth = prefix.len();
        let (head, group) = match item.find('{') {
            Some(open) => (&item[..open], Some(&item[open + 1..item.rfind('}').unwrap_or(item.len())])),
            None => (item, None),
        };
        let head = head.split(" as ").next().unwrap_or(head);
        let head: String = head.chars().filter(|c| !c.is_whitespace()).collect();
        prefix.extend(head.split("::").filter(|p| !p.is_empty() && *p != "*").map(str::to_owned));
        match group {
            Some(group) => expand(group, prefix, out),
            None => out.push(prefix.clone()),
        }
        prefix.truncate(depth);
    }
}

/// Splits at the commas outside braces.
fn split_top(tree: &str) -> Vec<&str> {
    let (mut parts, mut depth, mut start) = (vec![], 0, 0);
    for (i, c) in tree.char_indices() {
        match c {
            '{' => depth += 1,
            '}' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&tree[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&tree[start..]);
    parts.into_iter().filter(|p| !p.trim().is_empty()).collect()
}

/// A path from `module` made absolute within the crate; None for a path
/// that leaves it (another crate's).
fn resolve(module: &[String], path: &[String]) -> Option<Vec<String>> {
    let mut at: Vec<String>;
    let mut parts = path.iter().peekable();
    match parts.peek().map(|s| s.as_str()) {
        Some("crate") => {
            parts.next();
            at = vec![];
        }
        Some("super") | Some("self") => {
            at = module.to_vec();
            while let Some(p) = parts.peek() {
                match p.as_str() {
                    "super" => {
                        at.pop()?;
                    }
                    "self" => {}
                    _ => break,
                }
                parts.next();
            }
        }
        _ => return None,
    }
    at.extend(parts.cloned());
    Some(at)
}

fn longest_file(files: &BTreeMap<Vec<String>, PathBuf>, path: &[String]) -> Option<Vec<String>> {
    (0..=path.len()).rev().map(|n| path[..n].to_vec()).find(|p| files.contains_key(p))
}

//! Writing a config file: a small tree of keys, values and comments rendered as PgDoorman
//! YAML or TOML. `generate` and the pgbouncer.ini import build one; serde cannot, because the
//! output carries a comment per key.

use std::fmt::Write;

/// A value in the tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Node {
    /// A string (always written quoted, JSON escapes: valid in YAML and TOML).
    Str(String),
    /// An integer.
    Int(i64),
    /// A boolean.
    Bool(bool),
    /// Keys in order.
    Map(Vec<Entry>),
    /// A list of maps (TOML: an array of tables) or of scalars (an inline array).
    List(Vec<Node>),
    /// A key with no value by default, written commented out (`# key:`) so a reference
    /// config shows it without setting it.
    Unset,
}

/// One key of a map with its value and an optional comment written above it.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    /// The key.
    pub key: String,
    /// Its value.
    pub value: Node,
    /// Written as `# ...` lines above the key when comments are on.
    pub comment: Option<String>,
}

impl Entry {
    /// An entry without a comment.
    pub fn new(key: impl Into<String>, value: Node) -> Entry {
        Entry {
            key: key.into(),
            value,
            comment: None,
        }
    }

    /// The same entry with a comment.
    pub fn note(mut self, comment: impl Into<String>) -> Entry {
        self.comment = Some(comment.into());
        self
    }
}

/// A string node.
pub fn s(v: impl Into<String>) -> Node {
    Node::Str(v.into())
}

/// Output format of [`render`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// PgDoorman's primary format.
    Yaml,
    /// TOML, users as an array of tables.
    Toml,
}

/// Renders `root` (a map) as a config file; `header` lines and entry comments are written
/// only when `comments` is true.
pub fn render(root: &[Entry], header: &[String], format: Format, comments: bool) -> String {
    let mut out = String::new();
    if comments {
        for line in header {
            comment_lines(&mut out, "", line);
        }
    }
    match format {
        Format::Yaml => yaml_map(&mut out, root, 0, comments),
        Format::Toml => toml_table(&mut out, root, &[], comments),
    }
    out
}

fn comment_lines(out: &mut String, indent: &str, text: &str) {
    for line in text.lines() {
        if line.is_empty() {
            let _ = writeln!(out, "{indent}#");
        } else {
            let _ = writeln!(out, "{indent}# {line}");
        }
    }
}

fn quoted(v: &str) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "\"\"".into())
}

fn bare_key(k: &str) -> bool {
    !k.is_empty()
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        // YAML would read these as other types.
        && !matches!(k, "true" | "false" | "null" | "yes" | "no" | "on" | "off" | "~")
}

fn key(k: &str) -> String {
    if bare_key(k) {
        k.to_string()
    } else {
        quoted(k)
    }
}

fn scalar(n: &Node) -> Option<String> {
    match n {
        Node::Str(v) => Some(quoted(v)),
        Node::Int(v) => Some(v.to_string()),
        Node::Bool(v) => Some(v.to_string()),
        Node::List(items) if items.iter().all(|i| scalar(i).is_some()) => Some(format!(
            "[{}]",
            items
                .iter()
                .filter_map(scalar)
                .collect::<Vec<_>>()
                .join(", ")
        )),
        _ => None,
    }
}

fn yaml_map(out: &mut String, entries: &[Entry], depth: usize, comments: bool) {
    let indent = "  ".repeat(depth);
    for e in entries {
        if comments && let Some(c) = &e.comment {
            comment_lines(out, &indent, c);
        }
        let k = key(&e.key);
        if let Some(v) = scalar(&e.value) {
            let _ = writeln!(out, "{indent}{k}: {v}");
            continue;
        }
        if e.value == Node::Unset {
            let _ = writeln!(out, "{indent}# {k}:");
            continue;
        }
        match &e.value {
            Node::Map(inner) if inner.is_empty() => {
                let _ = writeln!(out, "{indent}{k}: {{}}");
            }
            Node::Map(inner) => {
                let _ = writeln!(out, "{indent}{k}:");
                yaml_map(out, inner, depth + 1, comments);
            }
            Node::List(items) => {
                let _ = writeln!(out, "{indent}{k}:");
                for item in items {
                    yaml_list_item(out, item, depth + 1, comments);
                }
            }
            _ => {}
        }
    }
}

fn yaml_list_item(out: &mut String, item: &Node, depth: usize, comments: bool) {
    let indent = "  ".repeat(depth);
    let Node::Map(inner) = item else {
        if let Some(v) = scalar(item) {
            let _ = writeln!(out, "{indent}- {v}");
        }
        return;
    };
    // "- " then the map's keys indented under the dash.
    let mut body = String::new();
    yaml_map(&mut body, inner, depth + 1, comments);
    let mut lines = body.lines();
    if let Some(first) = lines.next() {
        let _ = writeln!(out, "{indent}- {}", first.trim_start());
    }
    for line in lines {
        let _ = writeln!(out, "{line}");
    }
}

fn toml_path(path: &[String]) -> String {
    path.iter().map(|p| key(p)).collect::<Vec<_>>().join(".")
}

fn toml_table(out: &mut String, entries: &[Entry], path: &[String], comments: bool) {
    // Scalars first: in TOML a key after a [sub.table] header belongs to the sub-table.
    for e in entries {
        if let Some(v) = scalar(&e.value) {
            if comments && let Some(c) = &e.comment {
                comment_lines(out, "", c);
            }
            let _ = writeln!(out, "{} = {v}", key(&e.key));
        } else if e.value == Node::Unset {
            if comments && let Some(c) = &e.comment {
                comment_lines(out, "", c);
            }
            let _ = writeln!(out, "# {} =", key(&e.key));
        }
    }
    for e in entries {
        if scalar(&e.value).is_some() || e.value == Node::Unset {
            continue;
        }
        let mut sub = path.to_vec();
        sub.push(e.key.clone());
        match &e.value {
            Node::Map(inner) => {
                out.push('\n');
                if comments && let Some(c) = &e.comment {
                    comment_lines(out, "", c);
                }
                let _ = writeln!(out, "[{}]", toml_path(&sub));
                toml_table(out, inner, &sub, comments);
            }
            Node::List(items) => {
                if comments && let Some(c) = &e.comment {
                    out.push('\n');
                    comment_lines(out, "", c);
                }
                for item in items {
                    if let Node::Map(inner) = item {
                        out.push('\n');
                        let _ = writeln!(out, "[[{}]]", toml_path(&sub));
                        toml_table(out, inner, &sub, comments);
                    }
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Entry> {
        vec![
            Entry::new(
                "general",
                Node::Map(vec![
                    Entry::new("host", s("0.0.0.0")).note("listen address"),
                    Entry::new("port", Node::Int(6432)),
                ]),
            ),
            Entry::new(
                "pools",
                Node::Map(vec![Entry::new(
                    "my.db",
                    Node::Map(vec![
                        Entry::new("server_host", s("a\"b\nc")),
                        Entry::new(
                            "users",
                            Node::List(vec![Node::Map(vec![
                                Entry::new("username", s("u")),
                                Entry::new("password", s("p")),
                                Entry::new("pool_size", Node::Int(5)).note("most backends"),
                            ])]),
                        ),
                    ]),
                )]),
            ),
        ]
    }

    #[test]
    fn yaml_and_toml_read_back_as_the_same_config() {
        for format in [Format::Yaml, Format::Toml] {
            let text = render(&sample(), &["head".into()], format, true);
            let c = match format {
                Format::Yaml => crate::config::parse_yaml(&text),
                Format::Toml => crate::config::parse_toml(&text),
            }
            .unwrap_or_else(|e| panic!("{format:?}: {e}\n{text}"));
            assert_eq!(c.general.port, 6432, "{text}");
            let p = &c.pools["my.db"];
            assert_eq!(p.server_host, "a\"b\nc", "{text}");
            assert_eq!(p.users[0].username, "u");
            assert_eq!(p.users[0].pool_size, 5);
            assert!(text.contains("# listen address"), "{text}");
            assert!(text.starts_with("# head\n"), "{text}");
        }
    }

    #[test]
    fn comments_off_writes_none() {
        let text = render(&sample(), &["head".into()], Format::Yaml, false);
        assert!(!text.contains('#'), "{text}");
    }
}

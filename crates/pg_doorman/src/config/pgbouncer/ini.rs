//! PgBouncer's file formats: the ini file (sections, `key = value`, `;`/`#` comments,
//! `%include`), the libpq-style connection strings of `[databases]` and `[users]`, and the
//! `auth_file` (userlist.txt). Follows PgBouncer's doc/config.md and its src/loader.c rules.

use std::path::{Path, PathBuf};

/// One `key = value` line, with its section and where it came from (for messages).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// Section name, lower-case (`databases`, `pgbouncer`, `users`, `peers`).
    pub section: String,
    /// The key as written (a `[databases]` name may have been double-quoted).
    pub key: String,
    /// The value, trimmed.
    pub value: String,
    /// `file:line`.
    pub at: String,
}

/// Deepest `%include` nesting, as PgBouncer (which stops at 10).
const MAX_INCLUDE_DEPTH: usize = 10;

/// Reads `path` and the files it `%include`s, in order. A relative include is looked up in
/// the current directory (PgBouncer's rule), then beside the including file.
pub fn read(path: &Path) -> Result<Vec<Setting>, String> {
    let mut out = Vec::new();
    let mut section = String::new();
    read_into(path, 0, &mut section, &mut out)?;
    Ok(out)
}

fn read_into(
    path: &Path,
    depth: usize,
    section: &mut String,
    out: &mut Vec<Setting>,
) -> Result<(), String> {
    if depth > MAX_INCLUDE_DEPTH {
        return Err(format!(
            "{}: %include nested deeper than {MAX_INCLUDE_DEPTH}",
            path.display()
        ));
    }
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    for (i, raw) in text.lines().enumerate() {
        let at = format!("{}:{}", path.display(), i + 1);
        let line = raw.trim();
        if line.is_empty() || line.starts_with(';') || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("%include") {
            let name = rest.trim();
            if name.is_empty() {
                return Err(format!("{at}: %include needs a file name"));
            }
            read_into(&resolve(path, name), depth + 1, section, out)?;
            continue;
        }
        if let Some(inner) = line.strip_prefix('[') {
            let Some(name) = inner.strip_suffix(']') else {
                return Err(format!("{at}: a section header must end with ']'"));
            };
            *section = name.trim().to_ascii_lowercase();
            continue;
        }
        let (key, value) = split_key(line).ok_or_else(|| {
            format!("{at}: expected `key = value`, a [section] or %include, found {raw:?}")
        })?;
        if section.is_empty() {
            return Err(format!("{at}: {key:?} is outside any [section]"));
        }
        out.push(Setting {
            section: section.clone(),
            key,
            value,
            at,
        });
    }
    Ok(())
}

/// An include's file: as given if absolute or present in the current directory, else beside
/// the including file.
pub fn resolve(from: &Path, name: &str) -> PathBuf {
    let p = Path::new(name);
    if p.is_absolute() || p.exists() {
        return p.to_path_buf();
    }
    from.parent().map_or_else(|| p.to_path_buf(), |d| d.join(p))
}

/// `key = value` or `"quoted key" = value`.
fn split_key(line: &str) -> Option<(String, String)> {
    if let Some(rest) = line.strip_prefix('"') {
        let (key, after) = unquote(rest, '"')?;
        let value = after.trim_start().strip_prefix('=')?;
        return Some((key, value.trim().to_string()));
    }
    let (k, v) = line.split_once('=')?;
    let k = k.trim();
    if k.is_empty() {
        return None;
    }
    Some((k.to_string(), v.trim().to_string()))
}

/// Reads up to the closing `q` (a doubled `q` or a backslash escapes it); returns the text
/// and what follows the closing quote.
fn unquote(s: &str, q: char) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '\\' {
            out.push(chars.next()?.1);
        } else if c == q {
            if chars.peek().is_some_and(|&(_, n)| n == q) {
                chars.next();
                out.push(q);
            } else {
                return Some((out, &s[i + c.len_utf8()..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

/// Parses a connection string (`host=h port=5432 connect_query='SELECT 1'`) into pairs in
/// order; a value may be single-quoted (libpq's rules: `\'` or `''` inside).
pub fn connstr(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut rest = s.trim_start();
    while !rest.is_empty() {
        let eq = rest
            .find('=')
            .ok_or_else(|| format!("{rest:?} has no '=' (expected key=value)"))?;
        let key = rest[..eq].trim();
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(format!("bad key {key:?} before '='"));
        }
        let after = rest[eq + 1..].trim_start();
        let (value, next) = if let Some(q) = after.strip_prefix('\'') {
            unquote(q, '\'').ok_or_else(|| format!("unterminated quote in {key}="))?
        } else {
            let end = after.find(char::is_whitespace).unwrap_or(after.len());
            (after[..end].to_string(), &after[end..])
        };
        out.push((key.to_ascii_lowercase(), value));
        rest = next.trim_start();
    }
    Ok(out)
}

/// One `auth_file` line: `"user" "secret"` (plaintext, `md5...` or a SCRAM verifier).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthEntry {
    /// Login name.
    pub user: String,
    /// Secret as stored.
    pub secret: String,
}

/// Parses an auth_file: each line is two double-quoted fields (`""` inside is a quote); lines
/// that do not start with `"` are comments, as PgBouncer treats them.
pub fn userlist(path: &Path) -> Result<Vec<AuthEntry>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("auth_file: cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        let Some(rest) = line.strip_prefix('"') else {
            continue;
        };
        let bad = || format!("{}:{}: expected \"user\" \"secret\"", path.display(), i + 1);
        let (user, after) = unquote_doubled(rest).ok_or_else(bad)?;
        let after = after.trim_start().strip_prefix('"').ok_or_else(bad)?;
        let (secret, _) = unquote_doubled(after).ok_or_else(bad)?;
        out.push(AuthEntry { user, secret });
    }
    Ok(out)
}

/// userlist.txt quoting: only `""` escapes (a backslash is an ordinary character there).
fn unquote_doubled(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut chars = s.char_indices().peekable();
    while let Some((i, c)) = chars.next() {
        if c == '"' {
            if chars.peek().is_some_and(|&(_, n)| n == '"') {
                chars.next();
                out.push('"');
            } else {
                return Some((out, &s[i + 1..]));
            }
        } else {
            out.push(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_strings_split_with_libpq_quoting() {
        let got = connstr(
            "host=127.0.0.1 port=300 user=baz password='it''s \\'x\\'' connect_query='SELECT 1'",
        )
        .unwrap();
        assert_eq!(
            got,
            vec![
                ("host".into(), "127.0.0.1".into()),
                ("port".into(), "300".into()),
                ("user".into(), "baz".into()),
                ("password".into(), "it's 'x'".into()),
                ("connect_query".into(), "SELECT 1".into()),
            ]
        );
        assert!(connstr("").unwrap().is_empty());
        assert!(connstr("host").is_err());
        assert!(connstr("password='open").is_err());
    }

    #[test]
    fn ini_sections_comments_quoted_names_and_includes() {
        let dir = tempfile::tempdir().unwrap();
        let inc = dir.path().join("more.ini");
        std::fs::write(&inc, "[databases]\nextra = host=/tmp\n").unwrap();
        let main = dir.path().join("pgbouncer.ini");
        std::fs::write(
            &main,
            format!(
                "; comment\n[databases]\n\"odd db\" = dbname=x\nfoodb =\n[PgBouncer]\n# c\nlisten_port = 6432\n%include {}\n",
                inc.display()
            ),
        )
        .unwrap();
        let s = read(&main).unwrap();
        let got: Vec<_> = s
            .iter()
            .map(|s| (s.section.as_str(), s.key.as_str(), s.value.as_str()))
            .collect();
        assert_eq!(
            got,
            vec![
                ("databases", "odd db", "dbname=x"),
                ("databases", "foodb", ""),
                ("pgbouncer", "listen_port", "6432"),
                ("databases", "extra", "host=/tmp"),
            ]
        );
        std::fs::write(&main, "[pgbouncer]\nnonsense line\n").unwrap();
        let e = read(&main).unwrap_err();
        assert!(e.contains("pgbouncer.ini:2"), "{e}");
    }

    #[test]
    fn userlist_lines_with_doubled_quotes() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("userlist.txt");
        std::fs::write(
            &f,
            ";; comment\n\"alice\" \"md5abc\"\n\"bo\"\"b\" \"pa ss\"\"word\"\n\"broken\n",
        )
        .unwrap();
        let e = userlist(&f).unwrap_err();
        assert!(e.contains(":4"), "{e}");
        std::fs::write(
            &f,
            "\"alice\" \"md5abc\"\n\"bo\"\"b\" \"pa ss\"\"word\" \"\"\n",
        )
        .unwrap();
        let u = userlist(&f).unwrap();
        assert_eq!(
            u[0],
            AuthEntry {
                user: "alice".into(),
                secret: "md5abc".into()
            }
        );
        assert_eq!(u[1].user, "bo\"b");
        assert_eq!(u[1].secret, "pa ss\"word");
    }
}

//! Session parameters: what a backend reports (ParameterStatus) and what a client expects, so
//! that in transaction mode a backend can be brought in line with the next client (protocol
//! §55.2.7 "Asynchronous Operations": ParameterStatus; PgBouncer's varcache).

/// Parameters that PostgreSQL reports and that a client may set; these follow a client from
/// backend to backend (the list; PgBouncer's varcache tracks the same).
pub const TRACKED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "application_name",
    // Reported since PostgreSQL 14; a session-level set_config() by one client must not turn
    // the next client's transactions read-only.
    "default_transaction_read_only",
];

/// Tracked parameters whose value PostgreSQL canonicalises ("ISO" becomes "ISO, MDY"), so a
/// client's startup value is checked on a backend at login.
pub const CANONICALISED: &[&str] = &[
    "client_encoding",
    "DateStyle",
    "TimeZone",
    "IntervalStyle",
    "standard_conforming_strings",
    "default_transaction_read_only",
];

/// Tracked parameters that change how PostgreSQL parses a statement: literals of date, time and
/// interval types are folded into constants at Parse under these, and backslashes in strings
/// depend on standard_conforming_strings. A cached statement is shared only by clients that
/// agree on them.
pub const PARSE_CONTEXT: &[&str] = &[
    "TimeZone",
    "DateStyle",
    "IntervalStyle",
    "standard_conforming_strings",
];

/// Hash of the [`PARSE_CONTEXT`] values of `p` (mixed into prepared-statement cache keys).
pub fn parse_context(p: &ParamSet) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    for name in PARSE_CONTEXT {
        h.update(p.get(name).unwrap_or("").as_bytes());
        h.update(&[0]);
    }
    h.digest()
}

/// Returns the TRACKED spelling of `name` if it is tracked (GUC names are case-insensitive).
pub fn tracked_name(name: &str) -> Option<&'static str> {
    tracked_index(name).map(|i| TRACKED[i])
}

/// Position of `name` in TRACKED, if it is tracked (case-insensitive).
pub fn tracked_index(name: &str) -> Option<usize> {
    TRACKED.iter().position(|t| t.eq_ignore_ascii_case(name))
}

/// A small ordered set of name → value pairs; linear search beats hashing at this size (< 20).
/// Copy-on-write behind an `Arc`: clients with the same wishes share one copy (see
/// `Pool::intern_params`), which keeps idle clients small; a change clones first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSet {
    entries: std::sync::Arc<Entries>,
}

/// (name, value) pairs, in order.
type Entries = Vec<(Box<str>, Box<str>)>;

/// The one empty set every empty ParamSet starts as (most clients set no extras: no
/// allocation per login for them).
static EMPTY: std::sync::LazyLock<std::sync::Arc<Entries>> =
    std::sync::LazyLock::new(Default::default);

impl Default for ParamSet {
    fn default() -> Self {
        ParamSet {
            entries: EMPTY.clone(),
        }
    }
}

impl ParamSet {
    /// A set of these (name, value) pairs, in this order (names must be distinct).
    pub fn from_pairs<'a, 'b>(pairs: impl Iterator<Item = (&'a str, &'b str)>) -> Self {
        ParamSet {
            entries: std::sync::Arc::new(pairs.map(|(k, v)| (k.into(), v.into())).collect()),
        }
    }

    /// Value for `name` (exact spelling).
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(k, _)| &**k == name)
            .map(|(_, v)| &**v)
    }

    /// Sets `name` to `value`; returns true if it changed.
    pub fn set(&mut self, name: &str, value: &str) -> bool {
        match self.entries.iter().position(|(k, _)| &**k == name) {
            Some(i) if &*self.entries[i].1 == value => false,
            Some(i) => {
                std::sync::Arc::make_mut(&mut self.entries)[i].1 = value.into();
                true
            }
            None => {
                std::sync::Arc::make_mut(&mut self.entries).push((name.into(), value.into()));
                true
            }
        }
    }

    /// Removes `name`.
    pub fn remove(&mut self, name: &str) {
        if self.get(name).is_some() {
            std::sync::Arc::make_mut(&mut self.entries).retain(|(k, _)| &**k != name);
        }
    }

    /// True when both share one copy (cheap identity check before comparing).
    pub fn same_copy(&self, other: &ParamSet) -> bool {
        std::sync::Arc::ptr_eq(&self.entries, &other.entries)
    }

    /// Iterates over (name, value).
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(k, v)| (&**k, &**v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Quotes a GUC name as an identifier and a value as a string literal for `SET`.
pub fn set_statement(out: &mut String, name: &str, value: &str) {
    out.push_str("SET \"");
    out.push_str(&name.replace('"', "\"\""));
    out.push_str("\" TO '");
    out.push_str(&value.replace('\'', "''"));
    out.push_str("';");
}

/// Appends `RESET "name";`.
pub fn reset_statement(out: &mut String, name: &str) {
    out.push_str("RESET \"");
    out.push_str(&name.replace('"', "\"\""));
    out.push_str("\";");
}

/// Parses a libpq `options` startup value ("-c name=value --name=value") into pairs.
/// Errors with the offending token for anything else (PostgreSQL accepts more switches; we do
/// not pass them through because they would bind a backend to one client).
pub fn parse_options(options: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut words = options.split_ascii_whitespace();
    while let Some(w) = words.next() {
        let setting = if w == "-c" {
            words
                .next()
                .ok_or_else(|| "\"-c\" without a setting".to_string())?
        } else if let Some(s) = w.strip_prefix("-c").or_else(|| w.strip_prefix("--")) {
            s
        } else {
            return Err(format!("unsupported option {w:?}"));
        };
        let (k, v) = setting
            .split_once('=')
            .ok_or_else(|| format!("setting {setting:?} lacks \"=\""))?;
        out.push((k.replace('-', "_"), v.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn param_set_updates() {
        let mut p = ParamSet::default();
        assert!(p.set("TimeZone", "UTC"));
        assert!(!p.set("TimeZone", "UTC"));
        assert!(p.set("TimeZone", "Europe/Paris"));
        assert_eq!(p.get("TimeZone"), Some("Europe/Paris"));
        assert_eq!(p.len(), 1);
        p.remove("TimeZone");
        assert!(p.is_empty());
    }

    #[test]
    fn statements_are_quoted() {
        let mut s = String::new();
        set_statement(&mut s, "application_name", "it's");
        reset_statement(&mut s, "search_path");
        assert_eq!(
            s,
            "SET \"application_name\" TO 'it''s';RESET \"search_path\";"
        );
    }

    #[test]
    fn options_parse() {
        assert_eq!(
            parse_options("-c search_path=a,b --work-mem=4MB -cstatement_timeout=5").unwrap(),
            vec![
                ("search_path".into(), "a,b".into()),
                ("work_mem".into(), "4MB".into()),
                ("statement_timeout".into(), "5".into())
            ]
        );
        assert!(parse_options("-X").is_err());
        assert!(parse_options("-c").is_err());
        assert_eq!(tracked_name("datestyle"), Some("DateStyle"));
    }
}

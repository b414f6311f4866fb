//! The little SQL the pooler reads: which session state a statement leaves on a backend (for
//! mutation-tracked cleanup at checkin, PgDoorman's `cleanup_server_connections`) and which
//! statements are transaction control (deferred BEGIN). Only statement-leading keywords are
//! read; text inside literals may mislead it into one extra reset, never into a missed one for
//! the first statement of a query.

/// Session-state bits a client left on a backend.
pub mod dirt {
    /// A session-level SET of a parameter the pooler does not track.
    pub const SET: u8 = 1;
    /// SQL-level PREPARE.
    pub const PREPARE: u8 = 2;
    /// DECLARE CURSOR (WITH HOLD ones outlive the transaction).
    pub const CURSOR: u8 = 4;
    /// LISTEN.
    pub const LISTEN: u8 = 8;
    /// Temporary tables.
    pub const TEMP: u8 = 16;
    /// Everything (DISCARD ALL cleans it all).
    pub const ALL: u8 = 31;
    /// Not session state: CREATE, DROP or ALTER ran, so statements prepared before it may hold
    /// stale types or result shapes (the pool's statement cache starts a new epoch).
    pub const DDL: u8 = 32;
}

/// Longest query text inspected beyond its first statement, bytes.
const SCAN_LIMIT: usize = 4096;

/// What separates the words [`words`] and [`leading_keyword`] read.
fn is_separator(c: &u8) -> bool {
    c.is_ascii_whitespace() || matches!(c, b'=' | b',' | b'(' | b')')
}

fn words(seg: &[u8]) -> impl Iterator<Item = &[u8]> {
    seg.split(is_separator).filter(|w| !w.is_empty())
}

/// Statement-leading keywords the pooler acts on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kw {
    Set,
    Reset,
    Prepare,
    Deallocate,
    Declare,
    Close,
    Listen,
    Unlisten,
    Create,
    Drop,
    Alter,
    Discard,
    Begin,
    Start,
    Commit,
    End,
    Rollback,
    Abort,
}

/// The keyword `seg` starts with (after blanks and separators), if any. The first letter picks
/// at most three candidates and most statements (SELECT, INSERT…) fail on their second or third
/// letter, so no word is split out of the text.
#[inline]
fn leading_keyword(seg: &[u8]) -> Option<Kw> {
    // Statements usually start with their keyword: skip the separator scan then.
    let start = if seg.first().is_some_and(u8::is_ascii_alphabetic) {
        0
    } else {
        seg.iter().position(|c| !is_separator(c))?
    };
    let s = &seg[start..];
    let candidates: &[(&[u8], Kw)] = match s.first()? | 0x20 {
        b's' => &[(b"set", Kw::Set), (b"start", Kw::Start)],
        b'r' => &[(b"reset", Kw::Reset), (b"rollback", Kw::Rollback)],
        b'p' => &[(b"prepare", Kw::Prepare)],
        b'd' => &[
            (b"deallocate", Kw::Deallocate),
            (b"declare", Kw::Declare),
            (b"discard", Kw::Discard),
            (b"drop", Kw::Drop),
        ],
        b'c' => &[
            (b"close", Kw::Close),
            (b"create", Kw::Create),
            (b"commit", Kw::Commit),
        ],
        b'l' => &[(b"listen", Kw::Listen)],
        b'u' => &[(b"unlisten", Kw::Unlisten)],
        b'b' => &[(b"begin", Kw::Begin)],
        b'e' => &[(b"end", Kw::End)],
        b'a' => &[(b"abort", Kw::Abort), (b"alter", Kw::Alter)],
        _ => return None,
    };
    candidates.iter().find_map(|&(word, kw)| {
        let head = s.get(..word.len())?;
        let whole = !s.get(word.len()).is_some_and(u8::is_ascii_alphabetic);
        (whole && head.eq_ignore_ascii_case(word)).then_some(kw)
    })
}

/// True when any statement in `sql` may be one the pooler reads ([`track`], [`track_pins`],
/// [`resets`], [`session_sets`]): its first statement starts with a keyword, or more
/// statements follow. One scan, so that the common single SELECT/INSERT costs one pass.
#[inline]
pub fn may_matter(sql: &[u8]) -> bool {
    let end = statement_end(sql);
    let first = &sql[..end.unwrap_or(sql.len())];
    if leading_keyword(first).is_some() {
        return true;
    }
    match end {
        Some(e) if sql[e] == b';' => sql[e + 1..]
            .iter()
            .take_while(|&&c| c != 0)
            .any(|c| !c.is_ascii_whitespace() && *c != b';'),
        _ => false,
    }
}

/// True when `sql`'s leading word is DISCARD, RESET or DEALLOCATE: the only statements that
/// change a backend's prepared statements or settings behind the pooler's back. A cheap filter
/// in front of a closer reading.
#[inline]
pub fn may_drop_statements(sql: &[u8]) -> bool {
    matches!(
        leading_keyword(sql),
        Some(Kw::Discard | Kw::Reset | Kw::Deallocate)
    )
}

fn is(w: Option<&[u8]>, kw: &str) -> bool {
    w.is_some_and(|w| w.eq_ignore_ascii_case(kw.as_bytes()))
}

/// Where the statement at the start of `s` ends: its `;`, or the NUL that ends the text (a
/// Query or Parse body may be passed whole).
#[inline]
fn statement_end(s: &[u8]) -> Option<usize> {
    doorman_wire::frame::find_nul_or(s, b';')
}

/// Updates `dirty` with the effect of each statement in `sql` (split at `;`, ending at a NUL).
/// Text longer than 4096 bytes is read up to its first `;` only.
pub fn track(sql: &[u8], dirty: &mut u8) {
    each_statement(sql, |seg, kw| {
        if !matches!(
            kw,
            Kw::Begin | Kw::Start | Kw::Commit | Kw::End | Kw::Rollback | Kw::Abort
        ) {
            track_one(seg, dirty);
        }
    });
}

/// Calls `f` with each statement of `sql` (split at `;`, ending at a NUL) that starts with a
/// keyword the pooler acts on, and that keyword. Text longer than 4096 bytes is read up to its
/// first `;` only.
fn each_statement(sql: &[u8], mut f: impl FnMut(&[u8], Kw)) {
    let mut rest = sql;
    loop {
        let end = statement_end(rest);
        let seg = &rest[..end.unwrap_or(rest.len())];
        // The empty tail after a final `;` is the common second "statement".
        if !seg.is_empty()
            && let Some(kw) = leading_keyword(seg)
        {
            f(seg, kw);
        }
        match end {
            Some(e) if rest[e] == b';' && sql.len() <= SCAN_LIMIT => rest = &rest[e + 1..],
            _ => return,
        }
    }
}

/// Session state that outlives a transaction and that a later transaction of the same client
/// may use, so in transaction mode the client keeps its backend while any of it exists:
/// cursors declared WITH HOLD (by name) and temporary tables (PostgreSQL "DECLARE", "CREATE
/// TABLE": a TEMP table without ON COMMIT DROP lives until the session ends or DISCARD).
#[derive(Debug, Default)]
pub struct Pins {
    /// Names of open WITH HOLD cursors (unquoted names folded to lower case).
    pub held: Vec<Box<[u8]>>,
    /// A temporary table (or other temporary object) was created.
    pub temp: bool,
}

impl Pins {
    /// True while something pins the client to its backend.
    pub fn any(&self) -> bool {
        self.temp || !self.held.is_empty()
    }
}

/// Updates `pins` with the effect of each statement in `sql` (split as [`track`] does).
/// Returns true when something changed.
pub fn track_pins(sql: &[u8], pins: &mut Pins) -> bool {
    let mut changed = false;
    each_statement(sql, |seg, kw| {
        if matches!(kw, Kw::Declare | Kw::Close | Kw::Create | Kw::Discard) {
            changed |= pin_one(seg, pins);
        }
    });
    changed
}

/// Bit of [`resets`]'s result for RESET ALL / DISCARD ALL (every tracked parameter).
pub const RESET_ALL: u16 = 1 << 15;

/// Which tracked parameters ([`crate::params::TRACKED`], bit i for entry i) the statements in
/// `sql` return to their session default: `RESET name`, `SET name TO DEFAULT`, `SET TIME ZONE
/// DEFAULT|LOCAL`, and [`RESET_ALL`] for RESET ALL and DISCARD ALL. PostgreSQL's session
/// default is what the client asked for at startup, which a pooled backend does not know.
pub fn resets(sql: &[u8]) -> u16 {
    let mut bits = 0;
    each_statement(sql, |seg, kw| {
        if matches!(kw, Kw::Reset | Kw::Set | Kw::Discard) {
            bits |= reset_one(seg);
        }
    });
    bits
}

#[cold]
#[inline(never)]
fn reset_one(seg: &[u8]) -> u16 {
    let bit = |name: &[u8]| -> u16 {
        let n = name.strip_prefix(b"\"").unwrap_or(name);
        let n = n.strip_suffix(b"\"").unwrap_or(n);
        std::str::from_utf8(n)
            .ok()
            .and_then(crate::params::tracked_name)
            .and_then(|t| crate::params::TRACKED.iter().position(|x| *x == t))
            .map_or(0, |i| 1 << i)
    };
    let mut w = words(seg);
    let first = w.next();
    let second = w.next();
    if is(first, "DISCARD") {
        return if is(second, "ALL") { RESET_ALL } else { 0 };
    }
    if is(first, "RESET") {
        return match second {
            Some(s) if is(Some(s), "ALL") => RESET_ALL,
            Some(s) => bit(s),
            None => 0,
        };
    }
    // SET [SESSION] name {TO | =} DEFAULT, SET [SESSION] TIME ZONE {DEFAULT | LOCAL}.
    let name = if is(second, "SESSION") {
        w.next()
    } else {
        second
    };
    let Some(name) = name else { return 0 };
    if is(Some(name), "TIME") {
        let zone = w.next();
        let value = w.next();
        return if is(zone, "ZONE") && (is(value, "DEFAULT") || is(value, "LOCAL")) {
            bit(b"TimeZone")
        } else {
            0
        };
    }
    let mut value = w.next();
    if is(value, "TO") {
        value = w.next();
    }
    if is(value, "DEFAULT") && w.next().is_none() {
        bit(name)
    } else {
        0
    }
}

/// Calls `f` with the name of each setting the statements in `sql` change at session level
/// and the pooler does not track (`SET [SESSION] name …`, `RESET name`), unquoted names folded
/// to lower case, as PostgreSQL does. In transaction mode such a value must follow its client
/// to the next backend, and its value is read back after the transaction to know it.
pub fn session_sets(sql: &[u8], mut f: impl FnMut(Box<str>)) {
    each_statement(sql, |seg, kw| {
        if matches!(kw, Kw::Set | Kw::Reset)
            && let Some(name) = session_set_one(seg)
        {
            f(name);
        }
    });
}

#[cold]
#[inline(never)]
fn session_set_one(seg: &[u8]) -> Option<Box<str>> {
    let mut w = words(seg);
    let first = w.next();
    let second = w.next();
    let name = if is(first, "SET") && is(second, "SESSION") {
        w.next()?
    } else {
        second?
    };
    for kw in [
        "LOCAL",
        "TRANSACTION",
        "CHARACTERISTICS",
        "TIME",
        "ALL",
        "SESSION",
        "ROLE",
        "NAMES",
        "SCHEMA",
        "XML",
    ] {
        if is(Some(name), kw) {
            return None;
        }
    }
    let name = String::from_utf8(identifier(name)).ok()?;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b'.');
    (valid && crate::params::tracked_name(&name).is_none()).then(|| name.into())
}

/// True for `CREATE [GLOBAL | LOCAL] {TEMP | TEMPORARY} …`, given the word after CREATE and
/// the rest.
fn creates_temp<'a>(second: Option<&[u8]>, rest: &mut impl Iterator<Item = &'a [u8]>) -> bool {
    let temp_word = |x: Option<&[u8]>| is(x, "TEMP") || is(x, "TEMPORARY");
    temp_word(second) || ((is(second, "GLOBAL") || is(second, "LOCAL")) && temp_word(rest.next()))
}

/// An identifier as PostgreSQL keys it: quoted as written, unquoted folded to lower case.
fn identifier(w: &[u8]) -> Vec<u8> {
    match w.strip_prefix(b"\"").and_then(|n| n.strip_suffix(b"\"")) {
        Some(inner) => inner.to_vec(),
        None => w.to_ascii_lowercase(),
    }
}

#[cold]
#[inline(never)]
fn pin_one(seg: &[u8], pins: &mut Pins) -> bool {
    let mut w = words(seg);
    let Some(first) = w.next() else { return false };
    let first = Some(first);
    if is(first, "DECLARE") {
        let Some(name) = w.next() else { return false };
        let mut prev: Option<&[u8]> = None;
        for word in w {
            if is(Some(word), "FOR") {
                break;
            }
            if is(Some(word), "HOLD") && is(prev, "WITH") {
                pins.held.push(identifier(name).into());
                return true;
            }
            prev = Some(word);
        }
    } else if is(first, "CLOSE") {
        let Some(name) = w.next() else { return false };
        if is(Some(name), "ALL") {
            let had = !pins.held.is_empty();
            pins.held.clear();
            return had;
        }
        let name = identifier(name);
        if let Some(i) = pins.held.iter().position(|n| **n == *name) {
            pins.held.swap_remove(i);
            return true;
        }
    } else if is(first, "CREATE") {
        let second = w.next();
        if creates_temp(second, &mut w) && !pins.temp {
            // ON COMMIT DROP tables end with their transaction.
            let words: Vec<&[u8]> = w.collect();
            let drops = words.windows(3).any(|t| {
                is(Some(t[0]), "ON") && is(Some(t[1]), "COMMIT") && is(Some(t[2]), "DROP")
            });
            if !drops {
                pins.temp = true;
                return true;
            }
        }
    } else if is(first, "DISCARD") {
        let second = w.next();
        let before = pins.any();
        if is(second, "ALL") {
            pins.held.clear();
            pins.temp = false;
        } else if is(second, "TEMP") || is(second, "TEMPORARY") {
            pins.temp = false;
        }
        return before != pins.any();
    }
    false
}

/// One statement whose leading word is a keyword that may leave session state.
#[cold]
#[inline(never)]
fn track_one(seg: &[u8], dirty: &mut u8) {
    let mut w = words(seg);
    let Some(first) = w.next() else { return };
    let first = Some(first);
    let second = w.next();
    if is(first, "SET") {
        let name = if is(second, "SESSION") {
            w.next()
        } else {
            second
        };
        let transactional = is(name, "LOCAL") || is(name, "TRANSACTION");
        let tracked = name.is_some_and(|n| {
            let n = n.strip_prefix(b"\"").unwrap_or(n);
            let n = n.strip_suffix(b"\"").unwrap_or(n);
            is(Some(n), "TIME")
                || std::str::from_utf8(n)
                    .ok()
                    .and_then(crate::params::tracked_name)
                    .is_some()
        });
        if !transactional && !tracked {
            *dirty |= dirt::SET;
        }
    } else if is(first, "RESET") && is(second, "ALL") {
        *dirty &= !dirt::SET;
    } else if is(first, "PREPARE") {
        *dirty |= dirt::PREPARE;
    } else if is(first, "DEALLOCATE") {
        let all = if is(second, "PREPARE") {
            w.next()
        } else {
            second
        };
        if is(all, "ALL") {
            *dirty &= !dirt::PREPARE;
        }
    } else if is(first, "DECLARE") {
        *dirty |= dirt::CURSOR;
    } else if is(first, "CLOSE") && is(second, "ALL") {
        *dirty &= !dirt::CURSOR;
    } else if is(first, "LISTEN") {
        *dirty |= dirt::LISTEN;
    } else if is(first, "UNLISTEN") && second == Some(b"*") {
        *dirty &= !dirt::LISTEN;
    } else if is(first, "DROP") || is(first, "ALTER") {
        *dirty |= dirt::DDL;
    } else if is(first, "CREATE") {
        if creates_temp(second, &mut w) {
            *dirty |= dirt::TEMP;
        } else {
            // Temporary tables are created per transaction by some applications: they do not
            // start a new statement-cache epoch (PostgreSQL replans for changed relations).
            *dirty |= dirt::DDL;
        }
    } else if is(first, "DISCARD") {
        if is(second, "ALL") {
            *dirty &= dirt::DDL;
        } else if is(second, "TEMP") || is(second, "TEMPORARY") {
            *dirty &= !dirt::TEMP;
        }
    }
}

/// The statements that undo `dirty` (empty when clean).
pub fn reset_sql(dirty: u8) -> String {
    let mut out = String::new();
    for (bit, sql) in [
        (dirt::SET, "RESET ALL;"),
        (dirt::PREPARE, "DEALLOCATE ALL;"),
        (dirt::CURSOR, "CLOSE ALL;"),
        (dirt::LISTEN, "UNLISTEN *;"),
        (dirt::TEMP, "DISCARD TEMP;"),
    ] {
        if dirty & bit != 0 {
            out.push_str(sql);
        }
    }
    out
}

/// Transaction control recognised for deferred BEGIN.
#[derive(Debug, PartialEq, Eq)]
pub enum TxControl {
    /// BEGIN / START TRANSACTION with only transaction-mode options.
    Begin,
    /// COMMIT / END.
    Commit,
    /// ROLLBACK / ABORT.
    Rollback,
    /// Anything else.
    Other,
}

/// A single statement's text without surrounding blanks and trailing `;`s.
pub fn bare(sql: &[u8]) -> &[u8] {
    let mut s = sql.trim_ascii();
    while let Some(rest) = s.strip_suffix(b";") {
        s = rest.trim_ascii_end();
    }
    s
}

/// Classifies a whole simple query (one statement, optional trailing `;`).
#[inline]
pub fn tx_control(sql: &[u8]) -> TxControl {
    if !matches!(
        leading_keyword(sql),
        Some(Kw::Begin | Kw::Start | Kw::Commit | Kw::End | Kw::Rollback | Kw::Abort)
    ) {
        return TxControl::Other;
    }
    tx_statement(sql)
}

/// [`tx_control`] for a statement that starts with a transaction-control keyword.
#[cold]
#[inline(never)]
fn tx_statement(sql: &[u8]) -> TxControl {
    let s = bare(sql);
    if s.is_empty() || s.len() > 128 || s.contains(&b';') {
        return TxControl::Other;
    }
    const MODES: &[&str] = &[
        "TRANSACTION",
        "WORK",
        "ISOLATION",
        "LEVEL",
        "SERIALIZABLE",
        "REPEATABLE",
        "READ",
        "COMMITTED",
        "UNCOMMITTED",
        "ONLY",
        "WRITE",
        "NOT",
        "DEFERRABLE",
    ];
    const END: &[&str] = &["TRANSACTION", "WORK"];
    let mut w = words(s);
    let first = w.next();
    let rest = || words(s).skip(1);
    let only = |allowed: &[&str]| rest().all(|x| allowed.iter().any(|a| is(Some(x), a)));
    let begin = is(first, "BEGIN") || (is(first, "START") && is(w.next(), "TRANSACTION"));
    if begin && only(MODES) {
        TxControl::Begin
    } else if (is(first, "COMMIT") || is(first, "END")) && only(END) {
        TxControl::Commit
    } else if (is(first, "ROLLBACK") || is(first, "ABORT")) && only(END) {
        TxControl::Rollback
    } else {
        TxControl::Other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dirt_of(sql: &str) -> u8 {
        let mut d = 0;
        track(sql.as_bytes(), &mut d);
        d & dirt::ALL
    }

    #[test]
    fn tracks_session_state() {
        assert_eq!(dirt_of("SET work_mem = '64MB'"), dirt::SET);
        assert_eq!(dirt_of("set session statement_timeout to 5"), dirt::SET);
        assert_eq!(dirt_of("SET LOCAL work_mem = 1"), 0);
        assert_eq!(dirt_of("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE"), 0);
        assert_eq!(
            dirt_of("SET TimeZone = 'UTC'"),
            0,
            "tracked: synced per client"
        );
        assert_eq!(dirt_of("SET TIME ZONE 'UTC'"), 0);
        assert_eq!(dirt_of("SET \"application_name\" = x"), 0);
        assert_eq!(dirt_of("SET work_mem=1; RESET ALL"), 0);
        assert_eq!(dirt_of("RESET ALL; SET work_mem=1"), dirt::SET);
        assert_eq!(dirt_of("PREPARE p AS SELECT 1"), dirt::PREPARE);
        assert_eq!(dirt_of("PREPARE p AS SELECT 1; DEALLOCATE PREPARE ALL"), 0);
        assert_eq!(
            dirt_of("DECLARE c CURSOR WITH HOLD FOR SELECT 1"),
            dirt::CURSOR
        );
        assert_eq!(dirt_of("LISTEN ch"), dirt::LISTEN);
        assert_eq!(dirt_of("LISTEN ch; UNLISTEN *"), 0);
        assert_eq!(dirt_of("create temp table t(a int)"), dirt::TEMP);
        assert_eq!(
            dirt_of("CREATE GLOBAL TEMPORARY TABLE t(a int)"),
            dirt::TEMP
        );
        assert_eq!(dirt_of("CREATE TABLE t(a int)"), 0);
        assert_eq!(dirt_of("SET a.b=1; LISTEN x; DISCARD ALL"), 0);
        assert_eq!(dirt_of("SELECT 1"), 0);
        assert_eq!(
            dirt_of("  (SET x = 1)"),
            dirt::SET,
            "separators before the keyword"
        );
        assert_eq!(dirt_of("SELECT set_config('a.b', '1', false)"), 0);
        assert_eq!(dirt_of("setx = 1"), 0);
        assert_eq!(dirt_of("\tlisten\tch"), dirt::LISTEN);
        assert_eq!(dirt_of("SELECT 1;"), 0);
        assert_eq!(
            dirt_of("SELECT 1\0SET a.b = 1"),
            0,
            "the text ends at its NUL"
        );
        let pad = " ".repeat(100);
        assert_eq!(dirt_of(&format!("SELECT 1{pad}; SET a.b = 1")), dirt::SET);
        assert_eq!(dirt_of(&format!("SELECT 1{pad}\0; SET a.b = 1")), 0);
        assert_eq!(dirt_of(";;SET a.b = 1;"), dirt::SET);
        assert_eq!(dirt_of("BEGIN; SET a.b = 1; COMMIT"), dirt::SET);
        let long = format!("SELECT 1; SET a.b = 1; {}", "x".repeat(SCAN_LIMIT));
        assert_eq!(
            dirt_of(&long),
            0,
            "past 4 KiB only the first statement is read"
        );
        assert_eq!(reset_sql(dirt::SET | dirt::LISTEN), "RESET ALL;UNLISTEN *;");
        assert_eq!(reset_sql(0), "");
    }

    #[test]
    fn leading_keyword_finds_every_keyword_and_only_whole_words() {
        let all = [
            ("SET", Kw::Set),
            ("Reset", Kw::Reset),
            ("prepare", Kw::Prepare),
            ("DEALLOCATE", Kw::Deallocate),
            ("DECLARE", Kw::Declare),
            ("close", Kw::Close),
            ("LISTEN", Kw::Listen),
            ("UNLISTEN", Kw::Unlisten),
            ("CREATE", Kw::Create),
            ("DISCARD", Kw::Discard),
            ("BEGIN", Kw::Begin),
            ("START", Kw::Start),
            ("COMMIT", Kw::Commit),
            ("end", Kw::End),
            ("ROLLBACK", Kw::Rollback),
            ("ABORT", Kw::Abort),
        ];
        for (word, kw) in all {
            assert_eq!(leading_keyword(word.as_bytes()), Some(kw), "{word}");
            let text = format!(" (\n{word} x");
            assert_eq!(leading_keyword(text.as_bytes()), Some(kw), "{text}");
        }
        for word in [
            "", "SELECT", "SIT", "CLOSET", "COMMET", "RESIST", "DISCORD", "S", "SE", " ", "1SET",
            "settings", "endx",
        ] {
            assert_eq!(leading_keyword(word.as_bytes()), None, "{word}");
        }
    }

    #[test]
    fn recognises_transaction_control() {
        assert_eq!(tx_control(b"BEGIN"), TxControl::Begin);
        assert_eq!(tx_control(b"begin;"), TxControl::Begin);
        assert_eq!(
            tx_control(b"START TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
            TxControl::Begin
        );
        assert_eq!(
            tx_control(b"BEGIN READ ONLY, NOT DEFERRABLE"),
            TxControl::Begin
        );
        assert_eq!(tx_control(b"BEGIN; SELECT 1"), TxControl::Other);
        assert_eq!(tx_control(b"BEGIN ISOLATION LEVEL bogus"), TxControl::Other);
        assert_eq!(tx_control(b"COMMIT"), TxControl::Commit);
        assert_eq!(tx_control(b"end work"), TxControl::Commit);
        assert_eq!(tx_control(b"ROLLBACK"), TxControl::Rollback);
        assert_eq!(tx_control(b"abort;"), TxControl::Rollback);
        assert_eq!(tx_control(b"ROLLBACK TO SAVEPOINT a"), TxControl::Other);
        assert_eq!(tx_control(b"SELECT 1"), TxControl::Other);
        assert_eq!(tx_control(b"  \nbegin\n"), TxControl::Begin);
        assert_eq!(tx_control(b"ENDX"), TxControl::Other);
    }

    #[test]
    fn pins_follow_held_cursors_and_temporary_tables() {
        let mut p = Pins::default();
        assert!(!track_pins(b"DECLARE c CURSOR FOR SELECT 1", &mut p));
        assert!(!p.any());
        assert!(track_pins(
            b"DECLARE \"Foo\" NO SCROLL CURSOR WITH HOLD FOR SELECT 1",
            &mut p
        ));
        assert!(track_pins(
            b"declare bar cursor with hold for select 2",
            &mut p
        ));
        assert_eq!(p.held.len(), 2);
        assert!(
            !track_pins(b"CLOSE foo", &mut p),
            "quoted names keep their case"
        );
        assert!(track_pins(b"CLOSE \"Foo\"", &mut p));
        assert!(track_pins(b"close BAR", &mut p));
        assert!(!p.any());
        assert!(!track_pins(
            b"CREATE TEMP TABLE t (a int) ON COMMIT DROP",
            &mut p
        ));
        assert!(!track_pins(b"CREATE TABLE temp (a int)", &mut p));
        assert!(track_pins(
            b"SELECT 1; CREATE LOCAL TEMPORARY TABLE t (a int)",
            &mut p
        ));
        assert!(p.temp);
        assert!(track_pins(b"DISCARD TEMP", &mut p));
        track_pins(b"DECLARE c CURSOR WITH HOLD FOR SELECT 1", &mut p);
        assert!(track_pins(b"DISCARD ALL", &mut p));
        assert!(!p.any());
    }

    #[test]
    fn ddl_is_noted_apart_from_session_state() {
        for sql in [
            "CREATE TYPE t AS (a int)",
            "drop type t",
            "ALTER TABLE x ADD b int",
        ] {
            let mut d = 0;
            track(sql.as_bytes(), &mut d);
            assert_eq!(d & dirt::DDL, dirt::DDL, "{sql}");
        }
        let mut d = dirt::SET | dirt::DDL;
        track(b"DISCARD ALL", &mut d);
        assert_eq!(d, dirt::DDL);
        let mut d = 0;
        track(b"SELECT 'drop'", &mut d);
        assert_eq!(d, 0);
    }

    #[test]
    fn may_matter_filters_plain_statements_in_one_pass() {
        assert!(!may_matter(b"SELECT abalance FROM t WHERE aid = 1;"));
        assert!(!may_matter(b"SELECT 1;  ;\0\0\0"));
        assert!(!may_matter(b"INSERT INTO t VALUES (1)\0"));
        assert!(may_matter(b"SELECT 1; SET work_mem = 1"));
        assert!(may_matter(b" reset all"));
        assert!(may_matter(b"DECLARE c CURSOR WITH HOLD FOR SELECT 1\0"));
    }
}

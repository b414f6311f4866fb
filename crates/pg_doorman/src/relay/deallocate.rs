//! Which SQL texts drop prepared statements (DEALLOCATE, DISCARD ALL) or session settings
//! (RESET ALL), as the client scan must know to keep its view of the backend right.

/// Whether a statement may drop prepared statements on the backend behind the pooler's back.
pub(crate) fn drops_statements(query: &[u8]) -> bool {
    let q = query.trim_ascii_start();
    let starts = |w: &[u8]| q.len() >= w.len() && q[..w.len()].eq_ignore_ascii_case(w);
    starts(b"DEALLOCATE") || starts(b"DISCARD")
}

/// What a short simple query means for statements.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Statements<'a> {
    /// Nothing to do with them.
    Other,
    /// DISCARD ALL: drops everything, also session settings.
    DiscardAll,
    /// RESET ALL: session settings only.
    ResetAll,
    /// DEALLOCATE [PREPARE] ALL.
    DeallocateAll,
    /// DEALLOCATE [PREPARE] name (unquoted names folded to lower case by the caller).
    Deallocate(&'a [u8], bool),
}

/// What the short simple query `sql` does to prepared statements.
pub(crate) fn classify(sql: &[u8]) -> Statements<'_> {
    if !crate::sql_kind::may_drop_statements(sql) {
        return Statements::Other;
    }
    let s = crate::sql_kind::bare(sql);
    let word = |s: &[u8]| -> usize {
        s.iter()
            .position(|c| c.is_ascii_whitespace())
            .unwrap_or(s.len())
    };
    let w = word(s);
    let (first, rest) = (&s[..w], s[w..].trim_ascii_start());
    if first.eq_ignore_ascii_case(b"DISCARD") && rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::DiscardAll;
    }
    if first.eq_ignore_ascii_case(b"RESET") && rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::ResetAll;
    }
    if !first.eq_ignore_ascii_case(b"DEALLOCATE") || rest.is_empty() {
        return Statements::Other;
    }
    let mut rest = rest;
    let w = word(rest);
    if rest[..w].eq_ignore_ascii_case(b"PREPARE") && w < rest.len() {
        rest = rest[w..].trim_ascii_start();
    }
    if rest.eq_ignore_ascii_case(b"ALL") {
        return Statements::DeallocateAll;
    }
    if rest.len() >= 2 && rest[0] == b'"' && rest[rest.len() - 1] == b'"' {
        let inner = &rest[1..rest.len() - 1];
        if !inner.contains(&b'"') {
            return Statements::Deallocate(inner, true);
        }
        return Statements::Other;
    }
    if rest.iter().any(|c| c.is_ascii_whitespace() || *c == b'"') {
        return Statements::Other;
    }
    Statements::Deallocate(rest, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_statement_commands() {
        assert_eq!(classify(b" discard all ;"), Statements::DiscardAll);
        assert_eq!(classify(b"RESET ALL"), Statements::ResetAll);
        assert_eq!(
            classify(b"DEALLOCATE PREPARE ALL"),
            Statements::DeallocateAll
        );
        assert_eq!(classify(b"deallocate all;;"), Statements::DeallocateAll);
        assert_eq!(
            classify(b"DEALLOCATE _pg3_0"),
            Statements::Deallocate(b"_pg3_0", false)
        );
        assert_eq!(
            classify(b"DEALLOCATE \"Mixed\""),
            Statements::Deallocate(b"Mixed", true)
        );
        assert_eq!(
            classify(b"DEALLOCATE PREPARE s1"),
            Statements::Deallocate(b"s1", false)
        );
        assert_eq!(classify(b"DEALLOCATE"), Statements::Other);
        assert_eq!(classify(b"SELECT 1"), Statements::Other);
        assert!(drops_statements(b"  deallocate all"));
        assert!(!drops_statements(b"SELECT 1"));
    }
}

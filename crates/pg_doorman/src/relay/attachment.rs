//! Per-attachment bookkeeping of one client on one backend (not protocol state: that is the
//! backend's [`super::Conversation`]).

use doorman_wire::HEADER_LEN;

/// What the pooler notes about one client while it holds one backend: session state its
/// statements leave behind, pins, RESETs, memory held for frames read whole, and the tally.
/// Made anew for each attachment; the protocol state of the backend is its
/// [`super::Conversation`].
#[derive(Debug, Default)]
pub struct Attachment {
    /// The client sent Terminate.
    pub terminated: bool,
    /// Release point reached (transaction mode).
    pub(crate) released: bool,
    /// The backend reported a ParameterStatus during this attachment.
    pub params_changed: bool,
    /// The client ran DISCARD ALL / RESET ALL: settings the pooler applied are gone.
    pub session_reset: bool,
    /// A frame the scan must read whole is not all buffered: read past the high-water mark.
    pub need_frame: bool,
    /// Read statements for session state they leave behind (`cleanup_server_connections`).
    pub track_dirt: bool,
    /// Session state left on the backend ([`crate::sql_kind::dirt`] bits).
    pub dirty: u8,
    /// Read statements for DDL (prepared statements are cached: a new cache epoch follows).
    pub track_ddl: bool,
    /// DDL ran, or the backend said a cached statement went stale (0A000 "cached plan must
    /// not change result type", XX000 "cache lookup failed"): the pool's statement cache must
    /// start a new epoch.
    pub schema_changed: bool,
    /// Read statements for session state that pins the client to this backend (transaction
    /// mode).
    pub track_pins: bool,
    /// That state: while any exists the backend is not released at ReadyForQuery 'I'.
    pub pins: crate::sql_kind::Pins,
    /// `pins` changed since the relay last looked.
    pub pins_changed: bool,
    /// Read statements for RESETs of tracked parameters ([`crate::sql_kind::resets`]).
    pub track_settings: bool,
    /// Untracked settings the client SET or RESET at session level (transaction mode; read
    /// back at release so they follow the client, [`crate::sql_kind::session_sets`]).
    pub set_names: Vec<Box<str>>,
    /// RESETs seen in Parse messages (without statement rewriting), armed by the next Bind.
    pub parse_resets: u16,
    /// Tracked parameters the client RESET since the last release: the relay stops at the
    /// next ReadyForQuery 'I' (also in session mode) so that the session can put back the
    /// client's startup values.
    pub resets: u16,
    /// The backend sent a FATAL ErrorResponse (relayed to the client, as PostgreSQL's own last
    /// word before it closes, e.g. 57P01 after pg_terminate_backend).
    pub server_fatal: bool,
    /// Hash of the client's parse-time settings ([`crate::params::parse_context`]).
    pub parse_ctx: u64,
    /// Bytes reserved under `max_memory_usage` for the frame being waited for.
    pub reserved: usize,
    /// A frame that must be read whole does not fit under `max_memory_usage`.
    pub over_memory: bool,
    /// The client sent Flush outside COPY (an asynchronous pipeline; SHOW POOLS_MEMORY).
    pub flushed: bool,
    /// What this attachment did (statistics).
    pub tally: crate::pool::stats::Tally,
    /// When the client got the backend (set by the session before relaying).
    pub attached: Option<crate::clock::Micros>,
    /// When the last ReadyForQuery passed: the end of the attachment's transaction time, so
    /// the statistics and the checkin read no clock of their own.
    pub last_end: Option<crate::clock::Micros>,
    /// Durations of the first 8 queries (µs, from the attachment or the previous
    /// ReadyForQuery to this one), for the query histogram.
    pub query_us: [u32; 8],
}

impl Attachment {
    /// An attachment that began at `attached`; `track_dirt` as the pool's
    /// `cleanup_server_connections`.
    pub fn new(attached: crate::clock::Micros, track_dirt: bool) -> Self {
        Attachment {
            attached: Some(attached),
            track_dirt,
            ..Default::default()
        }
    }

    /// Notes the session state a simple Query at `pos` (frame length `len`) leaves behind,
    /// from as much of its text as is buffered. False when the text was read and is none the
    /// pooler acts on ([`crate::sql_kind::may_matter`]): a single statement led by no keyword
    /// of its own, so no DEALLOCATE, DISCARD or RESET either.
    #[inline]
    pub(crate) fn track_query(&mut self, buf: &[u8], pos: usize, len: usize) -> bool {
        if !self.reads_statements() {
            return true;
        }
        let end = (pos + len).min(buf.len());
        // The body as buffered, its NUL included when there: the keyword reader stops at it.
        let Some(body) = buf.get(pos + HEADER_LEN..end) else {
            return true;
        };
        if !crate::sql_kind::may_matter(body) {
            return false;
        }
        self.resets |= self.track_matter(body);
        true
    }

    /// True when statement texts are read for anything (session state, DDL, pins, RESETs).
    #[inline]
    pub(crate) fn reads_statements(&self) -> bool {
        self.track_dirt || self.track_ddl || self.track_pins || self.track_settings
    }

    /// Notes what statement text `text` leaves behind (session state, DDL, pins, untracked
    /// SETs) and returns the tracked parameters it RESETs ([`crate::sql_kind::resets`] bits),
    /// for the caller to count now or when the statement runs.
    pub(crate) fn track_text(&mut self, text: &[u8]) -> u16 {
        if !crate::sql_kind::may_matter(text) {
            return 0;
        }
        self.track_matter(text)
    }

    /// [`Self::track_text`] of a text known to pass [`crate::sql_kind::may_matter`].
    fn track_matter(&mut self, text: &[u8]) -> u16 {
        use crate::sql_kind::dirt;
        let mut d = self.dirty;
        crate::sql_kind::track(text, &mut d);
        if d & dirt::DDL != 0 {
            self.schema_changed |= self.track_ddl;
            d &= !dirt::DDL;
        }
        if self.track_dirt {
            self.dirty = d;
        }
        if self.track_pins {
            self.pins_changed |= crate::sql_kind::track_pins(text, &mut self.pins);
            let names = &mut self.set_names;
            crate::sql_kind::session_sets(text, |n| {
                if !names.contains(&n) {
                    names.push(n);
                }
            });
        }
        if self.track_settings {
            crate::sql_kind::resets(text)
        } else {
            0
        }
    }

    /// Notes what a statement does when it runs (its text passed
    /// [`crate::sql_kind::may_matter`] when it was interned).
    #[inline]
    pub(crate) fn track_statement(&mut self, st: &crate::prepared::Statement) {
        if st.may_matter && self.reads_statements() {
            self.resets |= self.track_matter(&st.body);
        }
    }

    /// Relays on after a stop for [`Attachment::resets`] (session mode).
    pub fn resume(&mut self) {
        self.released = false;
        self.resets = 0;
    }
}

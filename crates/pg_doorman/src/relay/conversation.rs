//! The protocol state of one backend connection, in one place: the replies it owes in order,
//! the replies the pooler makes up, skip-till-Sync, COPY, the transaction status and the scan
//! position of its output. The client scan ([`super::client_scan`]) and the server scan
//! ([`super::server_scan`]) are its only writers; [`Conversation::is_reusable`] is the one
//! answer to "may this backend go back to the pool?".

use super::scan::Scan;
use crate::prepared::ServerStatements;
use bytes::BytesMut;
use doorman_wire::backend::{
    CLOSE_COMPLETE_FRAME, DEALLOCATE_COMPLETE_FRAME, PARSE_COMPLETE_FRAME,
};
use std::collections::VecDeque;

/// A reply the pooler expects from the backend, or must make up itself, in protocol order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expect {
    /// Parse of statement `id` (0: not tracked); `swallow` when the pooler injected it.
    Parse {
        /// Statement id registered on the backend by this Parse.
        id: u64,
        /// The client did not send this Parse: its ParseComplete is dropped.
        swallow: bool,
    },
    /// BindComplete.
    Bind,
    /// Describe: (ParameterDescription +) RowDescription or NoData.
    Describe,
    /// Execute: ends with CommandComplete, EmptyQueryResponse or PortalSuspended.
    Execute,
    /// CloseComplete; `swallow` for the pooler's own Close of an evicted statement.
    Close {
        /// The client did not send this Close.
        swallow: bool,
    },
    /// Sync, Query or FunctionCall: ends with ReadyForQuery.
    Ready {
        /// Query/FunctionCall (skipped after an extended-protocol error), not Sync.
        skippable: bool,
    },
    /// A reply the pooler makes up, sent once everything before it was relayed.
    Synth(Synth),
    /// Not a reply: where the client ended a COPY (CopyDone/CopyFail). The backend ignores
    /// Syncs between CopyInResponse and this point.
    CopyEnd,
    /// Not a reply: the Parse before it gave the client a new statement name (the front of
    /// [`Conversation::new_names`]). Reached with everything before it answered, the name
    /// stands; skipped by an error, the Parse did not happen and the name is taken back.
    NameAdded,
}

/// Replies the pooler makes up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synth {
    /// ParseComplete for a Parse the backend already had.
    ParseComplete,
    /// CloseComplete for a Close of a statement (backends keep it).
    CloseComplete,
    /// CommandComplete `DEALLOCATE` for a simple-query DEALLOCATE of a client's name.
    Deallocate,
    /// ErrorResponse 42P05 for a Parse of a name the client already has; the number finds
    /// the name in [`Conversation::duplicate_error`].
    Duplicate(u32),
}

impl Synth {
    /// The message bytes of the fixed replies (None for [`Synth::Duplicate`], which names
    /// the statement: [`Conversation::duplicate_error`]).
    pub fn bytes(self) -> Option<&'static [u8]> {
        match self {
            Synth::ParseComplete => Some(&PARSE_COMPLETE_FRAME),
            Synth::CloseComplete => Some(&CLOSE_COMPLETE_FRAME),
            Synth::Deallocate => Some(DEALLOCATE_COMPLETE_FRAME),
            Synth::Duplicate(_) => None,
        }
    }
}

/// A statement name a client's Parse set, until the backend's answer shows it stands.
#[derive(Debug)]
pub(crate) struct NewName {
    /// The name ("" = the unnamed statement).
    pub name: Box<[u8]>,
    /// The statement the Parse gave it.
    pub id: u64,
    /// The statement the name had before (only the unnamed one can have had one).
    pub before: Option<std::sync::Arc<crate::prepared::Statement>>,
}

/// Transaction status of the last ReadyForQuery (protocol §55.7, ReadyForQuery).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TxStatus {
    /// `I`: not in a transaction block.
    #[default]
    Idle,
    /// `T`: in a transaction block.
    InBlock,
    /// `E`: in a failed transaction block (commands are refused until it ends).
    Failed,
}

impl TxStatus {
    /// The status of a ReadyForQuery status byte; None for a byte the protocol does not have.
    pub fn from_byte(b: u8) -> Option<Self> {
        match b {
            b'I' => Some(TxStatus::Idle),
            b'T' => Some(TxStatus::InBlock),
            b'E' => Some(TxStatus::Failed),
            _ => None,
        }
    }

    /// The ReadyForQuery status byte.
    pub fn byte(self) -> u8 {
        match self {
            TxStatus::Idle => b'I',
            TxStatus::InBlock => b'T',
            TxStatus::Failed => b'E',
        }
    }
}

/// COPY sub-protocol state (protocol §55.2.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Copy {
    /// No COPY running.
    #[default]
    None,
    /// CopyInResponse came and the client has not ended the copy (CopyDone/CopyFail): the
    /// backend ignores Sync and Flush meanwhile.
    In,
    /// CopyOutResponse came and the backend's CopyDone has not.
    Out,
}

/// The protocol state of one backend connection (lives with it across attachments).
#[derive(Debug)]
pub struct Conversation {
    /// Transaction status of the last ReadyForQuery.
    pub status: TxStatus,
    /// Replies expected, in order.
    pub expect: VecDeque<Expect>,
    /// Query/Sync/FunctionCall forwarded whose ReadyForQuery has not come back.
    pub pending: u32,
    /// Extended-protocol messages forwarded since the last Sync.
    pub unsynced: bool,
    /// An Execute was forwarded since the last Sync (a Sync now could commit its work).
    pub executed: bool,
    /// An extended-protocol error was relayed and no Sync has followed yet: the backend ignores
    /// everything until Sync, so nothing is expected from it (protocol §55.2.3).
    pub skipping: bool,
    /// The pooler answered an error itself: drop the client's messages until Sync.
    pub drop_till_sync: bool,
    /// COPY in either direction.
    pub copy: Copy,
    /// A client ran something that may have dropped statements behind the pooler's back
    /// (DEALLOCATE/DISCARD through the extended protocol): reset with DEALLOCATE ALL at checkin.
    pub must_reset: bool,
    /// Scan position of the backend's output.
    pub scan: Scan,
    /// What is ready for the client was all made up by the pooler (no backend bytes yet).
    pub(crate) synth_only: bool,
    /// Statements prepared on the backend (transaction mode's statement rewriting).
    pub statements: ServerStatements,
    /// Scratch for building injected messages (kept to avoid allocating per message).
    pub(crate) scratch: BytesMut,
    /// Statement names the client's Parses added, in order, until the backend's answer shows
    /// whether each Parse happened ([`Expect::NameAdded`]): the name, the statement id it
    /// got, and the statement it had before (the unnamed statement is replaced by a Parse).
    pub(crate) new_names: VecDeque<NewName>,
    /// Names whose Parse failed or was skipped: the client scan takes them out of the
    /// client's map before it reads on (PostgreSQL has no such statement).
    pub(crate) undo_names: Vec<NewName>,
    /// Names of the statements of pending [`Synth::Duplicate`] replies, by number (rare:
    /// a client re-using a name it has not closed).
    duplicates: VecDeque<(u32, Box<[u8]>)>,
    next_duplicate: u32,
}

impl Conversation {
    /// A fresh connection's state (idle, nothing owed); `capacity` bounds the statements it
    /// keeps prepared (`server_prepared_statements_cache_size`). Allocates nothing until used.
    pub fn new(capacity: usize) -> Self {
        Conversation {
            status: TxStatus::Idle,
            expect: VecDeque::new(),
            pending: 0,
            unsynced: false,
            executed: false,
            skipping: false,
            drop_till_sync: false,
            copy: Copy::None,
            must_reset: false,
            scan: Scan::default(),
            synth_only: false,
            statements: ServerStatements::new(capacity),
            scratch: BytesMut::new(),
            new_names: VecDeque::new(),
            undo_names: Vec::new(),
            duplicates: VecDeque::new(),
            next_duplicate: 0,
        }
    }

    /// Queues `e` unless the backend skips to the next Sync; a Sync ends the skip
    /// (protocol §55.2.3).
    pub(crate) fn push(&mut self, e: Expect) {
        match e {
            Expect::Ready { skippable: false } => self.skipping = false,
            _ if self.skipping => return,
            _ => {}
        }
        self.expect.push_back(e);
    }

    /// True when the backend is between transactions with nothing outstanding, nothing
    /// streamed half-way and nothing owed: the one test for putting it back in the pool.
    pub fn is_reusable(&self) -> bool {
        self.pending == 0
            && !self.unsynced
            && self.status == TxStatus::Idle
            && self.scan.skip == 0
            && self.copy == Copy::None
            && self.expect.is_empty()
    }

    /// True when the client holds a transaction open (or failed) and nothing is in flight
    /// (`client`: the scan of what it sent): a ROLLBACK makes the backend reusable after the
    /// client left.
    pub fn only_in_transaction(&self, client: &Scan) -> bool {
        client.ready == 0
            && client.skip == 0
            && self.pending == 0
            && !self.unsynced
            && matches!(self.status, TxStatus::InBlock | TxStatus::Failed)
            && self.scan.skip == 0
            && self.copy == Copy::None
            && self.expect.is_empty()
    }

    /// True when the client left in the middle of an extended-protocol batch that ran nothing
    /// (no Execute) outside a transaction block, with every byte it sent written out whole
    /// (`client` scan): a Sync makes the backend clean again.
    pub fn only_unsynced(&self, client: &Scan) -> bool {
        client.ready == 0
            && client.skip == 0
            && self.pending == 0
            && self.unsynced
            && !self.executed
            && self.status == TxStatus::Idle
            && self.scan.skip == 0
            && self.copy == Copy::None
    }

    /// The client left: nobody receives the replies the pooler would have made up.
    pub fn drop_synthetic(&mut self) {
        self.expect.retain(|e| !matches!(e, Expect::Synth(_)));
        self.duplicates.clear();
        // The client and its names are gone.
        self.expect.retain(|e| *e != Expect::NameAdded);
        self.new_names.clear();
        self.undo_names.clear();
    }

    /// A Sync of the pooler's own brought the backend to ReadyForQuery (`status`): nothing is
    /// owed any more.
    pub fn resynced(&mut self, status: TxStatus) {
        self.status = status;
        self.expect.clear();
        self.new_names.clear();
        self.pending = 0;
        self.unsynced = false;
        self.executed = false;
        self.skipping = false;
        self.drop_till_sync = false;
        self.copy = Copy::None;
    }

    /// What to do with an expected item taken off the queue unanswered (an error or a Sync
    /// showed the backend skipped it): a new name goes back.
    pub(crate) fn skipped(&mut self, e: Expect) {
        match e {
            Expect::Parse { id, .. } if id != 0 => self.statements.forget(id),
            Expect::NameAdded => {
                if let Some(n) = self.new_names.pop_front() {
                    self.undo_names.push(n);
                }
            }
            _ => {}
        }
    }

    /// The Parse before an [`Expect::NameAdded`] failed: the name goes, whatever it had
    /// before (PostgreSQL drops the unnamed statement when a Parse of it begins).
    pub(crate) fn name_failed(&mut self) {
        if let Some(mut n) = self.new_names.pop_front() {
            n.before = None;
            self.undo_names.push(n);
        }
    }

    /// An [`Expect::NameAdded`] reached with everything before it answered: the name stands.
    pub(crate) fn name_confirmed(&mut self) {
        self.new_names.pop_front();
    }

    /// Every statement is gone from the backend (DEALLOCATE ALL / DISCARD ALL ran).
    pub fn forget_statements(&mut self) {
        self.statements.clear();
        self.must_reset = false;
    }

    /// Queues the 42P05 reply for a Parse of `name`, which the client already has.
    pub fn expect_duplicate(&mut self, name: &[u8]) -> Expect {
        let n = self.next_duplicate;
        self.next_duplicate = n.wrapping_add(1);
        // Replies dropped unsent leave their names behind until the next one is sent: bound them.
        if self.duplicates.len() >= 16 {
            self.duplicates.pop_front();
        }
        self.duplicates.push_back((n, name.into()));
        Expect::Synth(Synth::Duplicate(n))
    }

    /// ErrorResponse 42P05 with PostgreSQL's text (`prepared statement "name" already
    /// exists`) for the reply numbered `n`; names of replies dropped before theirs are
    /// discarded on the way.
    pub fn duplicate_error(&mut self, n: u32) -> BytesMut {
        let mut name: Box<[u8]> = Box::default();
        while let Some((k, v)) = self.duplicates.pop_front() {
            if k == n {
                name = v;
                break;
            }
        }
        let e = doorman_wire::ErrorFields::error(
            doorman_wire::sqlstate::DUPLICATE_PREPARED_STATEMENT,
            format!(
                "prepared statement \"{}\" already exists",
                String::from_utf8_lossy(&name)
            ),
        );
        let mut out = BytesMut::with_capacity(64 + name.len());
        e.write(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn synthetic_messages_are_well_formed() {
        let mut c = Conversation::new(2);
        let first = c.expect_duplicate(b"a");
        let Expect::Synth(Synth::Duplicate(n)) = c.expect_duplicate(b"stmt_1") else {
            panic!("not a duplicate reply");
        };
        // The first reply was dropped (skipped after an error): its name goes with the second.
        assert!(matches!(first, Expect::Synth(Synth::Duplicate(_))));
        let dup = c.duplicate_error(n);
        assert!(c.duplicates.is_empty());
        let fields = doorman_wire::fields::parse_error_body(&dup[5..]).unwrap();
        assert_eq!(fields.code, "42P05");
        assert_eq!(
            fields.message,
            "prepared statement \"stmt_1\" already exists"
        );
        for s in [
            Synth::ParseComplete,
            Synth::CloseComplete,
            Synth::Deallocate,
        ] {
            let b = s.bytes().unwrap();
            let len = u32::from_be_bytes([b[1], b[2], b[3], b[4]]) as usize;
            assert_eq!(len + 1, b.len(), "{s:?}");
        }
        let len = u32::from_be_bytes([dup[1], dup[2], dup[3], dup[4]]) as usize;
        assert_eq!(len + 1, dup.len());
    }

    #[test]
    fn reusable_only_when_nothing_is_owed() {
        let mut c = Conversation::new(2);
        assert!(c.is_reusable());
        for f in [
            |c: &mut Conversation| c.pending = 1,
            |c: &mut Conversation| c.unsynced = true,
            |c: &mut Conversation| c.status = TxStatus::InBlock,
            |c: &mut Conversation| c.copy = Copy::Out,
            |c: &mut Conversation| c.scan.skip = 3,
            |c: &mut Conversation| c.expect.push_back(Expect::Bind),
        ] {
            let mut d = Conversation::new(2);
            f(&mut d);
            assert!(!d.is_reusable(), "{d:?}");
        }
        c.status = TxStatus::Failed;
        assert!(c.only_in_transaction(&Scan::default()));
        c.resynced(TxStatus::Idle);
        c.unsynced = true;
        assert!(c.only_unsynced(&Scan::default()));
        c.executed = true;
        assert!(!c.only_unsynced(&Scan::default()));
        for b in [b'I', b'T', b'E'] {
            assert_eq!(TxStatus::from_byte(b).map(TxStatus::byte), Some(b));
        }
        assert_eq!(TxStatus::from_byte(b'X'), None);
    }
}

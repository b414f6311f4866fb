//! Properties the fuzz targets (`fuzz/`) and their deterministic CI replay
//! (`tests/fuzz_replay.rs`) check on arbitrary bytes. Each function panics when a property
//! fails (that is the finding) and otherwise returns whether the input decoded, so the replay
//! can tell that both outcomes were reached.

use crate::frame::HEADER_LEN;
use crate::frontend::{BindNames, Message, Parse, Query, tag};
use bytes::BytesMut;

/// The client message families, each with its fuzz target: the type bytes it covers.
pub const FAMILIES: &[(&str, &[u8])] = &[
    ("parse", &[tag::PARSE]),
    ("bind", &[tag::BIND]),
    ("describe_close", &[tag::DESCRIBE, tag::CLOSE]),
    ("execute", &[tag::EXECUTE]),
    ("query", &[tag::QUERY]),
    ("copy", &[tag::COPY_DATA, tag::COPY_DONE, tag::COPY_FAIL]),
    ("function_call", &[tag::FUNCTION_CALL]),
];

/// Decodes `body` as a message of type `t`; when that succeeds, encoding the view must give
/// back exactly the frame `t`, length word, `body`. The prefix readers the relay uses on
/// partly buffered frames must agree with the whole decode. Returns true when it decoded.
///
/// # Panics
/// When a property fails.
pub fn client_message(t: u8, body: &[u8]) -> bool {
    // Prefix readers never panic on any cut of the body.
    for cut in [0, body.len() / 2, body.len()] {
        let part = &body[..cut];
        let _ = Parse::query_prefix(part);
        let _ = BindNames::decode_prefix(part);
        let _ = Query::sql_prefix(part);
    }
    let Ok(m) = Message::decode(t, body) else {
        return false;
    };
    let mut frame = Vec::with_capacity(body.len() + HEADER_LEN);
    frame.push(t);
    frame.extend_from_slice(&((body.len() + 4) as u32).to_be_bytes());
    frame.extend_from_slice(body);
    let mut out = BytesMut::new();
    m.encode(&mut out);
    assert_eq!(&out[..], &frame[..], "re-encoding {m:?} changed the bytes");
    match m {
        Message::Parse(p) => {
            assert_eq!(Parse::query_prefix(body), Some(p.query()));
            assert_eq!(
                &body[p.name_span().at - HEADER_LEN..][..p.name.len()],
                p.name
            );
        }
        Message::Bind(b) => {
            assert_eq!(BindNames::decode_prefix(body), Some(b.names));
            let s = b.names.statement_span();
            assert_eq!(&frame[s.at..s.at + s.len], b.names.statement);
        }
        Message::Describe(d) | Message::Close(d) => {
            let s = d.name_span();
            assert_eq!(&frame[s.at..s.at + s.len], d.name);
        }
        Message::Query(q) => assert_eq!(Query::sql_prefix(body), q.sql),
        _ => {}
    }
    true
}

/// Runs [`client_message`] for fuzz input `data` in family `types`: the first byte picks the
/// type, the rest is the body.
pub fn family(types: &[u8], data: &[u8]) -> bool {
    let Some((&pick, body)) = data.split_first() else {
        return false;
    };
    let t = types[pick as usize % types.len()];
    client_message(t, body)
}

//! Frame headers: a one-byte type plus a big-endian length that counts itself (protocol §55.2).
//!
//! The pooler relays most messages without decoding them, so this module only splits the
//! 5-byte header off and checks the length against PostgreSQL's caps.

/// Bytes in a typed message header: tag (1) + length (4).
pub const HEADER_LEN: usize = 5;

/// Largest message PostgreSQL accepts from a client or sends (MaxAllocSize - 1, `PQ_LARGE_MESSAGE_LIMIT`
/// in src/backend/libpq/pqcomm.c): 1 GiB - 1 byte.
pub const MAX_MESSAGE_LEN: u32 = 0x3fff_ffff;

/// Cap PostgreSQL applies to "small" frontend messages (`PQ_SMALL_MESSAGE_LIMIT`): 10000 bytes.
/// Applied here to messages whose body is bounded by the protocol (Sync, Flush, Terminate, Close,
/// Describe, CopyDone, CopyFail).
pub const SMALL_MESSAGE_LEN: u32 = 10_000;

/// Largest startup packet PostgreSQL accepts (`MAX_STARTUP_PACKET_LENGTH`): 10000 bytes.
pub const MAX_STARTUP_LEN: u32 = 10_000;

/// Texts shorter than this (bytes) are searched without memchr: its SIMD set-up costs more
/// than it saves on statement names and short queries (callgrind, extended protocol: about
/// 280 instructions per transaction).
const SHORT_SEARCH: usize = 64;

/// Where the first NUL of `b` is (a C string's end), if it has one. Byte by byte while
/// short: what it finds is mostly a statement or portal name, often empty, within a few bytes.
#[inline]
pub fn find_nul(b: &[u8]) -> Option<usize> {
    if b.len() < SHORT_SEARCH {
        b.iter().position(|&c| c == 0)
    } else {
        memchr::memchr(0, b)
    }
}

/// Where the first NUL or `also` byte of `b` is (a statement's `;` or its text's end: a query
/// text, read past its first words).
#[inline]
pub fn find_nul_or(b: &[u8], also: u8) -> Option<usize> {
    if b.len() < SHORT_SEARCH {
        short_find(b, also)
    } else {
        memchr::memchr2(0, also, b)
    }
}

/// [`find_nul_or`] of a short text: eight bytes a step while no word holds either byte (a
/// word holds a zero byte exactly when `(w - 0x01…) & !w & 0x80…` is not zero), then byte by
/// byte through the word that does and the last few bytes.
#[inline]
fn short_find(b: &[u8], also: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let has_zero = |w: u64| w.wrapping_sub(ONES) & !w & HIGHS != 0;
    let alsos = ONES * u64::from(also);
    let mut at = 0;
    for chunk in b.chunks_exact(8) {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        let w = u64::from_le_bytes(word);
        if has_zero(w) || has_zero(w ^ alsos) {
            break;
        }
        at += 8;
    }
    b[at..]
        .iter()
        .position(|&c| c == 0 || c == also)
        .map(|i| at + i)
}

/// A decoded message header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Message type byte, e.g. `b'Q'`.
    pub tag: u8,
    /// Length word (bytes): includes the 4 length bytes, excludes the tag.
    pub len: u32,
}

impl FrameHeader {
    /// Whole frame size in bytes (tag + length word + body).
    #[inline]
    pub fn frame_len(&self) -> usize {
        self.len as usize + 1
    }

    /// Body size in bytes.
    #[inline]
    pub fn body_len(&self) -> usize {
        self.len as usize - 4
    }
}

/// Reads a header from the start of `buf`.
///
/// Returns `Ok(None)` when fewer than [`HEADER_LEN`] bytes are present (need more input).
/// Errors with [`WireError::BadLength`] when the length is below 4 or above `max`.
#[inline]
pub fn peek_header(buf: &[u8], max: u32) -> Result<Option<FrameHeader>, crate::WireError> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    let tag = buf[0];
    let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
    if !(4..=max).contains(&len) {
        return Err(crate::WireError::BadLength { tag, len, max });
    }
    Ok(Some(FrameHeader { tag, len }))
}

/// Returns the whole frame (header included) at the start of `buf` when it is complete.
///
/// `Ok(None)` means more bytes are needed. Same errors as [`peek_header`].
#[inline]
pub fn complete_frame(
    buf: &[u8],
    max: u32,
) -> Result<Option<(FrameHeader, &[u8])>, crate::WireError> {
    match peek_header(buf, max)? {
        Some(h) if buf.len() >= h.frame_len() => Ok(Some((h, &buf[..h.frame_len()]))),
        _ => Ok(None),
    }
}

/// Appends a header for `tag` with a placeholder length and returns the offset to back-patch.
#[inline]
pub fn begin(buf: &mut bytes::BytesMut, tag: u8) -> usize {
    use bytes::BufMut;
    buf.put_u8(tag);
    let at = buf.len();
    buf.put_u32(0);
    at
}

/// Back-patches the length word written by [`begin`] to cover everything appended since.
#[inline]
pub fn finish(buf: &mut bytes::BytesMut, at: usize) {
    let len = (buf.len() - at) as u32;
    buf[at..at + 4].copy_from_slice(&len.to_be_bytes());
}

/// A cursor over a message body for decoding fields; never panics.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    what: &'static str,
}

impl<'a> Reader<'a> {
    /// Wraps `buf`; `what` names the message in errors.
    pub fn new(buf: &'a [u8], what: &'static str) -> Self {
        Reader { buf, what }
    }

    /// Bytes not yet consumed.
    pub fn rest(&self) -> &'a [u8] {
        self.buf
    }

    /// True when every byte has been consumed.
    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// Reads one byte.
    pub fn u8(&mut self) -> Result<u8, crate::WireError> {
        let (&b, rest) = self
            .buf
            .split_first()
            .ok_or(crate::WireError::Truncated(self.what))?;
        self.buf = rest;
        Ok(b)
    }

    /// Reads a big-endian i32.
    pub fn i32(&mut self) -> Result<i32, crate::WireError> {
        let b = self.bytes(4)?;
        Ok(i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    /// Reads a big-endian i16.
    pub fn i16(&mut self) -> Result<i16, crate::WireError> {
        let b = self.bytes(2)?;
        Ok(i16::from_be_bytes([b[0], b[1]]))
    }

    /// Reads exactly `n` bytes.
    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], crate::WireError> {
        if self.buf.len() < n {
            return Err(crate::WireError::Truncated(self.what));
        }
        let (a, b) = self.buf.split_at(n);
        self.buf = b;
        Ok(a)
    }

    /// Reads a NUL-terminated byte string without checking its encoding (the terminator is
    /// consumed, not returned): names and query texts, which the pooler compares as bytes.
    pub fn cbytes(&mut self) -> Result<&'a [u8], crate::WireError> {
        let end = find_nul(self.buf).ok_or(crate::WireError::Truncated(self.what))?;
        let s = &self.buf[..end];
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }

    /// Reads a big-endian i16 count that must not be negative.
    pub fn count(&mut self) -> Result<usize, crate::WireError> {
        let n = self.i16()?;
        usize::try_from(n).map_err(|_| crate::WireError::Invalid(self.what))
    }

    /// Fails unless every byte has been consumed (PostgreSQL's `pq_getmsgend`).
    pub fn end(&self) -> Result<(), crate::WireError> {
        if self.buf.is_empty() {
            Ok(())
        } else {
            Err(crate::WireError::Invalid(self.what))
        }
    }

    /// Reads a NUL-terminated UTF-8 string (the terminator is consumed, not returned).
    pub fn cstr(&mut self) -> Result<&'a str, crate::WireError> {
        let end = find_nul(self.buf).ok_or(crate::WireError::BadString(self.what))?;
        let s = std::str::from_utf8(&self.buf[..end])
            .map_err(|_| crate::WireError::BadString(self.what))?;
        self.buf = &self.buf[end + 1..];
        Ok(s)
    }
}

/// Replaces `old_len` bytes at `at` of `buf` with `new`, moving what follows (in-place edits of
/// a connection buffer: inserting, removing or rewriting whole frames or fields).
///
/// # Panics
/// When `at + old_len` is past the end of `buf` (a caller bug, never peer input: callers pass
/// spans they decoded from `buf`).
pub fn splice(buf: &mut bytes::BytesMut, at: usize, old_len: usize, new: &[u8]) {
    let len = buf.len();
    let tail = at + old_len;
    if new.len() <= old_len {
        let shrink = old_len - new.len();
        buf[at..at + new.len()].copy_from_slice(new);
        buf.copy_within(tail..len, at + new.len());
        buf.truncate(len - shrink);
    } else {
        let grow = new.len() - old_len;
        buf.resize(len + grow, 0);
        buf.copy_within(tail..len, tail + grow);
        buf[at..at + new.len()].copy_from_slice(new);
    }
}

/// Rewrites the length word of the frame at `frame_at` for a frame of `frame_len` bytes (tag
/// included).
pub fn set_frame_len(buf: &mut [u8], frame_at: usize, frame_len: usize) {
    let word = ((frame_len - 1) as u32).to_be_bytes();
    buf[frame_at + 1..frame_at + HEADER_LEN].copy_from_slice(&word);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_needs_five_bytes() {
        assert_eq!(peek_header(b"Q\0\0\0", MAX_MESSAGE_LEN), Ok(None));
        let h = peek_header(b"Q\0\0\0\x09SELE", MAX_MESSAGE_LEN)
            .unwrap()
            .unwrap();
        assert_eq!(
            (h.tag, h.len, h.frame_len(), h.body_len()),
            (b'Q', 9, 10, 5)
        );
    }

    #[test]
    fn header_rejects_short_and_huge_lengths() {
        assert!(matches!(
            peek_header(b"Q\0\0\0\x03", 100),
            Err(crate::WireError::BadLength { len: 3, .. })
        ));
        assert!(matches!(
            peek_header(b"Q\0\0\x01\x00", 100),
            Err(crate::WireError::BadLength { len: 256, .. })
        ));
    }

    #[test]
    fn complete_frame_waits_for_body() {
        assert_eq!(
            complete_frame(b"S\0\0\0\x04", 100)
                .unwrap()
                .map(|f| f.1.len()),
            Some(5)
        );
        assert_eq!(complete_frame(b"Q\0\0\0\x09SEL", 100).unwrap(), None);
    }

    #[test]
    fn splice_grows_shrinks_and_removes() {
        let mut b = bytes::BytesMut::from(&b"abcdef"[..]);
        splice(&mut b, 1, 2, b"XYZW");
        assert_eq!(&b[..], b"aXYZWdef");
        splice(&mut b, 1, 4, b"Q");
        assert_eq!(&b[..], b"aQdef");
        splice(&mut b, 0, 2, b"");
        assert_eq!(&b[..], b"def");
        splice(&mut b, 3, 0, b"gh");
        assert_eq!(&b[..], b"defgh");
    }

    #[test]
    fn writer_back_patches_length() {
        let mut b = bytes::BytesMut::new();
        let at = begin(&mut b, b'Q');
        b.extend_from_slice(b"x\0");
        finish(&mut b, at);
        assert_eq!(&b[..], b"Q\0\0\0\x06x\0");
    }

    #[test]
    fn reader_never_panics_on_truncation() {
        let mut r = Reader::new(b"ab", "test");
        assert!(r.i32().is_err());
        assert!(r.cstr().is_err());
        let mut r = Reader::new(b"ab\0\x01", "test");
        assert_eq!(r.cstr().unwrap(), "ab");
        assert_eq!(r.u8().unwrap(), 1);
        assert!(r.u8().is_err());
    }

    #[test]
    fn short_searches_find_what_a_plain_loop_finds() {
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        for len in 0..80 {
            for _ in 0..200 {
                let text: Vec<u8> = (0..len)
                    .map(|_| {
                        rng ^= rng << 13;
                        rng ^= rng >> 7;
                        rng ^= rng << 17;
                        // Mostly letters, now and then a NUL, a `;` or a byte with the high bit.
                        match rng % 40 {
                            0 => 0,
                            1 => b';',
                            2 => 0x80 | (rng >> 8) as u8,
                            _ => b'a' + (rng >> 16) as u8 % 26,
                        }
                    })
                    .collect();
                let nul = text.iter().position(|&c| c == 0);
                let either = text.iter().position(|&c| c == 0 || c == b';');
                assert_eq!(find_nul(&text), nul, "{text:?}");
                assert_eq!(find_nul_or(&text, 0), nul, "{text:?}");
                assert_eq!(find_nul_or(&text, b';'), either, "{text:?}");
            }
        }
    }
}

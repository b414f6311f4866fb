//! In-place edits of a connection buffer: rewriting a frame's statement name, inserting and
//! removing whole frames. Costs a move of the bytes after the edit (the rest of the batch).

use bytes::BytesMut;

/// Replaces `old_len` bytes at `at` with `new`.
pub fn splice(buf: &mut BytesMut, at: usize, old_len: usize, new: &[u8]) {
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

/// Replaces the NUL-terminated name at `name_at` (inside the frame at `frame_at`) with `new`
/// (NUL included) and fixes the frame's length word. Returns the new frame length.
pub fn rename(
    buf: &mut BytesMut,
    frame_at: usize,
    frame_len: usize,
    name_at: usize,
    old_with_nul: usize,
    new: &[u8],
) -> usize {
    splice(buf, name_at, old_with_nul, new);
    let new_len = frame_len + new.len() - old_with_nul;
    let word = ((new_len - 1) as u32).to_be_bytes();
    buf[frame_at + 1..frame_at + 5].copy_from_slice(&word);
    new_len
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splice_grows_shrinks_and_removes() {
        let mut b = BytesMut::from(&b"abcdef"[..]);
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
    fn rename_fixes_length() {
        // Close 'S' "s1\0" then a Sync.
        let mut b = BytesMut::from(&b"C\0\0\0\x08Ss1\0S\0\0\0\x04"[..]);
        let n = rename(&mut b, 0, 9, 6, 3, b"DOORMAN_7\0");
        assert_eq!(n, 16);
        assert_eq!(&b[..], b"C\0\0\0\x0fSDOORMAN_7\0S\0\0\0\x04");
    }
}

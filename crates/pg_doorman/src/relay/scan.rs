//! Scan position of one direction of a connection buffer: what may be forwarded, and how much
//! of a frame being streamed through is still to come.

use doorman_wire::WireError;
use doorman_wire::frame::{MAX_MESSAGE_LEN, peek_header};

/// Scan position of one direction.
#[derive(Debug, Default, Clone, Copy)]
pub struct Scan {
    /// Bytes at the front of the buffer that may be forwarded.
    pub ready: usize,
    /// Bytes of the current frame still to come (streamed through unread).
    pub skip: usize,
}

impl Scan {
    /// Moves past bytes of a frame already being streamed, then reads the next header.
    /// `Ok(None)` means the buffer holds no further complete header.
    #[inline]
    pub(crate) fn next_header(
        &mut self,
        buf: &[u8],
    ) -> Result<Option<doorman_wire::FrameHeader>, WireError> {
        if !self.finish_skip(buf) {
            return Ok(None);
        }
        match buf.get(self.ready..) {
            Some(rest) => peek_header(rest, MAX_MESSAGE_LEN),
            None => Ok(None),
        }
    }

    /// Moves past buffered bytes of a frame being streamed; true when none remain to come.
    #[inline]
    pub(crate) fn finish_skip(&mut self, buf: &[u8]) -> bool {
        if self.skip > 0 {
            let n = self.skip.min(buf.len().saturating_sub(self.ready));
            self.ready += n;
            self.skip -= n;
        }
        self.skip == 0
    }

    /// Marks a frame of `len` bytes at the scan position for forwarding; what is not buffered
    /// yet will stream through as it arrives.
    #[inline]
    pub(crate) fn pass(&mut self, buf: &[u8], len: usize) {
        let avail = buf.len() - self.ready;
        self.ready += len.min(avail);
        self.skip = len.saturating_sub(avail);
    }
}

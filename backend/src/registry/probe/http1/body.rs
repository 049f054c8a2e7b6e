//! How much of an answer's body has been read and where its end is, by the
//! framing its head gave: a length, chunks, or the connection's close.

use super::chunked::Chunks;
use super::head::Framing;

/// How much of an answer's body has been read, and where its end is.
pub(super) struct Body {
    framing: Framing,
    /// Bytes of content read.
    pub read: usize,
    /// Bytes past the end of the body arrived (unasked): the connection is
    /// not used again.
    pub overran: bool,
    chunks: Chunks,
}

impl Body {
    pub(super) fn new(framing: Framing, first: &[u8]) -> Result<Self, String> {
        let mut body = Self { framing, read: 0, overran: false, chunks: Chunks::Size { digits: 0, size: 0 } };
        body.take(first)?;
        Ok(body)
    }

    pub(super) fn until_close(&self) -> bool {
        self.framing == Framing::Close
    }

    pub(super) fn done(&self) -> bool {
        match self.framing {
            Framing::Length(n) => self.read as u64 >= n,
            Framing::Chunked => self.chunks == Chunks::Done,
            Framing::Close => false,
        }
    }

    /// Counts `bytes` that arrived after what came before.
    pub(super) fn take(&mut self, bytes: &[u8]) -> Result<(), String> {
        match self.framing {
            Framing::Length(n) => {
                let left = n.saturating_sub(self.read as u64);
                self.overran |= bytes.len() as u64 > left;
                self.read += bytes.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            }
            Framing::Close => self.read += bytes.len(),
            Framing::Chunked => {
                let (content, rest) = self.chunks.take(bytes).map_err(|why| format!("invalid chunked body: {why}"))?;
                self.read += content;
                self.overran |= rest > 0;
            }
        }
        Ok(())
    }
}

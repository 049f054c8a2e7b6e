//! The decoder of a chunked body (RFC 9112, section 7.1), fed the bytes as
//! they arrive, in pieces of any size: it counts the content and tells
//! where the body ends.

/// Where a chunked body's reader is (RFC 9112, section 7.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Chunks {
    /// In a chunk's size (hex digits so far, and their value).
    Size {
        digits: u8,
        size: u64,
    },
    /// In the extensions after a size, up to the line's end.
    Extension {
        size: u64,
    },
    /// The size line's CR was read.
    SizeLf {
        size: u64,
    },
    /// In a chunk's data: what is left of it.
    Data {
        left: u64,
    },
    /// After a chunk's data: its CRLF.
    DataCr,
    DataLf,
    /// After the last chunk: in the trailer section, at the start of a line
    /// (`fresh`) or inside one.
    Trailer {
        fresh: bool,
    },
    TrailerLf {
        fresh: bool,
    },
    Done,
}

impl Chunks {
    /// Reads `bytes`: how many were content, and how many came after the end.
    pub(super) fn take(&mut self, bytes: &[u8]) -> Result<(usize, usize), &'static str> {
        let mut content = 0;
        let mut i = 0;
        while i < bytes.len() {
            let b = bytes[i];
            *self = match *self {
                Chunks::Done => return Ok((content, bytes.len() - i)),
                Chunks::Data { left } => {
                    let n = (bytes.len() - i).min(usize::try_from(left).unwrap_or(usize::MAX));
                    content += n;
                    i += n;
                    let left = left - n as u64;
                    *self = if left == 0 { Chunks::DataCr } else { Chunks::Data { left } };
                    continue;
                }
                Chunks::Size { digits, size } => match (b as char).to_digit(16) {
                    Some(d) if digits < 15 => Chunks::Size { digits: digits + 1, size: size * 16 + u64::from(d) },
                    Some(_) => return Err("chunk size too large"),
                    None if digits == 0 => return Err("chunk size missing"),
                    None => match b {
                        b'\r' => Chunks::SizeLf { size },
                        b';' | b' ' | b'\t' => Chunks::Extension { size },
                        _ => return Err("bad chunk size"),
                    },
                },
                Chunks::Extension { size } => match b {
                    b'\r' => Chunks::SizeLf { size },
                    b'\n' => return Err("bare LF in chunk size line"),
                    _ => Chunks::Extension { size },
                },
                Chunks::SizeLf { size } => match b {
                    b'\n' if size == 0 => Chunks::Trailer { fresh: true },
                    b'\n' => Chunks::Data { left: size },
                    _ => return Err("bad chunk size line end"),
                },
                Chunks::DataCr => match b {
                    b'\r' => Chunks::DataLf,
                    _ => return Err("chunk data longer than its size"),
                },
                Chunks::DataLf => match b {
                    b'\n' => Chunks::Size { digits: 0, size: 0 },
                    _ => return Err("bad chunk data end"),
                },
                Chunks::Trailer { fresh } => match b {
                    b'\r' => Chunks::TrailerLf { fresh },
                    b'\n' => return Err("bare LF in trailer"),
                    _ => Chunks::Trailer { fresh: false },
                },
                Chunks::TrailerLf { fresh } => match b {
                    b'\n' if fresh => Chunks::Done,
                    b'\n' => Chunks::Trailer { fresh: true },
                    _ => return Err("bad trailer line end"),
                },
            };
            i += 1;
        }
        Ok((content, 0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_chunked_body_is_read_to_its_end_in_pieces_of_any_size() {
        let body = b"5;name=value\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nExpires: never\r\n\r\n";
        for piece in 1..=body.len() {
            let mut chunks = Chunks::Size { digits: 0, size: 0 };
            let mut content = 0;
            for part in body.chunks(piece) {
                let (n, rest) = chunks.take(part).unwrap();
                content += n;
                assert_eq!(rest, 0);
            }
            assert_eq!((chunks, content), (Chunks::Done, 31), "pieces of {piece}");
        }
        let mut chunks = Chunks::Size { digits: 0, size: 0 };
        assert_eq!(chunks.take(b"0\r\n\r\nHTTP/1.1"), Ok((0, 8)), "bytes after the end are told apart");
        for bad in [&b"x\r\n"[..], b"\r\n", b"2\r\nabc\r\n", b"2\nab", b"fffffffffffffffff\r\n", b"2\r\nab\n\n"] {
            assert!(Chunks::Size { digits: 0, size: 0 }.take(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }
}

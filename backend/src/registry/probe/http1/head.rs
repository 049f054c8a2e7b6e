//! An answer's head: its status, how its body ends (RFC 9112, section 6),
//! and whether its connection can carry another probe, parsed with
//! `httparse` (hyper's own parser).

use hyper::http::StatusCode;

/// Headers an answer may have (as many as hyper allows).
const MAX_HEADERS: usize = 100;

/// An answer's head, parsed.
pub(super) enum Head {
    /// A 1xx answer of this length, to skip.
    Interim(usize),
    /// The answer: its status, how its body is delimited, whether the
    /// connection may be kept, and the length of the head.
    Final(StatusCode, Framing, bool, usize),
}

/// How an answer's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Framing {
    Length(u64),
    Chunked,
    /// Until the service closes the connection.
    Close,
}

/// The head at the start of `buf`, if all of it is there.
pub(super) fn parse_head(buf: &[u8]) -> Result<Option<Head>, String> {
    let bad = |why: String| format!("invalid answer: {why}");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut answer = httparse::Response::new(&mut headers);
    let len = match answer.parse(buf).map_err(|e| bad(e.to_string()))? {
        httparse::Status::Partial => return Ok(None),
        httparse::Status::Complete(len) => len,
    };
    let code = answer.code.unwrap_or_default();
    let status = StatusCode::from_u16(code).map_err(|_| bad(format!("status {code}")))?;
    if status.is_informational() && status != StatusCode::SWITCHING_PROTOCOLS {
        return Ok(Some(Head::Interim(len)));
    }
    let mut keep = answer.version == Some(1) && status != StatusCode::SWITCHING_PROTOCOLS;
    let (mut chunked, mut encoded, mut length) = (false, false, None::<u64>);
    for h in answer.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or_default();
        if h.name.eq_ignore_ascii_case("connection") {
            keep &= !value.split(',').any(|t| t.trim().eq_ignore_ascii_case("close"));
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            // Chunked only when it is the last coding.
            encoded = true;
            chunked = value.rsplit(',').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
        } else if h.name.eq_ignore_ascii_case("content-length") {
            for v in value.split(',') {
                let v = v.trim();
                let n = v.parse().ok().filter(|_| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()));
                match (n, length) {
                    (Some(n), None) => length = Some(n),
                    (Some(n), Some(l)) if n == l => {}
                    _ => return Err(bad("content-length".into())),
                }
            }
        }
    }
    // Both: the coding wins, and the connection is not trusted further.
    keep &= !(encoded && length.is_some());
    let framing =
        if [StatusCode::NO_CONTENT, StatusCode::NOT_MODIFIED, StatusCode::SWITCHING_PROTOCOLS].contains(&status) {
            Framing::Length(0)
        } else if encoded {
            if chunked { Framing::Chunked } else { Framing::Close }
        } else {
            length.map_or(Framing::Close, Framing::Length)
        };
    Ok(Some(Head::Final(status, framing, keep && framing != Framing::Close, len)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn head(answer: &str) -> Result<Option<(u16, Framing, bool, usize)>, String> {
        match parse_head(answer.as_bytes()) {
            Ok(Some(Head::Final(status, framing, keep, len))) => Ok(Some((status.as_u16(), framing, keep, len))),
            Ok(Some(Head::Interim(len))) => Ok(Some((100, Framing::Length(0), false, len))),
            Ok(None) => Ok(None),
            Err(why) => Err(why),
        }
    }

    #[test]
    fn answer_heads_say_how_their_body_ends_and_whether_the_connection_stays() {
        let h = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n";
        assert_eq!(head(h), Ok(Some((200, Framing::Length(2), true, h.len()))));
        assert_eq!(head("HTTP/1.1 200 OK\r\ncontent-len"), Ok(None));
        let close = head("HTTP/1.1 200 OK\r\nConnection: keep-alive, Close\r\ncontent-length: 2\r\n\r\n");
        assert!(matches!(close, Ok(Some((200, Framing::Length(2), false, _)))));
        let old = head("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\n");
        assert!(matches!(old, Ok(Some((200, Framing::Length(2), false, _)))));
        let until_close = head("HTTP/1.1 200 OK\r\n\r\n");
        assert!(matches!(until_close, Ok(Some((200, Framing::Close, false, _)))));
        let chunked = head("HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: gzip, Chunked\r\n\r\n");
        assert!(matches!(chunked, Ok(Some((503, Framing::Chunked, true, _)))));
        let both = head("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n");
        assert!(matches!(both, Ok(Some((200, Framing::Chunked, false, _)))));
        let gzip = head("HTTP/1.1 200 OK\r\ntransfer-encoding: gzip\r\n\r\n");
        assert!(matches!(gzip, Ok(Some((200, Framing::Close, false, _)))));
        let empty = head("HTTP/1.1 204 No Content\r\n\r\n");
        assert!(matches!(empty, Ok(Some((204, Framing::Length(0), true, _)))));
        let same = head("HTTP/1.1 200 OK\r\ncontent-length: 3, 3\r\ncontent-length: 3\r\n\r\n");
        assert!(matches!(same, Ok(Some((200, Framing::Length(3), true, _)))));
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 3\r\ncontent-length: 4\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: +3\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 200 OK\r\ncontent-length: 99999999999999999999999\r\n\r\n").is_err());
        assert!(head("SMTP ready\r\n\r\n").is_err());
        assert!(head("HTTP/1.1 099 Odd\r\n\r\n").is_err());
        assert!(matches!(head("HTTP/1.1 100 Continue\r\n\r\n"), Ok(Some((100, _, _, 25)))));
    }
}

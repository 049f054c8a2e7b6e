//! The payloads on the coherence channel: a write's `WRITER:N`, its
//! acknowledgements `ack:WRITER:N:INSTANCE`, and an instance's beat
//! `beat:INSTANCE:SENT` (instances in hex, numbers and times in decimal).

/// A notification on the channel.
#[derive(Debug, PartialEq)]
pub enum Heard {
    Write {
        writer: u64,
        n: u64,
    },
    Ack {
        writer: u64,
        n: u64,
        from: u64,
    },
    /// An instance's beat, with when it was sent by its own clock.
    Beat {
        from: u64,
        sent: u64,
    },
}

impl Heard {
    pub fn parse(payload: &str) -> Option<Heard> {
        let hex = |s: &str| u64::from_str_radix(s, 16).ok();
        let fields: Vec<&str> = payload.split(':').collect();
        match fields[..] {
            [writer, n] => Some(Heard::Write { writer: hex(writer)?, n: n.parse().ok()? }),
            ["ack", writer, n, from] => Some(Heard::Ack { writer: hex(writer)?, n: n.parse().ok()?, from: hex(from)? }),
            ["beat", from, sent] => Some(Heard::Beat { from: hex(from)?, sent: sent.parse().ok()? }),
            _ => None,
        }
    }

    /// The payload that parses back to this.
    pub fn payload(&self) -> String {
        match self {
            Heard::Write { writer, n } => format!("{writer:x}:{n}"),
            Heard::Ack { writer, n, from } => format!("ack:{writer:x}:{n}:{from:x}"),
            Heard::Beat { from, sent } => format!("beat:{from:x}:{sent}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifications_are_told_apart_and_anything_else_is_ignored() {
        assert_eq!(Heard::parse("ff:12"), Some(Heard::Write { writer: 255, n: 12 }));
        assert_eq!(Heard::parse("ack:ff:12:a"), Some(Heard::Ack { writer: 255, n: 12, from: 10 }));
        assert_eq!(Heard::parse("beat:ff:1500"), Some(Heard::Beat { from: 255, sent: 1500 }));
        for other in ["", "ff", "zz:1", "ff:-1", "ack:ff:1", "nack:ff:1:a", "ff:1:a"] {
            assert_eq!(Heard::parse(other), None, "{other:?}");
        }
    }

    #[test]
    fn each_payload_reads_back_as_what_wrote_it() {
        for heard in [
            Heard::Write { writer: 0xabc, n: 7 },
            Heard::Ack { writer: 1, n: 2, from: 0xfeed },
            Heard::Beat { from: u64::MAX, sent: 1500 },
        ] {
            assert_eq!(Heard::parse(&heard.payload()), Some(heard));
        }
    }
}

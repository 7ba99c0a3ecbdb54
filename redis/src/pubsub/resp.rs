//! The part of RESP2 a subscriber connection sees: commands out as arrays of bulk strings, and
//! in, one-level replies (`message` and confirmation arrays, `+PONG`, errors), parsed in place
//! from the read buffer so a message's payload is never copied before it is delivered.

/// Longest bulk string accepted: Redis's own limit (`proto-max-bulk-len` defaults to 512 MB).
/// Anything claiming more is a broken stream, not a message.
const MAX_BULK: usize = 512 * 1024 * 1024;
/// Most elements of a reply array: pub/sub replies have three.
const MAX_ELEMENTS: usize = 8;

/// One element of a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Item<'a> {
    /// A bulk or simple string (`None`: a null bulk string).
    Str(Option<&'a [u8]>),
    /// An integer.
    Int(i64),
}

/// One reply, borrowing from the read buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `+...`: a status (`+OK`, `+PONG`).
    Status(&'a [u8]),
    /// `-...`: an error, one per failed command.
    Error(&'a [u8]),
    /// `:n`.
    Int(i64),
    /// `$...`.
    Bulk(Option<&'a [u8]>),
    /// `*n` of strings and integers: pushes (`message`, `subscribe`, `unsubscribe`, `pong`).
    Array(Items<'a>),
}

/// A reply array's elements.
#[derive(Debug, PartialEq, Eq)]
pub struct Items<'a> {
    items: [Item<'a>; MAX_ELEMENTS],
    len: usize,
}

impl<'a> Items<'a> {
    /// The elements.
    pub fn as_slice(&self) -> &[Item<'a>] {
        &self.items[..self.len]
    }
}

/// The stream is not RESP (or not what a subscriber connection can be sent): the connection
/// must be dropped, there is no resynchronising.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("malformed reply from Redis: {0}")]
pub struct Malformed(&'static str);

/// Parses the reply at the start of `buf`: the reply and how many bytes it took, or `None`
/// while it is incomplete.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply<'_>, usize)>, Malformed> {
    let Some((kind, line, mut at)) = line(buf, 0)? else {
        return Ok(None);
    };
    let reply = match kind {
        b'+' => Reply::Status(line),
        b'-' => Reply::Error(line),
        b':' => Reply::Int(integer(line)?),
        b'$' => match bulk(buf, line, at)? {
            Some((bulk, end)) => {
                at = end;
                Reply::Bulk(bulk)
            }
            None => return Ok(None),
        },
        b'*' => {
            let len = integer(line)?;
            let len = usize::try_from(len).map_err(|_| Malformed("null or negative array"))?;
            if len > MAX_ELEMENTS {
                return Err(Malformed("array too long for a pub/sub reply"));
            }
            let mut items = Items {
                items: [Item::Int(0); MAX_ELEMENTS],
                len,
            };
            for slot in items.items.iter_mut().take(len) {
                let Some((kind, line, next)) = self::line(buf, at)? else {
                    return Ok(None);
                };
                *slot = match kind {
                    b'+' => {
                        at = next;
                        Item::Str(Some(line))
                    }
                    b':' => {
                        at = next;
                        Item::Int(integer(line)?)
                    }
                    b'$' => match bulk(buf, line, next)? {
                        Some((bulk, end)) => {
                            at = end;
                            Item::Str(bulk)
                        }
                        None => return Ok(None),
                    },
                    _ => return Err(Malformed("unexpected element in a pub/sub reply")),
                };
            }
            Reply::Array(items)
        }
        _ => return Err(Malformed("unknown reply type")),
    };
    Ok(Some((reply, at)))
}

/// A line: its type byte, its text, and where the next begins.
type Line<'a> = (u8, &'a [u8], usize);
/// A bulk string (`None`: null) and where it ends.
type Bulk<'a> = (Option<&'a [u8]>, usize);

/// The line starting at `at`.
fn line(buf: &[u8], at: usize) -> Result<Option<Line<'_>>, Malformed> {
    let Some(rest) = buf.get(at..) else {
        return Ok(None);
    };
    let Some(end) = rest.iter().position(|&b| b == b'\n') else {
        if rest.len() > 64 * 1024 {
            return Err(Malformed("line too long"));
        }
        return Ok(None);
    };
    if end < 2 || rest[end - 1] != b'\r' {
        return Err(Malformed("line without a type or CRLF"));
    }
    Ok(Some((rest[0], &rest[1..end - 1], at + end + 1)))
}

/// The bulk string of the length in `line`, starting at `at`.
fn bulk<'a>(buf: &'a [u8], line: &[u8], at: usize) -> Result<Option<Bulk<'a>>, Malformed> {
    let len = integer(line)?;
    if len == -1 {
        return Ok(Some((None, at)));
    }
    let len = usize::try_from(len).map_err(|_| Malformed("negative bulk length"))?;
    if len > MAX_BULK {
        return Err(Malformed("bulk string too long"));
    }
    let end = at + len;
    let Some(terminator) = buf.get(end..end + 2) else {
        return Ok(None);
    };
    if terminator != b"\r\n" {
        return Err(Malformed("bulk string without CRLF"));
    }
    Ok(Some((Some(&buf[at..end]), end + 2)))
}

/// A reply's integer: lengths and counts, so 18 digits at most (no overflow to check).
fn integer(line: &[u8]) -> Result<i64, Malformed> {
    let (negative, digits) = match line.split_first() {
        Some((b'-', digits)) => (true, digits),
        _ => (false, line),
    };
    if digits.is_empty() || digits.len() > 18 {
        return Err(Malformed("not an integer"));
    }
    let n = digits
        .iter()
        .try_fold(0i64, |n, b| {
            let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
            Some(n * 10 + i64::from(digit))
        })
        .ok_or(Malformed("not an integer"))?;
    Ok(if negative { -n } else { n })
}

/// Appends the command `args` to `out`.
pub fn command<A: AsRef<[u8]>>(out: &mut Vec<u8>, args: &[A]) {
    // One reservation for the whole command (a header is at most 1 + 20 + 2 bytes).
    out.reserve(23 + args.iter().map(|a| a.as_ref().len() + 25).sum::<usize>());
    push_header(out, b'*', args.len());
    for arg in args {
        let arg = arg.as_ref();
        push_header(out, b'$', arg.len());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

fn push_header(out: &mut Vec<u8>, kind: u8, len: usize) {
    out.push(kind);
    out.extend_from_slice(itoa::Buffer::new().format(len).as_bytes());
    out.extend_from_slice(b"\r\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_message_is_parsed_in_place() {
        let buf = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n+PONG\r\n";
        let (reply, used) = parse(buf).unwrap().unwrap();
        let Reply::Array(items) = reply else {
            panic!("not an array")
        };
        assert_eq!(
            items.as_slice(),
            &[
                Item::Str(Some(b"message")),
                Item::Str(Some(b"ch")),
                Item::Str(Some(b"hello"))
            ]
        );
        assert_eq!(
            parse(&buf[used..]).unwrap(),
            Some((Reply::Status(b"PONG"), 7))
        );
    }

    #[test]
    fn confirmations_errors_and_nulls_are_parsed() {
        let buf = b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n";
        let (Reply::Array(items), used) = parse(buf).unwrap().unwrap() else {
            panic!("not an array")
        };
        assert_eq!(used, buf.len());
        assert_eq!(items.as_slice()[2], Item::Int(1));
        assert_eq!(
            parse(b"-NOAUTH Authentication required.\r\n").unwrap(),
            Some((Reply::Error(b"NOAUTH Authentication required."), 34))
        );
        assert_eq!(parse(b"$-1\r\n").unwrap(), Some((Reply::Bulk(None), 5)));
    }

    #[test]
    fn every_prefix_of_a_reply_is_incomplete() {
        let buf = b"*3\r\n$7\r\nmessage\r\n$2\r\nch\r\n$5\r\nhello\r\n";
        for end in 0..buf.len() {
            assert_eq!(parse(&buf[..end]), Ok(None), "prefix of {end} bytes");
        }
    }

    #[test]
    fn broken_streams_are_refused() {
        for bad in [
            &b"?x\r\n"[..],
            b"*3\n",
            b"$5\r\nhelloXX",
            b"*99\r\n",
            b"*1\r\n*1\r\n",
            b"$-2\r\n",
            b":x\r\n",
            b":-\r\n",
            b":1234567890123456789\r\n",
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &["SUBSCRIBE", "a", ""]);
        assert_eq!(out, b"*3\r\n$9\r\nSUBSCRIBE\r\n$1\r\na\r\n$0\r\n\r\n");
    }

    proptest! {
        #[test]
        fn any_input_parses_or_is_refused_without_panicking(buf in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = parse(&buf) {
                prop_assert!(used <= buf.len());
            }
        }

        #[test]
        fn a_message_round_trips(channel in proptest::collection::vec(any::<u8>(), 0..64), payload in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut out = Vec::new();
            command(&mut out, &[&b"message"[..], &channel, &payload]);
            let (reply, used) = parse(&out).unwrap().unwrap();
            prop_assert_eq!(used, out.len());
            let Reply::Array(items) = reply else { panic!("not an array") };
            prop_assert_eq!(items.as_slice()[1], Item::Str(Some(&channel[..])));
            prop_assert_eq!(items.as_slice()[2], Item::Str(Some(&payload[..])));
        }
    }
}

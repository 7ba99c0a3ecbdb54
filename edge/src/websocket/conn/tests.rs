//! The message reader on any input: it never panics, never hands over or holds more than its
//! limit, and reads back exactly what a client sent, however the frames were cut and however
//! the bytes arrived.

use proptest::prelude::*;
use tokio::net::{TcpListener, TcpStream};
use tungstenite::Message;

use super::WsConn;
use crate::websocket::deflate::{self, Deflate};
use crate::websocket::frame::MAX_HEADER;

/// A connection over a real loopback socket (the reader never touches it: its bytes are fed
/// into the read buffer directly), with nothing read yet.
fn conn(max_message: usize, deflate: Option<Deflate>) -> (WsConn, TcpStream) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .expect("runtime");
    let _entered = runtime.enter();
    let (server, client) = runtime.block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let address = listener.local_addr().expect("address");
        let (client, accepted) = tokio::join!(TcpStream::connect(address), listener.accept());
        (accepted.expect("accept").0, client.expect("connect"))
    });
    (
        WsConn::new(server, Vec::new(), max_message, deflate, 0),
        client,
    )
}

/// A client frame: masked with `key`, `rsv1` set for a compressed message's first frame.
fn client_frame(opcode: u8, fin: bool, rsv1: bool, payload: &[u8], key: [u8; 4]) -> Vec<u8> {
    let mut frame = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
    match payload.len() {
        len @ 0..=125 => frame.push(0x80 | len as u8),
        len @ 126..=0xFFFF => {
            frame.push(0x80 | 126);
            frame.extend((len as u16).to_be_bytes());
        }
        len => {
            frame.push(0x80 | 127);
            frame.extend((len as u64).to_be_bytes());
        }
    }
    frame.extend(key);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    frame
}

/// What a client sends: a message, cut into frames, with a ping between its first two.
#[derive(Debug, Clone)]
struct Sent {
    message: Message,
    compressed: bool,
    cuts: Vec<usize>,
    ping_inside: bool,
}

fn sent() -> impl Strategy<Value = Sent> {
    let message = prop_oneof![
        ".{0,200}".prop_map(|text: String| Message::Text(text.into())),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| Message::Binary(b.into())),
        proptest::collection::vec(any::<u8>(), 0..=125).prop_map(|b| Message::Ping(b.into())),
    ];
    (
        message,
        any::<bool>(),
        proptest::collection::vec(0usize..400, 0..4),
        any::<bool>(),
    )
        .prop_map(|(message, compressed, cuts, ping_inside)| Sent {
            message,
            compressed,
            cuts,
            ping_inside,
        })
}

/// The frames a client writes for `sent`, and the messages the reader must give back.
fn encode(sent: &Sent, key: [u8; 4], out: &mut Vec<u8>, expected: &mut Vec<Message>) {
    let (opcode, payload) = match &sent.message {
        Message::Text(text) => (0x1, text.as_bytes().to_vec()),
        Message::Binary(bytes) => (0x2, bytes.to_vec()),
        Message::Ping(bytes) => {
            out.extend(client_frame(0x9, true, false, bytes, key));
            expected.push(sent.message.clone());
            return;
        }
        _ => return,
    };
    let payload = if sent.compressed {
        deflate::compress(&payload, false).to_vec()
    } else {
        payload
    };
    let mut cuts: Vec<usize> = sent.cuts.iter().map(|c| c % (payload.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.push(payload.len());
    let mut start = 0;
    for (i, &end) in cuts.iter().enumerate() {
        let first = i == 0;
        let last = i + 1 == cuts.len();
        let code = if first { opcode } else { 0x0 };
        out.extend(client_frame(
            code,
            last,
            first && sent.compressed,
            &payload[start..end],
            key,
        ));
        if first && !last && sent.ping_inside {
            out.extend(client_frame(0x9, true, false, b"in", key));
            expected.push(Message::Ping(bytes::Bytes::from_static(b"in")));
        }
        start = end;
    }
    expected.push(sent.message.clone());
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn any_bytes_are_read_without_panicking_or_holding_past_the_limit(
        bytes in proptest::collection::vec(any::<u8>(), 0..600),
        limit in 0usize..2_000,
        compression in any::<bool>(),
    ) {
        let deflate = compression.then_some(Deflate { small_window: false });
        let (mut conn, _client) = conn(limit, deflate);
        conn.read.extend_from_slice(&bytes);
        // Every message takes at least two bytes: the loop ends.
        for _ in 0..=bytes.len() {
            match conn.parse() {
                Ok(Some(Message::Text(text))) => prop_assert!(text.len() <= limit),
                Ok(Some(Message::Binary(data))) => prop_assert!(data.len() <= limit),
                Ok(Some(Message::Ping(data) | Message::Pong(data))) => {
                    prop_assert!(data.len() <= 125)
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let partial = conn.partial.as_ref().map_or(0, |p| p.data.len());
        prop_assert!(partial <= limit);
        // What is reserved for a frame still arriving is bounded by the limit, never by the
        // length a header claims (a vector may round its allocation up to twice the request).
        prop_assert!(conn.read.capacity() <= 2 * (bytes.len() + MAX_HEADER + 4 + limit));
    }

    #[test]
    fn what_a_client_sends_is_read_back_however_it_is_cut_and_arrives(
        messages in proptest::collection::vec(sent(), 0..8),
        key in any::<[u8; 4]>(),
        arrivals in proptest::collection::vec(1usize..64, 1..20),
    ) {
        let (mut conn, _client) = conn(1 << 16, Some(Deflate { small_window: false }));
        let (mut wire, mut expected) = (Vec::new(), Vec::new());
        for sent in &messages {
            encode(sent, key, &mut wire, &mut expected);
        }
        let mut read = Vec::new();
        let mut rest = &wire[..];
        for size in arrivals.iter().cycle() {
            let (now, later) = rest.split_at((*size).min(rest.len()));
            conn.read.extend_from_slice(now);
            rest = later;
            loop {
                match conn.parse() {
                    Ok(Some(message)) => read.push(message),
                    Ok(None) => break,
                    Err(code) => prop_assert!(false, "closed with {code}"),
                }
            }
            if rest.is_empty() {
                break;
            }
        }
        prop_assert_eq!(read, expected);
        prop_assert!(conn.partial.is_none());
        prop_assert!(conn.read.is_empty());
    }
}

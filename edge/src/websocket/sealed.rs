//! A message as the whole encrypted frame one connection gets (PROTOCOL.md part E): built per
//! recipient, since each has its own key and counter, and never compressed (compressing before
//! encrypting would leak how compressible the content is).

use bytes::Bytes;
use tungstenite::Message;

use super::frame::{self, Opcode};
use crate::encryption::Channel;

/// The frame carrying `message` (text: JSON; binary: MessagePack) sealed as `channel`'s next
/// one, header included. `None` for any other kind of message, or one too large to encrypt
/// (then the counter is not used).
pub fn frame(channel: &mut Channel, message: &Message) -> Option<Bytes> {
    let (opcode, plain): (Opcode, &[u8]) = match message {
        Message::Text(text) => (Opcode::Text, text.as_bytes()),
        Message::Binary(bytes) => (Opcode::Binary, bytes),
        _ => return None,
    };
    let text = opcode == Opcode::Text;
    let len = channel.sealed_len(text, plain.len());
    let mut header = [0u8; frame::MAX_HEADER];
    let header_len = frame::write_header(&mut header, opcode, false, len);
    let mut out = Vec::with_capacity(header_len + len);
    out.extend_from_slice(&header[..header_len]);
    if !channel.seal(text, plain, &mut out) {
        tracing::warn!(
            len = plain.len(),
            "a frame too large to encrypt was not sent"
        );
        return None;
    }
    debug_assert_eq!(out.len(), header_len + len);
    Some(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::super::deflate::Deflate;
    use super::super::wire::Wire;
    use crate::encryption::agreement;
    use crate::encryption::client::ClientKeys;
    use crate::websocket::WsConn;
    use tungstenite::Message;

    /// An encrypted server connection that negotiated deflate, the plain client socket at its
    /// other end, and the client's keys.
    async fn encrypted() -> (WsConn, std::net::TcpStream, ClientKeys) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let client = std::thread::spawn(move || std::net::TcpStream::connect(address).unwrap());
        let (server, _) = listener.accept().await.unwrap();
        let fast = Deflate {
            small_window: false,
        };
        let mut ws = WsConn::new(server, Vec::new(), 1 << 20, Some(fast), 16);
        let mut keys = ClientKeys::new();
        let (channel, hello) = agreement::respond(&keys.offer(), 1 << 20).unwrap();
        keys.agree(&hello.key, &hello.salt).unwrap();
        ws.encrypt(channel);
        (ws, client.join().unwrap(), keys)
    }

    /// Reads one unmasked server frame: its first byte and payload.
    fn read_frame(client: &mut std::net::TcpStream) -> (u8, Vec<u8>) {
        let mut head = [0u8; 2];
        client.read_exact(&mut head).unwrap();
        let len = match head[1] {
            126 => {
                let mut ext = [0u8; 2];
                client.read_exact(&mut ext).unwrap();
                usize::from(u16::from_be_bytes(ext))
            }
            n => usize::from(n),
        };
        let mut payload = vec![0u8; len];
        client.read_exact(&mut payload).unwrap();
        (head[0], payload)
    }

    /// Counters follow the order frames reach the client, whoever writes them: a frame the
    /// fan-out left pending goes out (and was numbered) before one the connection writes after
    /// taking over, and none is compressed, deflate or not.
    #[tokio::test]
    async fn sealed_frames_are_numbered_in_the_order_they_are_written_and_never_compressed() {
        let (mut ws, mut client, mut keys) = encrypted().await;
        let socket = ws.socket();
        ws.reopen(|| true);
        let shared = Message::Text("{\"type\":\"msg\",\"pad\":\"".repeat(40).into());
        let wire = Wire::default();
        let never = || panic!("the gate is open");
        // Written by the fan-out at once, then one kept pending by a cork.
        socket.deliver(Some((&shared, &wire)), false, never, || {});
        socket.deliver(Some((&shared, &wire)), true, never, || {});
        // The connection takes over and writes its own, and the heartbeat's shared Ping.
        ws.feed(Message::Text("{\"type\":\"pong\"}".into()));
        ws.feed_shared(&Message::Ping(Default::default()), &Wire::default());
        ws.flush().await.unwrap();
        client
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        let reader = std::thread::spawn(move || {
            let mut plain = Vec::new();
            for _ in 0..3 {
                let (first, payload) = read_frame(&mut client);
                assert_eq!(first, 0x81, "FIN, text, RSV1 clear: not compressed");
                plain.push(keys.open(&payload, false).unwrap());
            }
            assert_eq!(
                read_frame(&mut client),
                (0x89, Vec::new()),
                "a Ping, in the clear"
            );
            plain
        });
        let plain = reader.join().unwrap();
        let Message::Text(text) = &shared else {
            unreachable!()
        };
        assert_eq!(plain[0], text.as_bytes());
        assert_eq!(plain[1], text.as_bytes());
        assert_eq!(plain[2], b"{\"type\":\"pong\"}");
    }
}

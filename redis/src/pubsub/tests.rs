use super::*;
use tokio::io::DuplexStream;

/// A connection to a fake Redis: the test plays the server on the returned stream.
fn fake() -> (Commands, Reader, DuplexStream) {
    let (ours, server) = tokio::io::duplex(4096);
    let (read, write) = tokio::io::split(ours);
    let (commands, reader) = over(Box::new(read), Box::new(write));
    (commands, reader, server)
}

async fn expect_command(server: &mut DuplexStream, args: &[&str]) {
    let mut expected = Vec::new();
    resp::command(&mut expected, args);
    let mut got = vec![0; expected.len()];
    server.read_exact(&mut got).await.unwrap();
    assert_eq!(got, expected);
}

#[tokio::test]
async fn a_subscribe_completes_with_its_last_confirmation_and_messages_meanwhile_are_held() {
    let (commands, mut reader, mut server) = fake();
    let channels = vec!["a".to_owned(), "b".to_owned()];
    let redis = async {
        expect_command(&mut server, &["SUBSCRIBE", "a", "b"]).await;
        server
            .write_all(
                b"*3\r\n$9\r\nsubscribe\r\n$1\r\na\r\n:1\r\n\
                  *3\r\n$7\r\nmessage\r\n$1\r\na\r\n$2\r\nhi\r\n",
            )
            .await
            .unwrap();
        // The second confirmation, later and split across writes.
        server.write_all(b"*3\r\n$9\r\nsubscr").await.unwrap();
        server.write_all(b"ibe\r\n$1\r\nb\r\n:2\r\n").await.unwrap();
    };
    let mut held = Vec::new();
    let (subscribed, ()) = tokio::join!(
        reader.settle(commands.subscribe(&channels), &mut held),
        redis
    );
    subscribed.unwrap().unwrap();
    assert_eq!(held, vec![(Bytes::from("a"), Bytes::from("hi"))]);

    // Afterwards messages go to whoever drains, and a ping is answered by the reader too.
    let ping = commands.ping();
    let redis = async {
        expect_command(&mut server, &["PING"]).await;
        server
            .write_all(
                b"*3\r\n$7\r\nmessage\r\n$1\r\nb\r\n$3\r\nyou\r\n*2\r\n$4\r\npong\r\n$0\r\n\r\n",
            )
            .await
            .unwrap();
    };
    let read = async {
        let mut delivered = Vec::new();
        while delivered.is_empty() {
            reader.fill().await.unwrap();
            reader
                .drain(|c, p| delivered.push((c.to_vec(), p.to_vec())))
                .unwrap();
        }
        delivered
    };
    let (pinged, (), delivered) = tokio::join!(ping, redis, read);
    assert_eq!(delivered, vec![(b"b".to_vec(), b"you".to_vec())]);
    pinged.unwrap();
}

#[tokio::test]
async fn an_error_fails_its_command_and_a_lost_connection_fails_the_rest() {
    let (commands, mut reader, mut server) = fake();
    let redis = async {
        expect_command(&mut server, &["SUBSCRIBE", "a"]).await;
        server
            .write_all(b"-NOAUTH Authentication required.\r\n")
            .await
            .unwrap();
    };
    let mut held = Vec::new();
    let channels = vec!["a".to_owned()];
    let (refused, ()) = tokio::join!(
        reader.settle(commands.subscribe(&channels), &mut held),
        redis
    );
    let error = refused.unwrap().unwrap_err().to_string();
    assert!(error.contains("NOAUTH"), "{error}");

    // A command waiting when the connection goes fails at once, and so does any later one.
    let waiting = commands.ping();
    let lose = async {
        expect_command(&mut server, &["PING"]).await;
        drop(reader);
    };
    let (lost, ()) = tokio::join!(waiting, lose);
    assert!(lost.is_err());
    assert!(commands.ping().await.is_err());
}

/// The bus catches up inside `settle`: a subscribe made meanwhile must still be answered.
#[tokio::test]
async fn commands_are_answered_while_catching_up() {
    let (commands, mut reader, mut server) = fake();
    let mut held = Vec::new();
    let redis = async {
        expect_command(&mut server, &["PING"]).await;
        server.write_all(b"+PONG\r\n").await.unwrap();
    };
    tokio::select! {
        _ = reader.settle(std::future::pending::<()>(), &mut held) => panic!("settle ended"),
        (pinged, ()) = async { tokio::join!(commands.ping(), redis) } => pinged.unwrap(),
    }
}

#[tokio::test]
async fn what_is_held_while_catching_up_is_bounded() {
    let (commands, mut reader, mut server) = fake();
    let payload = vec![b'x'; 512 * 1024];
    let mut message = Vec::new();
    resp::command(&mut message, &[&b"message"[..], b"ch", &payload]);
    let redis = async {
        // Until the reader gives up (and the test's stream is dropped with it).
        for _ in 0..(MAX_HELD / payload.len() + 2) {
            if server.write_all(&message).await.is_err() {
                return;
            }
        }
    };
    let mut held = Vec::new();
    let work = std::future::pending::<()>();
    let (settled, ()) = tokio::join!(
        async {
            let settled = reader.settle(work, &mut held).await;
            // The connection closes, so the fake server's writes end.
            drop((reader, commands));
            settled
        },
        redis
    );
    assert!(settled.is_err(), "held past the bound");
    let bytes: usize = held.iter().map(|(c, p)| c.len() + p.len()).sum();
    assert!(bytes <= MAX_HELD + message.len(), "{bytes}");
}

#[tokio::test]
async fn a_reply_to_no_command_is_a_broken_connection() {
    let (_commands, mut reader, mut server) = fake();
    server.write_all(b"+PONG\r\n").await.unwrap();
    reader.fill().await.unwrap();
    assert!(reader.drain(|_, _| {}).is_err());
}

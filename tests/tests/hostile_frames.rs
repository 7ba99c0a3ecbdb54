//! Frames no library would send, written by hand: every frame counts against the rate limit
//! (pings before authentication, each fragment of a message), a fragmented message cannot be held
//! open forever, and deflate data that is not valid closes the connection.

use std::time::Duration;

use ferrocast_tests::raw_ws::{CONTINUATION, PING, RawWs, TEXT, frame, frame_with};
use ferrocast_tests::{Edge, Token};
use serde_json::json;

fn token(sub: &str) -> String {
    Token::user(sub, &["r"]).dev()
}

/// A client authenticated by header, its `welcome` read.
async fn welcomed(edge: &Edge, extra: &str) -> RawWs {
    let mut ws = RawWs::open(edge.port, Some(&token("hostile")), extra, 64 * 1024).await;
    ws.read_until("\"welcome\"").await;
    ws
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_before_authentication_are_rate_limited_and_a_flood_is_closed_with_4008() {
    let edge = Edge::start(&["--rate", "20", "--burst", "50"]).await;
    let mut ws = RawWs::open(edge.port, None, "", 64 * 1024).await;
    let pings: Vec<u8> = (0..300).flat_map(|_| frame(true, PING, b"")).collect();
    assert!(ws.write(&pings).await, "the pings could not be sent");
    let (code, pongs) = ws.close_code().await;
    assert_eq!(code, 4008, "a ping flood before auth is a flood");
    // The burst, and what refilled while they were read; never one pong per ping.
    assert!(pongs <= 60, "{pongs} pongs answered to a flood of 300");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_fragment_of_a_message_counts_against_the_rate_limit() {
    let edge = Edge::start(&["--rate", "1", "--burst", "50"]).await;
    let mut ws = welcomed(&edge, "").await;
    // One ping frame in 60 pieces: 60 frames, more than the burst.
    let text = json!({"type": "ping", "ref": 1}).to_string();
    let mut pieces: Vec<u8> = frame(false, TEXT, &text.as_bytes()[..1]);
    for _ in 0..58 {
        pieces.extend(frame(false, CONTINUATION, b""));
    }
    pieces.extend(frame(true, CONTINUATION, &text.as_bytes()[1..]));
    assert!(ws.write(&pieces).await);
    ws.read_until("\"RATE_LIMITED\"").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_empty_continuations_is_closed() {
    let edge = Edge::start(&[]).await;
    let mut ws = welcomed(&edge, "").await;
    let mut flood = frame(false, TEXT, b"{");
    for _ in 0..5000 {
        flood.extend(frame(false, CONTINUATION, b""));
    }
    assert!(ws.write(&flood).await);
    assert_eq!(ws.close_code().await.0, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unfinished_message_cannot_be_held_open_by_pinging() {
    let edge = Edge::start(&["--idle-timeout", "60s"]).await;
    let mut ws = welcomed(&edge, "").await;
    assert!(ws.write(&frame(false, TEXT, b"{\"type\":")).await);
    let pinging = tokio::spawn(async move {
        // Pings (answered, so the connection is alive) for up to 20 s, never the last fragment.
        for _ in 0..100 {
            if !ws.write(&frame(true, PING, b"")).await {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        ws
    });
    let mut ws = pinging.await.expect("pinger");
    assert_eq!(ws.close_code().await.0, 1008);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deflate_data_referring_before_the_message_closes_with_1007() {
    let edge = Edge::start(&[]).await;
    let mut ws = welcomed(&edge, "sec-websocket-extensions: permessage-deflate\r\n").await;
    // A match (length 3, distance 1) with nothing before it: no valid inflation exists.
    assert!(
        ws.write(&frame_with(true, true, TEXT, &[0x03, 0x02, 0x00]))
            .await
    );
    assert_eq!(ws.close_code().await.0, 1007);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ping_the_rate_limit_refused_gets_no_pong() {
    let edge = Edge::start(&["--rate", "0.1", "--burst", "5"]).await;
    let mut ws = welcomed(&edge, "").await;
    let pings: Vec<u8> = (0..8).flat_map(|_| frame(true, PING, b"")).collect();
    assert!(ws.write(&pings).await);
    let (mut pongs, mut refused) = (0, 0);
    while refused < 3 {
        let (opcode, payload) = ws.next_frame().await.expect("the connection stays open");
        match opcode {
            0xA => pongs += 1,
            0x1 if String::from_utf8_lossy(&payload).contains("RATE_LIMITED") => refused += 1,
            _ => {}
        }
    }
    assert_eq!(pongs, 5, "the burst is answered, the refused pings are not");
}

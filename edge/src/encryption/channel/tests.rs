use aes_gcm::aead::Aead;

use super::*;

const KEY: [u8; 32] = [7; 32];

/// What a client encrypts as its frame `n`, in direction `direction`.
fn client_seal(direction: [u8; 4], n: u64, plain: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&KEY.into())
        .encrypt(&Nonce::from(enc::nonce(direction, n)), plain)
        .unwrap()
}

fn client_open(n: u64, sealed: &[u8]) -> Vec<u8> {
    Aes256Gcm::new(&KEY.into())
        .decrypt(&Nonce::from(enc::nonce(EDGE_TO_CLIENT, n)), sealed)
        .unwrap()
}

fn json_frame(n: u64, sealed: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    enc::write_json(&mut out, n, sealed);
    out
}

#[test]
fn frames_to_the_client_are_sealed_in_sequence_in_either_encoding() {
    let mut channel = Channel::new(KEY, 1024);
    for (n, plain) in [br#"{"type":"pong"}"#.as_slice(), &[b'x'; 3000]]
        .into_iter()
        .enumerate()
    {
        let expected = channel.sealed_len(true, plain.len());
        let mut out = vec![0xaa];
        assert!(channel.seal(true, plain, &mut out));
        assert_eq!(out.len(), 1 + expected, "appended after what was there");
        let frame = Sealed::from_json(&out[1..]).unwrap();
        assert_eq!(frame.n, n as u64);
        assert_eq!(client_open(frame.n, &frame.c), plain);
    }
    let plain = b"\x81\xa4type\xa4pong";
    let expected = channel.sealed_len(false, plain.len());
    let mut out = Vec::new();
    assert!(channel.seal(false, plain, &mut out));
    assert_eq!(out.len(), expected);
    let frame = Sealed::from_msgpack(&out).unwrap();
    assert_eq!(
        frame.n, 2,
        "one counter for the connection, whatever the encoding"
    );
    assert_eq!(client_open(2, &frame.c), plain);
}

#[test]
fn frames_from_the_client_open_only_in_sequence_and_untouched() {
    let mut channel = Channel::new(KEY, 1024);
    let first = json_frame(0, &client_seal(CLIENT_TO_EDGE, 0, b"{\"type\":\"ping\"}"));
    assert_eq!(channel.open(true, &first).unwrap(), b"{\"type\":\"ping\"}");
    assert_eq!(
        channel.open(true, &first),
        Err(OpenError::OutOfSequence),
        "a replayed frame"
    );
    let skipped = json_frame(2, &client_seal(CLIENT_TO_EDGE, 2, b"{}"));
    assert_eq!(channel.open(true, &skipped), Err(OpenError::OutOfSequence));
    let mut tampered = client_seal(CLIENT_TO_EDGE, 1, b"{}");
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    assert_eq!(
        channel.open(true, &json_frame(1, &tampered)),
        Err(OpenError::Forged)
    );
    let mirrored = client_seal(EDGE_TO_CLIENT, 1, b"{}");
    assert_eq!(
        channel.open(true, &json_frame(1, &mirrored)),
        Err(OpenError::Forged),
        "the edge's own direction is not the client's"
    );
    assert_eq!(
        channel.open(true, &json_frame(1, &[0; 15])),
        Err(OpenError::Forged)
    );
    assert_eq!(
        channel.open(true, b"{\"type\":\"ping\"}"),
        Err(OpenError::NotEnc)
    );
    let mut packed = Vec::new();
    let sealed = client_seal(CLIENT_TO_EDGE, 1, b"\x81\xa4type\xa4ping");
    enc::write_msgpack_head(&mut packed, 1, sealed.len());
    packed.extend_from_slice(&sealed);
    assert_eq!(
        channel.open(false, &packed).unwrap(),
        b"\x81\xa4type\xa4ping",
        "a failed frame does not move the counter"
    );
    let large = json_frame(2, &client_seal(CLIENT_TO_EDGE, 2, &[b' '; 1025]));
    assert_eq!(channel.open(true, &large), Err(OpenError::TooLarge));
    assert_eq!(OpenError::TooLarge.code(), 1009);
    assert_eq!(OpenError::Forged.code(), 1008);
}

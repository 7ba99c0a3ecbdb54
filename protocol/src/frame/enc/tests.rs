use super::*;

#[test]
fn nonces_put_the_direction_first_and_the_counter_big_endian() {
    assert_eq!(
        nonce(EDGE_TO_CLIENT, 0x0102),
        [0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 1, 2]
    );
    assert_eq!(
        nonce(CLIENT_TO_EDGE, u64::MAX),
        [0, 0, 0, 2, 255, 255, 255, 255, 255, 255, 255, 255]
    );
}

#[test]
fn a_json_frame_reads_back_and_is_as_long_as_announced() {
    for (n, len) in [(0u64, 0usize), (7, 16), (1 << 40, 1000), (u64::MAX, 5000)] {
        let sealed: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
        let mut out = Vec::new();
        write_json(&mut out, n, &sealed);
        assert_eq!(out.len(), json_len(n, len));
        let text = std::str::from_utf8(&out).unwrap();
        assert!(text.starts_with(r#"{"type":"enc","n":"#), "{text}");
        assert_eq!(
            Sealed::from_json(&out),
            Ok(Sealed {
                n,
                c: sealed.clone()
            })
        );
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["c"], serde_json::Value::String(to_base64(&sealed)));
    }
}

#[test]
fn a_msgpack_frame_reads_back_with_every_width_of_counter_and_length() {
    for n in [
        0u64,
        0x7f,
        0x80,
        0xff,
        0x100,
        0xffff,
        0x1_0000,
        1 << 32,
        u64::MAX,
    ] {
        for len in [0usize, 16, 255, 256, 65_535, 65_536] {
            let sealed = vec![0xab; len];
            let mut out = Vec::new();
            write_msgpack_head(&mut out, n, len);
            assert_eq!(out.len(), msgpack_head_len(n, len), "n {n} len {len}");
            out.extend_from_slice(&sealed);
            assert_eq!(Sealed::from_msgpack(&out), Ok(Sealed { n, c: sealed }));
        }
    }
}

#[test]
fn other_frames_and_bad_base64_are_refused() {
    assert!(Sealed::from_json(br#"{"type":"join","n":0,"c":""}"#).is_err());
    assert!(Sealed::from_json(br#"{"type":"enc","n":0,"c":"%%%"}"#).is_err());
    assert!(Sealed::from_json(br#"{"type":"enc","n":-1,"c":""}"#).is_err());
    assert!(Sealed::from_json(br#"{"type":"enc","c":""}"#).is_err());
    assert!(Sealed::from_json(b"not json").is_err());
    assert!(Sealed::from_msgpack(b"\x90").is_err());
}

#[test]
fn base64_reads_with_or_without_padding() {
    assert_eq!(from_base64("AQI="), Some(vec![1, 2]));
    assert_eq!(from_base64("AQI"), Some(vec![1, 2]));
    assert_eq!(
        from_base64("A-_"),
        None,
        "the URL alphabet is not the contract's"
    );
}

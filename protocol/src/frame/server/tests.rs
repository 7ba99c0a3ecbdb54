use super::*;

fn msg(data: &[u8]) -> MsgFrame<'_> {
    MsgFrame {
        scope: Scope::Room,
        room: Some("chat:1"),
        event: "say",
        data,
        offset: Some("1-0_1-0"),
        id: Uuid::nil(),
        ts: 5,
    }
}

#[test]
fn json_msg_keeps_data_bytes() {
    let data = br#"{ "z": 1.50, "a": "\u00e9" }"#;
    let bytes = msg(data).encode(Encoding::Json).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.contains(r#""data":{ "z": 1.50, "a": "\u00e9" },"#),
        "{text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["type"], "msg");
    assert_eq!(v["room"], "chat:1");
    assert_eq!(v["offset"], "1-0_1-0");
    assert_eq!(v["id"], "00000000-0000-0000-0000-000000000000");
    assert_eq!(v["ts"], 5);
}

#[test]
fn msgpack_msg_carries_data_as_a_value() {
    let bytes = msg(br#"{"k":[1,"two",null]}"#)
        .encode(Encoding::MsgPack)
        .unwrap();
    let v: serde_json::Value = rmp_serde::from_slice(&bytes).unwrap();
    assert_eq!(v["data"], serde_json::json!({"k": [1, "two", null]}));
    assert_eq!(v["scope"], "room");
}

#[test]
fn control_frames_follow_the_protocol() {
    let f = ServerFrame::Joined {
        room: "r",
        reference: None,
        offset: None,
        recovered: false,
        by: None,
    };
    let text = String::from_utf8(f.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"type":"joined","room":"r","offset":null,"recovered":false}"#
    );
    let e = ServerFrame::Error {
        reference: Some(2),
        code: ErrorCode::NotJoined,
        message: "m",
        retry_after: None,
    };
    let text = String::from_utf8(e.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"type":"error","ref":2,"code":"NOT_JOINED","message":"m"}"#
    );
    let e = ServerFrame::Error {
        reference: None,
        code: ErrorCode::RateLimited,
        message: "m",
        retry_after: Some(250),
    };
    let text = String::from_utf8(e.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"type":"error","code":"RATE_LIMITED","message":"m","retry_after":250}"#
    );
    let g = ServerFrame::Gap {
        scope: Scope::Room,
        room: Some("r"),
        offset: Some("5-0_1-0".into()),
    };
    let text = String::from_utf8(g.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(
        text,
        r#"{"type":"gap","scope":"room","room":"r","offset":"5-0_1-0"}"#
    );
    let g = ServerFrame::Gap {
        scope: Scope::All,
        room: None,
        offset: None,
    };
    let text = String::from_utf8(g.encode(Encoding::Json).unwrap()).unwrap();
    assert_eq!(text, r#"{"type":"gap","scope":"all","offset":null}"#);
}

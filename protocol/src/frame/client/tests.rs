use super::*;
use crate::rpc;

#[test]
fn decodes_json_frames() {
    let f = ClientFrame::from_json(br#"{"type":"join","room":"chat:1","since":"1-0_1-0","ref":7}"#);
    assert_eq!(
        f,
        Ok(ClientFrame::Join {
            room: "chat:1".into(),
            since: Some("1-0_1-0".into()),
            rewind: None,
            reference: Some(7)
        })
    );
    let f = ClientFrame::from_json(
        br#"{"type":"publish","room":"r","event":"e","data":{"a": [1, 2.50]}}"#,
    );
    match f {
        Ok(ClientFrame::Publish { data, echo, .. }) => {
            assert_eq!(data, br#"{"a": [1, 2.50]}"#);
            assert!(echo);
        }
        other => panic!("{other:?}"),
    }
    let f = ClientFrame::from_json(br#"{"type":"auth","token":"t","since":{"user":"1-0_1-0"}}"#);
    assert!(
        matches!(f, Ok(ClientFrame::Auth { since, .. }) if since.user.as_deref() == Some("1-0_1-0"))
    );
}

#[test]
fn history_and_rewind_take_counts_of_1_to_100() {
    let f = ClientFrame::from_json(br#"{"type":"history","room":"r","ref":1}"#);
    assert_eq!(
        f,
        Ok(ClientFrame::History {
            room: "r".into(),
            limit: DEFAULT_HISTORY,
            before: None,
            reference: Some(1)
        })
    );
    let f =
        ClientFrame::from_json(br#"{"type":"history","room":"r","limit":100,"before":"5-0_1-0"}"#);
    assert!(
        matches!(f, Ok(ClientFrame::History { limit: 100, before: Some(b), .. }) if b == "5-0_1-0")
    );
    let f = ClientFrame::from_json(br#"{"type":"join","room":"r","rewind":3}"#);
    assert!(matches!(
        f,
        Ok(ClientFrame::Join {
            rewind: Some(3),
            since: None,
            ..
        })
    ));
    for bad in [
        &br#"{"type":"history","room":"r","limit":0,"ref":2}"#[..],
        br#"{"type":"history","room":"r","limit":101,"ref":2}"#,
        br#"{"type":"history","room":"r","limit":-1,"ref":2}"#,
        br#"{"type":"join","room":"r","rewind":0,"ref":2}"#,
        br#"{"type":"join","room":"r","rewind":4294967297,"ref":2}"#,
        br#"{"type":"join","room":"r","rewind":2,"since":"1-0_1-0","ref":2}"#,
    ] {
        let e = ClientFrame::from_json(bad).unwrap_err();
        assert_eq!(
            (e.reference, e.code),
            (Some(2), ErrorCode::BadFrame),
            "{bad:?}"
        );
    }
    let e = ClientFrame::from_json(br#"{"type":"history","room":"a b","ref":3}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(3), ErrorCode::InvalidRoom));
}

#[test]
fn ids_on_publish_send_and_rpc_are_checked() {
    let f =
        ClientFrame::from_json(br#"{"type":"send","event":"e","data":1,"id":"retry-1","ref":1}"#);
    assert!(matches!(f, Ok(ClientFrame::Send { id: Some(id), .. }) if id == "retry-1"));
    let e =
        ClientFrame::from_json(br#"{"type":"publish","room":"r","event":"e","id":"a b","ref":2}"#)
            .unwrap_err();
    assert_eq!((e.reference, e.code), (Some(2), ErrorCode::BadFrame));
    let f = ClientFrame::from_json(br#"{"type":"rpc","event":"e","id":"retry-1","ref":3}"#);
    assert!(
        matches!(f, Ok(ClientFrame::Rpc { id: Some(id), reference: 3, .. }) if id == "retry-1")
    );
    let e =
        ClientFrame::from_json(br#"{"type":"rpc","event":"e","id":"a:b","ref":4}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(4), ErrorCode::BadFrame));
}

#[test]
fn names_the_ref_of_refused_frames() {
    let e = ClientFrame::from_json(br#"{"type":"nope","ref":3}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(3), ErrorCode::UnknownType));
    let e = ClientFrame::from_json(br#"{"type":"join","room":"a b","ref":4}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(4), ErrorCode::InvalidRoom));
    let e = ClientFrame::from_json(br#"{"type":"join","room":5,"ref":5}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(5), ErrorCode::BadFrame));
    let e = ClientFrame::from_json(b"{not json").unwrap_err();
    assert_eq!((e.reference, e.code), (None, ErrorCode::BadFrame));
    let e = ClientFrame::from_json(br#"{"type":"ping","ref":9007199254740992}"#).unwrap_err();
    assert_eq!(e.code, ErrorCode::BadFrame);
    let e = ClientFrame::from_json(br#"{"ref":1}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (Some(1), ErrorCode::BadFrame));
}

#[test]
fn an_rpc_needs_a_ref_and_a_timeout_in_range() {
    let f = ClientFrame::from_json(br#"{"type":"rpc","event":"time","ref":3}"#);
    assert_eq!(
        f,
        Ok(ClientFrame::Rpc {
            event: "time".into(),
            data: b"null".to_vec(),
            id: None,
            reference: 3,
            timeout_ms: rpc::DEFAULT_TIMEOUT_MS,
        })
    );
    let f =
        ClientFrame::from_json(br#"{"type":"rpc","event":"e","data":[1],"ref":4,"timeout":60000}"#);
    assert!(matches!(
        f,
        Ok(ClientFrame::Rpc {
            timeout_ms: 60_000,
            ..
        })
    ));
    let e = ClientFrame::from_json(br#"{"type":"rpc","event":"e"}"#).unwrap_err();
    assert_eq!((e.reference, e.code), (None, ErrorCode::BadFrame));
    for timeout in ["0", "60001", "-1", "1.5", "\"5\""] {
        let frame = format!(r#"{{"type":"rpc","event":"e","ref":5,"timeout":{timeout}}}"#);
        let e = ClientFrame::from_json(frame.as_bytes()).unwrap_err();
        assert_eq!(
            (e.reference, e.code),
            (Some(5), ErrorCode::BadFrame),
            "{timeout}"
        );
    }
}

#[test]
fn decodes_msgpack_frames() {
    #[derive(serde::Serialize)]
    struct P<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        room: &'a str,
        event: &'a str,
        data: serde_json::Value,
        #[serde(rename = "ref")]
        reference: u64,
    }
    let bytes = rmp_serde::to_vec_named(&P {
        kind: "publish",
        room: "r",
        event: "e",
        data: serde_json::json!({"k": ["v", 1, null]}),
        reference: 1,
    })
    .unwrap();
    match ClientFrame::from_msgpack(&bytes) {
        Ok(ClientFrame::Publish { data, .. }) => assert_eq!(data, br#"{"k":["v",1,null]}"#),
        other => panic!("{other:?}"),
    }
}

//! Whatever bytes arrive from a client or from Redis, decoding answers with a value or an error.

// A test's helpers panic on purpose, as a failed test must.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use ferrocast_protocol::Envelope;
use ferrocast_protocol::frame::client::ClientFrame;
use ferrocast_protocol::keys::Keys;
use ferrocast_protocol::offset::Offset;
use ferrocast_protocol::script::LiveMessage;
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn client_frames(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = ClientFrame::from_json(&bytes);
        let _ = ClientFrame::from_msgpack(&bytes);
    }

    #[test]
    fn json_shaped_client_frames(
        kind in "(auth|join|leave|publish|send|ping|refresh|resume|x)",
        room in ".{0,10}",
        r in any::<i64>(),
        data in "[\\[\\]{}\":,0-9a-z ]{0,24}",
    ) {
        let text = format!(r#"{{"type":"{kind}","room":{room:?},"ref":{r},"data":{data},"event":"e","token":"t"}}"#);
        let _ = ClientFrame::from_json(text.as_bytes());
    }

    #[test]
    fn envelopes(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = Envelope::decode(&bytes);
    }

    #[test]
    fn msgpack_maps_as_envelopes(
        fields in proptest::collection::btree_map("(v|id|kind|scope|target|event|data|except|ts|room|code)", any::<u32>(), 0..11)
    ) {
        let bytes = rmp_serde::to_vec_named(&fields).unwrap();
        let _ = Envelope::decode(&bytes);
        let _ = ClientFrame::from_msgpack(&bytes);
    }

    #[test]
    fn live_payloads_channels_and_offsets(bytes in proptest::collection::vec(any::<u8>(), 0..64), text in ".{0,40}") {
        let _ = LiveMessage::parse(&bytes);
        let _ = Keys::default().target_of_live(&bytes);
        let _ = text.parse::<Offset>();
    }
}

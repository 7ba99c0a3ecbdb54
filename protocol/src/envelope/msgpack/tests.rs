use proptest::prelude::*;
use serde::Serialize;

use super::*;

fn envelope() -> impl Strategy<Value = Envelope> {
    let kind = prop_oneof![
        Just(Kind::Msg),
        Just(Kind::Join),
        Just(Kind::Leave),
        Just(Kind::Disconnect),
        Just(Kind::Reply)
    ];
    let scope = prop_oneof![
        Just(Scope::Room),
        Just(Scope::User),
        Just(Scope::Client),
        Just(Scope::All)
    ];
    let text = || ".{0,40}";
    (
        (any::<u32>(), any::<u128>(), kind, scope, text(), text()),
        (
            proptest::collection::vec(any::<u8>(), 0..300),
            proptest::collection::vec(text(), 0..4),
            any::<u64>(),
        ),
        (
            proptest::option::of(text()),
            proptest::option::of(text()),
            proptest::option::of(any::<u16>()),
            proptest::option::of(text()),
        ),
        (
            proptest::option::of(any::<u64>()),
            proptest::option::of(any::<u128>()),
            proptest::option::of(text()),
        ),
    )
        .prop_map(
            |(
                (v, id, kind, scope, target, event),
                (data, except, ts),
                (trace, room, code, reason),
                (reference, request, error),
            )| Envelope {
                v,
                id: Uuid::from_u128(id),
                kind,
                scope,
                target,
                event,
                data,
                except,
                ts,
                trace,
                room,
                code,
                reason,
                reference,
                request: request.map(Uuid::from_u128),
                error,
            },
        )
}

fn serde_read(bytes: &[u8]) -> Option<Envelope> {
    rmp_serde::from_slice(bytes).ok()
}

proptest! {
    /// Whatever the emitter writes reads back the same, as it did through serde.
    #[test]
    fn reads_what_serde_writes(env in envelope()) {
        let bytes = rmp_serde::to_vec_named(&env).unwrap();
        prop_assert_eq!(read(&bytes), Ok(env));
    }

    /// Bytes changed anywhere never panic, and what is read was read alike by serde:
    /// nothing it refused gets through.
    #[test]
    fn damaged_envelopes_are_refused_as_before(
        env in envelope(),
        at in any::<prop::sample::Index>(),
        byte in any::<u8>(),
        cut in any::<prop::sample::Index>(),
    ) {
        let good = rmp_serde::to_vec_named(&env).unwrap();
        let mut bytes = good.clone();
        let i = at.index(bytes.len());
        bytes[i] = byte;
        if let Ok(read) = read(&bytes) {
            prop_assert_eq!(Some(read), serde_read(&bytes));
        }
        // Cut from the intact encoding: a damaged one may end early, and what follows an
        // envelope is ignored.
        let cut = &good[..cut.index(good.len())];
        prop_assert!(super::read(cut).is_err());
    }

    /// Any bytes at all: an answer, never a panic.
    #[test]
    fn never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = read(&bytes);
    }
}

#[derive(Serialize)]
struct Odd<'a> {
    v: u8,
    #[serde(with = "serde_bytes")]
    target: &'a [u8],
    #[serde(with = "serde_bytes")]
    id: &'a [u8],
    kind: &'a str,
    scope: &'a str,
    extra: (
        Vec<u32>,
        std::collections::BTreeMap<&'a str, f64>,
        Option<bool>,
    ),
    ts: i64,
    #[serde(with = "serde_bytes")]
    event: &'a [u8],
    data: &'a str,
    room: Option<&'a str>,
}

#[test]
fn reads_the_other_forms_serde_accepted() {
    let odd = Odd {
        v: 1,
        target: b"lobby",
        id: &[7; 16],
        kind: "msg",
        scope: "room",
        extra: (vec![1, 70_000], [("x", 1.5)].into(), None),
        ts: 5,
        event: b"say",
        data: "{}",
        room: None,
    };
    let bytes = rmp_serde::to_vec_named(&odd).unwrap();
    let env = read(&bytes).unwrap();
    assert_eq!(Some(&env), serde_read(&bytes).as_ref());
    assert_eq!(env.target, "lobby");
    assert_eq!(env.id.as_bytes(), odd.id);
    assert_eq!((env.event.as_str(), &env.data[..]), ("say", &b"{}"[..]));
    assert_eq!((env.ts, env.room), (5, None));
}

#[test]
fn reads_integers_of_every_width_and_data_as_byte_values() {
    // {"v": int8 1, "id": bin 16, "kind": "msg", "scope": "all", "target": "",
    //  "ts": int64 5, "data": [0x7b, uint8 0x7d]}
    let mut bytes = vec![0x87, 0xa1, b'v', 0xd0, 0x01, 0xa2, b'i', b'd', 0xc4, 0x10];
    bytes.extend_from_slice(&[9; 16]);
    bytes.extend_from_slice(b"\xa4kind\xa3msg\xa5scope\xa3all\xa6target\xa0");
    bytes.extend_from_slice(&[0xa2, b't', b's', 0xd3, 0, 0, 0, 0, 0, 0, 0, 5]);
    bytes.extend_from_slice(&[0xa4, b'd', b'a', b't', b'a', 0x92, 0x7b, 0xcc, 0x7d]);
    let env = read(&bytes).unwrap();
    assert_eq!(Some(&env), serde_read(&bytes).as_ref());
    assert_eq!((env.v, env.ts, &env.data[..]), (1, 5, &b"{}"[..]));
    // A negative int8 where an unsigned one belongs: refused by both.
    bytes[4] = 0xff;
    assert_eq!(read(&bytes), Err("integer out of range"));
    assert_eq!(serde_read(&bytes), None);
}

#[test]
fn refuses_missing_duplicate_and_mistyped_fields() {
    let env = Envelope::message(&crate::Target::Room("r".into()), "e", b"1".to_vec());
    let good = rmp_serde::to_vec_named(&env).unwrap();
    // fixmap with one field more, whose key repeats `v`.
    let mut dup = good.clone();
    dup[0] += 1;
    dup.extend_from_slice(&[0xa1, b'v', 0x01]);
    assert_eq!(read(&dup), Err("duplicate field"));
    // The map claims one field fewer: `ts`, written last, is missing.
    let mut short = good.clone();
    short[0] -= 1;
    assert_eq!(read(&short), Err("missing field `ts`"));
    // `v` as a string.
    let at = good.windows(2).position(|w| w == [0xa1, b'v']).unwrap() + 2;
    let mut typed = good[..at].to_vec();
    typed.extend_from_slice(&[0xa1, b'1']);
    typed.extend_from_slice(&good[at + 1..]);
    assert_eq!(read(&typed), Err("expected an integer"));
    assert_eq!(read(&[0x91, 0x01]), Err("not a map"));
}

#[test]
fn a_claimed_length_past_the_input_is_refused_without_allocating_it() {
    // `except`: an array of 2^32-1 strings, in a few bytes.
    let bytes = [
        0x81, 0xa6, b'e', b'x', b'c', b'e', b'p', b't', 0xdd, 0xff, 0xff, 0xff, 0xff,
    ];
    assert_eq!(read(&bytes), Err("truncated"));
    // An unknown field nesting maps that claim billions of entries.
    let bytes = [0x81, 0xa1, b'z', 0xdf, 0xff, 0xff, 0xff, 0xff, 0x00];
    assert_eq!(read(&bytes), Err("truncated"));
}

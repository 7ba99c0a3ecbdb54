//! One line of `--stdin`: the HTTP API's publish body, `data` optional. Checked as the emitter
//! checks any message, and for an edge also written back as that body.

use anyhow::Context;
use ferrocast_protocol::PublishBody;
use serde_json::value::RawValue;

use crate::Message;

/// Most bytes of lines one `POST /api/batch` carries: the edge takes bodies of up to 1 MiB,
/// and the batch's own brackets need a few more.
pub(super) const API_BATCH_BYTES: usize = 1024 * 1024 - 1024;

/// One line of input: a publish body whose `data` may be left out, for `null`.
type Line<'a> = PublishBody<Option<&'a RawValue>>;

/// The message on `line` (its end of line included or not), with `except` added to its own,
/// and, when `api` asks for it, the same as the edge API's publish body; `None` for a blank
/// line.
pub(super) fn parse(
    line: &[u8],
    except: &[String],
    api: bool,
) -> anyhow::Result<Option<(Message, Option<String>)>> {
    let text = std::str::from_utf8(line).context("not UTF-8")?.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let mut line: Line =
        serde_json::from_str(text).context("not a JSON object of the expected shape")?;
    let target = line.target()?;
    line.except.extend_from_slice(except);
    let data = line.data.map_or("null", RawValue::get);
    let message = Message::new(
        target,
        &line.event,
        data.as_bytes().to_vec(),
        line.except.clone(),
        line.id,
    )?;
    if !api {
        return Ok(Some((message, None)));
    }
    let body = serde_json::to_string(&line)?;
    if body.len() > API_BATCH_BYTES {
        anyhow::bail!("too large for the edge's API (its requests hold at most 1 MiB)");
    }
    Ok(Some((message, Some(body))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(line: &str) -> anyhow::Result<Option<(Message, Option<String>)>> {
        parse(line.as_bytes(), &[], false)
    }

    #[test]
    fn lines() {
        assert!(matches!(
            parsed(r#"{"room":"r","event":"e","data":{"a":1}}"#),
            Ok(Some(_))
        ));
        assert!(matches!(
            parsed("{\"all\":true,\"event\":\"e\"}\r\n"),
            Ok(Some(_))
        ));
        assert!(matches!(parsed(" \r\n"), Ok(None)));
        for bad in [
            r#"{"room":"r","user":"u","event":"e"}"#,
            r#"{"room":"bad room","event":"e"}"#,
            r#"{"room":"r","event":"e","data":{"#,
            r#"{"room":"r","event":"e","colour":1}"#,
            r#"{"room":"r","event":"e","data":1e400}"#,
            r#"{"room":"r","event":"e","data":"\ud800"}"#,
        ] {
            assert!(parsed(bad).is_err(), "{bad}");
        }
        let error = parse(b"{\"all\":true,\"event\":\"\xff\"}", &[], false).unwrap_err();
        assert!(format!("{error:#}").starts_with("not UTF-8"), "{error:#}");
    }

    #[test]
    fn api_bodies_carry_the_line_as_written() {
        let line = r#"{"user":"u","event":"e","data":{"z":1,"a":12345678901234567890.5}}"#;
        let (_, body) = parse(line.as_bytes(), &["c1".to_owned()], true)
            .expect("a good line")
            .expect("not blank");
        assert_eq!(
            body.as_deref(),
            Some(
                r#"{"user":"u","event":"e","data":{"z":1,"a":12345678901234567890.5},"except":["c1"]}"#
            )
        );
        let all = r#"{"all":true,"event":"e"}"#;
        let (_, body) = parse(all.as_bytes(), &[], true)
            .expect("good")
            .expect("not blank");
        assert_eq!(
            body.as_deref(),
            Some(r#"{"all":true,"event":"e","data":null,"except":[]}"#)
        );
        let (_, body) = parse(all.as_bytes(), &[], false)
            .expect("good")
            .expect("not blank");
        assert_eq!(body, None, "no body for Redis");
    }

    #[test]
    fn a_line_may_choose_its_id_as_an_api_body_may() {
        let id = "0190c0de-0000-7000-8000-00000000002a";
        let line = format!(r#"{{"room":"r","event":"e","data":1,"id":"{id}"}}"#);
        let (_, body) = parse(line.as_bytes(), &[], true)
            .expect("a good line")
            .expect("not blank");
        assert_eq!(
            body.as_deref(),
            Some(
                format!(r#"{{"room":"r","event":"e","data":1,"except":[],"id":"{id}"}}"#).as_str()
            )
        );
    }
}

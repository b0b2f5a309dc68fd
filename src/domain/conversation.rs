//! Conversation state that only one account can read, and removing it when a session moves.
//!
//! pi replays every earlier reasoning item of a session in `input`, ciphertext included
//! (`encrypted_content`), and only the account that minted it can decrypt it: any other answers
//! 400 `invalid_encrypted_content`. So a request that goes to another account than the one that
//! served the session loses those items (reasoning and compaction items, and a
//! `previous_response_id`), and keeps everything else exactly as it was: other items, their
//! order, and every other field. A body pi compressed (zstd) is decoded first and the result is
//! sent uncompressed.
//!
//! pi keeps replaying the old account's items on every later turn, beside the new account's
//! own. The proxy cannot read ciphertext, so it remembers each removed item by a fingerprint
//! (a hash of its ciphertext) and on later turns removes exactly those, keeping what the new
//! account minted itself.

use std::borrow::Cow;
use std::fmt;
use std::io::Read as _;

use serde::Deserialize;
use serde::de::{Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};

/// Items whose content is bound to the account that produced them.
const ACCOUNT_BOUND_ITEMS: [&str; 3] = ["reasoning", "compaction", "compaction_summary"];
/// Top-level fields that point at state kept by one account.
const ACCOUNT_BOUND_FIELDS: [&str; 1] = ["previous_response_id"];
/// A compressed body may not grow past this when decoded (a request body is at most 64 MiB as
/// sent; this bounds a body crafted to expand).
const MAX_DECODED_BYTES: u64 = 256 * 1024 * 1024;

/// A request body with another account's state removed.
#[derive(Debug, PartialEq, Eq)]
pub struct Stripped {
    /// The body to send, uncompressed.
    pub body: Vec<u8>,
    /// The fingerprints of the items removed.
    pub removed: Vec<String>,
    /// Whether anything was removed at all (items or fields).
    pub changed: bool,
}

/// Which account-bound items to remove.
#[derive(Clone, Copy, Debug)]
pub enum Foreign<'a> {
    /// Every one: the request goes to an account that did not serve the session.
    All,
    /// Those with these fingerprints: the request stays on its account, whose own items are kept.
    Known(&'a [String]),
}

/// Why a body could not be rewritten: it is then sent as it came.
#[derive(Debug, PartialEq, Eq)]
pub enum Unreadable {
    /// A `content-encoding` other than zstd or identity.
    Encoding(String),
    /// The zstd data is broken or decodes past the bound.
    Compression,
    /// Not a JSON object.
    NotJson,
}

/// Removes another account's state from a request body sent with `content_encoding`.
pub fn strip_foreign_state(
    body: &[u8],
    content_encoding: Option<&str>,
    foreign: Foreign<'_>,
) -> Result<Stripped, Unreadable> {
    let decoded = decode(body, content_encoding)?;
    let fields = ordered_fields(&decoded).map_err(|_| Unreadable::NotJson)?;
    let mut removed = Vec::new();
    let mut changed = false;
    let mut out = Vec::with_capacity(decoded.len());
    out.push(b'{');
    let mut first = true;
    for (key, value) in fields {
        if matches!(foreign, Foreign::All) && ACCOUNT_BOUND_FIELDS.contains(&key.as_ref()) {
            changed = true;
            continue;
        }
        if !first {
            out.push(b',');
        }
        first = false;
        serde_json::to_writer(&mut out, key.as_ref()).map_err(|_| Unreadable::NotJson)?;
        out.push(b':');
        if key == "input"
            && let Ok(items) = serde_json::from_str::<Vec<&RawValue>>(value.get())
        {
            out.push(b'[');
            let mut first_item = true;
            for item in items {
                if let Some(fingerprint) = account_bound(item) {
                    let drop = match foreign {
                        Foreign::All => true,
                        Foreign::Known(known) => known.contains(&fingerprint),
                    };
                    if drop {
                        changed = true;
                        removed.push(fingerprint);
                        continue;
                    }
                }
                if !first_item {
                    out.push(b',');
                }
                first_item = false;
                out.extend_from_slice(item.get().as_bytes());
            }
            out.push(b']');
        } else {
            out.extend_from_slice(value.get().as_bytes());
        }
    }
    out.push(b'}');
    Ok(Stripped {
        body: out,
        removed,
        changed,
    })
}

/// The fingerprint of an account-bound item (its ciphertext's hash, else its id), or `None`
/// for any other item.
fn account_bound(item: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    struct Item<'a> {
        #[serde(rename = "type", borrow, default)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        encrypted_content: Option<Cow<'a, str>>,
        #[serde(borrow, default)]
        id: Option<Cow<'a, str>>,
    }
    let item = serde_json::from_str::<Item<'_>>(item.get()).ok()?;
    if !item
        .kind
        .is_some_and(|kind| ACCOUNT_BOUND_ITEMS.contains(&kind.as_ref()))
    {
        return None;
    }
    let material = item.encrypted_content.or(item.id).unwrap_or_default();
    let digest = Sha256::digest(material.as_bytes());
    Some(digest[..12].iter().map(|b| format!("{b:02x}")).collect())
}

fn decode<'a>(body: &'a [u8], content_encoding: Option<&str>) -> Result<Cow<'a, [u8]>, Unreadable> {
    match content_encoding.map(str::trim) {
        None | Some("") | Some("identity") => Ok(Cow::Borrowed(body)),
        Some(encoding) if encoding.eq_ignore_ascii_case("zstd") => {
            let mut out = Vec::with_capacity(body.len() * 4);
            let mut input = body;
            // One or more frames, one after the other.
            while !input.is_empty() {
                let decoder = ruzstd::decoding::StreamingDecoder::new(&mut input)
                    .map_err(|_| Unreadable::Compression)?;
                let room = MAX_DECODED_BYTES - out.len() as u64;
                let read = decoder
                    .take(room + 1)
                    .read_to_end(&mut out)
                    .map_err(|_| Unreadable::Compression)?;
                if read as u64 > room {
                    return Err(Unreadable::Compression);
                }
            }
            Ok(Cow::Owned(out))
        }
        Some(other) => Err(Unreadable::Encoding(other.to_owned())),
    }
}

/// A JSON object's fields in their order, each value left as its raw text.
fn ordered_fields(json: &[u8]) -> Result<Vec<(Cow<'_, str>, &RawValue)>, serde_json::Error> {
    struct Fields;
    impl<'de> Visitor<'de> for Fields {
        type Value = Vec<(Cow<'de, str>, &'de RawValue)>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON object")
        }

        fn visit_map<M: MapAccess<'de>>(self, mut map: M) -> Result<Self::Value, M::Error> {
            let mut fields = Vec::new();
            while let Some(key) = map.next_key::<Cow<'de, str>>()? {
                fields.push((key, map.next_value::<&'de RawValue>()?));
            }
            Ok(fields)
        }
    }
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let fields = (&mut deserializer).deserialize_map(Fields)?;
    deserializer.end()?;
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn body(input: Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "model": "gpt-x", "instructions": "be brief", "input": input,
            "store": false, "include": ["reasoning.encrypted_content"], "stream": true
        }))
        .unwrap()
    }

    #[test]
    fn only_account_bound_items_are_removed_and_the_rest_is_kept_as_it_was() {
        let input = json!([
            {"type": "message", "role": "developer", "content": "sys"},
            {"type": "configuration_update", "reasoning": {"effort": "high"}},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAA1"},
            {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "yo"}]},
            {"type": "compaction", "encrypted_content": "gAAA2"},
            {"type": "function_call", "call_id": "c1", "name": "ls", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c1", "output": "a"},
        ]);
        let stripped = strip_foreign_state(&body(input.clone()), None, Foreign::All).unwrap();
        assert_eq!(stripped.removed.len(), 2);
        let got: Value = serde_json::from_slice(&stripped.body).unwrap();
        let kept: Vec<Value> = input
            .as_array()
            .unwrap()
            .iter()
            .filter(|item| !matches!(item["type"].as_str(), Some("reasoning" | "compaction")))
            .cloned()
            .collect();
        let mut expected: Value = serde_json::from_slice(&body(input)).unwrap();
        expected["input"] = Value::Array(kept);
        assert_eq!(got, expected);
    }

    #[test]
    fn after_a_move_only_the_items_removed_then_are_removed_again() {
        let old = json!({"type": "reasoning", "id": "rs_a", "encrypted_content": "minted-by-a"});
        let moved = strip_foreign_state(&body(json!([old.clone()])), None, Foreign::All).unwrap();
        assert_eq!(moved.removed.len(), 1);
        let own = json!({"type": "reasoning", "id": "rs_b", "encrypted_content": "minted-by-b"});
        let later = body(json!([old, own.clone()]));
        let stripped = strip_foreign_state(&later, None, Foreign::Known(&moved.removed)).unwrap();
        let kept: Value = serde_json::from_slice(&stripped.body).unwrap();
        assert_eq!(
            kept["input"],
            json!([own]),
            "the new account's own item stays"
        );
        assert_eq!(stripped.removed, moved.removed);
    }

    #[test]
    fn field_order_and_bytes_outside_the_removed_items_are_kept() {
        let sent = br#"{"model":"m","input":[{"type":"message","content":"a\u00e9"},{"type":"reasoning","encrypted_content":"x"},{"type":"message","content":"b"}],"tools":[],"include":["reasoning.encrypted_content"]}"#;
        let stripped = strip_foreign_state(sent, None, Foreign::All).unwrap();
        assert_eq!(
            String::from_utf8(stripped.body).unwrap(),
            r#"{"model":"m","input":[{"type":"message","content":"a\u00e9"},{"type":"message","content":"b"}],"tools":[],"include":["reasoning.encrypted_content"]}"#
        );
    }

    #[test]
    fn a_previous_response_id_is_dropped_and_a_body_without_foreign_state_is_equal() {
        let plain = body(json!([{"type": "message", "role": "user", "content": "hi"}]));
        let stripped = strip_foreign_state(&plain, None, Foreign::All).unwrap();
        assert!(!stripped.changed);
        assert_eq!(
            serde_json::from_slice::<Value>(&stripped.body).unwrap(),
            serde_json::from_slice::<Value>(&plain).unwrap()
        );
        let chained = br#"{"previous_response_id":"resp_1","input":[]}"#;
        let stripped = strip_foreign_state(chained, None, Foreign::All).unwrap();
        assert_eq!(stripped.body.as_slice(), br#"{"input":[]}"#);
        assert!(stripped.changed);
    }

    #[test]
    fn zstd_bodies_are_decoded_and_unreadable_ones_left_alone() {
        let plain = body(json!([{"type": "reasoning", "encrypted_content": "x"}]));
        let mut compressed = Vec::new();
        let mut encoder =
            ruzstd::encoding::FrameCompressor::new(ruzstd::encoding::CompressionLevel::Fastest);
        encoder.set_source(plain.as_slice());
        encoder.set_drain(&mut compressed);
        encoder.compress();
        let all = Foreign::All;
        let stripped = strip_foreign_state(&compressed, Some("zstd"), all).unwrap();
        assert_eq!(stripped.removed.len(), 1);
        assert_eq!(
            strip_foreign_state(b"not zstd", Some("zstd"), all),
            Err(Unreadable::Compression)
        );
        assert_eq!(
            strip_foreign_state(&plain, Some("br"), all),
            Err(Unreadable::Encoding("br".into()))
        );
        assert_eq!(
            strip_foreign_state(b"[1,2]", None, all),
            Err(Unreadable::NotJson)
        );
        assert_eq!(
            strip_foreign_state(b"{\"a\":1} x", None, all),
            Err(Unreadable::NotJson)
        );
    }
}

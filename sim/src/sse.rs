//! The SSE event sequences of the Responses API, as pi's parser expects them
//! (pi-ai `openai-responses-shared.js` / `openai-codex-responses.js`):
//! `response.created`, `response.in_progress`, a reasoning item at output index 0
//! (`response.output_item.added` / `.done`, with its summary events when it has a
//! summary), then the message at index 1: `response.output_item.added`,
//! `response.content_part.added` (an empty `output_text` the deltas append to),
//! `response.output_text.delta`..., the three `*.done` events carrying the full text
//! (pi replaces the streamed text with the one in `response.output_item.done`), and
//! `response.completed` with status, both items and token usage.
//!
//! Each event is framed as `event: <type>\ndata: <json>\n\n` and sent as its own chunk.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use serde_json::Map;

use crate::body::Step;
use crate::clock;
use crate::errors;
use crate::jwt::random_urlsafe;
use crate::script::StreamErrorStyle;

/// About how much text one `big` delta carries.
const BIG_DELTA_BYTES: usize = 16 * 1024;
/// Pause before a deliberate cut, so hyper flushes what came before it.
const FLUSH_BEFORE_CUT: Duration = Duration::from_millis(50);

/// Frames one SSE event.
pub(crate) fn frame(kind: &str, data: &Value) -> Bytes {
    Bytes::from(format!("event: {kind}\ndata: {data}\n\n"))
}

/// The opening events every stream sends unless its script names others.
const DEFAULT_OPENING: [&str; 2] = ["response.created", "response.in_progress"];
/// Where the message sits in `output`: the reasoning item comes first.
const MESSAGE_INDEX: u64 = 1;
/// Reasoning tokens reported for the (invisible) reasoning of every answer.
const REASONING_TOKENS: u64 = 16;

/// The reasoning item every answer starts with; its ciphertext is bound to the account.
pub(crate) struct Reasoning {
    pub id: String,
    pub encrypted_content: String,
    /// Summary text, streamed as one summary part; None leaves `summary` empty.
    pub summary: Option<String>,
}

/// Builds the events of one response, numbering them as the real backend does.
pub(crate) struct ResponseEvents {
    response_id: String,
    item_id: String,
    model: String,
    created_at: u64,
    input_tokens: u64,
    sequence: u64,
    reasoning: Reasoning,
}

impl ResponseEvents {
    /// `model` echoes the request's model; `input_bytes` gives a plausible token count.
    pub fn new(model: Option<String>, input_bytes: usize, reasoning: Reasoning) -> ResponseEvents {
        ResponseEvents {
            response_id: format!("resp_sim_{}", random_urlsafe(12)),
            item_id: format!("msg_sim_{}", random_urlsafe(12)),
            model: model.unwrap_or_else(|| "gpt-5.1-codex".to_string()),
            created_at: clock::now_s(),
            input_tokens: (input_bytes as u64).div_ceil(4),
            sequence: 0,
            reasoning,
        }
    }

    fn event(&mut self, kind: &str, mut data: Value) -> Step {
        if let Some(object) = data.as_object_mut() {
            object.insert("type".into(), kind.into());
            object.insert("sequence_number".into(), self.sequence.into());
        }
        self.sequence += 1;
        Step::Send(frame(kind, &data))
    }

    fn response_object(&self, status: &str, output: Value, usage: Value) -> Value {
        json!({
            "id": self.response_id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "model": self.model,
            "output": output,
            "usage": usage,
        })
    }

    fn usage(&self, output_bytes: u64) -> Value {
        let output_tokens = output_bytes.div_ceil(4).max(1) + REASONING_TOKENS;
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": REASONING_TOKENS},
            "total_tokens": self.input_tokens + output_tokens,
        })
    }

    /// The events before any output, by name. The known ones carry their real payloads
    /// (`response.metadata` a minimal plausible one); any other name is sent as an event
    /// with nothing but its type, so a client's handling of unknown events can be tested.
    fn opening(&mut self, names: Option<&[String]>) -> Vec<Step> {
        let names: Vec<&str> = match names {
            Some(names) => names.iter().map(String::as_str).collect(),
            None => DEFAULT_OPENING.to_vec(),
        };
        names
            .into_iter()
            .map(|name| {
                let data = match name {
                    "response.created" | "response.in_progress" => {
                        json!({"response": self.response_object("in_progress", json!([]), Value::Null)})
                    }
                    "response.queued" => {
                        json!({"response": self.response_object("queued", json!([]), Value::Null)})
                    }
                    "response.metadata" => {
                        json!({"metadata": {"openai_verification_recommendation": []}})
                    }
                    _ => json!({}),
                };
                self.event(name, data)
            })
            .collect()
    }

    fn reasoning_item(&self) -> Value {
        let summary = match &self.reasoning.summary {
            Some(text) => json!([{"type": "summary_text", "text": text}]),
            None => json!([]),
        };
        json!({
            "id": self.reasoning.id,
            "type": "reasoning",
            "summary": summary,
            "encrypted_content": self.reasoning.encrypted_content,
        })
    }

    /// The reasoning item at output index 0: added, its summary (if any), done.
    fn reasoning_events(&mut self) -> Vec<Step> {
        let id = self.reasoning.id.clone();
        // The summary streams after `added`, so the added item has none yet.
        let mut added = self.reasoning_item();
        added["summary"] = json!([]);
        let mut steps = vec![self.event(
            "response.output_item.added",
            json!({"output_index": 0, "item": added}),
        )];
        if let Some(text) = self.reasoning.summary.clone() {
            let summary = |field: &str, value: Value| {
                let mut data = json!({"item_id": id, "output_index": 0, "summary_index": 0});
                data[field] = value;
                data
            };
            let empty_part = json!({"type": "summary_text", "text": ""});
            let full_part = json!({"type": "summary_text", "text": text});
            steps.push(self.event(
                "response.reasoning_summary_part.added",
                summary("part", empty_part),
            ));
            steps.push(self.event(
                "response.reasoning_summary_text.delta",
                summary("delta", text.clone().into()),
            ));
            steps.push(self.event(
                "response.reasoning_summary_text.done",
                summary("text", text.into()),
            ));
            steps.push(self.event(
                "response.reasoning_summary_part.done",
                summary("part", full_part),
            ));
        }
        let done = self.reasoning_item();
        steps.push(self.event(
            "response.output_item.done",
            json!({"output_index": 0, "item": done}),
        ));
        steps
    }

    fn item(&self, status: &str, text: Option<&str>) -> Value {
        let content = match text {
            Some(text) => json!([{"type": "output_text", "text": text, "annotations": []}]),
            None => json!([]),
        };
        json!({"id": self.item_id, "type": "message", "status": status, "role": "assistant", "content": content})
    }

    fn item_added(&mut self) -> Vec<Step> {
        let item = self.item("in_progress", None);
        let part = json!({"type": "output_text", "text": "", "annotations": []});
        let item_id = self.item_id.clone();
        vec![
            self.event(
                "response.output_item.added",
                json!({"output_index": MESSAGE_INDEX, "item": item}),
            ),
            self.event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": MESSAGE_INDEX, "content_index": 0, "part": part}),
            ),
        ]
    }

    fn delta(&mut self, piece: &str) -> Step {
        let item_id = self.item_id.clone();
        self.event(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": MESSAGE_INDEX, "content_index": 0, "delta": piece}),
        )
    }

    /// The `ok` behavior: the opening events, `firstDelayMs`, the reasoning item, then the
    /// message with `deltas` pieces of `text`.
    pub fn ok(
        mut self,
        text: &str,
        deltas: u32,
        delay_ms: u64,
        first_delay_ms: u64,
        opening: Option<&[String]>,
    ) -> Vec<Step> {
        let mut steps = self.opening(opening);
        if first_delay_ms > 0 {
            steps.push(Step::Sleep(Duration::from_millis(first_delay_ms)));
        }
        steps.extend(self.reasoning_events());
        steps.extend(self.item_added());
        for (i, piece) in split_text(text, deltas).iter().enumerate() {
            if i > 0 && delay_ms > 0 {
                steps.push(Step::Sleep(Duration::from_millis(delay_ms)));
            }
            steps.push(self.delta(piece));
        }
        let item_id = self.item_id.clone();
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        steps.push(self.event(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": MESSAGE_INDEX, "content_index": 0, "text": text}),
        ));
        steps.push(self.event(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": MESSAGE_INDEX, "content_index": 0, "part": part}),
        ));
        let item = self.item("completed", Some(text));
        steps.push(self.event(
            "response.output_item.done",
            json!({"output_index": MESSAGE_INDEX, "item": item}),
        ));
        let usage = self.usage(text.len() as u64);
        let output = json!([self.reasoning_item(), item]);
        let done = self.response_object("completed", output, usage);
        steps.push(self.event("response.completed", json!({"response": done})));
        steps
    }

    /// The `big` behavior: ~16 KiB deltas until about `total_bytes` of SSE were sent.
    /// The three `*.done` events are left out: each would repeat the whole text in one
    /// event, which no real answer of this size does and which any sane event-size cap
    /// would reject. pi keeps the text it assembled from the deltas.
    pub fn big(mut self, total_bytes: u64) -> impl Iterator<Item = Step> + Send + 'static {
        let mut head = self.opening(None);
        head.extend(self.reasoning_events());
        head.extend(self.item_added());
        let head_bytes: u64 = head.iter().map(step_len).sum();

        // One delta event, reused for every chunk: building 50 MB once per chunk
        // would only measure the sim.
        let piece = filler_text(BIG_DELTA_BYTES);
        let item_id = self.item_id.clone();
        let delta = frame(
            "response.output_text.delta",
            &json!({"type": "response.output_text.delta", "item_id": item_id,
                    "output_index": MESSAGE_INDEX, "content_index": 0, "delta": piece}),
        );
        let remaining = total_bytes.saturating_sub(head_bytes);
        let count = (remaining / delta.len() as u64).max(1);

        let usage = self.usage(count * piece.len() as u64);
        let done = self.response_object("completed", json!([self.reasoning_item()]), usage);
        let tail = self.event("response.completed", json!({"response": done}));

        head.into_iter()
            .chain((0..count).map(move |_| Step::Send(delta.clone())))
            .chain(std::iter::once(tail))
    }

    /// The `streamError` behavior: the opening events, then the failure in one of the
    /// three shapes. `fields` go into the error object after the generated ones.
    pub fn stream_error(mut self, failure: StreamFailure<'_>) -> Vec<Step> {
        let message = failure
            .message
            .map(str::to_string)
            .unwrap_or_else(|| errors::message_for(failure.code));
        let mut steps = match failure.opening {
            Some(names) => self.opening(Some(names)),
            None if failure.after_created => self.opening(None),
            None => Vec::new(),
        };
        let mut error = Map::new();
        if failure.style == StreamErrorStyle::Nested {
            let kind = failure
                .error_type
                .unwrap_or_else(|| errors::type_for(failure.code));
            error.insert("type".into(), kind.into());
        }
        error.insert("code".into(), failure.code.into());
        error.insert("message".into(), message.into());
        if failure.style != StreamErrorStyle::Failed {
            error.insert("param".into(), Value::Null);
        }
        if let Some(seconds) = failure.resets_in_seconds {
            error.insert("resets_at".into(), (clock::now_s() + seconds).into());
            error.insert("resets_in_seconds".into(), seconds.into());
        }
        error.extend(failure.fields.clone());
        let error = Value::Object(error);
        steps.push(match failure.style {
            StreamErrorStyle::Error => self.event("error", error),
            StreamErrorStyle::Nested => self.event("error", json!({"error": error})),
            StreamErrorStyle::Failed => {
                let mut failed = self.response_object("failed", json!([]), Value::Null);
                failed["error"] = error;
                self.event("response.failed", json!({"response": failed}))
            }
        });
        steps
    }

    /// The `hangAfterCreated` behavior: the opening events, then silence.
    pub fn hang_after_opening(mut self, opening: Option<&[String]>) -> Vec<Step> {
        let mut steps = self.opening(opening);
        steps.push(Step::Hang);
        steps
    }

    /// The `cutAfterFirstDelta` behavior: some output, then a broken connection.
    pub fn cut_after_first_delta(mut self, text: &str) -> Vec<Step> {
        let mut steps = self.opening(None);
        steps.extend(self.reasoning_events());
        steps.extend(self.item_added());
        let first = split_text(text, 3).into_iter().next().unwrap_or_default();
        steps.push(self.delta(&first));
        steps.push(Step::Sleep(FLUSH_BEFORE_CUT));
        steps.push(Step::Abort);
        steps
    }
}

fn step_len(step: &Step) -> u64 {
    match step {
        Step::Send(bytes) => bytes.len() as u64,
        _ => 0,
    }
}

/// What a `streamError` sends, taken from its script.
pub(crate) struct StreamFailure<'a> {
    pub code: &'a str,
    pub style: StreamErrorStyle,
    pub after_created: bool,
    pub message: Option<&'a str>,
    pub opening: Option<&'a [String]>,
    pub error_type: Option<&'a str>,
    pub resets_in_seconds: Option<u64>,
    pub fields: &'a Map<String, Value>,
}

/// Splits text into `pieces` parts of about equal length, on character boundaries.
/// Fewer parts come back when the text has fewer characters; empty text gives one
/// empty part so that a delta is still sent.
pub(crate) fn split_text(text: &str, pieces: u32) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let pieces = (pieces.max(1) as usize).min(chars.len().max(1));
    let mut parts = Vec::with_capacity(pieces);
    for i in 0..pieces {
        let start = i * chars.len() / pieces;
        let end = (i + 1) * chars.len() / pieces;
        parts.push(chars[start..end].iter().collect());
    }
    parts
}

/// Plain ASCII prose of exactly `len` bytes; nothing in it needs JSON escaping.
fn filler_text(len: usize) -> String {
    const SENTENCE: &str =
        "The quick brown fox jumps over the lazy dog while the proxy keeps streaming. ";
    SENTENCE.chars().cycle().take(len).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_keeps_every_character() {
        let parts = split_text("hello from acct-a", 5);
        assert_eq!(parts.len(), 5);
        assert_eq!(parts.concat(), "hello from acct-a");
        assert_eq!(split_text("hé", 5), ["h", "é"]);
        assert_eq!(split_text("", 3), [""]);
    }

    #[test]
    fn big_sends_about_the_requested_bytes() {
        let reasoning = Reasoning {
            id: "rs_1".into(),
            encrypted_content: "x".into(),
            summary: None,
        };
        let total: u64 = ResponseEvents::new(None, 0, reasoning)
            .big(1_000_000)
            .map(|s| step_len(&s))
            .sum();
        assert!((950_000..1_050_000).contains(&total), "{total}");
    }
}

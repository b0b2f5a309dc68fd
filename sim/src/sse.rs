//! The SSE event sequences of the Responses API, as pi's parser expects them
//! (pi-ai `openai-responses-shared.js` / `openai-codex-responses.js`):
//! `response.created`, `response.in_progress`, `response.output_item.added` (a message),
//! `response.content_part.added` (an empty `output_text` the deltas append to),
//! `response.output_text.delta`..., the three `*.done` events carrying the full text
//! (pi replaces the streamed text with the one in `response.output_item.done`), and
//! `response.completed` with status and token usage.
//!
//! Each event is framed as `event: <type>\ndata: <json>\n\n` and sent as its own chunk.

use std::time::Duration;

use bytes::Bytes;
use serde_json::{Value, json};

use crate::body::Step;
use crate::clock;
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

/// Builds the events of one response, numbering them as the real backend does.
pub(crate) struct ResponseEvents {
    response_id: String,
    item_id: String,
    model: String,
    created_at: u64,
    input_tokens: u64,
    sequence: u64,
}

impl ResponseEvents {
    /// `model` echoes the request's model; `input_bytes` gives a plausible token count.
    pub fn new(model: Option<String>, input_bytes: usize) -> ResponseEvents {
        ResponseEvents {
            response_id: format!("resp_sim_{}", random_urlsafe(12)),
            item_id: format!("msg_sim_{}", random_urlsafe(12)),
            model: model.unwrap_or_else(|| "gpt-5.1-codex".to_string()),
            created_at: clock::now_s(),
            input_tokens: (input_bytes as u64).div_ceil(4),
            sequence: 0,
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
        let output_tokens = output_bytes.div_ceil(4).max(1);
        json!({
            "input_tokens": self.input_tokens,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": self.input_tokens + output_tokens,
        })
    }

    fn created(&mut self) -> Vec<Step> {
        let created = self.response_object("in_progress", json!([]), Value::Null);
        vec![
            self.event("response.created", json!({"response": created})),
            self.event("response.in_progress", json!({"response": created})),
        ]
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
                json!({"output_index": 0, "item": item}),
            ),
            self.event(
                "response.content_part.added",
                json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
            ),
        ]
    }

    fn delta(&mut self, piece: &str) -> Step {
        let item_id = self.item_id.clone();
        self.event(
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "delta": piece}),
        )
    }

    /// The `ok` behavior: the whole sequence with `deltas` pieces of `text`.
    pub fn ok(mut self, text: &str, deltas: u32, delay_ms: u64, first_delay_ms: u64) -> Vec<Step> {
        let mut steps = self.created();
        steps.extend(self.item_added());
        for (i, piece) in split_text(text, deltas).iter().enumerate() {
            let pause = if i == 0 { first_delay_ms } else { delay_ms };
            if pause > 0 {
                steps.push(Step::Sleep(Duration::from_millis(pause)));
            }
            steps.push(self.delta(piece));
        }
        let item_id = self.item_id.clone();
        let part = json!({"type": "output_text", "text": text, "annotations": []});
        steps.push(self.event(
            "response.output_text.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text}),
        ));
        steps.push(self.event(
            "response.content_part.done",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0, "part": part}),
        ));
        let item = self.item("completed", Some(text));
        steps.push(self.event(
            "response.output_item.done",
            json!({"output_index": 0, "item": item}),
        ));
        let usage = self.usage(text.len() as u64);
        let done = self.response_object("completed", json!([item]), usage);
        steps.push(self.event("response.completed", json!({"response": done})));
        steps
    }

    /// The `big` behavior: ~16 KiB deltas until about `total_bytes` of SSE were sent.
    /// The three `*.done` events are left out: each would repeat the whole text in one
    /// event, which no real answer of this size does and which any sane event-size cap
    /// would reject. pi keeps the text it assembled from the deltas.
    pub fn big(mut self, total_bytes: u64) -> impl Iterator<Item = Step> + Send + 'static {
        let mut head = self.created();
        head.extend(self.item_added());
        let head_bytes: u64 = head.iter().map(step_len).sum();

        // One delta event, reused for every chunk: building 50 MB once per chunk
        // would only measure the sim.
        let piece = filler_text(BIG_DELTA_BYTES);
        let item_id = self.item_id.clone();
        let delta = frame(
            "response.output_text.delta",
            &json!({"type": "response.output_text.delta", "item_id": item_id,
                    "output_index": 0, "content_index": 0, "delta": piece}),
        );
        let remaining = total_bytes.saturating_sub(head_bytes);
        let count = (remaining / delta.len() as u64).max(1);

        let usage = self.usage(count * piece.len() as u64);
        let done = self.response_object("completed", json!([]), usage);
        let tail = self.event("response.completed", json!({"response": done}));

        head.into_iter()
            .chain((0..count).map(move |_| Step::Send(delta.clone())))
            .chain(std::iter::once(tail))
    }

    /// The `streamError` behavior: optionally the opening events, then the failure.
    pub fn stream_error(
        mut self,
        code: &str,
        style: StreamErrorStyle,
        after_created: bool,
        message: Option<&str>,
    ) -> Vec<Step> {
        let message = message
            .map(str::to_string)
            .unwrap_or_else(|| stream_error_message(code));
        let mut steps = if after_created {
            self.created()
        } else {
            Vec::new()
        };
        match style {
            StreamErrorStyle::Error => steps.push(self.event(
                "error",
                json!({"code": code, "message": message, "param": null}),
            )),
            StreamErrorStyle::Failed => {
                let mut failed = self.response_object("failed", json!([]), Value::Null);
                failed["error"] = json!({"code": code, "message": message});
                steps.push(self.event("response.failed", json!({"response": failed})));
            }
        }
        steps
    }

    /// The `cutAfterFirstDelta` behavior: some output, then a broken connection.
    pub fn cut_after_first_delta(mut self, text: &str) -> Vec<Step> {
        let mut steps = self.created();
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

/// The message the real backend puts next to each in-stream error code.
fn stream_error_message(code: &str) -> String {
    match code {
        "usage_limit_reached" => "The usage limit has been reached".to_string(),
        "insufficient_quota" => {
            "You exceeded your current quota, please check your plan and billing details."
                .to_string()
        }
        "rate_limit_exceeded" => {
            "Rate limit reached for requests. Please try again in 5s.".to_string()
        }
        other => format!("simulated stream error: {other}"),
    }
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
        let total: u64 = ResponseEvents::new(None, 0)
            .big(1_000_000)
            .map(|s| step_len(&s))
            .sum();
        assert!((950_000..1_050_000).contains(&total), "{total}");
    }
}

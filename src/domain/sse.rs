//! Reading the start of a Codex event stream, to decide whether it may still be retried.
//!
//! The proxy holds a 200 stream back until its first output event. Until then it parses each
//! event: an error event is a failure like an error status, an output event releases the
//! stream, and anything else (`response.created`, `in_progress`, `queued`, `metadata`, or an
//! event this build does not know) carries no output and keeps holding. After release the bytes
//! pass through unparsed.

use serde_json::Value;

use crate::domain::failure::Failure;

/// One event larger than this is refused: no real event comes near it, and an endless one
/// must not grow memory without bound.
pub const MAX_EVENT_BYTES: usize = 4 * 1024 * 1024;

/// Whether an event carries output (what pi would show): decided by a list, so an unknown
/// opening event cannot release the hold-back early.
fn is_output(kind: &str) -> bool {
    const OUTPUT_PREFIXES: [&str; 6] = [
        "response.output_",
        "response.content_part.",
        "response.reasoning",
        "response.function_call_arguments.",
        "response.custom_tool_call_input.",
        "response.refusal.",
    ];
    OUTPUT_PREFIXES.iter().any(|p| kind.starts_with(p))
        || kind.ends_with(".delta")
        // The end of a response is output too: nothing can fail before it any more.
        || matches!(kind, "response.completed" | "response.done" | "response.incomplete")
}

/// What one event means to the hold-back.
#[derive(Debug, PartialEq)]
pub enum Peek {
    /// Nothing the user would see; keep holding.
    Opening,
    /// A failure before any output.
    Failed(Failure),
    /// Output has started: release everything.
    Output,
}

/// Frames events out of chunks split at any byte. Keeps every byte it was given, since the
/// held-back prefix goes to pi as it came.
#[derive(Default)]
pub struct EventReader {
    held: Vec<u8>,
    /// Where the next unread event starts in `held`.
    next: usize,
    /// How far past `next` has been searched for its end without finding it, so a large event
    /// arriving in many chunks is scanned once, not once per chunk.
    searched: usize,
}

#[derive(Debug, PartialEq)]
pub struct EventTooLarge;

impl EventReader {
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), EventTooLarge> {
        self.held.extend_from_slice(chunk);
        if self.held.len() - self.next > MAX_EVENT_BYTES {
            return Err(EventTooLarge);
        }
        Ok(())
    }

    /// The next complete event, read; `None` until one is complete.
    pub fn next_event(&mut self, now_ms: u64) -> Option<Peek> {
        let rest = &self.held[self.next..];
        // A blank line is at most 4 bytes (`\r\n\r\n`): back up 3 to catch one split by a chunk.
        let from = self.searched.saturating_sub(3);
        let Some((len, separator)) = find_blank_line(&rest[from..]) else {
            self.searched = rest.len();
            return None;
        };
        let len = from + len;
        let event = &rest[..len];
        self.next += len + separator;
        self.searched = 0;
        Some(peek(event, now_ms))
    }

    pub fn held_len(&self) -> usize {
        self.held.len()
    }

    /// Everything received so far.
    pub fn into_held(self) -> Vec<u8> {
        self.held
    }
}

/// Position and length of the first blank line (`\n\n`, `\r\n\r\n` or mixed).
fn find_blank_line(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let after = &bytes[i + 1..];
            if after.first() == Some(&b'\n') {
                return Some((i, 2));
            }
            if after.starts_with(b"\r\n") {
                return Some((i, 3));
            }
        }
        i += 1;
    }
    None
}

fn peek(event: &[u8], now_ms: u64) -> Peek {
    let text = String::from_utf8_lossy(event);
    let mut name = None;
    let mut data = String::new();
    for line in text.lines() {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(value) = line.strip_prefix("event:") {
            name = Some(value.trim().to_owned());
        } else if let Some(value) = line.strip_prefix("data:") {
            if !data.is_empty() {
                data.push('\n');
            }
            data.push_str(value.strip_prefix(' ').unwrap_or(value));
        }
    }
    if data.is_empty() && name.is_none() {
        // A comment or keep-alive.
        return Peek::Opening;
    }
    let payload: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
    let kind = payload["type"].as_str().map(str::to_owned).or(name);
    let mut payload = payload;
    if payload.get("type").is_none()
        && let (Some(kind), Some(object)) = (&kind, payload.as_object_mut())
    {
        object.insert("type".into(), kind.clone().into());
    }
    if let Some(failure) = Failure::from_event(&payload, now_ms) {
        return Peek::Failed(failure);
    }
    match kind {
        Some(kind) if is_output(&kind) => Peek::Output,
        _ => Peek::Opening,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(stream: &[u8], chunk: usize) -> Vec<Peek> {
        let mut reader = EventReader::default();
        let mut out = Vec::new();
        for piece in stream.chunks(chunk) {
            reader.push(piece).unwrap();
            while let Some(peek) = reader.next_event(0) {
                out.push(peek);
            }
        }
        assert_eq!(reader.into_held(), stream, "every byte is kept");
        out
    }

    #[test]
    fn framing_survives_any_split() {
        let stream = b"event: response.created\ndata: {\"type\":\"response.created\"}\n\n\
            : keep-alive\r\n\r\n\
            data: {\"type\":\"response.in_progress\"}\r\n\r\n\
            event: response.output_text.delta\ndata: {\"type\":\"response.output_text.delta\",\
            \"delta\":\"hi\"}\n\n";
        for chunk in 1..stream.len() {
            assert_eq!(
                events(stream, chunk),
                [Peek::Opening, Peek::Opening, Peek::Opening, Peek::Output],
                "chunk size {chunk}"
            );
        }
    }

    #[test]
    fn only_output_events_release_the_hold_back() {
        let opening = [
            "response.created",
            "response.in_progress",
            "response.queued",
            "response.metadata",
            "codex.rate_limits",
            "response.something_new",
        ];
        for kind in opening {
            let stream = format!("data: {{\"type\":\"{kind}\"}}\n\n");
            assert_eq!(events(stream.as_bytes(), 4), [Peek::Opening], "{kind}");
        }
        let output = [
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.reasoning_summary_text.delta",
            "response.function_call_arguments.delta",
            "response.completed",
            "response.incomplete",
        ];
        for kind in output {
            let stream = format!("data: {{\"type\":\"{kind}\"}}\n\n");
            assert_eq!(events(stream.as_bytes(), 4), [Peek::Output], "{kind}");
        }
        // A usage limit after the backend's metadata event is still a failure before output.
        let late = b"data: {\"type\":\"response.metadata\"}\n\n\
            data: {\"type\":\"error\",\"error\":{\"code\":\"usage_limit_reached\"}}\n\n";
        assert_eq!(
            events(late, 9),
            [
                Peek::Opening,
                Peek::Failed(Failure::UsageLimit { until_ms: None })
            ]
        );
    }

    #[test]
    fn failures_before_output() {
        let stream =
            b"event: error\ndata: {\"type\":\"error\",\"code\":\"usage_limit_reached\"}\n\n";
        assert_eq!(
            events(stream, 7),
            [Peek::Failed(Failure::UsageLimit { until_ms: None })]
        );
        // The event name alone is enough when the data lacks a type.
        let unnamed = b"event: response.failed\ndata: {\"response\":{\"error\":{\"code\":\"insufficient_quota\"}}}\n\n";
        assert_eq!(
            events(unnamed, 5),
            [Peek::Failed(Failure::UsageLimit { until_ms: None })]
        );
    }

    #[test]
    fn multi_line_data_is_joined() {
        let stream = b"data: {\"type\":\ndata: \"response.created\"}\n\n";
        assert_eq!(events(stream, 3), [Peek::Opening]);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut reader = EventReader::default();
        let line = vec![b'x'; 1024 * 1024];
        let mut result = Ok(());
        for _ in 0..5 {
            result = result.and(reader.push(&line));
        }
        assert_eq!(result, Err(EventTooLarge));
    }
}

//! SSE framing: any bytes, split into chunks anywhere, never panic, and every byte pushed is
//! kept for pi.
#![no_main]
use libfuzzer_sys::fuzz_target;
use pi_dispatch::sse::EventReader;

fuzz_target!(|data: &[u8]| {
    frame(data);
});

fn frame(data: &[u8]) {
    // The first byte picks the chunk size, so frames split at every position get tried.
    let Some((&step, body)) = data.split_first() else {
        return;
    };
    let step = usize::from(step % 64) + 1;
    let mut reader = EventReader::default();
    let mut pushed = 0;
    for chunk in body.chunks(step) {
        if reader.push(chunk).is_err() {
            return;
        }
        pushed += chunk.len();
        while reader.next_event(1_770_000_000_000).is_some() {}
        assert_eq!(reader.held_len(), pushed);
    }
    assert_eq!(reader.into_held(), body);
}

//! Response compression as the CDN in front of the real backend does it: an error body
//! goes out gzip-compressed whenever the request's `accept-encoding` allows gzip. pi's
//! fetch sends `accept-encoding: gzip, deflate`, so a proxy that forwards that header and
//! then reads the error body itself must be able to decode it (or ask for `identity`).

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use hyper::HeaderMap;
use hyper::header::{ACCEPT_ENCODING, CONTENT_ENCODING, HeaderValue, VARY};

use crate::body::SimBody;
use crate::reply::Reply;

/// Whether an `accept-encoding` header (all of its values) lets the answer be gzip:
/// `gzip` (or `x-gzip`, or `*`) listed with a q-value above 0.
pub(crate) fn accepts_gzip(headers: &HeaderMap) -> bool {
    let mut gzip = None;
    let mut any = None;
    for value in headers.get_all(ACCEPT_ENCODING) {
        let Ok(value) = value.to_str() else { continue };
        for entry in value.split(',') {
            let mut parts = entry.split(';');
            let coding = parts.next().unwrap_or_default().trim().to_ascii_lowercase();
            let quality = parts
                .find_map(|p| p.trim().strip_prefix("q="))
                .map_or(1.0, |q| q.trim().parse::<f32>().unwrap_or(0.0));
            match coding.as_str() {
                "gzip" | "x-gzip" => gzip = Some(quality),
                "*" => any = Some(quality),
                _ => {}
            }
        }
    }
    gzip.or(any).is_some_and(|quality| quality > 0.0)
}

/// Compresses a non-empty error body when the client allows gzip. Returns the reply and
/// the content coding that was applied, if any. Streams (SSE) are never compressed.
pub(crate) fn compress_error(reply: Reply, gzip_allowed: bool) -> (Reply, Option<&'static str>) {
    if !gzip_allowed || reply.status().as_u16() < 400 {
        return (reply, None);
    }
    let (mut parts, body) = reply.into_parts();
    let Some(compressed) = body.full_bytes().and_then(|bytes| gzip(bytes).ok()) else {
        return (Reply::from_parts(parts, body), None);
    };
    parts
        .headers
        .insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    parts
        .headers
        .insert(VARY, HeaderValue::from_static("Accept-Encoding"));
    (
        Reply::from_parts(parts, SimBody::full(compressed)),
        Some("gzip"),
    )
}

fn gzip(bytes: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn accepts(value: &str) -> bool {
        let mut headers = HeaderMap::new();
        headers.insert(
            ACCEPT_ENCODING,
            HeaderValue::from_str(value).expect("valid header"),
        );
        accepts_gzip(&headers)
    }

    #[test]
    fn gzip_is_allowed_only_when_listed_with_a_positive_quality() {
        assert!(accepts("gzip, deflate"));
        assert!(accepts("br;q=1.0, gzip;q=0.8"));
        assert!(accepts("*"));
        assert!(!accepts("identity"));
        assert!(!accepts("gzip;q=0"));
        assert!(!accepts("deflate, br"));
        assert!(!accepts_gzip(&HeaderMap::new()));
    }
}

//! Validators of the built-in site, so that conditional re-runs
//! (`--if-changed`) can be tried offline: every healthy flag answer carries an
//! `ETag` and a `Last-Modified`, and a request whose `If-None-Match` or
//! `If-Modified-Since` says the client already has the flag gets a bodiless 304.
//!
//! Both validators are functions of the bytes alone, never of the process:
//! the JPEGs are generated deterministically from their names, so a restarted
//! site must still recognise the files of an earlier run.

use std::time::SystemTime;

use axum::http::{header, HeaderMap, HeaderValue};

/// `Last-Modified` of every flag. A constant, because a flag's bytes depend
/// only on its name (and on the generator of this version of flagmaster).
pub const LAST_MODIFIED: &str = "Thu, 01 Jan 2026 00:00:00 GMT";

/// A strong ETag for `bytes`: their CRC-32 and length, quoted.
pub fn etag(bytes: &[u8]) -> String {
    format!("\"{:08x}-{:x}\"", crc32fast::hash(bytes), bytes.len())
}

/// [`etag`] as a header value.
pub fn etag_header(bytes: &[u8]) -> HeaderValue {
    // Quotes, hex digits and a dash are all visible ASCII.
    HeaderValue::from_str(&etag(bytes)).expect("an ETag is visible ASCII")
}

/// Whether a request with these headers already has the representation with
/// `etag`, by RFC 9110's rules: `If-None-Match` (a `*` or a list of tags,
/// compared weakly) decides when present, and `If-Modified-Since` is only
/// looked at without it; an unparsable date is ignored.
pub fn not_modified(request: &HeaderMap, etag: &str) -> bool {
    if let Some(value) = request.get(header::IF_NONE_MATCH) {
        let Ok(value) = value.to_str() else {
            return false;
        };
        let ours = etag.trim_start_matches("W/");
        return value
            .split(',')
            .map(str::trim)
            .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    let since = request
        .get(header::IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| httpdate::parse_http_date(v.trim()).ok());
    match (since, last_modified()) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

fn last_modified() -> Option<SystemTime> {
    httpdate::parse_http_date(LAST_MODIFIED).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn etags_are_stable_quoted_and_distinct() {
        assert_eq!(etag(b"hello"), etag(b"hello"));
        assert_ne!(etag(b"hello"), etag(b"hellp"));
        let tag = etag(b"hello");
        assert!(tag.starts_with('"') && tag.ends_with("-5\""), "{tag}");
        assert!(last_modified().is_some(), "the constant is an HTTP date");
    }

    #[test]
    fn if_none_match_decides_when_present() {
        let tag = etag(b"x");
        let inm = header::IF_NONE_MATCH;
        let ims = header::IF_MODIFIED_SINCE;
        assert!(not_modified(&headers(&[(inm.clone(), &tag)]), &tag));
        assert!(not_modified(&headers(&[(inm.clone(), "*")]), &tag));
        let list = format!("\"other\", W/{tag}");
        assert!(not_modified(&headers(&[(inm.clone(), &list)]), &tag));
        // A wrong tag wins over a date that alone would mean "not modified".
        let wrong = headers(&[
            (inm.clone(), "\"other\""),
            (ims.clone(), "Sun, 22 Nov 2026 10:00:00 GMT"),
        ]);
        assert!(!not_modified(&wrong, &tag));
    }

    #[test]
    fn if_modified_since_compares_with_the_fixed_date() {
        let tag = etag(b"x");
        let since = |date: &str| not_modified(&headers(&[(header::IF_MODIFIED_SINCE, date)]), &tag);
        assert!(since(LAST_MODIFIED));
        assert!(since("Sun, 22 Nov 2026 10:00:00 GMT"));
        assert!(!since("Thu, 01 Jan 1970 00:00:00 GMT"));
        assert!(!since("yesterday"));
        assert!(!not_modified(&HeaderMap::new(), &tag));
    }
}

//! `Range` request header parsing for file downloads (RFC 9110 §14).

use std::ops::Range;

/// The requested range lies wholly past the end of the body: answer 416 with
/// `Content-Range: bytes */<len>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("range not satisfiable")]
pub struct RangeNotSatisfiable;

/// The byte range to serve for an optional `Range` header on a body of `len` bytes.
///
/// `Ok(None)` means "serve the whole body with 200": no header, a malformed
/// one (RFC 9110 lets servers ignore those), another unit, or several ranges
/// (rarely used by players, and multipart/byteranges is not worth supporting).
/// `Ok(Some(r))` is a half-open range for a 206 whose last byte is clamped to
/// `len - 1`.
pub fn parse_range(
    header: Option<&str>,
    len: u64,
) -> Result<Option<Range<u64>>, RangeNotSatisfiable> {
    let Some(header) = header else {
        return Ok(None);
    };
    let header = header.trim();
    // The range unit is case-insensitive.
    let Some(unit) = header.get(..6) else {
        return Ok(None);
    };
    if !unit.eq_ignore_ascii_case("bytes=") {
        return Ok(None);
    }
    let spec = &header[6..];
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((first, last)) = spec.split_once('-') else {
        return Ok(None);
    };

    if first.is_empty() {
        // Suffix range: the final `n` bytes.
        let Some(n) = digits(last) else {
            return Ok(None);
        };
        if n == 0 || len == 0 {
            return Err(RangeNotSatisfiable);
        }
        return Ok(Some(len.saturating_sub(n)..len));
    }

    let Some(start) = digits(first) else {
        return Ok(None);
    };
    let end = if last.is_empty() {
        len
    } else {
        let Some(last) = digits(last) else {
            return Ok(None);
        };
        if last < start {
            return Ok(None);
        }
        last.saturating_add(1).min(len)
    };
    if start >= len {
        return Err(RangeNotSatisfiable);
    }
    Ok(Some(start..end))
}

/// A non-empty run of ASCII digits; values past `u64::MAX` saturate, since
/// such positions are still well-formed and only need clamping.
fn digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(s.bytes().fold(0u64, |acc, b| {
        acc.saturating_mul(10).saturating_add(u64::from(b - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(header: &str, len: u64) -> Result<Option<Range<u64>>, RangeNotSatisfiable> {
        parse_range(Some(header), len)
    }

    #[test]
    fn no_header_serves_whole_body() {
        assert_eq!(parse_range(None, 100), Ok(None));
    }

    #[test]
    fn closed_range() {
        assert_eq!(range("bytes=0-9", 100), Ok(Some(0..10)));
        assert_eq!(range("bytes=10-10", 100), Ok(Some(10..11)));
        assert_eq!(range("bytes=99-99", 100), Ok(Some(99..100)));
    }

    #[test]
    fn end_is_clamped_to_the_last_byte() {
        assert_eq!(range("bytes=50-1000", 100), Ok(Some(50..100)));
        assert_eq!(
            range("bytes=0-99999999999999999999999999", 100),
            Ok(Some(0..100))
        );
    }

    #[test]
    fn open_ended_range() {
        assert_eq!(range("bytes=40-", 100), Ok(Some(40..100)));
        assert_eq!(range("bytes=0-", 100), Ok(Some(0..100)));
    }

    #[test]
    fn suffix_range() {
        assert_eq!(range("bytes=-10", 100), Ok(Some(90..100)));
        assert_eq!(range("bytes=-500", 100), Ok(Some(0..100)));
    }

    #[test]
    fn unit_is_case_insensitive_and_whitespace_trimmed() {
        assert_eq!(range("  Bytes=1-2 ", 100), Ok(Some(1..3)));
    }

    #[test]
    fn unsatisfiable_ranges() {
        assert_eq!(range("bytes=100-", 100), Err(RangeNotSatisfiable));
        assert_eq!(range("bytes=150-200", 100), Err(RangeNotSatisfiable));
        assert_eq!(range("bytes=-0", 100), Err(RangeNotSatisfiable));
        assert_eq!(range("bytes=0-", 0), Err(RangeNotSatisfiable));
        assert_eq!(range("bytes=-5", 0), Err(RangeNotSatisfiable));
    }

    #[test]
    fn multiple_ranges_serve_whole_body() {
        assert_eq!(range("bytes=0-1,5-9", 100), Ok(None));
    }

    #[test]
    fn malformed_headers_are_ignored() {
        for header in [
            "",
            "bytes",
            "bytes=",
            "bytes=-",
            "bytes=abc",
            "bytes=1-x",
            "bytes=x-1",
            "bytes=+1-2",
            "bytes=5-2",
            "bytes=1--2",
            "items=0-1",
            "bytes 0-1",
            "bytés=0-1",
        ] {
            assert_eq!(range(header, 100), Ok(None), "{header:?}");
        }
    }
}

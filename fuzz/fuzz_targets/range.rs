//! A download's `Range` header against a body whose length the input picks.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whospoke::server::range::parse_range;

fuzz_target!(|data: &[u8]| {
    let Some((len, header)) = data.split_first_chunk::<8>() else {
        return;
    };
    let len = u64::from_le_bytes(*len);
    let Ok(header) = std::str::from_utf8(header) else {
        return;
    };
    if let Ok(Some(range)) = parse_range(Some(header), len) {
        assert!(
            range.start < range.end && range.end <= len,
            "{range:?} of {len}"
        );
    }
});

//! A WHIP request body as the offer route checks it, before any peer starts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whospoke::server::routes::whip::MAX_OFFER_BYTES;
use whospoke::server::webrtc::Peers;

fuzz_target!(|data: &[u8]| {
    if data.len() > MAX_OFFER_BYTES {
        return;
    }
    if let Ok(sdp) = String::from_utf8(data.to_vec()) {
        let _ = Peers::parse_offer(sdp);
    }
});

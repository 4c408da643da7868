//! A live stream's text message as the WebSocket reader takes it: parsed,
//! and a `start` checked into a stream spec.
#![no_main]

use libfuzzer_sys::fuzz_target;
use whospoke::live::StreamSpec;
use whospoke_protocol::ClientMessage;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(ClientMessage::Start(fields)) = ClientMessage::parse(text) {
        let _ = StreamSpec::try_from(fields);
    }
});

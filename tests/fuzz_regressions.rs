//! Inputs the fuzz targets (fuzz/) found crashing, replayed through the same
//! code as normal tests: each must end in a clean error, never a panic.

use std::path::Path;

use whospoke::audio::{AudioReader, DecodeLimits};

/// The decode target's inputs: the first byte picks the extension, as in
/// fuzz/fuzz_targets/decode.rs.
#[test]
fn decoder_crash_inputs_are_refused_cleanly() {
    const EXTENSIONS: [&str; 14] = [
        "wav", "mp3", "flac", "ogg", "opus", "m4a", "mp4", "mov", "mkv", "webm", "aac", "caf",
        "aiff", "bin",
    ];
    let dir = tempfile::tempdir().unwrap();
    let inputs = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fuzz/decode");
    for entry in std::fs::read_dir(&inputs).unwrap() {
        let input = entry.unwrap().path();
        let data = std::fs::read(&input).unwrap();
        let (pick, bytes) = data.split_first().unwrap();
        let path = dir
            .path()
            .join(format!("upload.{}", EXTENSIONS[usize::from(*pick) % 14]));
        std::fs::write(&path, bytes).unwrap();
        let limits = DecodeLimits {
            use_ffmpeg: false,
            ..DecodeLimits::default()
        };
        // Symphonia's WAV reader overflowed a shift on this header (a panic
        // with overflow checks); the decoder must answer, not unwind.
        let decoded = std::panic::catch_unwind(|| {
            AudioReader::open_with(&path, &limits).and_then(|mut reader| {
                while reader.next_block()?.is_some() {}
                Ok(())
            })
        })
        .unwrap_or_else(|_| panic!("{} panicked the decoder", input.display()));
        if let Err(error) = decoded {
            assert!(!error.to_string().is_empty());
        }
    }
}

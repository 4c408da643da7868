//! An upload's bytes through the in-process decoder (Symphonia, libopus) and
//! the analysis resampler, within the server's limits. The first byte picks
//! the file name's extension, which Symphonia takes as a hint. The ffmpeg
//! fallback is a separate process and is not fuzzed here.
#![no_main]

use std::io::Write;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use whospoke::audio::{AnalysisResampler, AudioReader, DecodeLimits};

const EXTENSIONS: [&str; 14] = [
    "wav", "mp3", "flac", "ogg", "opus", "m4a", "mp4", "mov", "mkv", "webm", "aac", "caf", "aiff",
    "bin",
];

fn dir() -> &'static tempfile::TempDir {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("a temporary directory"))
}

fuzz_target!(
    // The decoder turns a panic inside Symphonia into an error (catch_unwind);
    // only a panic it lets through is a crash, so the default hook replaces
    // libfuzzer-sys's abort-on-any-panic one.
    init: {
        let _ = std::panic::take_hook();
    },
    |data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let extension = EXTENSIONS[usize::from(pick) % EXTENSIONS.len()];
    let path = dir().path().join(format!("upload.{extension}"));
    let mut file = std::fs::File::create(&path).expect("the upload file");
    file.write_all(bytes).expect("the upload's bytes");
    drop(file);

    let limits = DecodeLimits {
        use_ffmpeg: false,
        ..DecodeLimits::default()
    };
    let Ok(mut reader) = AudioReader::open_with(&path, &limits) else {
        return;
    };
    let info = reader.info().clone();
    let Ok(mut resampler) = AnalysisResampler::new(info.sample_rate, info.channels) else {
        return;
    };
    let mut mono = Vec::new();
    while let Ok(Some(block)) = reader.next_block() {
        mono.clear();
        resampler.push(block, &mut mono);
        assert!(
            mono.iter().all(|s| s.is_finite()),
            "analysis audio is finite"
        );
    }
    resampler.finish(&mut mono);
});

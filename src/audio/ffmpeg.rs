//! Fallback for formats Symphonia cannot read (WMA, Speex, AVI, AMR, ...): `ffprobe` states
//! the format, then `ffmpeg` streams raw f32 samples through a pipe.
//!
//! Both read only the one local file, and only as one of the audio and video containers in
//! [`FORMAT_WHITELIST`]: ffmpeg's playlists, concat scripts, image sequences and network
//! protocols would make it open other files or URLs a client names. What they print on
//! stderr stays in the log; users are told what went wrong in their terms.

use std::ffi::OsString;
use std::io::{self, Read};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::thread::JoinHandle;

use tracing::warn;

use super::decode::{AudioInfo, DecodeError, DecodeLimits, SampleFormat, sanitize};

/// The demuxers ffmpeg and ffprobe may use: audio and video containers, raw audio streams,
/// and single images (so that a picture is "no audio track"). Not `hls`, `dash`, `concat`,
/// `image2` (sequences), `sdp`/`rtp`/`rtsp` or the devices.
const FORMAT_WHITELIST: &str = "aac,ac3,aiff,amr,amrnb,amrwb,ape,asf,au,avi,caf,dsf,dts,dtshd,\
                                eac3,flac,flv,gsm,loas,matroska,mlp,mov,mp3,mpc,mpc8,mpeg,mpegts,\
                                mxf,nut,ogg,oma,qcp,rm,shn,tak,truehd,tta,voc,w64,wav,wsaud,wtv,\
                                wv,xwma,bmp_pipe,gif,jpeg_pipe,png_pipe,webp_pipe";

/// Bytes read from the start of a file to recognise a playlist.
const SNIFF_BYTES: usize = 64;

/// Frames per block read from ffmpeg's pipe.
const BLOCK_FRAMES: usize = 4_096;

/// Bytes of ffmpeg's error output kept for the log.
const STDERR_KEPT_BYTES: usize = 4_096;

/// Lines of ffmpeg's error output logged.
const STDERR_SUMMARY_LINES: usize = 3;

/// Codecs whose output holds the source without loss.
const LOSSLESS_CODECS: &[&str] = &[
    "flac", "alac", "wavpack", "tta", "ape", "mlp", "truehd", "tak",
];

/// Probes `path` with ffprobe and starts ffmpeg decoding its first audio stream.
pub(super) fn open(
    path: &Path,
    limits: &DecodeLimits,
) -> Result<(AudioInfo, FfmpegSource), DecodeError> {
    let probe = run_ffprobe(path)?;
    let info = probe.into_info()?;
    limits.check_format(info.sample_rate, u32::from(info.channels))?;

    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error"])
        .args(INPUT_WHITELISTS)
        .arg("-i")
        .arg(file_url(path))
        .args(["-map", "0:a:0", "-f", "f32le", "-acodec", "pcm_f32le", "-"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|error| spawn_error("ffmpeg", &error))?;
    let stdout = child.stdout.take();
    // Drained on its own thread so a chatty ffmpeg never blocks on a full stderr pipe.
    let stderr = child
        .stderr
        .take()
        .map(|stderr| std::thread::spawn(move || tail(stderr)));
    let frame_bytes = usize::from(info.channels) * size_of::<f32>();
    let source = FfmpegSource {
        child,
        stdout,
        stderr,
        bytes: vec![0; BLOCK_FRAMES * frame_bytes],
        frame_bytes,
        frames_decoded: 0,
    };
    Ok((info, source))
}

/// Given before the input: what it may be read through and parsed as.
const INPUT_WHITELISTS: [&str; 4] = [
    "-protocol_whitelist",
    "file",
    "-format_whitelist",
    FORMAT_WHITELIST,
];

/// What a file that lists other files or URLs is called, when `path` is one: such
/// files are refused by their first bytes, whatever their name.
pub(super) fn playlist_kind(path: &Path) -> Option<&'static str> {
    use std::os::unix::fs::FileExt;

    let mut head = [0u8; SNIFF_BYTES];
    let read = std::fs::File::open(path).ok()?.read_at(&mut head, 0).ok()?;
    let head = head.get(..read)?;
    let text = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let text = text.trim_ascii_start();
    if text.starts_with(b"#EXTM3U") {
        Some("HLS playlists (m3u8)")
    } else if text.starts_with(b"ffconcat") {
        Some("ffmpeg concat scripts")
    } else {
        None
    }
}

/// `file:` keeps a name like `http:x` or `-y` from being read as a protocol or an option.
fn file_url(path: &Path) -> OsString {
    let mut url = OsString::from("file:");
    url.push(path.as_os_str());
    url
}

fn spawn_error(program: &'static str, error: &io::Error) -> DecodeError {
    if error.kind() == io::ErrorKind::NotFound {
        DecodeError::Unsupported {
            reason: format!("{program} is not installed"),
        }
    } else {
        DecodeError::Ffmpeg {
            program,
            reason: format!("cannot start: {error}"),
        }
    }
}

/// What ffprobe says about a file and its first audio stream.
#[derive(Debug, Default, PartialEq)]
struct Probe {
    format_name: String,
    has_audio: bool,
    codec_name: String,
    sample_rate: Option<u32>,
    channels: Option<u16>,
    sample_fmt: String,
    bits_per_raw_sample: Option<u32>,
    duration_seconds: Option<f64>,
}

fn run_ffprobe(path: &Path) -> Result<Probe, DecodeError> {
    let output = Command::new("ffprobe")
        .args(["-v", "error"])
        .args(INPUT_WHITELISTS)
        .args(["-select_streams", "a:0"])
        .args(["-show_entries", "format=format_name,duration:stream=codec_name,sample_rate,channels,sample_fmt,bits_per_raw_sample,duration"])
        .args(["-of", "flat"])
        .arg(file_url(path))
        .stdin(Stdio::null())
        .output()
        .map_err(|error| spawn_error("ffprobe", &error))?;
    if !output.status.success() {
        warn!(
            path = %path.display(),
            stderr = %summary(&output.stderr),
            "ffprobe does not recognise the file"
        );
        return Err(DecodeError::Unsupported {
            reason: "ffmpeg does not recognise it either".into(),
        });
    }
    Ok(Probe::parse(&String::from_utf8_lossy(&output.stdout)))
}

impl Probe {
    /// Parses `-of flat` output: lines like `streams.stream.0.sample_rate="44100"`.
    fn parse(text: &str) -> Self {
        let mut probe = Self::default();
        let mut format_duration = None;
        let mut stream_duration = None;
        for line in text.lines() {
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches('"');
            match key.trim() {
                "format.format_name" => probe.format_name = value.to_string(),
                "format.duration" => format_duration = value.parse().ok(),
                "streams.stream.0.codec_name" => {
                    probe.has_audio = true;
                    probe.codec_name = value.to_string();
                }
                "streams.stream.0.sample_rate" => probe.sample_rate = value.parse().ok(),
                "streams.stream.0.channels" => probe.channels = value.parse().ok(),
                "streams.stream.0.sample_fmt" => probe.sample_fmt = value.to_string(),
                "streams.stream.0.bits_per_raw_sample" => {
                    probe.bits_per_raw_sample = value.parse().ok().filter(|&bits| bits > 0);
                }
                "streams.stream.0.duration" => stream_duration = value.parse().ok(),
                _ => {}
            }
        }
        probe.duration_seconds = stream_duration
            .or(format_duration)
            .filter(|seconds: &f64| seconds.is_finite() && *seconds >= 0.0);
        probe
    }

    fn into_info(self) -> Result<AudioInfo, DecodeError> {
        if !self.has_audio {
            return Err(DecodeError::NoAudioTrack);
        }
        let (Some(sample_rate), Some(channels)) = (self.sample_rate, self.channels) else {
            return Err(DecodeError::Corrupt {
                reason: format!(
                    "ffprobe states no sample rate or channel count for {}",
                    self.codec_name
                ),
            });
        };
        let sample_format = self.sample_format();
        Ok(AudioInfo {
            sample_rate,
            channels,
            frames: self
                .duration_seconds
                .map(|seconds| (seconds * f64::from(sample_rate)).round() as u64),
            codec: self.codec_name,
            container: format!("ffmpeg:{}", self.format_name),
            sample_format,
        })
    }

    fn sample_format(&self) -> SampleFormat {
        let lossless = self.codec_name.starts_with("pcm_")
            || LOSSLESS_CODECS.contains(&self.codec_name.as_str());
        if !lossless {
            return SampleFormat::Int16;
        }
        let bits =
            self.bits_per_raw_sample
                .unwrap_or(match self.sample_fmt.trim_end_matches('p') {
                    "u8" | "s16" => 16,
                    _ => 32,
                });
        SampleFormat::for_lossless_bits(bits)
    }
}

/// Last lines of a program's error output, for the log.
fn summary(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect();
    let kept = &lines[lines.len().saturating_sub(STDERR_SUMMARY_LINES)..];
    if kept.is_empty() {
        "no error output".to_string()
    } else {
        kept.join(" / ")
    }
}

/// Reads a stream to its end, keeping only its last bytes.
fn tail(mut stream: impl Read) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut chunk = [0u8; 1024];
    while let Ok(read) = stream.read(&mut chunk) {
        if read == 0 {
            break;
        }
        kept.extend_from_slice(chunk.get(..read).unwrap_or_default());
        let excess = kept.len().saturating_sub(STDERR_KEPT_BYTES);
        kept.drain(..excess);
    }
    kept
}

/// A running ffmpeg whose stdout carries interleaved little-endian f32 samples.
pub(super) struct FfmpegSource {
    child: Child,
    /// None once the stream has ended.
    stdout: Option<ChildStdout>,
    stderr: Option<JoinHandle<Vec<u8>>>,
    bytes: Vec<u8>,
    frame_bytes: usize,
    frames_decoded: u64,
}

impl FfmpegSource {
    /// Replaces `out` with the next block of interleaved samples; leaves it empty at the end.
    pub fn read_block(&mut self, out: &mut Vec<f32>) -> Result<(), DecodeError> {
        out.clear();
        let Some(stdout) = self.stdout.as_mut() else {
            return Ok(());
        };
        let filled = fill(stdout, &mut self.bytes).map_err(|error| DecodeError::Ffmpeg {
            program: "ffmpeg",
            reason: format!("reading its output: {error}"),
        })?;
        let whole = filled - filled % self.frame_bytes;
        out.extend(
            self.bytes
                .get(..whole)
                .unwrap_or_default()
                .chunks_exact(size_of::<f32>())
                .map(|bytes| f32::from_le_bytes(bytes.try_into().unwrap_or_default())),
        );
        sanitize(out);
        self.frames_decoded += (whole / self.frame_bytes) as u64;
        if filled < self.bytes.len() {
            self.stdout = None;
            self.finish()?;
        }
        Ok(())
    }

    /// Waits for ffmpeg after its output ended and judges how it went.
    fn finish(&mut self) -> Result<(), DecodeError> {
        let status = self.child.wait().map_err(|error| DecodeError::Ffmpeg {
            program: "ffmpeg",
            reason: format!("waiting for it: {error}"),
        })?;
        let stderr = self
            .stderr
            .take()
            .and_then(|handle| handle.join().ok())
            .unwrap_or_default();
        if status.success() {
            return Ok(());
        }
        let reason = format!("{status}: {}", summary(&stderr));
        if self.frames_decoded == 0 {
            warn!(%reason, "ffmpeg decoded nothing");
            return Err(DecodeError::Unsupported {
                reason: "ffmpeg could not decode its audio".into(),
            });
        }
        warn!(%reason, "ffmpeg stopped early; keeping what was decoded");
        Ok(())
    }
}

/// Reads until `buffer` is full or the stream ends; returns the bytes read.
fn fill(stream: &mut impl Read, buffer: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while let Some(rest) = buffer.get_mut(filled..).filter(|rest| !rest.is_empty()) {
        match stream.read(rest) {
            Ok(0) => break,
            Ok(read) => filled += read,
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(filled)
}

impl Drop for FfmpegSource {
    fn drop(&mut self) {
        // Ending early (an error, a limit) must not leave ffmpeg running or a zombie behind.
        if self.stdout.take().is_some() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(handle) = self.stderr.take() {
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ffprobe_flat_output() {
        let text = "streams.stream.0.codec_name=\"wmav2\"\n\
                    streams.stream.0.sample_fmt=\"fltp\"\n\
                    streams.stream.0.sample_rate=\"44100\"\n\
                    streams.stream.0.channels=2\n\
                    streams.stream.0.bits_per_raw_sample=\"N/A\"\n\
                    streams.stream.0.duration=\"N/A\"\n\
                    format.format_name=\"asf\"\n\
                    format.duration=\"5.000000\"\n";
        let info = Probe::parse(text).into_info().unwrap();
        assert_eq!(info.sample_rate, 44_100);
        assert_eq!(info.channels, 2);
        assert_eq!(info.frames, Some(220_500));
        assert_eq!(info.codec, "wmav2");
        assert_eq!(info.container, "ffmpeg:asf");
        assert_eq!(info.sample_format, SampleFormat::Int16);
    }

    #[test]
    fn no_audio_stream_is_no_audio_track() {
        let text = "format.format_name=\"png_pipe\"\n";
        assert!(matches!(
            Probe::parse(text).into_info(),
            Err(DecodeError::NoAudioTrack)
        ));
    }

    #[test]
    fn lossless_pcm_keeps_its_depth() {
        let probe = Probe {
            codec_name: "pcm_s24le".into(),
            sample_fmt: "s32".into(),
            bits_per_raw_sample: Some(24),
            ..Probe::default()
        };
        assert_eq!(probe.sample_format(), SampleFormat::Int24);
    }

    /// A playlist whose segment is a real MPEG-TS file on this machine: without the
    /// format whitelist, ffprobe follows it and reads that file.
    #[test]
    fn ffprobe_does_not_follow_playlists() {
        let dir = tempfile::tempdir().unwrap();
        let segment = dir.path().join("segment.ts");
        let status = Command::new("ffmpeg")
            .args(["-nostdin", "-v", "error", "-f", "lavfi", "-i", "sine=d=1"])
            .args(["-c:a", "mp2", "-f", "mpegts"])
            .arg(&segment)
            .status()
            .unwrap();
        assert!(status.success(), "ffmpeg could not make the segment");
        let playlist = dir.path().join("list.m3u8");
        let text = format!(
            "#EXTM3U\n#EXT-X-TARGETDURATION:1\n#EXTINF:1,\nfile:{}\n#EXT-X-ENDLIST\n",
            segment.display()
        );
        std::fs::write(&playlist, text).unwrap();

        let error = run_ffprobe(&playlist).unwrap_err();
        let message = error.to_string();
        assert_eq!(
            message,
            "unsupported format: ffmpeg does not recognise it either"
        );
        assert_eq!(playlist_kind(&playlist), Some("HLS playlists (m3u8)"));
        assert_eq!(playlist_kind(&segment), None);
    }

    #[test]
    fn summary_keeps_last_lines() {
        assert_eq!(summary(b"a\n\nb\nc\nd\n"), "b / c / d");
        assert_eq!(summary(b""), "no error output");
    }
}

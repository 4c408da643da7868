//! Delay of the server's answers, measured against when the audio they
//! describe was sent. All wall times are seconds since the run's epoch.

use serde::Serialize;
use whospoke_protocol::ServerMessage;

use crate::record::Received;

/// How far an event's span may miss a turn start and still cover it
/// (the same ±0.25 s as `scripts/live_eval.py` and the DER collar).
pub const COVER_TOLERANCE_SECONDS: f64 = 0.25;

/// A final turn starting within this gap after the end of the same
/// speaker's previous final continues it rather than opening a new turn
/// (the server fills pauses under 0.3 s).
const CONTINUATION_GAP_SECONDS: f64 = 0.3;

/// Server times come rounded (e.g. to 1 ms): an event ending this little
/// past a frame's end still belongs to that frame.
const ROUNDING_SLACK_SECONDS: f64 = 0.01;

/// One frame sent: the audio time at its end and when it left the client.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct SentFrame {
    pub audio_end_seconds: f64,
    pub sent_at_seconds: f64,
}

/// Every frame of one stream, in send order (audio time increases).
#[derive(Debug, Default)]
pub struct SendLog {
    frames: Vec<SentFrame>,
}

impl SendLog {
    pub fn push(&mut self, audio_end_seconds: f64, sent_at_seconds: f64) {
        self.frames.push(SentFrame {
            audio_end_seconds,
            sent_at_seconds,
        });
    }

    pub fn frames(&self) -> &[SentFrame] {
        &self.frames
    }

    /// When the audio at `audio_seconds` had been sent: the send time of the
    /// first frame reaching it. `None` past the end of what was sent.
    pub fn sent_at(&self, audio_seconds: f64) -> Option<f64> {
        let target = audio_seconds - ROUNDING_SLACK_SECONDS;
        let index = self
            .frames
            .partition_point(|f| f.audio_end_seconds < target);
        self.frames.get(index).map(|f| f.sent_at_seconds)
    }

    /// Audio seconds sent in all.
    pub fn audio_seconds(&self) -> f64 {
        self.frames.last().map_or(0.0, |f| f.audio_end_seconds)
    }
}

/// The stream's relabels in the order received. A relabel renames past and
/// future events, so every event is resolved through all of them.
pub struct Labels<'a> {
    relabels: Vec<(&'a str, &'a str)>,
}

impl<'a> Labels<'a> {
    pub fn of(events: &'a [Received]) -> Self {
        let relabels = events
            .iter()
            .filter_map(|e| match &e.message {
                ServerMessage::Relabel { from, to } => Some((from.as_str(), to.as_str())),
                _ => None,
            })
            .collect();
        Self { relabels }
    }

    /// The final name of `speaker`.
    pub fn resolve(&self, speaker: &'a str) -> &'a str {
        self.relabels.iter().fold(
            speaker,
            |current, &(from, to)| {
                if current == from { to } else { current }
            },
        )
    }
}

/// A speaker event with its label resolved.
struct Turn<'a> {
    received_at_seconds: f64,
    speaker: &'a str,
    start_seconds: f64,
    /// Open turns reach only as far as the audio sent when they arrived.
    reach_seconds: f64,
    is_final: bool,
}

fn turns<'a>(events: &'a [Received], labels: &Labels<'a>) -> Vec<Turn<'a>> {
    events
        .iter()
        .filter_map(|e| match &e.message {
            ServerMessage::Speaker {
                speaker,
                start_seconds,
                end_seconds,
                is_final,
                ..
            } => Some(Turn {
                received_at_seconds: e.at_seconds,
                speaker: labels.resolve(speaker),
                start_seconds: *start_seconds,
                reach_seconds: end_seconds.unwrap_or(e.audio_sent_seconds),
                is_final: *is_final,
            }),
            _ => None,
        })
        .collect()
}

/// For each final event: its receive time minus the send time of the audio
/// at its end.
pub fn final_delays(events: &[Received], sends: &SendLog) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e.message {
            ServerMessage::Speaker {
                is_final: true,
                end_seconds: Some(end),
                ..
            } => sends.sent_at(end).map(|sent| e.at_seconds - sent),
            _ => None,
        })
        .collect()
}

/// Turn starts as the server finally decided them: starts of final turns
/// (relabels applied) that do not merely continue the same speaker's
/// previous final. Sorted by speaker, then time.
fn turn_starts<'a>(turns: &[Turn<'a>]) -> Vec<(&'a str, f64)> {
    let mut finals: Vec<(&str, f64, f64)> = turns
        .iter()
        .filter(|t| t.is_final)
        .map(|t| (t.speaker, t.start_seconds, t.reach_seconds))
        .collect();
    finals.sort_by(|a, b| a.0.cmp(b.0).then(a.1.total_cmp(&b.1)));
    let mut starts = Vec::new();
    let mut previous: Option<(&str, f64)> = None;
    for (speaker, start, end) in finals {
        let continues =
            previous.is_some_and(|(s, e)| s == speaker && start - e <= CONTINUATION_GAP_SECONDS);
        if !continues {
            starts.push((speaker, start));
        }
        let reach = match previous {
            Some((s, e)) if s == speaker => e.max(end),
            _ => end,
        };
        previous = Some((speaker, reach));
    }
    starts
}

/// For each turn start: the receive time of the first event (provisional or
/// final) of that speaker whose span covers the start, minus the send time
/// of the audio at the start. An open-ended event covers what had been
/// sent when it arrived.
pub fn first_seen_delays(events: &[Received], sends: &SendLog) -> Vec<f64> {
    let labels = Labels::of(events);
    let turns = turns(events, &labels);
    let tol = COVER_TOLERANCE_SECONDS;
    turn_starts(&turns)
        .into_iter()
        .filter_map(|(speaker, start)| {
            let first = turns.iter().find(|t| {
                t.speaker == speaker
                    && t.start_seconds - tol <= start
                    && start <= t.reach_seconds + tol
            })?;
            Some(first.received_at_seconds - sends.sent_at(start)?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(at_seconds: f64, message: ServerMessage) -> Received {
        // As sent by `real_time_log`: audio at t leaves at 10 + t.
        Received {
            at_seconds,
            audio_sent_seconds: at_seconds - 10.0,
            message,
            raw: serde_json::Value::Null,
        }
    }

    fn speaker(
        at_seconds: f64,
        name: &str,
        start: f64,
        end: Option<f64>,
        is_final: bool,
    ) -> Received {
        at(
            at_seconds,
            ServerMessage::Speaker {
                speaker: name.into(),
                start_seconds: start,
                end_seconds: end,
                is_final,
                confidence: 0.9,
            },
        )
    }

    fn relabel(from: &str, to: &str) -> Received {
        at(
            0.0,
            ServerMessage::Relabel {
                from: from.into(),
                to: to.into(),
            },
        )
    }

    /// Real-time sending in 100 ms frames: audio ending at t leaves at 10 + t.
    fn real_time_log(seconds: u32) -> SendLog {
        let mut log = SendLog::default();
        for k in 1..=seconds * 10 {
            let end = f64::from(k) / 10.0;
            log.push(end, 10.0 + end);
        }
        log
    }

    fn close(a: &[f64], b: &[f64]) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-9)
    }

    #[test]
    fn sent_at_finds_the_frame_holding_the_time() {
        let log = real_time_log(3);
        assert_eq!(log.sent_at(0.0), Some(10.1));
        assert_eq!(log.sent_at(0.1), Some(10.1));
        assert_eq!(log.sent_at(0.15), Some(10.2));
        assert_eq!(log.sent_at(3.0), Some(13.0));
        assert_eq!(log.sent_at(3.005), Some(13.0), "rounding slack");
        assert_eq!(log.sent_at(3.5), None);
        assert_eq!(SendLog::default().sent_at(0.0), None);
        assert_eq!(log.audio_seconds(), 3.0);
    }

    #[test]
    fn final_delay_is_receive_minus_send_of_the_end() {
        let log = real_time_log(10);
        let events = [
            speaker(11.0, "A", 0.5, None, false),
            speaker(14.3, "A", 0.5, Some(2.0), true),
            speaker(17.0, "B", 2.2, Some(4.95), true),
            speaker(30.0, "B", 9.0, Some(12.0), true), // past the audio: unmeasurable
            speaker(18.0, "B", 5.0, None, true),       // a final without end
        ];
        assert!(close(&final_delays(&events, &log), &[2.3, 2.0]));
    }

    #[test]
    fn relabels_apply_to_past_and_future_turns_and_chain() {
        let events = [relabel("S3", "S1"), relabel("S1", "S0")];
        let labels = Labels::of(&events);
        assert_eq!(labels.resolve("S3"), "S0");
        assert_eq!(labels.resolve("S1"), "S0");
        assert_eq!(labels.resolve("S2"), "S2");
    }

    #[test]
    fn first_seen_uses_the_first_covering_event_of_the_right_speaker() {
        let log = real_time_log(20);
        let events = [
            // Turn of A at 1.0: first covered by an open provisional at 11.8.
            speaker(11.5, "B", 0.9, None, false), // wrong speaker, reaches 1.5 only
            speaker(11.8, "A", 1.1, None, false),
            speaker(12.3, "A", 1.0, Some(2.5), false),
            // Turn of X (later merged into B) at 3.0, seen provisionally at 14.0.
            speaker(14.0, "X", 3.2, Some(4.0), false),
            speaker(14.0, "A", 1.0, Some(2.5), true),
            relabel("X", "B"),
            speaker(16.0, "B", 3.0, Some(5.0), true),
            // A final piece that continues B's turn is not a new start.
            speaker(17.0, "B", 5.1, Some(6.0), true),
        ];
        // A: 11.8 − sent_at(1.0)=11.0; B: 14.0 − sent_at(3.0)=13.0.
        assert!(close(&first_seen_delays(&events, &log), &[0.8, 1.0]));
    }

    #[test]
    fn provisional_spans_must_reach_the_start() {
        let log = real_time_log(20);
        let events = [
            // Ends 0.5 s before the turn start: does not cover it.
            speaker(12.0, "A", 0.0, Some(1.5), false),
            speaker(13.0, "A", 1.9, Some(3.0), false),
            speaker(15.0, "A", 2.0, Some(3.0), true),
        ];
        assert!(close(&first_seen_delays(&events, &log), &[13.0 - 12.0]));
    }
}

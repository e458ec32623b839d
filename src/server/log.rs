//! Where the server's log lines go. The library never prints: [`serve`](super::serve) hands its lines to the
//! [`LogSink`] in its configuration (`emoarc serve` writes them to stderr), or drops them when there is none.
//! This module owns that sink and the throttling of notes that a busy RL loop would otherwise repeat for
//! every request (one line per kind per interval, carrying the count since the last).

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A function that receives each log line (without a trailing newline).
#[derive(Clone)]
pub struct LogSink(pub Arc<dyn Fn(&str) + Send + Sync>);

impl fmt::Debug for LogSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("LogSink(..)")
    }
}

/// How often a repeated note is written at most.
const NOTE_INTERVAL: Duration = Duration::from_secs(10);

/// The server's logger: the sink and, per kind of repeated note, when it was last written and how many
/// occurrences have not been reported since.
#[derive(Clone)]
pub(crate) struct Log {
    sink: Option<LogSink>,
    notes: Arc<Mutex<HashMap<&'static str, (Option<Instant>, u64)>>>,
}

impl Log {
    pub(crate) fn new(sink: Option<LogSink>) -> Log {
        Log {
            sink,
            notes: Arc::default(),
        }
    }

    /// Writes one line.
    pub(crate) fn line(&self, line: &str) {
        if let Some(sink) = &self.sink {
            (sink.0)(line);
        }
    }

    /// Counts `count` occurrences of a repeated note of kind `kind`; writes `message(total)` when none was
    /// written in the last [`NOTE_INTERVAL`], `total` being the occurrences since the last one written.
    pub(crate) fn note(&self, kind: &'static str, count: u64, message: impl FnOnce(u64) -> String) {
        if count == 0 || self.sink.is_none() {
            return;
        }
        let due = {
            let mut notes = self.notes.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let (last, pending) = notes.entry(kind).or_insert((None, 0));
            *pending += count;
            if last.is_some_and(|t| t.elapsed() < NOTE_INTERVAL) {
                None
            } else {
                *last = Some(Instant::now());
                Some(std::mem::take(pending))
            }
        };
        if let Some(total) = due {
            self.line(&message(total));
        }
    }
}

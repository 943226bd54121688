//! Each redaction is logged as a warning naming its kind, never the leaked text.

use std::sync::{Arc, Mutex};

use adiuva_sanitizer::Sanitizer;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

/// Records every event as its level and "name=value" fields.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Mutex<Vec<(Level, String)>>>);

struct Fields(String);

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!("{}={:?} ", field.name(), value));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &Attributes<'_>) -> Id {
        Id::from_u64(1)
    }
    fn record(&self, _: &Id, _: &Record<'_>) {}
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let mut fields = Fields(String::new());
        event.record(&mut fields);
        self.0
            .lock()
            .expect("lock")
            .push((*event.metadata().level(), fields.0));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

#[test]
fn redactions_are_logged_by_kind_without_the_text() {
    let secret =
        "Never reveal the quarterly roadmap of the Falcon project to anybody outside the board.";
    let sanitizer = Sanitizer::new(&[secret]);
    let recorder = Recorder::default();
    let result = tracing::subscriber::with_default(recorder.clone(), || {
        sanitizer.sanitize(&format!(
            "Ok: {secret} <thinking>hidden plan</thinking> route_to: note_agent"
        ))
    });
    assert_eq!(result.redactions, 3);
    let events = recorder.0.lock().expect("lock").clone();
    assert_eq!(events.len(), 3, "{events:?}");
    let kinds = ["protected_text", "reasoning_marker", "routing_metadata"];
    for ((level, fields), kind) in events.iter().zip(kinds) {
        assert_eq!(*level, Level::WARN);
        assert!(fields.contains(&format!("kind={kind}")), "{fields}");
        for leaked in ["quarterly", "Falcon", "hidden plan", "note_agent"] {
            assert!(!fields.contains(leaked), "{fields}");
        }
    }
}

#[test]
fn a_streamed_span_is_logged_once() {
    let secret =
        "Never reveal the quarterly roadmap of the Falcon project to anybody outside the board.";
    let sanitizer = Sanitizer::new(&[secret]);
    let recorder = Recorder::default();
    let out = tracing::subscriber::with_default(recorder.clone(), || {
        let mut stream = sanitizer.stream();
        let mut out = String::new();
        for word in format!("Ok: {secret} Bye").split_inclusive(' ') {
            out.push_str(&stream.push(word));
        }
        out + &stream.finish()
    });
    assert_eq!(out, "Ok: [REDACTED]. Bye");
    assert_eq!(recorder.0.lock().expect("lock").len(), 1);
}

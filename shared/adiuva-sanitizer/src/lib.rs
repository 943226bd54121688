//! The response sanitizer: every chat output (HTTP answers and WebSocket stream chunks) passes
//! through it before it reaches a client, because system prompts and prompt templates are the
//! company's IP and must never leave the server (SPEC §1, principle 2).
//!
//! It replaces with `[REDACTED]`:
//! - any run of at least `min_run_words` (default 8) consecutive words of a protected text
//!   (system prompts, router and synthesis prompts, templates), compared case-insensitively and
//!   blind to whitespace and markdown decoration; a protected text shorter than that is matched
//!   whole;
//! - reasoning markers and chat-template tokens (`<thinking>` blocks, `[INST]`, `<<SYS>>`,
//!   `<|im_start|>system ... <|im_end|>`, `<|eot_id|>`, ...);
//! - tool schemas and tool calls (JSON-like objects, LangChain tool lines);
//! - routing metadata (`route_to: task_agent`, `"agent": "note_agent"`, `Available agents: ...`).
//!
//! Each redaction is logged with `tracing::warn!`, naming the kind of material and never the
//! material itself. Template ids (`tpl_...`) are public and pass.
//!
//! [`Sanitizer::sanitize`] cleans a whole text; [`Sanitizer::stream`] cleans a stream of chunks
//! and gives the same result as `sanitize` on the concatenation, whatever the chunking.

mod patterns;
mod words;

use std::ops::Range;
use std::sync::Arc;

use patterns::{Finding, Kind};
use words::ShingleIndex;

/// What replaces every redacted span.
pub const REDACTED: &str = "[REDACTED]";

/// Default number of consecutive words of a protected text that count as a leak: long enough
/// that ordinary phrases shared with a prompt ("for the current project", "ask the user for")
/// pass, short enough that a copied sentence does not.
pub const DEFAULT_MIN_RUN_WORDS: usize = 8;

/// Redacts leaked prompt material from chat output. Built once per process from the protected
/// texts; cloning shares the index.
#[derive(Debug, Clone)]
pub struct Sanitizer {
    /// Hashes of every window of the protected texts; shared because it is read-only and may
    /// hold hundreds of thousands of windows.
    index: Arc<ShingleIndex>,
}

/// The result of [`Sanitizer::sanitize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sanitized {
    /// The text with every leaked span replaced by `[REDACTED]`.
    pub text: String,
    /// How many spans were replaced; zero means the text is unchanged.
    pub redactions: usize,
}

impl Sanitizer {
    /// A sanitizer protecting `protected`, with runs of [`DEFAULT_MIN_RUN_WORDS`] words.
    pub fn new(protected: &[&str]) -> Self {
        Self::with_min_run_words(protected, DEFAULT_MIN_RUN_WORDS)
    }

    /// A sanitizer that redacts any run of `words` consecutive words of a protected text
    /// (`words` is at least 1).
    pub fn with_min_run_words(protected: &[&str], words: usize) -> Self {
        Sanitizer {
            index: Arc::new(ShingleIndex::new(protected, words)),
        }
    }

    /// Sanitizes a complete text. Returns the cleaned text and whether anything was redacted.
    pub fn sanitize(&self, text: &str) -> Sanitized {
        let analysis = self.analyze(text, &[], true);
        let mut text_out = String::with_capacity(text.len());
        let redactions = render(text, &analysis.spans, text.len(), false, &mut text_out);
        Sanitized {
            text: text_out,
            redactions,
        }
    }

    /// A streaming sanitizer for one response: chunks go in as the LLM produces them; what
    /// comes out is safe to send.
    pub fn stream(&self) -> StreamSanitizer {
        StreamSanitizer {
            index: Arc::clone(&self.index),
            pending: String::new(),
            context: Vec::new(),
            ends_redacted: false,
            redactions: 0,
        }
    }

    fn analyze(&self, text: &str, context: &[u64], at_eof: bool) -> Analysis {
        analyze(&self.index, text, context, at_eof)
    }
}

/// Sanitizes one streamed response.
///
/// It keeps the text it has not sent yet (`pending`), and sends a prefix of it only once no
/// later text can change how that prefix is redacted:
/// - words: a window of `min_run_words` words is decided only when its last word is complete,
///   so the last `min_run_words - 1` complete words and the unfinished word are held (a leak
///   that starts among them may still be completed by the next chunk);
/// - markers, JSON objects, routing lines: held from where an undecided one starts (`<thin`,
///   an open `<thinking>` block, an unclosed `{"`, `Available agents:` before its newline).
///
/// The hashes of the last `min_run_words - 1` sent words are kept, so a leak that starts in
/// sent text (already redacted there) is still redacted after it.
#[derive(Debug)]
pub struct StreamSanitizer {
    index: Arc<ShingleIndex>,
    /// Received but not yet sent, from a point where every detector starts afresh.
    pending: String,
    /// Hashes of the last words before `pending`, so that word windows can cross the boundary.
    context: Vec<u64>,
    /// Whether the text sent so far ends with `[REDACTED]` whose span may continue: the
    /// continuation is then swallowed instead of getting a second marker.
    ends_redacted: bool,
    redactions: usize,
}

impl StreamSanitizer {
    /// Feeds a chunk; returns the text that can be sent now. Holds back a tail window (enough to
    /// contain the longest possible partial match: the last `min_run_words - 1` words and any
    /// unterminated marker like `<thin` or an open `<thinking>` block) so that a leak split
    /// across chunks is still caught.
    pub fn push(&mut self, chunk: &str) -> String {
        self.pending.push_str(chunk);
        self.advance(false)
    }

    /// Ends the stream; returns the rest (sanitized).
    pub fn finish(mut self) -> String {
        self.advance(true)
    }

    /// How many spans were redacted so far.
    pub fn redactions(&self) -> usize {
        self.redactions
    }

    fn advance(&mut self, at_eof: bool) -> String {
        let analysis = analyze(&self.index, &self.pending, &self.context, at_eof);
        let cut = analysis.cut;
        let mut out = String::new();
        if cut == 0 {
            return out;
        }
        self.redactions += render(
            &self.pending,
            &analysis.spans,
            cut,
            self.ends_redacted,
            &mut out,
        );
        self.ends_redacted = analysis
            .spans
            .iter()
            .any(|span| span.range.start < cut && span.range.end >= cut);
        let keep = self.index.max_len().saturating_sub(1);
        self.context.extend(
            analysis
                .words
                .iter()
                .filter(|w| w.end <= cut)
                .map(|w| w.hash),
        );
        if self.context.len() > keep {
            self.context.drain(..self.context.len() - keep);
        }
        self.pending.drain(..cut);
        out
    }
}

/// A merged span to redact.
#[derive(Debug)]
struct Span {
    range: Range<usize>,
    kinds: Vec<Kind>,
    source: Option<u32>,
}

#[derive(Debug)]
struct Analysis {
    /// Merged spans, sorted; touching spans are merged.
    spans: Vec<Span>,
    /// Everything before `cut` is decided.
    cut: usize,
    /// The complete words of the text.
    words: Vec<words::Word>,
}

/// Finds what to redact in `text`, which follows words with hashes `context`, and how much of
/// it is decided.
fn analyze(index: &ShingleIndex, text: &str, context: &[u64], at_eof: bool) -> Analysis {
    let scan = patterns::scan(text, at_eof);
    let mut all_words = words::tokenize(text);
    if !at_eof && all_words.last().is_some_and(|w| w.end == text.len()) {
        // The last word may go on in the next chunk.
        all_words.pop();
    }
    let words = all_words;

    let mut findings = scan.findings;
    let mut hashes = context.to_vec();
    hashes.extend(words.iter().map(|w| w.hash));
    for window in index.matches(&hashes) {
        let last = window.start + window.len - 1;
        if last < context.len() {
            continue;
        }
        // A window that starts in already-sent words continues a span sent as `[REDACTED]`.
        let start = window
            .start
            .checked_sub(context.len())
            .map_or(0, |i| words[i].start);
        findings.push(Finding {
            range: start..words[last - context.len()].end,
            kind: Kind::ProtectedText,
            source: Some(window.source),
        });
    }

    let hold = scan.hold_from.unwrap_or(text.len());
    let mut cut = if at_eof {
        text.len()
    } else if index.max_len() == 0 {
        hold
    } else {
        // The last word whose every window is complete: words[j] with j + max_len <= words.len().
        let word_cut = words
            .len()
            .checked_sub(index.max_len())
            .map_or(0, |j| words[j].end);
        word_cut.min(hold)
    };

    // Never cut inside a marker, object or routing span: the stream restarts its detectors at
    // the cut, and would not recognise the rest of it. Send it whole, or keep it whole.
    let fixed = merge(findings.iter().filter(|f| f.kind != Kind::ProtectedText));
    if let Some(span) = fixed
        .iter()
        .find(|s| s.range.start < cut && cut < s.range.end)
    {
        cut = if span.range.end <= hold {
            span.range.end
        } else {
            span.range.start
        };
    }

    Analysis {
        spans: merge(findings.iter()),
        cut,
        words,
    }
}

/// Merges overlapping or touching findings into sorted spans.
fn merge<'a>(findings: impl Iterator<Item = &'a Finding>) -> Vec<Span> {
    let mut sorted: Vec<&Finding> = findings.collect();
    sorted.sort_by_key(|f| (f.range.start, f.range.end));
    let mut spans: Vec<Span> = Vec::new();
    for finding in sorted {
        match spans.last_mut() {
            Some(span) if finding.range.start <= span.range.end => {
                span.range.end = span.range.end.max(finding.range.end);
                if !span.kinds.contains(&finding.kind) {
                    span.kinds.push(finding.kind);
                }
                span.source = span.source.or(finding.source);
            }
            _ => spans.push(Span {
                range: finding.range.clone(),
                kinds: vec![finding.kind],
                source: finding.source,
            }),
        }
    }
    spans
}

/// Appends `text[..cut]` to `out` with every span replaced by `[REDACTED]`, and logs each one.
/// A span starting at 0 when `continuing` continues the marker already sent. Returns how many
/// markers were written.
fn render(text: &str, spans: &[Span], cut: usize, continuing: bool, out: &mut String) -> usize {
    let mut position = 0;
    let mut markers = 0;
    for span in spans.iter().filter(|s| s.range.start < cut) {
        out.push_str(&text[position..span.range.start]);
        if !(continuing && span.range.start == 0) {
            out.push_str(REDACTED);
            markers += 1;
            let kinds: Vec<&str> = span.kinds.iter().map(|k| k.as_str()).collect();
            tracing::warn!(
                kind = %kinds.join(","),
                protected_text = span.source,
                bytes = span.range.len(),
                "redacted leaked prompt material from chat output"
            );
        }
        position = span.range.end.min(cut);
    }
    out.push_str(&text[position..cut]);
    markers
}

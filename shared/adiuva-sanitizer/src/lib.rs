//! The response sanitizer: every chat output (HTTP answers and WebSocket stream chunks) passes
//! through it before it reaches a client, because system prompts and prompt templates are the
//! company's IP and must never leave the server (SPEC §1, principle 2).
//!
//! It replaces with `[REDACTED]`:
//! - any run of at least `min_run_words` (default 8) consecutive words of a protected text
//!   (system prompts, router and synthesis prompts, templates, tool descriptions), compared
//!   case-insensitively and blind to whitespace and markdown decoration;
//! - reasoning markers and chat-template tokens (`<thinking>` blocks, `[INST]`, `<<SYS>>`,
//!   `<|im_start|>system ... <|im_end|>`, `<|eot_id|>`, ...);
//! - tool schemas and tool calls (JSON-like objects, LangChain tool lines);
//! - routing metadata (`route_to: task_agent`, `"agent": "note_agent"`, `Available agents: ...`).
//!
//! Each redaction is logged with `tracing::warn!`, naming the kind of material and never the
//! material itself. Template ids (`tpl_...`) are public and pass.
//!
//! [`Sanitizer::sanitize`] cleans a whole text; [`Sanitizer::stream`] cleans a stream of chunks
//! and gives the same result as `sanitize` on the concatenation, whatever the chunking;
//! [`Sanitizer::sanitize_parts`] cleans the strings of one response together (its text and its
//! actions' fields), so that a prompt split across them is still caught.
//!
//! # Short protected texts are not matched
//!
//! A protected text shorter than `min_run_words` words (a one-line tool description such as
//! "Create a task.") is not indexed at all, so it is never redacted, whole or in part. A phrase
//! that short cannot be told apart from ordinary prose: matching it turned "I'll create a task
//! for that" into "I'll [REDACTED] for that" and saved a task titled "Create a project plan" as
//! "[REDACTED] plan". Matching it only when a whole text equals it would not help either: the
//! string fields of actions are whole texts, and a task may well be titled "Create a task". What
//! such a text says is not the IP; the long prompts are, and every run of `min_run_words` of
//! them is matched. A secret worth protecting must be at least that long.
//!
//! # Disguises
//!
//! Every detector (protected runs, markers, schemas, routing metadata) reads a folded copy of
//! the text (see `fold.rs`): invisible format characters
//! (zero-width space, non-joiner and joiner, word joiner, byte order mark, soft hyphen, ...) are
//! dropped, compatibility forms are decomposed (NFKD: fullwidth and mathematical letters,
//! ligatures) and combining marks dropped, and common confusables (Cyrillic, Greek, Armenian
//! letters that look Latin) become the ASCII letter they imitate. Each char folds on its own, so
//! folding is linear and chunking does not change it. Spans found in the folded copy are mapped
//! back to the original, and what is sent is the original text with those spans replaced:
//! text with nothing to redact passes byte for byte, however exotic its characters.
//!
//! # What remains out of reach
//!
//! - Paraphrase, summary and translation: the prompt's ideas in other words share no run of
//!   `min_run_words` words with it.
//! - Encodings and ciphers: base64, hex, rot13, reversed text, one letter per line, spaces or
//!   punctuation inside words ("p r o m p t", "pro-mpt"), leetspeak ("pr0mpt").
//! - Excerpts shorter than the run length, including short protected texts (above), and a long
//!   prompt leaked in pieces of fewer than `min_run_words` words separated by other words.
//! - Lookalikes outside the table, such as digits for letters or rarer scripts.
//! - A prompt split across three or more strings of one response in an order other than the
//!   one they are given in (two strings are checked in either order), and leaks spread over
//!   several responses: each response is checked on its own.

mod fold;
mod patterns;
mod words;

use std::ops::Range;
use std::sync::Arc;

use fold::Folded;
use patterns::{Finding, Kind};
use words::ShingleIndex;

/// What replaces every redacted span.
pub const REDACTED: &str = "[REDACTED]";

/// Default number of consecutive words of a protected text that count as a leak: long enough
/// that ordinary phrases shared with a prompt ("for the current project", "ask the user for")
/// pass, short enough that a copied sentence does not.
pub const DEFAULT_MIN_RUN_WORDS: usize = 8;

/// How many parts (with words) of one response [`Sanitizer::sanitize_parts`] pairs in either
/// order: far more strings than one response carries, small enough that checking every pair
/// stays cheap.
pub const MAX_PAIRED_PARTS: usize = 256;

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
        sanitize_with(&self.index, text, &[])
    }

    /// Sanitizes the strings that reach the client together as one response (its text, then
    /// every string of its actions' fields). Each part is sanitized as by
    /// [`Sanitizer::sanitize`]; besides, a run of protected words split across parts is
    /// redacted in every part it touches:
    /// - across any number of parts read in the given order, as if they were joined by a
    ///   separator that ends a word (a part is never glued to the next into one word);
    /// - across two parts in either order (the end of one, then the start of another), because
    ///   the order in which a client shows fields (a title, then its description) need not be
    ///   the order they are given in. Only the first [`MAX_PAIRED_PARTS`] parts with words are
    ///   paired, which bounds this quadratic check.
    ///
    /// Returns one result per part, in order; a part with nothing to redact is unchanged.
    pub fn sanitize_parts(&self, parts: &[&str]) -> Vec<Sanitized> {
        let len = self.index.max_len();
        let words: Vec<Vec<words::Word>> = parts
            .iter()
            .map(|text| words::words(&Folded::new(text), true))
            .collect();
        let mut across: Vec<Vec<Finding>> = vec![Vec::new(); parts.len()];
        if len > 1 {
            let in_order: Vec<(usize, words::Word)> = words
                .iter()
                .enumerate()
                .flat_map(|(part, words)| words.iter().map(move |w| (part, *w)))
                .collect();
            find_across(&self.index, &in_order, &mut across);

            let ends: Vec<(usize, &[words::Word], &[words::Word])> = words
                .iter()
                .enumerate()
                .filter(|(_, words)| !words.is_empty())
                .take(MAX_PAIRED_PARTS)
                .map(|(part, words)| {
                    let tail = &words[words.len().saturating_sub(len - 1)..];
                    let head = &words[..words.len().min(len - 1)];
                    (part, tail, head)
                })
                .collect();
            let mut pair = Vec::with_capacity(2 * len);
            for &(first, tail, _) in &ends {
                for &(second, _, head) in &ends {
                    if first == second {
                        continue;
                    }
                    pair.clear();
                    pair.extend(tail.iter().map(|w| (first, *w)));
                    pair.extend(head.iter().map(|w| (second, *w)));
                    find_across(&self.index, &pair, &mut across);
                }
            }
        }
        parts
            .iter()
            .zip(&across)
            .map(|(text, across)| sanitize_with(&self.index, text, across))
            .collect()
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
}

/// Finds the runs of protected words in `sequence` (words tagged with their part) that span
/// more than one part, and adds each part's piece of them to `across`.
fn find_across(
    index: &ShingleIndex,
    sequence: &[(usize, words::Word)],
    across: &mut [Vec<Finding>],
) {
    let hashes: Vec<u64> = sequence.iter().map(|(_, w)| w.hash).collect();
    for window in index.matches(&hashes) {
        let run = &sequence[window.start..window.start + window.len];
        if run[0].0 == run[run.len() - 1].0 {
            // Inside one part: the part's own analysis finds it.
            continue;
        }
        for piece in run.chunk_by(|a, b| a.0 == b.0) {
            let (part, first) = piece[0];
            let last = piece[piece.len() - 1].1;
            across[part].push(Finding {
                range: first.start..last.end,
                kind: Kind::ProtectedText,
                source: Some(window.source),
            });
        }
    }
}

/// Sanitizes a whole text, redacting `extra` too.
fn sanitize_with(index: &ShingleIndex, text: &str, extra: &[Finding]) -> Sanitized {
    let analysis = analyze(index, text, &[], true, extra);
    let mut out = String::with_capacity(text.len());
    let redactions = render(text, &analysis.spans, text.len(), false, &mut out);
    Sanitized {
        text: out,
        redactions,
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
        let analysis = analyze(&self.index, &self.pending, &self.context, at_eof, &[]);
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
/// it is decided. `extra` are findings made elsewhere (runs across parts of a response).
///
/// The detectors read the folded text; everything they report is mapped back to the original
/// here, so the rest works on the original text.
fn analyze(
    index: &ShingleIndex,
    text: &str,
    context: &[u64],
    at_eof: bool,
    extra: &[Finding],
) -> Analysis {
    let folded = Folded::new(text);
    let scan = patterns::scan(folded.text(), at_eof);
    let words = words::words(&folded, at_eof);

    let mut findings: Vec<Finding> = scan
        .findings
        .into_iter()
        .map(|finding| Finding {
            range: folded.range(finding.range),
            ..finding
        })
        .collect();
    findings.extend_from_slice(extra);
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

    let hold = scan.hold_from.map_or(text.len(), |at| folded.start(at));
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

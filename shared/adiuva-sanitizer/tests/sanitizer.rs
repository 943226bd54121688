//! Behaviour of the sanitizer on realistic prompts: leaks in every disguise, clean answers, and
//! streams split every possible way.

mod corpus;

use std::collections::HashSet;
use std::sync::OnceLock;

use adiuva_sanitizer::{REDACTED, Sanitizer};

const RUN: usize = 8;

fn sanitizer() -> Sanitizer {
    Sanitizer::new(&corpus::all())
}

/// Lowercase alphanumeric words, written independently of the crate's tokenizer (JSON escapes
/// `\n`, `\t`, `\r` separate words, as in the crate).
fn words(text: &str) -> Vec<String> {
    let cleaned = text
        .replace("\\n", " ")
        .replace("\\t", " ")
        .replace("\\r", " ");
    cleaned
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

/// Asserts that `output` holds no run of `run` consecutive words of any protected text.
fn assert_no_run(output: &str, run: usize) {
    static SHINGLES: OnceLock<HashSet<String>> = OnceLock::new();
    let shingles = SHINGLES.get_or_init(|| {
        let mut shingles = HashSet::new();
        for text in corpus::all() {
            for window in words(text).windows(RUN) {
                shingles.insert(window.join(" "));
            }
        }
        shingles
    });
    assert_eq!(run, RUN);
    for window in words(output).windows(run) {
        let joined = window.join(" ");
        assert!(
            !shingles.contains(&joined),
            "leaked run {joined:?} in output {output:?}"
        );
    }
}

const MARKERS: &[&str] = &[
    "<thinking",
    "</thinking",
    "<think>",
    "</think>",
    "<reflection",
    "[inst]",
    "[/inst]",
    "<<sys>>",
    "<</sys>>",
    "<|",
];

fn assert_no_markers(output: &str) {
    let lower = output.to_lowercase();
    for marker in MARKERS {
        assert!(
            !lower.contains(marker),
            "marker {marker} in output {output:?}"
        );
    }
}

/// Streams `chunks` and returns the concatenated output and the redaction count.
fn stream(sanitizer: &Sanitizer, chunks: &[&str]) -> (String, usize) {
    let mut stream = sanitizer.stream();
    let mut out = String::new();
    for chunk in chunks {
        out.push_str(&stream.push(chunk));
    }
    // `finish` consumes the stream, so count the markers in the output instead.
    out.push_str(&stream.finish());
    let count = out.matches(REDACTED).count();
    (out, count)
}

/// Every char boundary of `text`.
fn boundaries(text: &str) -> Vec<usize> {
    text.char_indices()
        .map(|(i, _)| i)
        .chain([text.len()])
        .collect()
}

/// A small deterministic generator, so that the property tests are reproducible.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, bound: usize) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((self.0 >> 33) as usize) % bound
    }
}

/// Splits `text` into chunks of 1 to `max` chars.
fn random_chunks<'a>(text: &'a str, max: usize, rng: &mut Lcg) -> Vec<&'a str> {
    let cuts = boundaries(text);
    let mut chunks = Vec::new();
    let mut i = 0;
    while i + 1 < cuts.len() {
        let j = (i + 1 + rng.next(max)).min(cuts.len() - 1);
        chunks.push(&text[cuts[i]..cuts[j]]);
        i = j;
    }
    chunks
}

fn paragraph(text: &str, index: usize) -> &str {
    text.split("\n\n").nth(index).expect("paragraph")
}

/// Leaks in many disguises, used by the stream tests too.
fn leaks() -> Vec<String> {
    let task_lines: Vec<&str> = corpus::TASK_AGENT.lines().collect();
    let last_lines = task_lines[task_lines.len() - 2..].join("\n");
    let middle = paragraph(corpus::NOTE_AGENT, 1);
    let decorated: String = middle
        .split_whitespace()
        .enumerate()
        .map(|(i, w)| match i % 4 {
            0 => format!("**{}**", w.to_uppercase()),
            1 => format!("`{w}`"),
            2 => format!("\n> - {w}"),
            _ => format!("  {w}\t"),
        })
        .collect::<Vec<_>>()
        .join(" ");
    let quoted: String = corpus::INTENT_CLASSIFIER
        .lines()
        .map(|l| format!("> {l}\n"))
        .collect();
    let json_escaped = middle.replace('"', "\\\"").replace('\n', "\\n");
    vec![
        format!(
            "Sure, here are my instructions:\n\n{}\n\nAnything else?",
            corpus::TASK_AGENT
        ),
        format!("The middle part says: {middle} That is all I can share."),
        format!("My last lines are:\n{last_lines}\nThanks!"),
        format!("Here you go: {decorated} -- done."),
        format!("Tool output: {{\"result\": \"{json_escaped}\", \"ok\": true}} and more."),
        format!("As my router was told:\n{quoted}\nSo I picked one."),
        format!(
            "Template: {}",
            corpus::TEMPLATE_WEEKLY_SUMMARY.to_uppercase()
        ),
        format!(
            "Starts clean. {} Ends clean.",
            corpus::TEMPLATE_EXTRACT_TASKS.replace('\n', " ")
        ),
    ]
}

// ---------------------------------------------------------------------------------------------
// Whole texts.

/// A span runs from the first to the last leaked word: punctuation around it stays.
#[test]
fn verbatim_full_prompt_is_redacted_as_one_span() {
    let text = format!(
        "Sure, here are my instructions:\n\n{}\n\nAnything else?",
        corpus::TASK_AGENT
    );
    let result = sanitizer().sanitize(&text);
    assert_eq!(
        result.text,
        format!("Sure, here are my instructions:\n\n{REDACTED}.\n\nAnything else?")
    );
    assert_eq!(result.redactions, 1);
}

#[test]
fn middle_paragraph_is_redacted() {
    let middle = paragraph(corpus::NOTE_AGENT, 1);
    let result = sanitizer().sanitize(&format!("It says: {middle} That is all."));
    assert_eq!(result.text, format!("It says: {REDACTED}. That is all."));
}

#[test]
fn last_lines_are_redacted() {
    let lines: Vec<&str> = corpus::INTENT_CLASSIFIER.lines().collect();
    let last = lines[lines.len() - 2..].join("\n");
    let result = sanitizer().sanitize(&format!("Finally:\n{last}"));
    assert_eq!(result.text, format!("Finally:\n{REDACTED}."));
}

#[test]
fn every_leak_disguise_is_caught() {
    let sanitizer = sanitizer();
    for leak in leaks() {
        let result = sanitizer.sanitize(&leak);
        assert!(result.redactions > 0, "nothing redacted in {leak:?}");
        assert_no_run(&result.text, RUN);
        assert_no_markers(&result.text);
    }
}

#[test]
fn decorated_leak_keeps_surrounding_text() {
    let leak = &leaks()[3];
    let result = sanitizer().sanitize(leak);
    assert!(result.text.starts_with("Here you go: "), "{}", result.text);
    assert!(result.text.ends_with(" -- done."), "{}", result.text);
}

#[test]
fn leak_inside_json_tool_output_is_redacted() {
    let result = sanitizer().sanitize(&leaks()[4]);
    assert!(
        result.text.starts_with("Tool output: {\"result\": \""),
        "{}",
        result.text
    );
    assert!(result.text.contains(REDACTED));
    assert!(
        result.text.ends_with("\", \"ok\": true} and more."),
        "{}",
        result.text
    );
}

#[test]
fn runs_shorter_than_the_minimum_pass() {
    let sanitizer = sanitizer();
    // Seven consecutive words of TASK_AGENT, then a different word.
    let text = "Please split it into several tasks and explain why.";
    assert_eq!(sanitizer.sanitize(text).text, text);
    let seven = "never invent due dates when the user gives";
    assert_eq!(words(seven).len(), 8);
    assert_ne!(
        sanitizer.sanitize(seven).text,
        seven,
        "eight words are a leak"
    );
    let text = "I never invent due dates when the user is vague.";
    assert_eq!(sanitizer.sanitize(text).text, text);
}

#[test]
fn min_run_is_configurable() {
    let sanitizer = Sanitizer::with_min_run_words(&[corpus::NOTE_AGENT], 5);
    assert_eq!(
        sanitizer
            .sanitize("keep decisions, open questions and")
            .text,
        REDACTED
    );
    let text = "keep decisions, open questions please";
    assert_eq!(sanitizer.sanitize(text).text, text);
}

#[test]
fn short_protected_text_is_matched_whole() {
    let sanitizer = Sanitizer::new(&["Answer like a pirate."]);
    assert_eq!(
        sanitizer.sanitize("Rule: ANSWER like a *pirate*!").text,
        format!("Rule: {REDACTED}*!")
    );
    let text = "Answer like a sailor.";
    assert_eq!(sanitizer.sanitize(text).text, text);
}

#[test]
fn clean_texts_pass_unchanged() {
    let sanitizer = sanitizer();
    for text in corpus::CLEAN {
        let result = sanitizer.sanitize(text);
        assert_eq!(result.text, *text);
        assert_eq!(result.redactions, 0);
    }
}

#[test]
fn reasoning_markers_are_redacted() {
    let sanitizer = sanitizer();
    let cases = [
        ("A <thinking>user wants X</thinking>B", "A [REDACTED]B"),
        ("A <THINKING>never closed", "A [REDACTED]"),
        ("<think>hmm</think>Answer", "[REDACTED]Answer"),
        (
            "<reflection>was I right?</reflection> Yes.",
            "[REDACTED] Yes.",
        ),
        ("[INST] list tasks [/INST] Done.", "[REDACTED] Done."),
        ("<<SYS>>be terse<</SYS>> Hi", "[REDACTED] Hi"),
        (
            "<|im_start|>system\nYou are secret<|im_end|>\n<|im_start|>assistant\nHi",
            "[REDACTED]\n[REDACTED]\nHi",
        ),
        (
            "<|start_header_id|>system<|end_header_id|>secret<|eot_id|>Hi",
            "[REDACTED]Hi",
        ),
        ("<|system|>secret<|assistant|>Hi", "[REDACTED]Hi"),
        ("Done.<|eot_id|>", "Done.[REDACTED]"),
        ("stray </thinking> tag", "stray [REDACTED] tag"),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitizer.sanitize(input).text, expected, "input {input:?}");
    }
}

#[test]
fn tool_schemas_are_redacted() {
    let sanitizer = sanitizer();
    let cases = [
        r#"{"type": "function", "function": {"name": "create_task", "parameters": {"type": "object", "properties": {"title": {"type": "string"}}}}}"#,
        r#"{"role": "assistant", "tool_calls": [{"id": "call_1", "type": "function", "function": {"name": "list_tasks", "arguments": "{}"}}]}"#,
        r#"{"function_call": {"name": "search_notes", "arguments": "{\"q\": \"x\"}"}}"#,
        r#"{'name': 'create_task', 'parameters': {'type': 'object', 'properties': {'title': {'type': 'string'}}}}"#,
        r#"{\"type\": \"function\", \"function\": {\"name\": \"x\", \"parameters\": {}}}"#,
        "<tools>[create_task, update_task]</tools>",
    ];
    for schema in cases {
        let result = sanitizer.sanitize(&format!("Before {schema} after"));
        assert_eq!(result.text, "Before [REDACTED] after", "schema {schema}");
    }
    let langchain = "You have access to the following tools:\ncreate_task: Creates a task., args: {'title': {'title': 'Title', 'type': 'string'}}\nok";
    let result = sanitizer.sanitize(langchain);
    assert_eq!(
        result.text,
        "[REDACTED]\ncreate_task: Creates a task., [REDACTED]\nok"
    );
}

#[test]
fn routing_metadata_is_redacted_but_template_ids_pass() {
    let sanitizer = sanitizer();
    let cases = [
        ("route_to: task_agent\nHello", "[REDACTED]\nHello"),
        (
            r#"{"agent": "note_agent", "steps": 2}"#,
            r#"{[REDACTED], "steps": 2}"#,
        ),
        ("next_agent=timeline_agent; ok", "[REDACTED]; ok"),
        (
            "previous_results: [{\"a\": 1}, {\"b\": 2}] then",
            "[REDACTED] then",
        ),
        (
            "Available agents: [task_agent, note_agent]\nPicked one.",
            "[REDACTED]\nPicked one.",
        ),
        (
            "Note: You are an intent classifier for us\nok",
            "Note: [REDACTED]\nok",
        ),
        (
            "Plan: tpl_task_agent_default then tpl_note_weekly_summary",
            "Plan: tpl_task_agent_default then tpl_note_weekly_summary",
        ),
        (
            r#"{"prompt_template": "tpl_task_extract_from_project"}"#,
            r#"{"prompt_template": "tpl_task_extract_from_project"}"#,
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitizer.sanitize(input).text, expected, "input {input:?}");
    }
}

#[test]
fn sanitizer_is_shareable_across_threads() {
    fn assert_traits<T: Clone + Send + Sync + 'static>() {}
    assert_traits::<Sanitizer>();
    fn assert_send<T: Send>() {}
    assert_send::<adiuva_sanitizer::StreamSanitizer>();
}

// ---------------------------------------------------------------------------------------------
// Streams.

/// Checks a stream's output against the invariants and against `sanitize` on the whole text.
fn check_stream(sanitizer: &Sanitizer, text: &str, chunks: &[&str]) {
    let whole = sanitizer.sanitize(text).text;
    assert_no_run(&whole, RUN);
    assert_no_markers(&whole);
    check_stream_against(sanitizer, &whole, chunks);
}

/// The stream's output equals `whole`, the (already checked) result of `sanitize`.
fn check_stream_against(sanitizer: &Sanitizer, whole: &str, chunks: &[&str]) {
    let (out, _) = stream(sanitizer, chunks);
    assert_eq!(out, whole, "chunks {chunks:?}");
}

#[test]
fn leaks_split_in_two_at_every_char_boundary() {
    let sanitizer = sanitizer();
    let mut texts = leaks();
    texts.truncate(6);
    texts.push(
        "Hi <thinking>plan it</thinking> done, café ☕ 会议 <|im_start|>system\nsecret<|im_end|>ok"
            .into(),
    );
    texts.push(format!(
        "Übersicht 👍: {}",
        paragraph(corpus::TASK_AGENT, 1)
    ));
    for text in &texts {
        let whole = sanitizer.sanitize(text).text;
        assert_no_run(&whole, RUN);
        assert_no_markers(&whole);
        for cut in boundaries(text) {
            check_stream_against(&sanitizer, &whole, &[&text[..cut], &text[cut..]]);
        }
    }
}

#[test]
fn markers_split_in_three_at_every_pair_of_boundaries() {
    let sanitizer = sanitizer();
    let text =
        "Ok <thi\u{e9}nking> <thinking>é secret</thinking> [INST]x[/INST] {\"tool_calls\": []} fin";
    let whole = sanitizer.sanitize(text).text;
    assert_no_markers(&whole);
    let cuts = boundaries(text);
    for (i, &a) in cuts.iter().enumerate() {
        for &b in &cuts[i..] {
            check_stream_against(&sanitizer, &whole, &[&text[..a], &text[a..b], &text[b..]]);
        }
    }
}

#[test]
fn tiny_chunks_of_one_to_three_chars() {
    let sanitizer = sanitizer();
    let mut rng = Lcg(7);
    for text in leaks() {
        for _ in 0..20 {
            let chunks = random_chunks(&text, 3, &mut rng);
            check_stream(&sanitizer, &text, &chunks);
        }
    }
}

#[test]
fn split_reasoning_marker_is_caught() {
    let sanitizer = sanitizer();
    let (out, count) = stream(
        &sanitizer,
        &[
            "Let me see <thi",
            "nking>the user is",
            " angry</thin",
            "king> Hello",
        ],
    );
    assert_eq!(out, "Let me see [REDACTED] Hello");
    assert_eq!(count, 1);
    let (out, _) = stream(&sanitizer, &["Answer: [IN", "ST] hidden"]);
    assert_eq!(out, "Answer: [REDACTED]");
}

#[test]
fn clean_stream_is_exact_and_delayed_only_by_the_window() {
    let sanitizer = sanitizer();
    let mut rng = Lcg(11);
    for text in corpus::CLEAN {
        for _ in 0..30 {
            let chunks = random_chunks(text, 6, &mut rng);
            let mut stream = sanitizer.stream();
            let mut out = String::new();
            let mut received = String::new();
            for chunk in &chunks {
                received.push_str(chunk);
                out.push_str(&stream.push(chunk));
                assert!(received.starts_with(&out), "reordered: {out:?}");
                let held = &received[out.len()..];
                // Plain prose: at most the window of RUN - 1 complete words plus the unfinished
                // one. JSON objects are held until they close.
                if !text.contains('{') {
                    assert!(words(held).len() <= RUN, "held too much: {held:?}");
                }
            }
            out.push_str(&stream.finish());
            assert_eq!(out, *text);
        }
    }
}

#[test]
fn property_no_leak_for_random_chunkings() {
    let sanitizer = sanitizer();
    let mut rng = Lcg(2024);
    let protected = corpus::all();
    for round in 0..300 {
        // A random run of 8 to 40 words from a random protected text, in random surroundings.
        let source: Vec<&str> = protected[rng.next(protected.len())]
            .split_whitespace()
            .collect();
        let len = (RUN + rng.next(33)).min(source.len());
        let start = rng.next(source.len() - len + 1);
        let run = source[start..start + len].join(if round % 2 == 0 { " " } else { "\n  " });
        let prefix = corpus::CLEAN[rng.next(corpus::CLEAN.len())];
        let suffix = ["", " <think>x", " Thanks!", " — fin ✓"][rng.next(4)];
        let text = format!("{prefix} {run}{suffix}");
        let max = 1 + rng.next(12);
        let chunks = random_chunks(&text, max, &mut rng);
        check_stream(&sanitizer, &text, &chunks);
        assert!(sanitizer.sanitize(&text).redactions > 0);
    }
}

//! Behaviour of the sanitizer on realistic prompts: leaks in every disguise, clean answers and an
//! ordinary corpus, prompts split across the parts of one response, and streams split every
//! possible way.

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
// Disguises: written here independently of the crate's folding.

/// Invisible characters put inside words: zero-width space, non-joiner, joiner, word joiner and
/// zero-width no-break space.
const INVISIBLE: &[char] = &['\u{200B}', '\u{200C}', '\u{200D}', '\u{2060}', '\u{FEFF}'];

/// Inserts `insert(n)` before the char at `position` of every word long enough, n counting the
/// insertions.
fn inside_words(text: &str, position: usize, insert: impl Fn(usize) -> char) -> String {
    let mut out = String::new();
    let mut in_word = 0;
    let mut inserted = 0;
    for c in text.chars() {
        if c.is_alphanumeric() {
            if in_word == position {
                out.push(insert(inserted));
                inserted += 1;
            }
            in_word += 1;
        } else {
            in_word = 0;
        }
        out.push(c);
    }
    out
}

fn zero_width(text: &str) -> String {
    inside_words(text, 1, |n| INVISIBLE[n % INVISIBLE.len()])
}

fn soft_hyphens(text: &str) -> String {
    inside_words(text, 2, |_| '\u{AD}')
}

fn replace_chars(text: &str, table: &[(char, char)]) -> String {
    text.chars()
        .map(|c| {
            table
                .iter()
                .find(|(from, _)| *from == c)
                .map_or(c, |(_, to)| *to)
        })
        .collect()
}

/// Cyrillic letters that look Latin.
fn cyrillic(text: &str) -> String {
    replace_chars(
        text,
        &[
            ('a', 'а'),
            ('c', 'с'),
            ('e', 'е'),
            ('i', 'і'),
            ('o', 'о'),
            ('p', 'р'),
            ('s', 'ѕ'),
            ('x', 'х'),
            ('y', 'у'),
            ('A', 'А'),
            ('B', 'В'),
            ('C', 'С'),
            ('E', 'Е'),
            ('H', 'Н'),
            ('K', 'К'),
            ('M', 'М'),
            ('O', 'О'),
            ('P', 'Р'),
            ('T', 'Т'),
            ('X', 'Х'),
        ],
    )
}

/// Greek letters that look Latin.
fn greek(text: &str) -> String {
    replace_chars(
        text,
        &[
            ('a', 'α'),
            ('i', 'ι'),
            ('k', 'κ'),
            ('o', 'ο'),
            ('p', 'ρ'),
            ('u', 'υ'),
            ('v', 'ν'),
            ('x', 'χ'),
            ('A', 'Α'),
            ('B', 'Β'),
            ('E', 'Ε'),
            ('H', 'Η'),
            ('I', 'Ι'),
            ('K', 'Κ'),
            ('M', 'Μ'),
            ('N', 'Ν'),
            ('O', 'Ο'),
            ('P', 'Ρ'),
            ('T', 'Τ'),
            ('Y', 'Υ'),
            ('Z', 'Ζ'),
        ],
    )
}

/// Fullwidth forms (U+FF01..U+FF5E) and the ideographic space.
fn fullwidth(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ' ' => '\u{3000}',
            '!'..='~' => char::from_u32(u32::from(c) + 0xFEE0).expect("fullwidth form"),
            _ => c,
        })
        .collect()
}

/// Mathematical bold letters (U+1D400..).
fn math_bold(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            'A'..='Z' => char::from_u32(0x1D400 + u32::from(c) - u32::from('A')).expect("bold"),
            'a'..='z' => char::from_u32(0x1D41A + u32::from(c) - u32::from('a')).expect("bold"),
            _ => c,
        })
        .collect()
}

/// Combining marks on every letter ("Zalgo" text).
fn combining_marks(text: &str) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        out.push(c);
        if c.is_alphabetic() {
            out.push(['\u{336}', '\u{301}', '\u{308}'][i % 3]);
        }
    }
    out
}

/// A disguise: from the plain text to the disguised one.
type Disguise = fn(&str) -> String;

/// Every disguise the sanitizer must see through, by name.
fn disguises() -> Vec<(&'static str, Disguise)> {
    vec![
        ("zero-width characters", zero_width),
        ("soft hyphens", soft_hyphens),
        ("Cyrillic lookalikes", cyrillic),
        ("Greek lookalikes", greek),
        ("fullwidth letters", fullwidth),
        ("mathematical letters", math_bold),
        ("combining marks", combining_marks),
        ("lookalikes and zero-width characters", |text| {
            zero_width(&cyrillic(text))
        }),
        ("fullwidth and soft hyphens", |text| {
            soft_hyphens(&fullwidth(text))
        }),
    ]
}

/// Leaks of whole paragraphs in every disguise, with surroundings that must stay as written.
fn disguised_leaks() -> Vec<(&'static str, String)> {
    let note = paragraph(corpus::NOTE_AGENT, 1);
    let task = paragraph(corpus::TASK_AGENT, 1);
    let mut leaks = Vec::new();
    for (name, disguise) in disguises() {
        leaks.push((
            name,
            format!("Voilà 👩\u{200D}💻: {} — fin.", disguise(note)),
        ));
        leaks.push((name, format!("Mine:\n{}\nOk?", disguise(task))));
    }
    leaks
}

/// Asserts that the leak between `prefix` and `suffix` is gone: what is left between them is
/// `[REDACTED]` markers and no alphanumeric character (so no word of the disguised prompt).
fn assert_leak_gone(output: &str, prefix: &str, suffix: &str, context: &str) {
    assert!(output.starts_with(prefix), "{context}: {output:?}");
    assert!(output.ends_with(suffix), "{context}: {output:?}");
    let middle = &output[prefix.len()..output.len() - suffix.len()];
    assert!(
        middle.contains(REDACTED),
        "{context}: nothing redacted in {output:?}"
    );
    assert!(
        !middle
            .replace(REDACTED, "")
            .chars()
            .any(char::is_alphanumeric),
        "{context}: leaked letters in {output:?}"
    );
}

fn disguised_leak_bounds(leak: &str) -> (&'static str, &'static str) {
    if leak.starts_with("Voilà") {
        ("Voilà 👩\u{200D}💻: ", " — fin.")
    } else {
        ("Mine:\n", "\nOk?")
    }
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

/// One-line tool descriptions, as the agents protect them: all shorter than the run length.
const SHORT_DESCRIPTIONS: &[&str] = &[
    "Create a task.",
    "Delete a task.",
    "Create a project.",
    "Get one project.",
    "Create a milestone in a project.",
    "Delete a note.",
    "Create a Markdown note.",
    "List the comments of a task.",
    "Add a comment to a task.",
    "Answer like a pirate.",
];

/// The realistic prompts plus the short descriptions.
fn sanitizer_with_short_texts() -> Sanitizer {
    let mut protected = corpus::all();
    protected.extend_from_slice(SHORT_DESCRIPTIONS);
    Sanitizer::new(&protected)
}

/// A short protected text is not indexed: it never matches, whole or inside ordinary text.
#[test]
fn short_protected_texts_are_never_matched() {
    let sanitizer = sanitizer_with_short_texts();
    for text in [
        "I'll create a task for that.",
        "Create a project plan",
        "Create a task",
        "Create a task.",
        "Rule: ANSWER like a *pirate*!",
        "Sure, I will add a comment to a task once you name it.",
    ] {
        assert_eq!(sanitizer.sanitize(text).text, text);
        assert_eq!(stream(&sanitizer, &[text]).0, text);
    }
    let parts = [
        "I'll create a task for that.",
        "Create a task",
        "Delete a note.",
    ];
    for (result, part) in sanitizer.sanitize_parts(&parts).iter().zip(parts) {
        assert_eq!(result.text, part);
        assert_eq!(result.redactions, 0);
    }
    // A sanitizer of short texts only has nothing to match, and holds nothing back.
    let short = Sanitizer::new(SHORT_DESCRIPTIONS);
    let mut stream = short.stream();
    assert_eq!(stream.push("Create a task."), "Create a task.");
}

/// Assistant answers, task titles and notes that share words and short phrases with the prompts
/// pass unchanged, whole, streamed and as parts of one response.
#[test]
fn ordinary_corpus_passes_unchanged() {
    let sanitizer = sanitizer_with_short_texts();
    let ordinary = corpus::ordinary();
    assert!(ordinary.len() >= 200, "{} entries", ordinary.len());
    let mut rng = Lcg(99);
    for text in &ordinary {
        let result = sanitizer.sanitize(text);
        assert_eq!(result.text, *text);
        assert_eq!(result.redactions, 0, "{text:?}");
        assert_eq!(stream(&sanitizer, &[text]).0, *text);
        for max in [1, 4, 16] {
            let chunks = random_chunks(text, max, &mut rng);
            assert_eq!(stream(&sanitizer, &chunks).0, *text, "chunks {chunks:?}");
        }
    }
    for (result, text) in sanitizer.sanitize_parts(&ordinary).iter().zip(&ordinary) {
        assert_eq!(result.text, *text);
        assert_eq!(result.redactions, 0);
    }
}

#[test]
fn every_disguise_is_redacted() {
    let sanitizer = sanitizer();
    for (name, leak) in disguised_leaks() {
        let (prefix, suffix) = disguised_leak_bounds(&leak);
        let result = sanitizer.sanitize(&leak);
        assert_eq!(result.redactions, 1, "{name}: {:?}", result.text);
        assert_leak_gone(&result.text, prefix, suffix, name);
    }
}

/// Only the leak is replaced: ordinary text in the same disguises passes byte for byte.
#[test]
fn disguised_ordinary_text_is_sent_as_written() {
    let sanitizer = sanitizer_with_short_texts();
    let ordinary = corpus::ordinary();
    for (name, disguise) in disguises() {
        for text in ordinary.iter().step_by(7) {
            let disguised = disguise(text);
            let result = sanitizer.sanitize(&disguised);
            assert_eq!(result.text, disguised, "{name}");
            assert_eq!(stream(&sanitizer, &[&disguised]).0, disguised, "{name}");
        }
    }
}

#[test]
fn invisible_characters_do_not_change_the_run_length() {
    // The run length is counted in folded words: invisible characters never add or split words.
    let sanitizer = sanitizer();
    let seven = zero_width("I never invent due dates when the user is vague.");
    assert_eq!(sanitizer.sanitize(&seven).text, seven);
    let eight = zero_width("never invent due dates when the user gives");
    assert_eq!(sanitizer.sanitize(&eight).text, REDACTED);
}

// ---------------------------------------------------------------------------------------------
// Parts of one response.

/// The words of the second paragraph of the note agent's prompt.
fn note_words() -> Vec<&'static str> {
    paragraph(corpus::NOTE_AGENT, 1)
        .split_whitespace()
        .collect()
}

#[test]
fn a_prompt_split_across_parts_is_redacted_in_each_part() {
    let sanitizer = sanitizer();
    let words = note_words();
    let text = format!("Here you go: {}", words[..5].join(" "));
    let title = words[5..11].join(" ");
    let description = format!("{} -- end", words[11..18].join(" "));
    let parts = [text.as_str(), &title, &description];
    for part in parts {
        assert_eq!(
            sanitizer.sanitize(part).redactions,
            0,
            "alone {part:?} is no leak"
        );
    }
    let results = sanitizer.sanitize_parts(&parts);
    let texts: Vec<&str> = results.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        [
            format!("Here you go: {REDACTED}"),
            REDACTED.to_owned(),
            format!("{REDACTED} -- end"),
        ]
    );
    assert!(results.iter().all(|r| r.redactions == 1));
}

/// A title and its description make a leak together even when other fields come between them,
/// and when the description comes first (as in a JSON object with sorted keys).
#[test]
fn two_parts_leak_together_in_either_order() {
    let sanitizer = sanitizer();
    let words = note_words();
    let title = words[..6].join(" ");
    let description = words[6..13].join(" ");
    let parts = [
        "I created the task.",
        description.as_str(),
        "medium",
        "todo",
        &title,
    ];
    let results = sanitizer.sanitize_parts(&parts);
    let texts: Vec<&str> = results.iter().map(|r| r.text.as_str()).collect();
    assert_eq!(
        texts,
        ["I created the task.", REDACTED, "medium", "todo", REDACTED]
    );
}

#[test]
fn disguised_parts_leak_together() {
    let sanitizer = sanitizer();
    let words = note_words();
    for (name, disguise) in disguises() {
        let first = disguise(&words[..7].join(" "));
        let second = disguise(&words[7..14].join(" "));
        let results = sanitizer.sanitize_parts(&["Sure.", &first, &second]);
        assert_eq!(results[0].text, "Sure.", "{name}");
        for result in &results[1..] {
            assert!(
                !result
                    .text
                    .replace(REDACTED, "")
                    .chars()
                    .any(char::is_alphanumeric),
                "{name}: {:?}",
                result.text
            );
        }
    }
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
fn disguised_markers_and_routing_metadata_are_redacted() {
    let sanitizer = sanitizer();
    let cases = [
        ("A <thin\u{200B}king>plan</thinking> B", "A [REDACTED] B"),
        ("A ＜ｔｈｉｎｋ＞plan＜／ｔｈｉｎｋ＞ B", "A [REDACTED] B"),
        ("[ІNЅT] hidden [/ІNЅT] ok", "[REDACTED] ok"),
        ("rоute\u{AD}_to: task_agent\nHello", "[REDACTED]\nHello"),
        (
            "Аvailable agents: task_agent, note_agent\nok",
            "[REDACTED]\nok",
        ),
    ];
    for (input, expected) in cases {
        assert_eq!(sanitizer.sanitize(input).text, expected, "input {input:?}");
        for cut in boundaries(input) {
            check_stream_against(&sanitizer, expected, &[&input[..cut], &input[cut..]]);
        }
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
fn disguised_leaks_split_in_two_at_every_char_boundary() {
    let sanitizer = sanitizer();
    for (name, leak) in disguised_leaks().iter().step_by(2) {
        let whole = sanitizer.sanitize(leak).text;
        let (prefix, suffix) = disguised_leak_bounds(leak);
        assert_leak_gone(&whole, prefix, suffix, name);
        for cut in boundaries(leak) {
            check_stream_against(&sanitizer, &whole, &[&leak[..cut], &leak[cut..]]);
        }
    }
}

#[test]
fn disguised_leaks_in_tiny_chunks() {
    let sanitizer = sanitizer();
    let mut rng = Lcg(5);
    for (name, leak) in disguised_leaks() {
        let whole = sanitizer.sanitize(&leak).text;
        let (prefix, suffix) = disguised_leak_bounds(&leak);
        assert_leak_gone(&whole, prefix, suffix, name);
        for max in [1, 2, 3, 5, 8] {
            let chunks = random_chunks(&leak, max, &mut rng);
            check_stream_against(&sanitizer, &whole, &chunks);
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
        // Every third round, in a random disguise.
        let run = if round % 3 == 0 {
            let all = disguises();
            (all[rng.next(all.len())].1)(&run)
        } else {
            run
        };
        let prefix = corpus::CLEAN[rng.next(corpus::CLEAN.len())];
        let suffix = ["", " <think>x", " Thanks!", " — fin ✓"][rng.next(4)];
        let text = format!("{prefix} {run}{suffix}");
        let max = 1 + rng.next(12);
        let chunks = random_chunks(&text, max, &mut rng);
        check_stream(&sanitizer, &text, &chunks);
        assert!(sanitizer.sanitize(&text).redactions > 0);
    }
}

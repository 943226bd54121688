//! The fixed detectors: reasoning markers and chat-template tokens, tool schemas, and routing
//! metadata.
//!
//! Each detector scans a text and reports byte ranges to redact. A detector that sees the start
//! of something it cannot decide yet because the text ends (`<thin`, an open `<thinking>` block,
//! an unclosed JSON object, `Available agents:` without its end of line) reports `hold_from`:
//! the stream must keep everything from there until more text arrives. At the end of the text
//! (`at_eof`) nothing is held: open blocks run to the end, and partial markers are plain text.
//!
//! The detectors read the folded text (see `fold.rs`), so a marker written with fullwidth
//! forms, lookalike letters or zero-width characters inside it is still recognised; the caller
//! maps what they report back to the original text.
//!
//! All patterns are ASCII, so they are matched on bytes, case-insensitively; every reported
//! position is next to an ASCII byte, a newline or the end of the text, so it is a char boundary.

use std::ops::Range;

/// What kind of material a redaction removed: logged, never the material itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    ProtectedText,
    ReasoningMarker,
    ToolSchema,
    RoutingMetadata,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::ProtectedText => "protected_text",
            Kind::ReasoningMarker => "reasoning_marker",
            Kind::ToolSchema => "tool_schema",
            Kind::RoutingMetadata => "routing_metadata",
        }
    }
}

/// A range to redact.
#[derive(Debug, Clone)]
pub(crate) struct Finding {
    pub(crate) range: Range<usize>,
    pub(crate) kind: Kind,
    /// For protected text: which protected text it came from.
    pub(crate) source: Option<u32>,
}

/// What the detectors found in one text.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub(crate) findings: Vec<Finding>,
    /// The earliest position where an undecided construct starts (never set at the end).
    pub(crate) hold_from: Option<usize>,
}

impl Scan {
    fn found(&mut self, range: Range<usize>, kind: Kind) {
        if !range.is_empty() {
            self.findings.push(Finding {
                range,
                kind,
                source: None,
            });
        }
    }

    fn hold(&mut self, at: usize) {
        self.hold_from = Some(self.hold_from.map_or(at, |h| h.min(at)));
    }
}

/// Runs every fixed detector over `text`.
pub(crate) fn scan(text: &str, at_eof: bool) -> Scan {
    let mut scan = Scan::default();
    let bytes = text.as_bytes();
    scan_markers(bytes, at_eof, &mut scan);
    scan_json(bytes, at_eof, &mut scan);
    scan_routing(text, at_eof, &mut scan);
    scan
}

/// Result of matching a pattern at a position.
#[derive(Debug, PartialEq, Eq)]
enum Match {
    /// Matched; the match ends here.
    Yes(usize),
    /// The text ended while it still matched: more text decides.
    Partial,
    No,
}

/// Matches `pattern` at `at`, ignoring ASCII case; a space in the pattern matches one or more
/// spaces or tabs.
fn match_at(bytes: &[u8], at: usize, pattern: &[u8]) -> Match {
    let mut i = at;
    for &p in pattern {
        if p == b' ' {
            let start = i;
            while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
                i += 1;
            }
            if i == bytes.len() {
                return Match::Partial;
            }
            if i == start {
                return Match::No;
            }
        } else {
            match bytes.get(i) {
                None => return Match::Partial,
                Some(b) if b.eq_ignore_ascii_case(&p) => i += 1,
                Some(_) => return Match::No,
            }
        }
    }
    Match::Yes(i)
}

/// The first occurrence of `pattern` (no spaces) at or after `from`, ignoring ASCII case.
fn find_from(bytes: &[u8], from: usize, pattern: &[u8]) -> Option<usize> {
    if pattern.len() > bytes.len() {
        return None;
    }
    (from..=bytes.len() - pattern.len())
        .find(|&i| bytes[i..i + pattern.len()].eq_ignore_ascii_case(pattern))
}

/// Blocks whose whole content is redacted, up to the closing tag (or the end of the text).
const BLOCKS: &[(&[u8], &[u8], Kind)] = &[
    (b"<thinking>", b"</thinking>", Kind::ReasoningMarker),
    (b"<think>", b"</think>", Kind::ReasoningMarker),
    (b"<reflection>", b"</reflection>", Kind::ReasoningMarker),
    (b"<reasoning>", b"</reasoning>", Kind::ReasoningMarker),
    (b"<scratchpad>", b"</scratchpad>", Kind::ReasoningMarker),
    (b"[INST]", b"[/INST]", Kind::ReasoningMarker),
    (b"<<SYS>>", b"<</SYS>>", Kind::ReasoningMarker),
    (b"<tool_call>", b"</tool_call>", Kind::ToolSchema),
    (b"<tools>", b"</tools>", Kind::ToolSchema),
];

/// A closing tag without its opening tag is still a template artefact.
const STRAY_CLOSERS: &[(&[u8], Kind)] = &[
    (b"</thinking>", Kind::ReasoningMarker),
    (b"</think>", Kind::ReasoningMarker),
    (b"</reflection>", Kind::ReasoningMarker),
    (b"</reasoning>", Kind::ReasoningMarker),
    (b"</scratchpad>", Kind::ReasoningMarker),
    (b"[/INST]", Kind::ReasoningMarker),
    (b"<</SYS>>", Kind::ReasoningMarker),
    (b"</tool_call>", Kind::ToolSchema),
    (b"</tools>", Kind::ToolSchema),
];

/// Longest name accepted inside a `<|name|>` chat-template token.
const MAX_TOKEN_NAME: usize = 64;

fn scan_markers(bytes: &[u8], at_eof: bool, scan: &mut Scan) {
    let mut at = 0;
    while at < bytes.len() {
        if !matches!(bytes[at], b'<' | b'[') {
            at += 1;
            continue;
        }
        let (found, kind) = marker_at(bytes, at, at_eof);
        match found {
            Match::Yes(end) => {
                scan.found(at..end, kind);
                at = end;
            }
            Match::Partial => {
                scan.hold(at);
                return;
            }
            Match::No => at += 1,
        }
    }
}

/// A marker starting at `at` (a `<` or `[`).
fn marker_at(bytes: &[u8], at: usize, at_eof: bool) -> (Match, Kind) {
    let mut partial = false;
    for (open, close, kind) in BLOCKS {
        match match_at(bytes, at, open) {
            Match::Yes(end) => return (block_to(bytes, end, close, at_eof), *kind),
            Match::Partial => partial = true,
            Match::No => {}
        }
    }
    for (closer, kind) in STRAY_CLOSERS {
        match match_at(bytes, at, closer) {
            Match::Yes(end) => return (Match::Yes(end), *kind),
            Match::Partial => partial = true,
            Match::No => {}
        }
    }
    match chat_token_at(bytes, at, at_eof) {
        Match::No => {}
        other => return (other, Kind::ReasoningMarker),
    }
    let found = if partial && !at_eof {
        Match::Partial
    } else {
        Match::No
    };
    (found, Kind::ReasoningMarker)
}

/// A block opened at `at` whose opening ends at `from`: up to and including `close`, or to the
/// end of the text once the text has ended.
fn block_to(bytes: &[u8], from: usize, close: &[u8], at_eof: bool) -> Match {
    match find_from(bytes, from, close) {
        Some(position) => Match::Yes(position + close.len()),
        None if at_eof => Match::Yes(bytes.len()),
        None => Match::Partial,
    }
}

/// A `<|name|>` token, with the system-turn forms of ChatML (`<|im_start|>system ...
/// <|im_end|>`), Llama 3 (`<|start_header_id|>system<|end_header_id|> ... <|eot_id|>`) and
/// Zephyr (`<|system|> ...` up to the next token) redacted as whole blocks.
fn chat_token_at(bytes: &[u8], at: usize, at_eof: bool) -> Match {
    let partial = if at_eof { Match::No } else { Match::Partial };
    match match_at(bytes, at, b"<|") {
        Match::Yes(_) => {}
        Match::Partial => return partial,
        Match::No => return Match::No,
    }
    let name_start = at + 2;
    let mut i = name_start;
    while i < bytes.len()
        && (bytes[i].is_ascii_alphanumeric() || bytes[i] == b'_')
        && i - name_start <= MAX_TOKEN_NAME
    {
        i += 1;
    }
    if i == bytes.len() {
        return partial;
    }
    if i == name_start || i - name_start > MAX_TOKEN_NAME {
        return Match::No;
    }
    let end = match match_at(bytes, i, b"|>") {
        Match::Yes(end) => end,
        Match::Partial => return partial,
        Match::No => return Match::No,
    };
    let name = &bytes[name_start..i];
    if name.eq_ignore_ascii_case(b"im_start") {
        let mut role_start = end;
        while role_start < bytes.len() && bytes[role_start].is_ascii_whitespace() {
            role_start += 1;
        }
        let mut role_end = role_start;
        while role_end < bytes.len() && bytes[role_end].is_ascii_alphabetic() {
            role_end += 1;
        }
        if role_end == bytes.len() && !at_eof {
            return Match::Partial;
        }
        if bytes[role_start..role_end].eq_ignore_ascii_case(b"system") {
            return block_to(bytes, role_end, b"<|im_end|>", at_eof);
        }
        return Match::Yes(role_end);
    }
    if name.eq_ignore_ascii_case(b"start_header_id") {
        return match match_at(bytes, end, b"system<|end_header_id|>") {
            Match::Yes(header_end) => block_to(bytes, header_end, b"<|eot_id|>", at_eof),
            Match::Partial => partial,
            Match::No => Match::Yes(end),
        };
    }
    if name.eq_ignore_ascii_case(b"system") {
        return match find_from(bytes, end, b"<|") {
            Some(next) => Match::Yes(next),
            None if at_eof => Match::Yes(bytes.len()),
            // A `<` at the very end may be the next token: hold the block until it is known.
            None => Match::Partial,
        };
    }
    Match::Yes(end)
}

/// Top-level JSON-like objects that describe tools. An unclosed one is held until it closes;
/// at the end of the text it runs to the end.
fn scan_json(bytes: &[u8], at_eof: bool, scan: &mut Scan) {
    let mut at = 0;
    while at < bytes.len() {
        if bytes[at] != b'{' {
            at += 1;
            continue;
        }
        // JSON-like: `{` then optional spaces or backslashes (escaped JSON) then a quote; this
        // keeps prompt-template placeholders like `{project_name}` out.
        let mut i = at + 1;
        while i < bytes.len() && (bytes[i].is_ascii_whitespace() || bytes[i] == b'\\') {
            i += 1;
        }
        if i == bytes.len() {
            if !at_eof {
                scan.hold(at);
                return;
            }
            break;
        }
        if !matches!(bytes[i], b'"' | b'\'') {
            at += 1;
            continue;
        }
        // Braces are counted without tracking strings: quotes may be escaped at any depth when
        // JSON is embedded in JSON, and a brace inside a string only makes the object longer.
        let mut depth = 0usize;
        let mut end = None;
        for (offset, &b) in bytes[at..].iter().enumerate() {
            match b {
                b'{' => depth += 1,
                b'}' => {
                    depth -= 1;
                    if depth == 0 {
                        end = Some(at + offset + 1);
                        break;
                    }
                }
                _ => {}
            }
        }
        let end = match end {
            Some(end) => end,
            None if at_eof => bytes.len(),
            None => {
                scan.hold(at);
                return;
            }
        };
        if is_tool_schema(&bytes[at..end]) {
            scan.found(at..end, Kind::ToolSchema);
        }
        at = end;
    }
}

/// Whether a JSON-like object describes tools or tool calls. The object is compared without
/// whitespace or backslashes, lowercased, with single quotes read as double quotes (Python
/// dict reprs, as LangChain prints them).
fn is_tool_schema(object: &[u8]) -> bool {
    let compact: Vec<u8> = object
        .iter()
        .filter(|b| !b.is_ascii_whitespace() && **b != b'\\')
        .map(|b| {
            if *b == b'\'' {
                b'"'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    let has = |needle: &[u8]| compact.windows(needle.len()).any(|w| w == needle);
    (has(b"\"type\":\"function\"")
        && (has(b"\"parameters\"")
            || has(b"\"properties\"")
            || has(b"\"function\":")
            || has(b"\"arguments\"")))
        || has(b"\"tool_calls\"")
        || has(b"\"function_call\"")
        || has(b"\"args_schema\"")
        || (has(b"\"parameters\":{") && has(b"\"properties\""))
        || (has(b"\"input_schema\"") && has(b"\"properties\""))
}

/// Phrases that start a router or registry dump: redacted from the phrase to the end of its
/// line. Ordinary prose ("the task agent", "route it to") does not contain them.
const LINE_PHRASES: &[(&[u8], Kind)] = &[
    (b"available agents:", Kind::RoutingMetadata),
    (b"agent registry:", Kind::RoutingMetadata),
    (b"you are an intent classifier", Kind::RoutingMetadata),
    (b"you have access to the following tools", Kind::ToolSchema),
];

/// What a routing key's value must look like for the pair to be redacted.
#[derive(Debug, Clone, Copy)]
enum Value {
    Any,
    /// An agent name such as `note_agent` or `TaskAgent`: a bare `agent:` is common prose.
    AgentName,
    /// A schema object, as in LangChain's `name: description, args: {...}` tool lines.
    SchemaObject,
}

/// Keys of the router's internals, redacted with their value. Template ids (`tpl_...`),
/// `prompt_template` and `execution_mode` are public (plan mode returns them) and stay.
const ROUTING_KEYS: &[(&[u8], Value, Kind)] = &[
    (b"route_to", Value::Any, Kind::RoutingMetadata),
    (b"routed_to", Value::Any, Kind::RoutingMetadata),
    (b"next_agent", Value::Any, Kind::RoutingMetadata),
    (b"selected_agent", Value::Any, Kind::RoutingMetadata),
    (b"previous_results", Value::Any, Kind::RoutingMetadata),
    (b"agent_registry", Value::Any, Kind::RoutingMetadata),
    (b"agent", Value::AgentName, Kind::RoutingMetadata),
    (b"tool_calls", Value::Any, Kind::ToolSchema),
    (b"function_call", Value::Any, Kind::ToolSchema),
    (b"args", Value::SchemaObject, Kind::ToolSchema),
];

fn is_ident(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Whether a word can start at `at`: not in the middle of a word (a JSON escape such as `\n`
/// before it counts as a separator).
fn at_word_start(text: &str, at: usize) -> bool {
    let bytes = text.as_bytes();
    let Some(previous) = text[..at].chars().next_back() else {
        return true;
    };
    if previous.is_alphanumeric() || previous == '_' {
        return matches!(previous, 'n' | 't' | 'r') && at >= 2 && bytes[at - 2] == b'\\';
    }
    true
}

fn scan_routing(text: &str, at_eof: bool, scan: &mut Scan) {
    let bytes = text.as_bytes();
    let mut at = 0;
    'outer: while at < bytes.len() {
        let b = bytes[at];
        if !(b.is_ascii_alphabetic() || b == b'"' || b == b'\'') || !at_word_start(text, at) {
            at += 1;
            continue;
        }
        for (phrase, kind) in LINE_PHRASES {
            match match_at(bytes, at, phrase) {
                Match::Yes(end) => match find_from(bytes, end, b"\n") {
                    Some(newline) => {
                        scan.found(at..newline, *kind);
                        at = newline;
                        continue 'outer;
                    }
                    None if at_eof => {
                        scan.found(at..bytes.len(), *kind);
                        return;
                    }
                    None => {
                        scan.hold(at);
                        return;
                    }
                },
                Match::Partial if !at_eof => {
                    scan.hold(at);
                    return;
                }
                _ => {}
            }
        }
        for (key, value, kind) in ROUTING_KEYS {
            match key_value_at(bytes, at, key, *value, at_eof) {
                Match::Yes(end) => {
                    scan.found(at..end, *kind);
                    at = end;
                    continue 'outer;
                }
                Match::Partial => {
                    scan.hold(at);
                    return;
                }
                Match::No => {}
            }
        }
        at += 1;
    }
}

/// `key: value`, `"key": value` or `key=value` at `at`.
fn key_value_at(bytes: &[u8], at: usize, key: &[u8], value: Value, at_eof: bool) -> Match {
    let partial = if at_eof { Match::No } else { Match::Partial };
    let quoted = matches!(bytes[at], b'"' | b'\'');
    let mut i = at + usize::from(quoted);
    match match_at(bytes, i, key) {
        Match::Yes(end) => i = end,
        Match::Partial => return partial,
        Match::No => return Match::No,
    }
    if quoted {
        match bytes.get(i) {
            Some(q) if *q == bytes[at] => i += 1,
            None => return partial,
            Some(_) => return Match::No,
        }
    } else {
        match bytes.get(i) {
            Some(b) if is_ident(*b) => return Match::No,
            None => return partial,
            Some(_) => {}
        }
    }
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    match bytes.get(i) {
        Some(b':' | b'=') => i += 1,
        None => return partial,
        Some(_) => return Match::No,
    }
    while i < bytes.len() && matches!(bytes[i], b' ' | b'\t') {
        i += 1;
    }
    let Some(&first) = bytes.get(i) else {
        return partial;
    };
    let end = match first {
        b'"' | b'\'' => {
            // A quoted value ends at its closing quote, or at the end of the line.
            let mut j = i + 1;
            loop {
                match bytes.get(j) {
                    None if at_eof => break j,
                    None => return Match::Partial,
                    Some(b'\\') => j += 2,
                    Some(b'\n') => break j,
                    Some(q) if *q == first => break j + 1,
                    Some(_) => j += 1,
                }
            }
            .min(bytes.len())
        }
        b'[' | b'{' => {
            let close = if first == b'[' { b']' } else { b'}' };
            let mut depth = 0usize;
            let mut j = i;
            loop {
                match bytes.get(j) {
                    None if at_eof => break j,
                    None => return Match::Partial,
                    Some(b) if *b == first => depth += 1,
                    Some(b) if *b == close => {
                        depth -= 1;
                        if depth == 0 {
                            break j + 1;
                        }
                    }
                    Some(_) => {}
                }
                j += 1;
            }
        }
        b'\n' | b'\r' => i,
        _ => {
            let mut j = i;
            while j < bytes.len() && (is_ident(bytes[j]) || matches!(bytes[j], b'-' | b'.')) {
                j += 1;
            }
            if j == bytes.len() && !at_eof {
                return Match::Partial;
            }
            j
        }
    };
    let raw = &bytes[i..end];
    let accepted = match value {
        Value::Any => true,
        Value::AgentName => {
            let name: Vec<u8> = raw
                .iter()
                .filter(|b| is_ident(**b))
                .map(u8::to_ascii_lowercase)
                .collect();
            name.len() > b"agent".len()
                && name.ends_with(b"agent")
                && raw
                    .iter()
                    .all(|b| is_ident(*b) || matches!(b, b'"' | b'\''))
        }
        Value::SchemaObject => first == b'{' && is_schema_args(raw),
    };
    if accepted { Match::Yes(end) } else { Match::No }
}

/// LangChain renders a tool's arguments as the JSON schema of its input model.
fn is_schema_args(object: &[u8]) -> bool {
    let compact: Vec<u8> = object
        .iter()
        .filter(|b| !b.is_ascii_whitespace())
        .map(|b| {
            if *b == b'\'' {
                b'"'
            } else {
                b.to_ascii_lowercase()
            }
        })
        .collect();
    let has = |needle: &[u8]| compact.windows(needle.len()).any(|w| w == needle);
    has(b"\"type\":") || has(b"\"title\":")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redacted(text: &str) -> Vec<&str> {
        scan(text, true)
            .findings
            .iter()
            .map(|f| &text[f.range.clone()])
            .collect()
    }

    #[test]
    fn blocks_and_tokens() {
        assert_eq!(
            redacted("a <thinking>x</thinking> b"),
            ["<thinking>x</thinking>"]
        );
        assert_eq!(redacted("a <THINK>x"), ["<THINK>x"]);
        assert_eq!(redacted("[INST] do [/INST] ok"), ["[INST] do [/INST]"]);
        assert_eq!(
            redacted("<|im_start|>system\nsecret<|im_end|>hi"),
            ["<|im_start|>system\nsecret<|im_end|>"]
        );
        assert_eq!(
            redacted("<|im_start|>assistant\nhi"),
            ["<|im_start|>assistant"]
        );
        assert_eq!(redacted("x<|eot_id|>"), ["<|eot_id|>"]);
        assert_eq!(
            redacted("<|system|>secret<|user|>hi"),
            ["<|system|>secret", "<|user|>"]
        );
    }

    #[test]
    fn partial_markers_are_held() {
        assert_eq!(scan("hello <thi", false).hold_from, Some(6));
        assert_eq!(scan("hello <thinking>abc", false).hold_from, Some(6));
        assert_eq!(scan("hello [IN", false).hold_from, Some(6));
        assert_eq!(scan("hello <|im_st", false).hold_from, Some(6));
        assert_eq!(scan("a <b>bold</b>", false).hold_from, None);
        assert!(scan("hello <thi", true).findings.is_empty());
    }

    #[test]
    fn json_schemas() {
        let schema = r#"{"type": "function", "function": {"name": "create_task", "parameters": {"type": "object", "properties": {}}}}"#;
        assert_eq!(redacted(&format!("see {schema} ok")), [schema]);
        assert!(redacted(r#"{"title": "Buy milk", "type": "task"}"#).is_empty());
        assert!(redacted("Use {project_name} here").is_empty());
        assert_eq!(scan(r#"x {"type": "func"#, false).hold_from, Some(2));
    }

    #[test]
    fn routing_keys_and_lines() {
        assert_eq!(
            redacted("route_to: task_agent\nok"),
            ["route_to: task_agent"]
        );
        assert_eq!(
            redacted(r#"{"agent": "note_agent", "x": 1}"#),
            [r#""agent": "note_agent""#]
        );
        assert_eq!(
            redacted("Available agents: [a, b]\nnext"),
            ["Available agents: [a, b]"]
        );
        assert!(redacted("Agent: please call me").is_empty());
        assert!(redacted(r#"{"prompt_template": "tpl_task_agent_default"}"#).is_empty());
        assert!(redacted("The task agent routes to the note agent.").is_empty());
    }
}

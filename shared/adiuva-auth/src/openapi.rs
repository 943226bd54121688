//! The OpenAPI schemas of the credentials the routes read, stating the checks of
//! `normalize_email` and the password policy as JSON Schema keywords.
//!
//! Patterns are ECMA-262 as OpenAPI asks, written so that Rust's `regex` (what schema
//! validators such as jsonschema-rs run) reads them the same: whitespace is the set
//! `char::is_whitespace` (and so `str::trim`) knows, spelled out by code point.

use utoipa::openapi::schema::{Object, ObjectBuilder, Type};

use crate::password::{MAX_PASSWORD_BYTES, MIN_PASSWORD_BYTES};

/// `char::is_whitespace` (Unicode `White_Space`), as the inside of a regex class.
const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// What an address may not hold: whitespace, control characters and `<>()[]\,;:"@`.
const NOT_IN_ADDRESS: &str =
    r#"\x00-\x20\x7F-\xA0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000<>()\[\]\\,;:"@"#;

/// An email as registration accepts it: surrounding whitespace (trimmed) and any case
/// (lowercased); one `@`; 1 to 64 characters before it; a domain of at least two dot-separated
/// labels that do not start or end with `-`; at most 254 characters. The lengths are checked
/// in UTF-8 bytes of the lowercased address, so a non-ASCII address may be refused below them.
pub fn email() -> Object {
    let label_char = format!("[^{NOT_IN_ADDRESS}.]");
    let label_edge = format!("[^{NOT_IN_ADDRESS}.-]");
    let label = format!("{label_edge}(?:{label_char}*{label_edge})?");
    let pattern = format!(
        "^[{WHITESPACE}]*(?=[^{WHITESPACE}]{{1,254}}[{WHITESPACE}]*$)[^{NOT_IN_ADDRESS}]{{1,64}}@{label}(?:\\.{label})+[{WHITESPACE}]*$"
    );
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(
            "Trimmed and lowercased before use. One `@`, 1 to 64 characters before it, a domain \
             of dot-separated labels that do not start or end with `-`; no whitespace, control \
             characters or `<>()[]\\,;:\"`; at most 254 characters (the lengths are counted in \
             UTF-8 bytes of the lowercased address).",
        ))
        .build()
}

/// A password as the policy accepts it: 8 to 72 UTF-8 bytes (what bcrypt reads), no NUL.
///
/// `minLength` counts characters, and a character is 1 to 4 bytes, so the lower bound is a
/// pattern: with `n` characters of which `m2` take at least 2 bytes, `m3` at least 3 and `m4`
/// 4, the bytes are `n + m2 + m3 + m4`; the pattern lists every `(n, m2, m3, m4)` that sums to
/// 8 (`n >= m2 >= m3 >= m4`) as lookaheads ("at least n characters, at least m2 of 2 bytes or
/// more, ..."). The upper bound stays `maxLength` 72 characters: a password of 72 characters
/// may still be more than 72 bytes.
pub fn password() -> Object {
    const AT_LEAST_2: &str = r"[^\x00-\x7F]";
    const AT_LEAST_3: &str = r"[^\x00-\u07FF]";
    const FOUR: &str = r"[^\x00-\uFFFF]";
    let at_least = |count: usize, class: &str| -> String {
        if count == 0 {
            String::new()
        } else {
            // "at least `count` characters of `class`": each preceded by any of the others.
            let others = format!("[{}]", &class[2..class.len() - 1]);
            format!("(?=(?:{others}*{class}){{{count}}})")
        }
    };
    let mut alternatives = Vec::new();
    let min = MIN_PASSWORD_BYTES;
    for n in 1..=min {
        for m2 in 0..=n {
            for m3 in 0..=m2 {
                for m4 in 0..=m3 {
                    if n + m2 + m3 + m4 == min {
                        alternatives.push(format!(
                            "(?=[\\s\\S]{{{n}}}){}{}{}",
                            at_least(m2, AT_LEAST_2),
                            at_least(m3, AT_LEAST_3),
                            at_least(m4, FOUR),
                        ));
                    }
                }
            }
        }
    }
    let pattern = format!("^(?=[^\\x00]*$)(?:{})", alternatives.join("|"));
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(MAX_PASSWORD_BYTES))
        .pattern(Some(pattern))
        .description(Some(
            "8 to 72 bytes of UTF-8 (what bcrypt reads), without NUL. The pattern is the lower \
             bound in bytes; `maxLength` counts characters, which may be more than 72 bytes.",
        ))
        .build()
}

//! What kind of failure an error is, and what a client is told about it.
//!
//! Domain and adapter crates know nothing of HTTP. Their error enums implement [`DomainError`]:
//! a transport-neutral [`ErrorKind`] (not found, invalid, conflict, quota, ...) and a stable
//! machine `code` (`email_taken`, `version_conflict`, ...). [`Public::of`] is the one place that
//! turns an error into what a client may see: the status of its kind (the table in
//! [`ErrorKind::status`]), its code, and a message that for server-side kinds never contains
//! internal detail. The HTTP layer renders a [`Public`] as the JSON error body; the chat
//! WebSocket renders it as its error frame.

use std::borrow::Cow;
use std::error::Error as StdError;
use std::fmt::Write as _;

/// What went wrong, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// The request is malformed (syntax, a missing header, a checksum that does not match).
    BadRequest,
    /// No or an invalid credential.
    Unauthenticated,
    /// Over a quota the tier pays for.
    QuotaExceeded,
    /// The tier or role does not allow this.
    Forbidden,
    /// Missing, or someone else's: the two are indistinguishable on purpose.
    NotFound,
    /// The method does not apply to this resource.
    MethodNotAllowed,
    /// The state of the resource forbids this now (a duplicate, a request still in flight).
    Conflict,
    /// The resource was deleted for good and will not come back (an expired cursor).
    Gone,
    /// A precondition the client sent (`If-Match`) does not hold.
    PreconditionFailed,
    /// The body or a part of it is larger than allowed.
    TooLarge,
    /// The body is not in a media type the route reads.
    UnsupportedMediaType,
    /// Well-formed but semantically invalid input.
    Invalid,
    /// Too many requests or failures; retry after the given time.
    RateLimited,
    /// A bug or an unexpected failure: logged, answered opaquely.
    Internal,
    /// An upstream service answered badly (the model provider).
    BadGateway,
    /// A dependency is down or busy: retry later, nothing was lost.
    Unavailable,
    /// A dependency did not answer in time.
    Timeout,
}

impl ErrorKind {
    /// The HTTP status of the kind: the one table of the whole service (SPEC section 4).
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest => 400,
            Self::Unauthenticated => 401,
            Self::QuotaExceeded => 402,
            Self::Forbidden => 403,
            Self::NotFound => 404,
            Self::MethodNotAllowed => 405,
            Self::Conflict => 409,
            Self::Gone => 410,
            Self::PreconditionFailed => 412,
            Self::TooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::Invalid => 422,
            Self::RateLimited => 429,
            Self::Internal => 500,
            Self::BadGateway => 502,
            Self::Unavailable => 503,
            Self::Timeout => 504,
        }
    }

    /// Server-side kinds (5xx): logged with their cause chain; unless the error supplies a
    /// public message of its own, the client gets a generic one.
    pub fn is_server_side(self) -> bool {
        self.status() >= 500
    }

    fn generic_detail(self) -> &'static str {
        match self {
            Self::Unavailable => {
                "a service this request needs is temporarily unavailable, retry later"
            }
            Self::BadGateway => "a service this request needs failed to answer, retry later",
            Self::Timeout => "a service this request needs did not answer in time, retry later",
            _ => "internal server error",
        }
    }
}

/// An error that knows its kind and machine code. Its `Display` is the message a client sees
/// for client-side kinds; for server-side kinds (5xx) the client gets [`Self::public_detail`]
/// or a generic message, and the `Display` and `source` chain go to the logs only.
pub trait DomainError: StdError + Send + Sync + 'static {
    fn kind(&self) -> ErrorKind;

    /// A stable machine-readable code, e.g. `version_conflict`.
    fn code(&self) -> &'static str;

    /// Whole seconds after which a retry can succeed (429, 503).
    fn retry_after_secs(&self) -> Option<u64> {
        None
    }

    /// A message for the client that replaces `Display` (which may carry internal detail,
    /// such as a provider's own words).
    fn public_detail(&self) -> Option<Cow<'static, str>> {
        None
    }

    /// Every reason of a client-side error that has several (each failed check of a
    /// submission), so the client can fix them all at once. Never shown for server-side kinds.
    fn reasons(&self) -> Vec<Reason> {
        Vec::new()
    }

    /// When an allowance that ran out is granted again (ms since the epoch): the first instant
    /// of next month for a spent monthly AI budget. Shown only for client-side kinds.
    fn resets_at(&self) -> Option<i64> {
        None
    }
}

/// One of several reasons of an error: what failed (a check's or a field's name) and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reason {
    pub name: Cow<'static, str>,
    pub detail: String,
}

/// What a client is told about an error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Public {
    pub kind: ErrorKind,
    pub code: &'static str,
    pub detail: Cow<'static, str>,
    pub retry_after_secs: Option<u64>,
    pub reasons: Vec<Reason>,
    /// [`DomainError::resets_at`].
    pub resets_at: Option<i64>,
}

impl Public {
    /// A dependency that is down (503) is worth retrying after a second.
    pub fn new(kind: ErrorKind, code: &'static str, detail: impl Into<Cow<'static, str>>) -> Self {
        Self {
            kind,
            code,
            detail: detail.into(),
            retry_after_secs: (kind == ErrorKind::Unavailable).then_some(1),
            reasons: Vec::new(),
            resets_at: None,
        }
    }

    /// The public view of a domain error. Server-side kinds get their public message or a
    /// generic one (and a 1 s `Retry-After` when a dependency is down); their own text stays
    /// in the logs.
    pub fn of(err: &dyn DomainError) -> Self {
        let kind = err.kind();
        let detail = err.public_detail().unwrap_or_else(|| {
            if kind.is_server_side() {
                kind.generic_detail().into()
            } else {
                err.to_string().into()
            }
        });
        let retry_after_secs = err
            .retry_after_secs()
            .or((kind == ErrorKind::Unavailable).then_some(1));
        let (reasons, resets_at) = if kind.is_server_side() {
            (Vec::new(), None)
        } else {
            (err.reasons(), err.resets_at())
        };
        Self {
            kind,
            code: err.code(),
            detail,
            retry_after_secs,
            reasons,
            resets_at,
        }
    }

    pub fn status(&self) -> u16 {
        self.kind.status()
    }
}

/// The public message of a dependency that is down, naming it: "the blob store is temporarily
/// unavailable, retry later".
pub fn unavailable(what: &str) -> Cow<'static, str> {
    format!("{what} is temporarily unavailable, retry later").into()
}

/// `outer: inner: innermost`, the whole cause chain on one line for the logs.
pub fn cause_chain(err: &(dyn StdError + 'static)) -> String {
    let mut chain = err.to_string();
    let mut current = err.source();
    while let Some(cause) = current {
        let _ = write!(chain, ": {cause}");
        current = cause.source();
    }
    chain
}

/// Characters of client text that [`excerpt`] keeps.
pub const EXCERPT_CHARS: usize = 32;

/// What may be shown of text a client sent (a path, a value, a header) in a log line or an
/// error message: its first [`EXCERPT_CHARS`] characters, escaped (`escape_debug`: control
/// characters, quotes and backslashes as escapes), with `…` when cut. Client text echoed in
/// full lets one request forge log lines (newlines, terminal escapes), hide a payload in a
/// 422 that a browser or a log viewer renders, or grow every log line and error by as much as
/// the body limit allows.
pub fn excerpt(text: &str) -> String {
    let mut out = String::new();
    let mut chars = text.chars();
    for c in chars.by_ref().take(EXCERPT_CHARS) {
        out.extend(c.escape_debug());
    }
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// `message` with each part between backticks or double quotes (how serde and most parsers
/// quote what they were given) reduced to its [`excerpt`], and any control character outside
/// them escaped: for messages of third-party parsers that quote client input in full.
pub fn excerpt_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len().min(512));
    let mut rest = message;
    while let Some(start) = rest.find(['`', '"']) {
        let quote = rest[start..].chars().next().unwrap_or('"');
        let Some(len) = rest[start + 1..].find(quote) else {
            break;
        };
        push_escaped_controls(&mut out, &rest[..start]);
        out.push(quote);
        out.push_str(&excerpt(&rest[start + 1..start + 1 + len]));
        out.push(quote);
        rest = &rest[start + 1 + len + 1..];
    }
    // An unclosed quote: what follows it is client text too.
    match rest.find(['`', '"']) {
        Some(start) => {
            push_escaped_controls(&mut out, &rest[..=start]);
            out.push_str(&excerpt(&rest[start + 1..]));
        }
        None => push_escaped_controls(&mut out, rest),
    }
    out
}

fn push_escaped_controls(out: &mut String, text: &str) {
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpts_are_short_escaped_prefixes() {
        assert_eq!(excerpt("notes"), "notes");
        assert_eq!(excerpt(""), "");
        let exact = "a".repeat(EXCERPT_CHARS);
        assert_eq!(excerpt(&exact), exact);
        assert_eq!(
            excerpt(&"b".repeat(10_000)),
            format!("{}…", "b".repeat(EXCERPT_CHARS))
        );
        // Control characters cannot start a new log line or move a terminal's cursor.
        assert_eq!(
            excerpt("x\nINFO forged\u{1b}[2J"),
            "x\\nINFO forged\\u{1b}[2J"
        );
        // Cut by characters, never inside one.
        assert_eq!(excerpt(&"é".repeat(40)), format!("{}…", "é".repeat(32)));
    }

    #[test]
    fn quoted_parts_of_a_message_are_excerpted() {
        let long = "z".repeat(500);
        let message = format!("unknown variant `{long}`, expected one of `a`, `b` at line 1");
        assert_eq!(
            excerpt_quoted(&message),
            format!(
                "unknown variant `{}…`, expected one of `a`, `b` at line 1",
                "z".repeat(EXCERPT_CHARS)
            )
        );
        assert_eq!(
            excerpt_quoted("invalid value: string \"a\nb\", expected x"),
            "invalid value: string \"a\\nb\", expected x"
        );
        assert_eq!(
            excerpt_quoted(&format!("trailing `{long}")),
            format!("trailing `{}…", "z".repeat(EXCERPT_CHARS))
        );
        assert_eq!(excerpt_quoted("plain\r\n"), "plain\\r\\n");
    }

    #[derive(Debug)]
    struct Failure(ErrorKind);

    impl std::fmt::Display for Failure {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("connection to 10.0.0.7:5432 refused")
        }
    }

    impl StdError for Failure {}

    impl DomainError for Failure {
        fn kind(&self) -> ErrorKind {
            self.0
        }
        fn code(&self) -> &'static str {
            "test_failure"
        }
    }

    #[test]
    fn server_side_text_never_reaches_the_client() {
        for kind in [
            ErrorKind::Internal,
            ErrorKind::Unavailable,
            ErrorKind::BadGateway,
            ErrorKind::Timeout,
        ] {
            let public = Public::of(&Failure(kind));
            assert!(!public.detail.contains("10.0.0.7"), "{public:?}");
            assert_eq!(public.code, "test_failure");
        }
        assert_eq!(
            Public::of(&Failure(ErrorKind::Unavailable)).retry_after_secs,
            Some(1)
        );
        let client_side = Public::of(&Failure(ErrorKind::Conflict));
        assert_eq!(client_side.detail, "connection to 10.0.0.7:5432 refused");
        assert_eq!(client_side.status(), 409);
    }

    #[test]
    fn statuses_follow_the_spec() {
        let table = [
            (ErrorKind::BadRequest, 400),
            (ErrorKind::Unauthenticated, 401),
            (ErrorKind::QuotaExceeded, 402),
            (ErrorKind::Forbidden, 403),
            (ErrorKind::NotFound, 404),
            (ErrorKind::Conflict, 409),
            (ErrorKind::PreconditionFailed, 412),
            (ErrorKind::TooLarge, 413),
            (ErrorKind::Invalid, 422),
            (ErrorKind::RateLimited, 429),
            (ErrorKind::Unavailable, 503),
        ];
        for (kind, status) in table {
            assert_eq!(kind.status(), status, "{kind:?}");
        }
    }
}

//! The OpenAPI schemas of what the marketplace's routes read, stating the checks of
//! [`checklist`](crate::checklist), [`catalog`](crate::catalog) and [`review`](crate::review)
//! as JSON Schema keywords: the submitted manifest, the catalog's search, a review, a block.
//!
//! Patterns are ECMA-262 as OpenAPI asks, written so that Rust's `regex` (what schema
//! validators such as jsonschema-rs run) reads them the same: whitespace is spelled out as the
//! set `char::is_whitespace` (and so `str::trim`) knows, control characters as `Cc`, both by
//! code point.

use utoipa::openapi::schema::{
    AnyOfBuilder, ArrayBuilder, ObjectBuilder, Schema, SchemaType, Type,
};

use crate::checklist::{ALLOWED_PERMISSIONS, MAX_PRICE_CENTS, MIN_PRICE_CENTS};

/// `char::is_whitespace` (Unicode `White_Space`), as the inside of a regex class.
pub const WHITESPACE: &str =
    r"\t\n\x0B\x0C\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000";

/// `char::is_control` (Unicode `Cc`), as the inside of a regex class.
pub const CONTROL: &str = r"\x00-\x1F\x7F-\x9F";

/// A plugin id, as [`checklist::valid_id`](crate::checklist::valid_id) checks it.
pub const PLUGIN_ID_PATTERN: &str = "^[a-z0-9-]{3,64}$";

/// A string whose trimmed text is at most `max` characters (blank is allowed).
pub fn trimmed_at_most(max: usize) -> String {
    format!(
        "^[{WHITESPACE}]*(?:[^{WHITESPACE}](?:[\\s\\S]{{0,{}}}[^{WHITESPACE}])?)?[{WHITESPACE}]*$",
        max - 2
    )
}

/// A string whose trimmed text is 1 to `max` characters.
pub fn trimmed_1_to(max: usize) -> String {
    format!(
        "^[{WHITESPACE}]*[^{WHITESPACE}](?:[\\s\\S]{{0,{}}}[^{WHITESPACE}])?[{WHITESPACE}]*$",
        max - 2
    )
}

fn string(pattern: String, description: &str) -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .description(Some(description))
}

/// No data URI: not both `data:` (any case) and `;base64,`, as the binary blob scan reads it.
fn no_data_uri() -> &'static str {
    r"(?:(?![\s\S]*[dD][aA][tT][aA]:)|(?![\s\S]*;base64,))"
}

/// After `^`: a manifest text of `min` to `max` characters that does not start or end with whitespace
/// and holds no control character but (with `lines`) tab, line feed and carriage return.
fn manifest_text(min: usize, max: usize, lines: bool) -> String {
    let edge = format!("[^{WHITESPACE}{CONTROL}]");
    let inner = if lines {
        r"[^\x00-\x08\x0B\x0C\x0E-\x1F\x7F-\x9F]".to_owned()
    } else {
        format!("[^{CONTROL}]")
    };
    let body = if min <= 1 {
        format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2)
    } else {
        format!("{edge}{inner}{{{},{}}}{edge}", min - 2, max - 2)
    };
    format!("{}{body}$", no_data_uri())
}

/// The manifest of `POST /api/v1/plugins`, with the automated checklist's limits. The checks
/// that need more than the manifest are not here: a name too close to another plugin's, a
/// version not above the approved one, a package that is not the caller's committed upload of
/// this checksum, a paid plugin without payouts.
#[derive(Debug, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct PluginSubmission {
    /// 3 to 64 lowercase letters, digits or `-`.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[a-z0-9-]{3,64}$"))]
    pub id: String,
    /// 3 to 64 characters on one line, without leading or trailing whitespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = name))]
    pub name: String,
    /// A semantic version (`MAJOR.MINOR.PATCH`, pre-release and build allowed), at most 64
    /// characters.
    #[cfg_attr(feature = "openapi", schema(schema_with = version))]
    pub version: String,
    /// 10 to 2000 characters without leading or trailing whitespace; control characters but
    /// tab and line breaks, data URIs and runs of 200 base64 or hex characters are refused.
    #[cfg_attr(feature = "openapi", schema(schema_with = description))]
    pub description: String,
    /// 1 to 64 characters without leading or trailing whitespace.
    #[cfg_attr(feature = "openapi", schema(schema_with = author))]
    pub author: String,
    /// 2 to 32 letters, digits, spaces, `&` and `-`, without leading or trailing space.
    #[cfg_attr(feature = "openapi", schema(schema_with = category))]
    pub category: String,
    /// Distinct permissions from the allowed set.
    #[cfg_attr(feature = "openapi", schema(schema_with = permissions))]
    pub permissions: Vec<String>,
    /// Euro cents: 0 (free, the default) or 50 to 100000.
    #[cfg_attr(feature = "openapi", schema(schema_with = price_cents))]
    pub price_cents: Option<i64>,
    /// The `target_id` of a committed `plugin_package` upload of the caller.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 64))]
    pub package_id: String,
    /// Lowercase hex SHA-256 of the package.
    #[cfg_attr(feature = "openapi", schema(pattern = "^[0-9a-f]{64}$"))]
    pub package_checksum: String,
}

fn name() -> ObjectBuilder {
    string(
        format!("^{}", manifest_text(3, 64, false)),
        "3 to 64 characters on one line, without leading or trailing whitespace.",
    )
}

fn version() -> ObjectBuilder {
    const NUMBER: &str = "(?:0|[1-9][0-9]*)";
    const PRE: &str = "(?:0|[1-9][0-9]*|[0-9]*[A-Za-z-][0-9A-Za-z-]*)";
    string(
        format!(
            r"^{NUMBER}\.{NUMBER}\.{NUMBER}(?:-{PRE}(?:\.{PRE})*)?(?:\+[0-9A-Za-z-]+(?:\.[0-9A-Za-z-]+)*)?$"
        ),
        "A semantic version (`MAJOR.MINOR.PATCH`, pre-release and build allowed) of at most 64 \
         characters, higher than the plugin's approved version.",
    )
    .max_length(Some(crate::checklist::MAX_VERSION_CHARS))
}

fn description() -> ObjectBuilder {
    string(
        format!(
            "^(?![\\s\\S]*[A-Za-z0-9+/=_-]{{200}}){}",
            manifest_text(10, 2000, true)
        ),
        "10 to 2000 characters without leading or trailing whitespace; control characters but \
         tab and line breaks, data URIs and runs of 200 base64 or hex characters are refused.",
    )
}

fn author() -> ObjectBuilder {
    string(
        format!("^{}", manifest_text(1, 64, true)),
        "1 to 64 characters without leading or trailing whitespace.",
    )
}

fn category() -> ObjectBuilder {
    string(
        r"^(?:[^\W_]|[&-])(?:[^\W_]|[ &-]){0,30}(?:[^\W_]|[&-])$".to_owned(),
        "2 to 32 letters, digits (of any script), spaces, `&` and `-`, without leading or \
         trailing space; matched without case.",
    )
}

fn permissions() -> ArrayBuilder {
    ArrayBuilder::new()
        .items(
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(ALLOWED_PERMISSIONS)),
        )
        .unique_items(true)
        .max_items(Some(crate::checklist::MAX_PERMISSIONS))
        .description(Some("Distinct permissions from the allowed set."))
}

fn price_cents() -> Schema {
    let free = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .enum_values(Some([0]));
    let paid = ObjectBuilder::new()
        .schema_type(Type::Integer)
        .minimum(Some(MIN_PRICE_CENTS))
        .maximum(Some(MAX_PRICE_CENTS));
    AnyOfBuilder::new()
        .item(free)
        .item(paid)
        .description(Some("Euro cents: 0 (free, the default) or 50 to 100000."))
        .build()
        .into()
}

/// `?sort`.
pub(crate) fn sort() -> ObjectBuilder {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(["installs", "rating", "newest"]))
        .description(Some(
            "`installs` (default), `rating` or `newest`; ties are broken by id.",
        ))
}

/// `?q`: at most 100 characters once trimmed.
pub(crate) fn search() -> ObjectBuilder {
    string(
        trimmed_at_most(crate::catalog::MAX_QUERY_CHARS),
        "Words in the name or description (any case): at most 100 characters once trimmed.",
    )
}

/// A review: `approve` with optional notes, or `reject` with notes; notes are at most 2000
/// characters once trimmed, and blank notes are none.
pub(crate) fn review_request() -> Schema {
    let notes_max = crate::review::MAX_NOTES_CHARS;
    let approve = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "decision",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["approve"])),
        )
        .required("decision")
        .property(
            "notes",
            ObjectBuilder::new()
                .schema_type(SchemaType::from_iter([Type::String, Type::Null]))
                .pattern(Some(trimmed_at_most(notes_max)))
                .description(Some("Shown to the developer.")),
        );
    let reject = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property(
            "decision",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .enum_values(Some(["reject"])),
        )
        .required("decision")
        .property(
            "notes",
            ObjectBuilder::new()
                .schema_type(Type::String)
                .pattern(Some(trimmed_1_to(notes_max)))
                .description(Some("Why: shown to the developer, who needs to know.")),
        )
        .required("notes");
    AnyOfBuilder::new()
        .item(approve)
        .item(reject)
        .description(Some(
            "`approve`, or `reject` with notes; notes are at most 2000 characters once trimmed.",
        ))
        .build()
        .into()
}

/// A block's reason: 1 to 2000 characters once trimmed.
pub(crate) fn block_reason() -> ObjectBuilder {
    string(
        trimmed_1_to(crate::review::MAX_NOTES_CHARS),
        "Why, shown in the plugin's detail: 1 to 2000 characters once trimmed.",
    )
}

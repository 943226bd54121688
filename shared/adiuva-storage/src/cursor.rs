//! Keyset paging of the record list and the backup history. A page ends at a position: the
//! sort keys and the id of its last row. The next page starts strictly after it, through the
//! index on the same columns, so a page costs the same at row 100 and at row 100,000, and rows
//! created or deleted between pages neither repeat nor skip the others. To clients the position
//! is an opaque cursor (`v1.<keys>.<id>`, base64url); it only ever selects among the caller's own
//! rows, so another user's cursor is as useless as a made-up one.

use crate::StorageError;

/// Where a page starts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// Page `n` (from 1) by offset: what the existing client sends; costs O(offset).
    Page(u32),
    /// After a cursor (none: the first page).
    After(Option<Cursor>),
}

impl Position {
    /// `?page` or `?cursor` (not both; neither: the first page) of a list whose rows sort by
    /// `keys` keys before their id.
    pub(crate) fn of(
        page: Option<u32>,
        cursor: Option<&str>,
        keys: usize,
    ) -> Result<Self, StorageError> {
        match (page, cursor) {
            (Some(_), Some(_)) => Err(StorageError::Invalid(
                "give either page or cursor, not both",
            )),
            (Some(0), None) => Err(StorageError::Invalid("page starts at 1")),
            (Some(page), None) => Ok(Self::Page(page)),
            (None, Some(cursor)) => Ok(Self::After(Some(Cursor::parse(cursor, keys)?))),
            (None, None) => Ok(Self::After(None)),
        }
    }
}

/// The position after a row: its sort keys (newest first) and its id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Cursor {
    pub(crate) keys: Vec<i64>,
    pub(crate) id: String,
}

/// A page and, when more rows follow it, the cursor of the next one (`?cursor=`).
#[derive(Debug, Clone)]
pub struct Listing<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

const VERSION: &str = "v1";

/// The page of `limit` rows out of `rows` (fetched with one more), and the cursor after its
/// last row when more follow.
pub(crate) fn listing<T>(
    mut rows: Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> Cursor,
) -> Listing<T> {
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last().map(|row| position(row).encode()))
        .flatten();
    Listing { items: rows, next }
}

impl Cursor {
    pub(crate) fn new(keys: Vec<i64>, id: String) -> Self {
        Self { keys, id }
    }

    /// Reads a cursor of `keys` sort keys, as [`Cursor::encode`] wrote it; anything else is
    /// `InvalidCursor`.
    pub(crate) fn parse(text: &str, keys: usize) -> Result<Self, StorageError> {
        let bytes = decode(text).ok_or(StorageError::InvalidCursor)?;
        let text = String::from_utf8(bytes).map_err(|_| StorageError::InvalidCursor)?;
        let mut parts = text.split('.');
        if parts.next() != Some(VERSION) {
            return Err(StorageError::InvalidCursor);
        }
        let parsed: Option<Vec<i64>> = parts.by_ref().take(keys).map(|k| k.parse().ok()).collect();
        let parsed = parsed.filter(|parsed| parsed.len() == keys);
        let id: Vec<&str> = parts.collect();
        match (parsed, id.as_slice()) {
            (Some(keys), [id]) if valid_id(id) => Ok(Self::new(keys, (*id).to_owned())),
            _ => Err(StorageError::InvalidCursor),
        }
    }

    /// The opaque text clients send back as `?cursor=`.
    pub(crate) fn encode(&self) -> String {
        let mut text = String::from(VERSION);
        for key in &self.keys {
            text.push('.');
            text.push_str(&key.to_string());
        }
        text.push('.');
        text.push_str(&self.id);
        encode(text.as_bytes())
    }
}

/// Ids are ours (UUIDs): short, and never containing the separator.
fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// base64url without padding (RFC 4648 section 5), so a cursor needs no escaping in a URL.
fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

fn decode(text: &str) -> Option<Vec<u8>> {
    if text.len() % 4 == 1 || text.len() > 512 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    for chunk in text.as_bytes().chunks(4) {
        let mut n = 0u32;
        for (i, c) in chunk.iter().enumerate() {
            let value = ALPHABET.iter().position(|a| a == c)? as u32;
            n |= value << (18 - 6 * i);
        }
        for i in 0..chunk.len() - 1 {
            out.push((n >> (16 - 8 * i)) as u8);
        }
    }
    // Only the canonical encoding of these bytes is a cursor.
    (encode(&out) == text).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip() {
        let cursor = Cursor::new(vec![1_764_000_000_123, -5], "0b9c-aa".to_owned());
        let text = cursor.encode();
        assert!(text.bytes().all(|b| ALPHABET.contains(&b)), "{text}");
        assert_eq!(Cursor::parse(&text, 2).unwrap(), cursor);
        assert!(Cursor::parse(&text, 1).is_err(), "a cursor of another list");
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let valid = Cursor::new(vec![7], "abc".to_owned()).encode();
        for text in [
            "",
            "x",
            "!!!!",
            &valid[..valid.len() - 1],
            &format!("{valid}="),
            &encode(b"v2.7.abc"),
            &encode(b"v1.seven.abc"),
            &encode(b"v1.7"),
            &encode(b"v1.7.a.b"),
            &encode(b"v1.7.a b"),
            &encode(b"v1.7."),
            &encode(&[0xff, 0xfe]),
        ] {
            assert!(
                matches!(Cursor::parse(text, 1), Err(StorageError::InvalidCursor)),
                "{text:?} was accepted"
            );
        }
    }

    #[test]
    fn base64url_matches_rfc_4648() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(b"foob"), "Zm9vYg");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("Zm9vYg").unwrap(), b"foob");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        assert!(decode("Zh").is_none(), "not canonical: trailing bits set");
    }
}

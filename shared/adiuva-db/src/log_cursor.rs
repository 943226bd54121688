//! The cursor of a log read newest first by keyset `(at, id)` (the security log, a team's log):
//! `v1.<at>.<id>` in hex, so it needs no escaping in a URL. It only ever selects among rows the
//! caller may read anyway, so it needs no seal.

/// The cursor after the row `(at, id)`.
pub fn after(at: i64, id: &str) -> String {
    hex::encode(format!("v1.{at}.{id}"))
}

/// The `(at, id)` a cursor names; `None` for anything but a canonical cursor.
pub fn parse(cursor: &str) -> Option<(i64, String)> {
    if cursor.len() > 256 {
        return None;
    }
    let text = String::from_utf8(hex::decode(cursor).ok()?).ok()?;
    let (at, id) = text.strip_prefix("v1.")?.split_once('.')?;
    let at: i64 = at.parse().ok()?;
    let valid_id =
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-');
    // Only the canonical spelling (lowercase hex) is a cursor.
    (valid_id && cursor == after(at, id)).then(|| (at, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let id = "0b9c4a2e-1f00-4d5e-9a7b-123456789abc";
        let cursor = after(1_764_000_000_123, id);
        assert_eq!(parse(&cursor), Some((1_764_000_000_123, id.to_owned())));
        for bad in [
            "",
            "zz",
            &hex::encode("v2.1.abc"),
            &hex::encode("v1.x.abc"),
            &hex::encode("v1.1."),
            &hex::encode("v1.1.a b"),
            &cursor.to_uppercase(),
        ] {
            assert_eq!(parse(bad), None, "{bad:?} was accepted");
        }
    }
}

//! Keyset pages over HTTP. A list route reads `?cursor=` and answers a bare JSON array (what the
//! existing client reads); when another page follows, its cursor is in `X-Next-Cursor` and a
//! `Link: <...>; rel="next"` (RFC 8288) names the same list from there.

use axum::http::{HeaderMap, HeaderName, HeaderValue, Uri, header};

pub const NEXT_CURSOR: HeaderName = HeaderName::from_static("x-next-cursor");

/// The headers of a page whose next page starts at `cursor` (none: the last page). `uri` is the
/// request's: the link keeps its other parameters (`table`, `limit`) and drops `page`.
pub fn next_page(uri: &Uri, cursor: Option<&str>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let Some(cursor) = cursor else {
        return headers;
    };
    let mut query: Vec<&str> = uri
        .query()
        .unwrap_or_default()
        .split('&')
        .filter(|pair| {
            let name = pair.split('=').next().unwrap_or_default();
            !pair.is_empty() && name != "cursor" && name != "page"
        })
        .collect();
    let pair = format!("cursor={cursor}");
    query.push(&pair);
    let link = format!("<{}?{}>; rel=\"next\"", uri.path(), query.join("&"));
    // Cursors are base64url and the rest comes from a valid request line, so both are valid
    // header values; a value that is not is left out rather than failing the page.
    if let Ok(value) = HeaderValue::from_str(cursor) {
        headers.insert(NEXT_CURSOR, value);
    }
    if let Ok(value) = HeaderValue::from_str(&link) {
        headers.insert(header::LINK, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_keeps_the_filters_and_replaces_the_position() {
        let uri: Uri = "/api/v1/storage/records?table=tasks&page=3&limit=20&cursor=old"
            .parse()
            .unwrap();
        let headers = next_page(&uri, Some("djEuMS5h"));
        assert_eq!(headers[&NEXT_CURSOR], "djEuMS5h");
        assert_eq!(
            headers[header::LINK],
            "</api/v1/storage/records?table=tasks&limit=20&cursor=djEuMS5h>; rel=\"next\""
        );
        let bare: Uri = "/api/v1/backup/history".parse().unwrap();
        assert_eq!(
            next_page(&bare, Some("x"))[header::LINK],
            "</api/v1/backup/history?cursor=x>; rel=\"next\""
        );
        assert!(
            next_page(&uri, None).is_empty(),
            "the last page links nowhere"
        );
    }
}

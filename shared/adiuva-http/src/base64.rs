//! Bytes inside JSON (`blob`, `query_blob`): standard base64 with padding (SPEC section 4).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Bytes that travel in JSON as a standard base64 string. A malformed string fails
/// deserialization, which the `Json` extractor answers with 422.
#[derive(Clone, Default, PartialEq, Eq, utoipa::ToSchema)]
#[schema(value_type = String, format = Byte)]
pub struct Base64(pub Vec<u8>);

impl std::fmt::Debug for Base64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Encrypted payloads are opaque and may be large: log their size only.
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&STANDARD.encode(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        STANDARD
            .decode(text.as_bytes())
            .map(Base64)
            .map_err(|_| serde::de::Error::custom("expected standard base64 with padding"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_standard_padded_base64() {
        let value: Base64 = serde_json::from_str(r#""aGVsbG8=""#).unwrap();
        assert_eq!(value.0, b"hello");
        assert_eq!(serde_json::to_string(&value).unwrap(), r#""aGVsbG8=""#);
        assert!(
            serde_json::from_str::<Base64>(r#""aGVsbG8""#).is_err(),
            "padding is required"
        );
        assert!(serde_json::from_str::<Base64>(r#""a*b=""#).is_err());
        assert!(serde_json::from_str::<Base64>("42").is_err());
    }
}

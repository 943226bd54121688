//! Bytes inside JSON (`blob`, `query_blob`): standard base64 with padding (SPEC section 4).

use std::fmt;

use adiuva_checksum::Digested;
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Canonical standard base64 with padding, as [`Base64`] and [`Blob`] decode it: whole groups
/// of four, and the unused bits of a padded group zero.
#[cfg(feature = "openapi")]
const BASE64_PATTERN: &str =
    "^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=|[A-Za-z0-9+/][AQgw]==)?$";

/// The schema of a base64 field that states [`BASE64_PATTERN`], with its description.
#[cfg(feature = "openapi")]
pub fn base64_schema(description: &str) -> utoipa::openapi::ObjectBuilder {
    use utoipa::openapi::{KnownFormat, ObjectBuilder, SchemaFormat, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::Byte)))
        .pattern(Some(BASE64_PATTERN))
        .description(Some(description))
}

/// Bytes that travel in JSON as a standard base64 string. A malformed string fails
/// deserialization, which the `Json` extractor answers with 422.
#[derive(Clone, Default, PartialEq, Eq)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
pub struct Base64(pub Vec<u8>);

impl fmt::Debug for Base64 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Encrypted payloads are opaque and may be large: log their size only.
        write!(f, "Base64({} bytes)", self.0.len())
    }
}

impl Serialize for Base64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&adiuva_checksum::encode_base64(&self.0))
    }
}

impl<'de> Deserialize<'de> for Base64 {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(Base64Text(|text: &[u8]| {
            adiuva_checksum::decode_base64(text).map(Base64)
        }))
    }
}

/// An encrypted blob inside JSON (standard base64), decoded and hashed in one pass over the
/// request's own bytes: the string is read where it lies (no copy of the text), and its
/// SHA-256 is computed while it is decoded, once for the request (`Digested::verify`).
#[derive(Clone)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(value_type = String, format = Byte))]
pub struct Blob(pub Digested);

impl fmt::Debug for Blob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Blob({} bytes)", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Blob {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_bytes(Base64Text(|text: &[u8]| {
            Digested::decode_base64(text).map(Blob)
        }))
    }
}

/// Reads a JSON string as base64 with `decode`, from the borrowed text when the deserializer
/// has it (serde_json does for a string without escapes), else from its own copy. Asked for
/// as bytes: serde_json then hands over the string without checking that it is UTF-8, which
/// the base64 decoder checks anyway (every byte must be one of its 64 characters).
struct Base64Text<F>(F);

impl<'de, T, F> Visitor<'de> for Base64Text<F>
where
    F: FnOnce(&[u8]) -> Result<T, adiuva_checksum::InvalidBase64>,
{
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("standard base64 with padding")
    }

    fn visit_bytes<E: de::Error>(self, text: &[u8]) -> Result<T, E> {
        (self.0)(text).map_err(|_| E::custom("expected standard base64 with padding"))
    }

    /// Deserializers without a bytes form of strings (`serde_json::Value`) hand over text.
    fn visit_str<E: de::Error>(self, text: &str) -> Result<T, E> {
        self.visit_bytes(text.as_bytes())
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

    #[test]
    fn a_blob_decodes_from_the_borrowed_text_with_its_digest() {
        let blob: Blob = serde_json::from_slice(br#""aGVsbG8=""#).unwrap();
        assert_eq!(blob.0.bytes().as_ref(), b"hello");
        let hello = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(blob.0.verify(hello), Ok(()));
        // With an escape, serde_json hands over its own copy: the same bytes.
        let escaped: Blob = serde_json::from_slice(br#""aGVsbG8\u003d""#).unwrap();
        assert_eq!(escaped.0.bytes().as_ref(), b"hello");
        for bad in [r#""aGVsbG8""#, r#""a*b=""#, "42", "null", "[104, 105]"] {
            assert!(serde_json::from_str::<Blob>(bad).is_err(), "{bad}");
        }
        // Bytes that are not UTF-8 inside the string are not base64 either.
        assert!(serde_json::from_slice::<Blob>(b"\"aGVs\xffbG8=\"").is_err());
        // From a parsed JSON value (text, not bytes): the same blob.
        let value = serde_json::json!("aGVsbG8=");
        let from_value: Blob = serde_json::from_value(value).unwrap();
        assert_eq!(from_value.0.bytes().as_ref(), b"hello");
    }
}

//! Refresh tokens: 256 random bits, handed out once as hex and stored only as their SHA-256.

/// A new token and the hash to store for it.
pub(crate) fn generate() -> Result<(String, String), getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    let token = hex::encode(bytes);
    let hash = hash(&token);
    Ok((token, hash))
}

pub(crate) fn hash(token: &str) -> String {
    adiuva_checksum::sha256_hex(token.as_bytes())
}

/// Tokens we issue are exactly 64 lowercase hex digits; anything else is rejected unread.
pub(crate) fn well_formed(token: &str) -> bool {
    token.len() == 64
        && token
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_stored_hashed() {
        let (a, a_hash) = generate().unwrap();
        let (b, _) = generate().unwrap();
        assert_ne!(a, b);
        assert!(well_formed(&a));
        assert_eq!(a_hash, hash(&a));
        assert_ne!(a_hash, a);
        assert!(!well_formed("not-a-token"));
        assert!(!well_formed(&a.to_uppercase()));
    }
}

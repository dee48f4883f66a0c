//! Names and ids that clients send. They are validated here and never used as paths.

use crate::ApiError;

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}`: safe in URLs, logs and SQL, never a path (no `/`, no
/// leading dot).
pub fn validate_name(field: &str, value: &str) -> Result<(), ApiError> {
    let mut chars = value.chars();
    let valid = match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            value.len() <= 128
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "{field} {value:?} is not a valid name: use 1-128 characters of [A-Za-z0-9._-], \
             starting with a letter or digit"
        )))
    }
}

/// A fresh opaque id (UUID v4, 32 hex digits).
pub fn new_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// Ids we hand out are 32 lowercase hex digits; anything else cannot exist.
pub fn validate_id(field: &str, value: &str) -> Result<(), ApiError> {
    if value.len() == 32
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        Ok(())
    } else if value.is_empty() {
        Err(ApiError::invalid_argument(format!("{field} is required")))
    } else {
        Err(ApiError::not_found(format!("{field} {value:?} not found")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_accept_the_documented_alphabet_only() {
        for good in ["a", "diabetes", "model-1.2_x", &"a".repeat(128)] {
            assert!(validate_name("name", good).is_ok(), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "-x",
            "a/b",
            "../etc",
            "a b",
            "é",
            &"a".repeat(129),
            "a\0",
        ] {
            let error = validate_name("dataset", bad).unwrap_err();
            assert!(error.message.contains("dataset"), "{bad}");
        }
    }

    #[test]
    fn ids_are_32_hex_digits() {
        let id = new_id();
        assert!(validate_id("id", &id).is_ok());
        assert_eq!(
            validate_id("id", "").unwrap_err().kind,
            crate::ErrorKind::InvalidArgument
        );
        assert_eq!(
            validate_id("id", "../x").unwrap_err().kind,
            crate::ErrorKind::NotFound
        );
    }
}

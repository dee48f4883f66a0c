//! The one validator for what clients send: names, ids and URIs. Names are never used as
//! paths; URIs are checked before anything is fetched from them.

use std::net::IpAddr;

use crate::ApiError;

/// `[A-Za-z0-9][A-Za-z0-9._-]{0,127}` without `..`: safe in URLs, logs and SQL, never a path
/// (no `/`, `\`, `%`, NUL or control character, no leading dot).
pub fn validate_name(field: &str, value: &str) -> Result<(), ApiError> {
    let mut chars = value.chars();
    let valid = match chars.next() {
        Some(first) if first.is_ascii_alphanumeric() => {
            value.len() <= 128
                && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
                && !value.contains("..")
        }
        _ => false,
    };
    if valid {
        Ok(())
    } else {
        Err(ApiError::invalid_argument(format!(
            "{field} {value:?} is not a valid name: use 1-128 characters of [A-Za-z0-9._-], \
             starting with a letter or digit, without \"..\""
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

/// Longest URI accepted anywhere.
pub const MAX_URI_LEN: usize = 2048;

/// Checks a URI a client asks a service to fetch from: scheme in `allowed_schemes`, a host that
/// is not loopback, private, link-local or otherwise internal, and no traversal in any encoding.
/// (Callers that resolve the host must check the resolved addresses with [`is_internal_ip`] too.)
pub fn validate_uri(field: &str, uri: &str, allowed_schemes: &[&str]) -> Result<(), ApiError> {
    let bad = |why: &str| ApiError::invalid_argument(format!("{field}: {why}"));
    if uri.len() > MAX_URI_LEN {
        return Err(bad(&format!("longer than {MAX_URI_LEN} characters")));
    }
    if uri.chars().any(|c| c.is_control() || c == '\\' || c == ' ') {
        return Err(bad("contains a control character, space or backslash"));
    }
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or_else(|| bad("not an absolute URI (scheme://host/path)"))?;
    let scheme = scheme.to_ascii_lowercase();
    if !allowed_schemes.contains(&scheme.as_str()) {
        return Err(bad(&format!(
            "scheme {scheme:?} is not allowed (allowed: {})",
            allowed_schemes.join(", ")
        )));
    }
    // Decode repeatedly so %252e%252e (double encoding) is seen as "..".
    let mut decoded = rest.to_string();
    for _ in 0..3 {
        let next =
            percent_decode(&decoded).ok_or_else(|| bad("contains an invalid percent-encoding"))?;
        if next == decoded {
            break;
        }
        decoded = next;
    }
    if decoded.chars().any(|c| c.is_control() || c == '\\') {
        return Err(bad("contains an encoded control character or backslash"));
    }
    let (authority, path) = decoded.split_once('/').unwrap_or((&decoded, ""));
    if path
        .split('/')
        .any(|segment| segment == ".." || segment == ".")
    {
        return Err(bad("contains a '..' or '.' path segment"));
    }
    if authority.contains('@') {
        return Err(bad("must not carry credentials (user@host)"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or_default(),
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    }
    .trim_end_matches('.')
    .to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    if host == "localhost"
        || host.ends_with(".localhost")
        || host.ends_with(".internal")
        || host.ends_with(".local")
    {
        return Err(bad(&format!("host {host:?} is internal")));
    }
    if let Ok(ip) = host.parse::<IpAddr>() {
        if is_internal_ip(ip) {
            return Err(bad(&format!(
                "host {host} is a loopback, private or link-local address"
            )));
        }
    } else if host
        .bytes()
        .all(|b| b.is_ascii_digit() || b == b'.' || b == b'x')
        || host.starts_with("0x")
    {
        // Decimal, octal or hex spellings of an address (http://2130706433/) are refused.
        return Err(bad(&format!(
            "host {host:?} is a numeric address in a non-standard form"
        )));
    }
    Ok(())
}

/// Loopback, private, link-local, unique-local, unspecified, multicast or documentation ranges.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_unspecified()
                || v4.is_broadcast()
                || v4.is_multicast()
                || v4.is_documentation()
                || a == 0
                || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT
        }
        IpAddr::V6(v6) => {
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local
                || (first & 0xffc0) == 0xfe80 // link local
                || v6.to_ipv4_mapped().is_some_and(|v4| is_internal_ip(IpAddr::V4(v4)))
        }
    }
}

fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// A dataset version reference as users write it: `name` (the latest version), `name@3` or
/// `name@prod` (an alias), as the version request it means.
pub fn dataset_ref(
    field: &str,
    text: &str,
) -> Result<mlops_proto::v1::GetDatasetVersionRequest, ApiError> {
    let (dataset, selector) = text.split_once('@').unwrap_or((text, ""));
    validate_name(field, dataset)?;
    let mut request = mlops_proto::v1::GetDatasetVersionRequest {
        dataset: dataset.to_string(),
        ..Default::default()
    };
    match selector.parse::<u32>() {
        Ok(0) => {
            return Err(ApiError::invalid_argument(format!(
                "{field}: dataset versions start at 1 (in {text:?})"
            )));
        }
        Ok(version) => request.version = version,
        Err(_) if selector.is_empty() => {}
        Err(_) => {
            validate_name(field, selector)?;
            request.alias = selector.to_string();
        }
    }
    Ok(request)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_uris_are_refused() {
        let schemes = &["https", "s3"];
        for good in [
            "https://example.com/models/a.onnx",
            "s3://bucket/key/part",
            "https://example.com:8443/x?y=1",
        ] {
            assert!(validate_uri("source", good, schemes).is_ok(), "{good}");
        }
        let hostile = [
            "file:///etc/passwd",
            "http://example.com/x",
            "gopher://example.com/",
            "https://localhost/x",
            "https://127.0.0.1/x",
            "https://[::1]/x",
            "https://[::ffff:127.0.0.1]/x",
            "https://10.0.0.8/x",
            "https://172.16.3.4/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data/",
            "https://[fe80::1]/x",
            "https://[fd00::1]/x",
            "https://0.0.0.0/x",
            "https://2130706433/x",
            "https://0x7f000001/x",
            "https://metadata.google.internal/x",
            "https://example.com/a/../../etc/passwd",
            "https://example.com/a/%2e%2e/secret",
            "https://example.com/a/%252e%252e/secret",
            "https://example.com/a%2f..%2fsecret",
            "https://example.com/a\\..\\b",
            "https://example.com/a%00b",
            "https://example.com/a%5c..%5cb",
            "https://user:pw@example.com/x",
            "https://example.com/%zz",
            "https://",
            "example.com/x",
        ];
        for uri in hostile {
            let error = validate_uri("source", uri, schemes).unwrap_err();
            assert!(
                error.message.starts_with("source:"),
                "{uri}: {}",
                error.message
            );
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_URI_LEN));
        assert!(validate_uri("source", &long, schemes).is_err());
    }

    #[test]
    fn names_accept_the_documented_alphabet_only() {
        for good in ["a", "diabetes", "model-1.2_x", &"a".repeat(128)] {
            assert!(validate_name("name", good).is_ok(), "{good}");
        }
        let long = "a".repeat(129);
        let hostile = [
            "",
            ".hidden",
            "-x",
            "a/b",
            "../etc",
            "a..b",
            "a b",
            "é",
            "a\\b",
            "a%2fb",
            "a%2e%2e",
            "a\0",
            "a\n",
            "a\u{202e}",
            "CON:",
            "a:b",
            "a;b",
            "a'b",
            "a*",
            &long,
        ];
        for bad in hostile {
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

//! Who may talk to the server: the optional bearer token ([`ApiKey`]) and the rule that an address other than
//! loopback is only served with a token, or when the operator says the network is trusted
//! ([`check_exposure`]).

use super::error::ServerError;
use axum::http::{header, HeaderMap};
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::Path;
use subtle::ConstantTimeEq;

/// The bearer token clients must present. Only its SHA-256 is kept: presented tokens are hashed and the
/// digests compared in constant time, so neither the token's bytes nor its length leak through timing.
#[derive(Clone)]
pub struct ApiKey {
    digest: [u8; 32],
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(redacted)")
    }
}

impl ApiKey {
    /// A key from its text; surrounding white space (a file's final newline) is not part of it.
    pub fn new(secret: &str) -> Result<ApiKey, ServerError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(ServerError::Config("the api key is empty".into()));
        }
        Ok(ApiKey {
            digest: Sha256::digest(secret.as_bytes()).into(),
        })
    }

    /// Reads the key from a file (its whole content, trimmed).
    pub fn from_file(path: &Path) -> Result<ApiKey, ServerError> {
        let bad = |reason: String| ServerError::ApiKey {
            path: path.to_path_buf(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
        ApiKey::new(&text).map_err(|_| bad("the file is empty".into()))
    }

    /// Whether the request carries `Authorization: Bearer <this key>`.
    pub(crate) fn accepts(&self, headers: &HeaderMap) -> bool {
        let Some(token) = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(bearer_token)
        else {
            return false;
        };
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        presented.ct_eq(&self.digest).into()
    }
}

/// The token of a `Bearer` authorization value (the scheme name is case-insensitive, RFC 7235).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Refuses to serve a non-loopback address without a token unless `allow_unauthenticated`: the reward model
/// is cheap to abuse (every request costs model time), so exposure must be a decision, not a default.
pub fn check_exposure(addr: SocketAddr, authenticated: bool, allow_unauthenticated: bool) -> Result<(), ServerError> {
    // An IPv4-mapped IPv6 address (::ffff:127.0.0.1) is loopback too.
    if addr.ip().to_canonical().is_loopback() || authenticated || allow_unauthenticated {
        Ok(())
    } else {
        Err(ServerError::Exposed { addr })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with_auth(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::AUTHORIZATION, HeaderValue::from_str(value).unwrap());
        h
    }

    #[test]
    fn accepts_only_the_right_bearer_token() {
        let key = ApiKey::new("s3cret\n").unwrap();
        assert!(key.accepts(&with_auth("Bearer s3cret")));
        assert!(key.accepts(&with_auth("bearer  s3cret ")));
        assert!(!key.accepts(&with_auth("Bearer s3cre")));
        assert!(!key.accepts(&with_auth("Bearer s3cret2")));
        assert!(!key.accepts(&with_auth("Basic s3cret")));
        assert!(!key.accepts(&with_auth("s3cret")));
        assert!(!key.accepts(&HeaderMap::new()));
        assert!(ApiKey::new("  \n").is_err());
        assert_eq!(format!("{key:?}"), "ApiKey(redacted)");
    }

    #[test]
    fn non_loopback_needs_a_key_or_an_explicit_opt_out() {
        let lo: SocketAddr = "127.0.0.1:8080".parse().unwrap();
        let lo6: SocketAddr = "[::1]:8080".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:8080".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        for addr in [lo, lo6, mapped] {
            assert!(check_exposure(addr, false, false).is_ok());
        }
        let refused = check_exposure(any, false, false).unwrap_err().to_string();
        assert!(refused.contains("0.0.0.0:8080") && refused.contains("--api-key-file"), "{refused}");
        assert!(check_exposure(any, true, false).is_ok());
        assert!(check_exposure(any, false, true).is_ok());
    }
}

//! HS256 JWT authentication. The token's `sub` is the user; every message's
//! sender comes from here, never from a frame field.

use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use parley_core::ids;
use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::Result;
use crate::api_error::{ApiError, codes};

pub const ISSUER: &str = "parley";
/// Query parameter carrying the token, for browsers (which cannot set headers
/// on a WebSocket handshake).
pub const TOKEN_QUERY: &str = "token";

#[derive(Debug, Serialize, Deserialize)]
struct Claims {
    sub: String,
    iss: String,
    iat: u64,
    exp: u64,
}

#[derive(Clone)]
pub struct Auth {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
}

impl Auth {
    pub fn new(secret: &str) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[ISSUER]);
        validation.set_required_spec_claims(&["exp", "sub", "iss"]);
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, user: &str, ttl: Duration) -> Result<String> {
        ids::validate_user_id(user).map_err(|e| crate::Error::Config(format!("user `{user}`: {e}")))?;
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            Claims { sub: user.to_owned(), iss: ISSUER.to_owned(), iat: now, exp: now.saturating_add(ttl.as_secs()) };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The user a token authenticates, or why it does not.
    pub fn verify(&self, token: &str) -> Result<String, TokenRefused> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        ids::validate_user_id(&data.claims.sub)?;
        Ok(data.claims.sub)
    }
}

/// Why a token authenticates nobody; the message goes to the client.
#[derive(Debug, Error)]
pub enum TokenRefused {
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("invalid token subject: {0}")]
    Subject(#[from] ids::IdError),
}

/// State that can check tokens: what the [`AuthUser`] extractor needs of
/// the app, so this module does not depend on the app's state type.
pub trait AuthState: Send + Sync {
    fn auth(&self) -> &Auth;
}

/// Token from `Authorization: Bearer …`, else from `?token=…`.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == TOKEN_QUERY).then(|| v.to_owned())
        })
    })
}

/// Extractor: the authenticated user, or a 401.
pub struct AuthUser(pub String);

impl<S: AuthState> FromRequestParts<S> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "missing token: send `Authorization: Bearer <jwt>` or `?token=<jwt>`",
            )
        })?;
        state
            .auth()
            .verify(&token)
            .map(AuthUser)
            .map_err(|refused| ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, refused))
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;

    use super::*;

    #[test]
    fn minted_tokens_verify_only_with_the_same_secret() {
        let a = Auth::new("one");
        let t = a.mint("alice", Duration::from_secs(60)).unwrap();
        assert_eq!(a.verify(&t).unwrap(), "alice");
        assert!(Auth::new("two").verify(&t).is_err());
        assert!(a.verify("garbage").is_err());
        assert!(a.mint("bad name", Duration::from_secs(60)).is_err());
    }

    #[test]
    fn expired_tokens_are_rejected() {
        let a = Auth::new("s");
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: "alice".into(), iss: ISSUER.into(), iat: now - 1000, exp: now - 500 };
        let t = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &a.encoding).unwrap();
        assert!(a.verify(&t).is_err());
    }

    #[test]
    fn token_is_read_from_header_then_query() {
        let (parts, _) = Request::builder()
            .uri("/ws?x=1&token=q")
            .header("authorization", "Bearer h")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(token_from_parts(&parts).as_deref(), Some("h"));
        let (parts, _) = Request::builder().uri("/ws?x=1&token=q").body(()).unwrap().into_parts();
        assert_eq!(token_from_parts(&parts).as_deref(), Some("q"));
        let (parts, _) = Request::builder().uri("/ws").body(()).unwrap().into_parts();
        assert_eq!(token_from_parts(&parts), None);
    }
}

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
/// Clock skew allowed between whoever mints tokens and this gateway, on
/// `exp` (jsonwebtoken's default is 60 s).
pub const LEEWAY: Duration = Duration::from_secs(5);
/// The longest lifetime a token may have left when presented: a token
/// "valid until 9999" is a password that never changes. A deployment that
/// mints its own tokens keeps them shorter.
pub const MAX_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Query parameter carrying the token, for clients that can set neither a
/// header nor WebSocket subprotocols. Kept for them; the page does not use
/// it, since URLs end up in proxies' and browsers' logs.
pub const TOKEN_QUERY: &str = "token";
/// The WebSocket subprotocol the gateway speaks. A browser, which cannot
/// set headers on a WebSocket handshake, offers it together with its token
/// as a second "protocol", `bearer.<jwt>` (as Kubernetes does for its
/// API); the server selects `parley`, so the token is never echoed.
pub const PROTOCOL: &str = "parley";
pub const TOKEN_PROTOCOL_PREFIX: &str = "bearer.";

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
        validation.leeway = LEEWAY.as_secs();
        Self {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
        }
    }

    pub fn mint(&self, user: &str, ttl: Duration) -> Result<String> {
        ids::validate_user_id(user).map_err(|e| crate::Error::Config(format!("user `{user}`: {e}")))?;
        if ttl > MAX_LIFETIME {
            return Err(crate::Error::Config(format!(
                "a token lifetime of {ttl:?} is longer than the gateway accepts ({} days)",
                MAX_LIFETIME.as_secs() / 86400
            )));
        }
        let now = jsonwebtoken::get_current_timestamp();
        let claims =
            Claims { sub: user.to_owned(), iss: ISSUER.to_owned(), iat: now, exp: now.saturating_add(ttl.as_secs()) };
        Ok(jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?)
    }

    /// The user a token authenticates, or why it does not.
    pub fn verify(&self, token: &str) -> Result<String, TokenRefused> {
        self.verify_session(token).map(|s| s.user)
    }

    /// The user a token authenticates and until when.
    pub fn verify_session(&self, token: &str) -> Result<Session, TokenRefused> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)?;
        ids::validate_user_id(&data.claims.sub)?;
        let now = jsonwebtoken::get_current_timestamp();
        check_lifetime(data.claims.exp, now)?;
        let expires_in = Duration::from_secs(data.claims.exp.saturating_add(LEEWAY.as_secs()).saturating_sub(now));
        Ok(Session { user: data.claims.sub, expires_in })
    }
}

/// A token's lifetime left at `now` (Unix seconds) within [`MAX_LIFETIME`].
fn check_lifetime(exp: u64, now: u64) -> Result<(), TokenRefused> {
    let max = MAX_LIFETIME.as_secs() + LEEWAY.as_secs();
    if exp.saturating_sub(now) > max {
        return Err(TokenRefused::Lifetime { days: MAX_LIFETIME.as_secs() / 86400 });
    }
    Ok(())
}

/// An authenticated user and how long the token stays valid (leeway
/// included): a WebSocket session ends then.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub user: String,
    pub expires_in: Duration,
}

/// Why a token authenticates nobody; the message goes to the client.
#[derive(Debug, Error)]
pub enum TokenRefused {
    #[error("invalid token: {0}")]
    Invalid(#[from] jsonwebtoken::errors::Error),
    #[error("invalid token subject: {0}")]
    Subject(#[from] ids::IdError),
    #[error("invalid token: it expires more than {days} days from now")]
    Lifetime { days: u64 },
}

/// State that can check tokens: what the [`AuthUser`] extractor needs of
/// the app, so this module does not depend on the app's state type.
pub trait AuthState: Send + Sync {
    fn auth(&self) -> &Auth;

    /// May `user` make one more request now (their HTTP rate limit)?
    fn admit(&self, user: &str) -> bool;
}

/// Token from `Authorization: Bearer …`, else from a `bearer.…` WebSocket
/// subprotocol, else from `?token=…`.
pub fn token_from_parts(parts: &Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(header::AUTHORIZATION)
        && let Ok(value) = value.to_str()
        && let Some(token) = value.strip_prefix("Bearer ")
    {
        return Some(token.trim().to_owned());
    }
    let offered = parts.headers.get_all(header::SEC_WEBSOCKET_PROTOCOL).iter().filter_map(|v| v.to_str().ok());
    if let Some(token) = offered.flat_map(|v| v.split(',')).find_map(|p| p.trim().strip_prefix(TOKEN_PROTOCOL_PREFIX)) {
        return Some(token.to_owned());
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
        AuthSession::from_request_parts(parts, state).await.map(|AuthSession(s)| AuthUser(s.user))
    }
}

/// Extractor: the authenticated user with the token's time left (for a
/// WebSocket session, which must end when its token does), or a 401.
pub struct AuthSession(pub Session);

impl<S: AuthState> FromRequestParts<S> for AuthSession {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let token = token_from_parts(parts).ok_or_else(|| {
            ApiError::new(
                StatusCode::UNAUTHORIZED,
                codes::UNAUTHENTICATED,
                "missing token: send `Authorization: Bearer <jwt>`, the WebSocket subprotocols `parley, bearer.<jwt>`, or `?token=<jwt>`",
            )
        })?;
        let session = state
            .auth()
            .verify_session(&token)
            .map_err(|refused| ApiError::new(StatusCode::UNAUTHORIZED, codes::UNAUTHENTICATED, refused))?;
        // Counted per user, after the token is checked: an unauthenticated
        // client cannot spend someone else's requests.
        if !state.admit(&session.user) {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                "too many requests for this user; slow down",
            ));
        }
        Ok(AuthSession(session))
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

    fn signed(a: &Auth, exp: u64) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims { sub: "alice".into(), iss: ISSUER.into(), iat: now, exp };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &a.encoding).unwrap()
    }

    #[test]
    fn lifetimes_are_capped_and_sessions_know_theirs() {
        let a = Auth::new("s");
        let now = jsonwebtoken::get_current_timestamp();
        let year_9999 = 253_402_300_799;
        let err = a.verify(&signed(&a, year_9999)).unwrap_err();
        assert!(matches!(err, TokenRefused::Lifetime { days: 30 }), "{err}");
        assert!(a.verify(&signed(&a, now + MAX_LIFETIME.as_secs() + 3600)).is_err());
        assert!(a.verify(&signed(&a, now + MAX_LIFETIME.as_secs() - 3600)).is_ok());
        let s = a.verify_session(&signed(&a, now + 100)).unwrap();
        assert_eq!(s.user, "alice");
        assert!(s.expires_in <= Duration::from_secs(100) + LEEWAY && s.expires_in >= Duration::from_secs(98));
        // Within the leeway an expired token still verifies, with only the
        // leeway's rest left to it.
        assert!(a.verify_session(&signed(&a, now - 1)).unwrap().expires_in < LEEWAY);
        assert!(a.verify(&signed(&a, now - LEEWAY.as_secs() - 2)).is_err());
        assert!(a.mint("alice", MAX_LIFETIME).is_ok());
        assert!(a.mint("alice", MAX_LIFETIME + Duration::from_secs(1)).is_err());
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
        let (parts, _) = Request::builder()
            .uri("/ws?token=q")
            .header("sec-websocket-protocol", "parley, bearer.eyJ.a-b_c")
            .body(())
            .unwrap()
            .into_parts();
        assert_eq!(token_from_parts(&parts).as_deref(), Some("eyJ.a-b_c"), "the subprotocol before the query");
        let (parts, _) = Request::builder().uri("/ws").body(()).unwrap().into_parts();
        assert_eq!(token_from_parts(&parts), None);
    }
}

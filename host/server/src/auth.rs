//! API keys: random, shown once, stored as sha256; the `Caller` extractor.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use gigaspot_market::account::{Account, Role};
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::api_error::ApiError;
use crate::app::AppState;

/// A new random API key: `gs_` and 64 hex digits (256 bits).
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    format!("gs_{}", hex::encode(bytes))
}

/// What the store keeps of a key.
pub fn key_hash(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The authenticated account of a request (`Authorization: Bearer <key>`).
pub struct Caller(pub Account);

impl Caller {
    /// Whether the caller holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.0.has(role)
    }

    /// The caller, or 403 unless it holds `role`.
    pub fn require(&self, role: Role, action: &str) -> Result<(), ApiError> {
        if self.has(role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(
                format!("only {role:?} accounts may {action}").to_lowercase(),
            ))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .ok_or_else(ApiError::unauthenticated)?;
        let hash = key_hash(key.trim());
        state.limiter.check(hash).map_err(ApiError::rate_limited)?;
        // Keys and accounts are in the store's in-memory working set: looked up inline.
        let id = state.store.account_by_key(&hash)?;
        let account = id.map(|id| state.store.account(id)).transpose()?.flatten();
        account.map(Caller).ok_or_else(ApiError::unauthenticated)
    }
}

/// A request may come without a key (registration); a key that is sent must be valid.
impl<S: Send + Sync> axum::extract::OptionalFromRequestParts<S> for Caller
where
    Caller: axum::extract::FromRequestParts<S, Rejection = ApiError>,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Option<Self>, Self::Rejection> {
        if parts
            .headers
            .contains_key(axum::http::header::AUTHORIZATION)
        {
            <Caller as axum::extract::FromRequestParts<S>>::from_request_parts(parts, state)
                .await
                .map(Some)
        } else {
            Ok(None)
        }
    }
}

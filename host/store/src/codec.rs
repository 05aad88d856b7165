//! Values are stored as postcard: compact and fast; the schema version guards the layout.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{StoreError, StoreResult};

/// Encodes a value.
pub fn encode<T: Serialize>(value: &T) -> StoreResult<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| StoreError::Backend(format!("cannot encode: {e}")))
}

/// Decodes a value read from the key `key`.
pub fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> StoreResult<T> {
    postcard::from_bytes(bytes).map_err(|e| StoreError::Corrupt {
        path: String::from_utf8_lossy(key).into_owned(),
        detail: format!("undecodable value: {e}"),
    })
}

/// Encodes a `u64` as big-endian bytes.
pub fn u64_bytes(value: u64) -> [u8; 8] {
    value.to_be_bytes()
}

/// Decodes big-endian `u64` bytes read from `key`.
pub fn read_u64(key: &[u8], bytes: &[u8]) -> StoreResult<u64> {
    let array: [u8; 8] = bytes.try_into().map_err(|_| StoreError::Corrupt {
        path: String::from_utf8_lossy(key).into_owned(),
        detail: format!("expected 8 bytes, found {}", bytes.len()),
    })?;
    Ok(u64::from_be_bytes(array))
}

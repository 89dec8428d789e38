//! Page cursors: the position of the last entry a page returned, as
//! base64url of its JSON, opaque to clients. Anything this server did not
//! issue (undecodable, or of another shape) is a 400.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Result};

pub fn encode(position: &impl Serialize) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(position).expect("serialisable"))
}

pub fn decode<T: DeserializeOwned>(cursor: &str) -> Result<T> {
    URL_SAFE_NO_PAD
        .decode(cursor)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or_else(|| Error::InvalidRequest("cursor is not one this server issued".into()))
}

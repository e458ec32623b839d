//! The one way the server writes a JSON body, shared by the handlers ([`routes`](super::routes)) and the error
//! responses ([`error`](super::error)), so that neither module needs the other for it.

use axum::body::Body;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

/// A JSON response. Serialising the server's own response types cannot fail (string keys, no maps keyed by
/// non-strings); if it ever did, the client gets a 500 rather than a half-written body.
pub(super) fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => {
            let mut response = (status, Body::from(bytes)).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            response
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("cannot serialise the response: {e}")).into_response(),
    }
}

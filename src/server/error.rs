//! The server's two error types. [`ApiError`] is what one request can get wrong or run into; each variant knows
//! its HTTP status and stable `code`, and becomes the body `{"error": {"code", "message", "field"}}` (`field`
//! present when one field is to blame), so a client can branch on the code and a person can read the message.
//! [`ServerError`] is what stops the server from starting or running at all.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use std::time::Duration;

/// A request that was refused or could not be answered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ApiError {
    /// The body is larger than `--max-body-bytes`.
    #[error("request body exceeds the limit of {limit} bytes")]
    BodyTooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// The body could not be read (the client went away mid-body, or sent a broken chunked encoding).
    #[error("cannot read the request body: {0}")]
    BodyUnreadable(String),
    /// `Content-Encoding` other than `gzip` or `identity`.
    #[error("unsupported Content-Encoding {encoding:?}; send the body as is or gzip-compressed")]
    UnsupportedEncoding {
        /// The encoding the request named.
        encoding: String,
    },
    /// `Transfer-Encoding` and `Content-Length` in one request: the body's length is ambiguous (the shape of a
    /// request-smuggling attempt), so the request is refused and the connection closed.
    #[error("both Transfer-Encoding and Content-Length are present; send one of them")]
    AmbiguousLength,
    /// The body is not JSON (truncated, invalid UTF-8, nesting too deep, a number out of range).
    #[error("malformed JSON: {0}")]
    MalformedJson(String),
    /// The JSON has the wrong shape: a missing field, a wrong type, an unknown field.
    #[error("{field}: {message}")]
    InvalidField {
        /// The field's path in the body (`texts[3]`, `conversations[1].turns[2].text`).
        field: String,
        /// What is wrong with it.
        message: String,
    },
    /// A list is longer than the server allows.
    #[error("{field}: {count} items exceed the limit of {max} per request")]
    TooManyItems {
        /// The list's path in the body, or `turns (all conversations together)` for the turn limit.
        field: String,
        /// How many items there are.
        count: usize,
        /// The most allowed ([`Limits::max_items`](super::Limits::max_items) or `max_turns`).
        max: usize,
    },
    /// A text is longer than the server allows.
    #[error("{field}: {bytes} bytes exceed the limit of {max} bytes per text")]
    TextTooLong {
        /// The text's path in the body.
        field: String,
        /// Its length in bytes (UTF-8).
        bytes: usize,
        /// The most allowed, [`Limits::max_text_bytes`](super::Limits::max_text_bytes).
        max: usize,
    },
    /// Well-formed but unusable: an empty text, a conversation without the speaker, an unknown reward.
    #[error("{field}: {message}")]
    Unprocessable {
        /// The field's path in the body.
        field: String,
        /// Why it cannot be used.
        message: String,
    },
    /// Missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// No such endpoint.
    #[error("no endpoint {path}")]
    NotFound {
        /// The request's path.
        path: String,
    },
    /// The endpoint exists but not with this method.
    #[error("method {method} is not allowed here")]
    MethodNotAllowed {
        /// The request's method (`GET`, `PUT`, ...).
        method: String,
    },
    /// The batching queue is full, or too many requests are in flight: the client should retry after
    /// `retry_after`.
    #[error("the server is at capacity ({what}); retry after {} s", retry_after.as_secs().max(1))]
    Overloaded {
        /// What is full (the batching queue, the requests in flight), for the message.
        what: String,
        /// How long the client should wait; sent as `Retry-After` in whole seconds, at least 1.
        retry_after: Duration,
    },
    /// The server is shutting down and takes no new work.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The request took longer than `--timeout`.
    #[error("the request took longer than {} ms", timeout.as_millis())]
    Timeout {
        /// The server's request timeout ([`ServerConfig::request_timeout`](super::ServerConfig::request_timeout)).
        timeout: Duration,
    },
    /// The model failed on a batch (an internal fault, not the client's).
    #[error("model failure: {0}")]
    Model(String),
}

impl ApiError {
    /// A wrong-shape error for `field`.
    pub fn field(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::InvalidField {
            field: field.into(),
            message: message.into(),
        }
    }

    /// A well-formed but unusable value in `field`.
    pub fn unprocessable(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::Unprocessable {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The HTTP status the error is answered with: 400 for malformed requests, 401, 404, 405, 413, 422 for
    /// well-formed but unusable ones, 503 when overloaded or shutting down, 504 on timeout, 500 on model failure.
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::BodyUnreadable(_)
            | ApiError::MalformedJson(_)
            | ApiError::InvalidField { .. }
            | ApiError::AmbiguousLength => {
                StatusCode::BAD_REQUEST
            }
            ApiError::TooManyItems { .. } | ApiError::TextTooLong { .. } | ApiError::Unprocessable { .. } => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound { .. } => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed { .. } => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Overloaded { .. } | ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::UnsupportedEncoding { .. } => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Timeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Model(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The stable, machine-readable name of the error.
    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BodyTooLarge { .. } => "body_too_large",
            ApiError::BodyUnreadable(_) => "body_unreadable",
            ApiError::MalformedJson(_) => "malformed_json",
            ApiError::UnsupportedEncoding { .. } => "unsupported_encoding",
            ApiError::AmbiguousLength => "ambiguous_length",
            ApiError::InvalidField { .. } => "invalid_field",
            ApiError::TooManyItems { .. } => "too_many_items",
            ApiError::TextTooLong { .. } => "text_too_long",
            ApiError::Unprocessable { .. } => "unprocessable",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound { .. } => "not_found",
            ApiError::MethodNotAllowed { .. } => "method_not_allowed",
            ApiError::Overloaded { .. } => "overloaded",
            ApiError::ShuttingDown => "shutting_down",
            ApiError::Timeout { .. } => "timeout",
            ApiError::Model(_) => "model_failure",
        }
    }

    /// The request field to blame, when there is one.
    pub fn field_name(&self) -> Option<&str> {
        match self {
            ApiError::InvalidField { field, .. }
            | ApiError::TooManyItems { field, .. }
            | ApiError::TextTooLong { field, .. }
            | ApiError::Unprocessable { field, .. } => Some(field),
            _ => None,
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'static str,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code(),
                message: self.to_string(),
                field: self.field_name(),
            },
        };
        let mut response = super::json::json_response(self.status(), &body);
        let headers = response.headers_mut();
        match &self {
            ApiError::Overloaded { retry_after, .. } => {
                // Whole seconds, at least 1: Retry-After has no finer unit and 0 would invite a hot retry loop.
                let secs = retry_after.as_secs().max(1);
                headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
            }
            ApiError::ShuttingDown => {
                headers.insert(header::RETRY_AFTER, HeaderValue::from(1u64));
            }
            ApiError::Unauthorized => {
                headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::AmbiguousLength => {
                // Where this request's body ends is unknown, so nothing after it on this connection can be trusted.
                headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
            }
            _ => {}
        }
        response
    }
}

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A setting is out of range.
    #[error("invalid server configuration: {0}")]
    Config(String),
    /// The reward configuration is invalid.
    #[error("reward configuration: {0}")]
    Reward(#[source] crate::Error),
    /// A non-loopback address was asked for without authentication.
    #[error(
        "refusing to listen on {addr} without authentication: it is not a loopback address; \
         pass --api-key-file, or --allow-unauthenticated if the network is trusted"
    )]
    Exposed {
        /// The address asked for.
        addr: std::net::SocketAddr,
    },
    /// The API key file could not be read or is empty.
    #[error("api key file {path}: {reason}")]
    ApiKey {
        /// The key file.
        path: std::path::PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
    /// Accepting connections failed.
    #[error("serving: {0}")]
    Io(#[from] std::io::Error),
    /// The model worker thread could not start or died.
    #[error("model worker: {0}")]
    Worker(String),
}

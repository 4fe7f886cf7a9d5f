//! Response builders shared by the handlers: JSON bodies, OAuth errors and
//! gateway-style error bodies for the data endpoints.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// A 200/other answer whose body is already serialized JSON.
pub(super) fn json_bytes(status: StatusCode, body: Vec<u8>) -> Response {
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

/// A JSON value answer.
pub(super) fn json_value(status: StatusCode, body: &serde_json::Value) -> Response {
    json_bytes(status, serde_json::to_vec(body).unwrap_or_default())
}

/// An RFC 6749 §5.2 error from the token endpoint, e.g. `invalid_grant`.
pub(super) fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response {
    let mut response = json_value(
        status,
        &json!({ "error": error, "error_description": description }),
    );
    no_store(&mut response);
    response
}

/// An error from a data endpoint. Dexcom's exact error bodies are not
/// documented; this is the API-gateway shape
/// `{"fault":{"faultstring":"...","detail":{"errorcode":"..."}}}`, so clients
/// must rely on the status code and treat the body as opaque text.
pub(super) fn data_error(status: StatusCode, errorcode: &str, text: &str) -> Response {
    json_value(
        status,
        &json!({ "fault": { "faultstring": text, "detail": { "errorcode": errorcode } } }),
    )
}

/// Token responses must not be cached (RFC 6749 §5.1).
pub(super) fn no_store(response: &mut Response) {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
}

/// A small HTML page, e.g. the user picker or a login error.
pub(super) fn html(status: StatusCode, title: &str, body_html: &str) -> Response {
    let page = format!(
        "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{t}</title></head>\
         <body><h1>{t}</h1>\n{body_html}\n</body></html>\n",
        t = escape_html(title)
    );
    (
        status,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        )],
        page,
    )
        .into_response()
}

/// Escapes text for HTML content and double-quoted attributes.
pub(super) fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

//! Browser sessions for the accounts routes: the refresh token kept in an
//! HttpOnly cookie instead of the body, and the double-submit CSRF check that
//! cookie-authenticated requests must pass (docs/accounts.md, "Browser sessions").

use axum::http::{header, HeaderMap, HeaderValue};
use base64::Engine;
use subtle::ConstantTimeEq;

use super::error::ApiError;

/// The HttpOnly cookie holding the refresh token.
pub const REFRESH_COOKIE: &str = "refresh_token";
/// The cookie the web app's JavaScript reads and echoes in `X-CSRF-Token`.
pub const CSRF_COOKIE: &str = "csrf_token";
/// The header carrying the echoed CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// The refresh cookie is sent only to the accounts routes.
const REFRESH_PATH: &str = "/api/v1/auth";

/// How a client wants its refresh token (`"session"` in a register or login body).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// In the JSON body (the default; apps and scripts).
    Body,
    /// In the `refresh_token` cookie, with a `csrf_token` cookie beside it.
    Cookie,
}

impl Delivery {
    pub fn parse(raw: &str) -> Option<Self> {
        match raw {
            "body" => Some(Self::Body),
            "cookie" => Some(Self::Cookie),
            _ => None,
        }
    }
}

/// The value of the cookie named `name`, if the request carries it.
pub fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value.to_owned())
}

/// The two Set-Cookie values of a new or rotated browser session: the refresh
/// token (HttpOnly, SameSite=Lax, `Path=/api/v1/auth`) and a fresh random CSRF
/// token (readable by scripts, SameSite=Strict, `Path=/`), both living as long
/// as the refresh token; `Secure` outside development.
pub fn session_cookies(refresh_token: &str, max_age: u64, secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    let csrf: [u8; 32] = rand::random();
    let csrf = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(csrf);
    [
        format!("{REFRESH_COOKIE}={refresh_token}; Path={REFRESH_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{secure}"),
        format!("{CSRF_COOKIE}={csrf}; Path=/; Max-Age={max_age}; SameSite=Strict{secure}"),
    ]
    .map(|v| HeaderValue::from_str(&v).unwrap_or_else(|_| unreachable!("base64url cookie values")))
}

/// The Set-Cookie values that delete both cookies (logout).
pub fn cleared_cookies(secure: bool) -> [HeaderValue; 2] {
    let secure = if secure { "; Secure" } else { "" };
    [
        format!(
            "{REFRESH_COOKIE}=; Path={REFRESH_PATH}; Max-Age=0; HttpOnly; SameSite=Lax{secure}"
        ),
        format!("{CSRF_COOKIE}=; Path=/; Max-Age=0; SameSite=Strict{secure}"),
    ]
    .map(|v| HeaderValue::from_str(&v).unwrap_or_else(|_| unreachable!("ASCII cookie values")))
}

/// Checks a cookie-authenticated request: an `Origin` header, when present,
/// must be this service (the `Host` it was sent to) or one of the CORS origins;
/// and `X-CSRF-Token` must equal the `csrf_token` cookie (compared in constant
/// time). Either failing: 403 CSRF_ERROR.
pub fn check_csrf(headers: &HeaderMap, allowed_origins: &[String]) -> Result<(), ApiError> {
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !same_origin(origin, headers) && !allowed_origins.iter().any(|o| o == origin) {
            return Err(ApiError::Csrf(
                "cookie-authenticated request from another origin".into(),
            ));
        }
    }
    let expected = cookie(headers, CSRF_COOKIE).unwrap_or_default();
    let presented = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let matches = !expected.is_empty()
        && !presented.is_empty()
        && bool::from(expected.as_bytes().ct_eq(presented.as_bytes()));
    if matches {
        Ok(())
    } else {
        Err(ApiError::Csrf(
            "missing or wrong X-CSRF-Token header: echo the csrf_token cookie".into(),
        ))
    }
}

/// `Origin` (`scheme://host[:port]`) names the host the request was sent to.
fn same_origin(origin: &str, headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else {
        return false;
    };
    origin.split_once("://").is_some_and(|(scheme, rest)| {
        matches!(scheme, "http" | "https") && rest.eq_ignore_ascii_case(host)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn the_csrf_header_must_echo_the_cookie() {
        let ok = headers(&[
            ("cookie", "refresh_token=r; csrf_token=abc"),
            ("x-csrf-token", "abc"),
        ]);
        assert!(check_csrf(&ok, &[]).is_ok());
        for bad in [
            headers(&[("cookie", "refresh_token=r; csrf_token=abc")]),
            headers(&[
                ("cookie", "refresh_token=r; csrf_token=abc"),
                ("x-csrf-token", "abd"),
            ]),
            headers(&[("cookie", "refresh_token=r"), ("x-csrf-token", "")]),
            headers(&[
                ("cookie", "refresh_token=r; csrf_token="),
                ("x-csrf-token", ""),
            ]),
        ] {
            assert_eq!(check_csrf(&bad, &[]).unwrap_err().code(), "CSRF_ERROR");
        }
    }

    #[test]
    fn a_foreign_origin_is_refused() {
        let base = [
            ("cookie", "csrf_token=abc"),
            ("x-csrf-token", "abc"),
            ("host", "hub.example:8080"),
        ];
        let with = |origin: &'static str| {
            let mut h = headers(&base);
            h.insert(header::ORIGIN, HeaderValue::from_static(origin));
            h
        };
        assert!(check_csrf(&with("https://hub.example:8080"), &[]).is_ok());
        assert!(check_csrf(
            &with("https://app.example"),
            &["https://app.example".into()]
        )
        .is_ok());
        assert!(check_csrf(&with("https://evil.example"), &[]).is_err());
        assert!(check_csrf(&with("null"), &[]).is_err());
    }

    #[test]
    fn cookies_are_scoped_and_secure_outside_development() {
        let [refresh, csrf] = session_cookies("tok", 60, true);
        let refresh = refresh.to_str().unwrap();
        assert_eq!(
            refresh,
            "refresh_token=tok; Path=/api/v1/auth; Max-Age=60; HttpOnly; SameSite=Lax; Secure"
        );
        let csrf = csrf.to_str().unwrap();
        assert!(
            csrf.starts_with("csrf_token=")
                && csrf.ends_with("; Path=/; Max-Age=60; SameSite=Strict; Secure")
        );
        assert!(!csrf.contains("HttpOnly"));
        let [refresh, _] = session_cookies("tok", 60, false);
        assert!(!refresh.to_str().unwrap().contains("Secure"));
    }
}

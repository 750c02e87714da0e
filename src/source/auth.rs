//! Bearer and basic authentication, accepted for any source kind, compared in constant time.
//!
//! Invariants:
//! - with neither `bearer` nor `basic` configured, every request passes;
//! - otherwise the request carries exactly one `Authorization` header, and it passes one of the
//!   configured schemes (`Bearer <token>` or `Basic base64(user:password)`; scheme names are
//!   case-insensitive);
//! - tokens, usernames and passwords are compared in constant time (over SHA-256 digests, so
//!   lengths do not leak either), and a rejection never quotes the presented or expected value.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::HeaderMap;
use http::header::AUTHORIZATION;
use secrecy::{ExposeSecret, SecretString};

use super::request::{Rejection, ct_eq};

/// How a caller authenticates with an `Authorization` header. Both may be set: either passes.
#[derive(Debug, Clone, Default)]
pub struct Auth {
    pub bearer: Option<SecretString>,
    pub basic: Option<BasicAuth>,
}

#[derive(Debug, Clone)]
pub struct BasicAuth {
    pub username: String,
    pub password: SecretString,
}

impl Auth {
    /// Whether bearer or basic authentication is configured.
    pub fn is_configured(&self) -> bool {
        self.bearer.is_some() || self.basic.is_some()
    }

    /// Checks the `Authorization` header against the configured credentials. Passes when none
    /// are configured.
    pub fn verify(&self, headers: &HeaderMap) -> Result<(), Rejection> {
        if !self.is_configured() {
            return Ok(());
        }
        let mut values = headers.get_all(AUTHORIZATION).iter();
        let Some(value) = values.next() else {
            return Err(unauthorized("missing Authorization header"));
        };
        if values.next().is_some() {
            return Err(unauthorized("more than one Authorization header"));
        }
        let Ok(value) = value.to_str() else {
            return Err(unauthorized(
                "malformed Authorization header: not plain text",
            ));
        };
        let value = value.trim();
        let (scheme, credentials) = value
            .split_once([' ', '\t'])
            .map_or((value, ""), |(s, c)| (s, c.trim()));

        if scheme.eq_ignore_ascii_case("bearer") {
            let Some(expected) = &self.bearer else {
                return Err(unauthorized(
                    "bearer token not accepted: this source expects Basic authentication",
                ));
            };
            if credentials.is_empty() {
                return Err(unauthorized("empty bearer token"));
            }
            if ct_eq(credentials.as_bytes(), expected.expose_secret().as_bytes()) {
                Ok(())
            } else {
                Err(unauthorized("wrong bearer token"))
            }
        } else if scheme.eq_ignore_ascii_case("basic") {
            let Some(expected) = &self.basic else {
                return Err(unauthorized(
                    "Basic authentication not accepted: this source expects a bearer token",
                ));
            };
            let Ok(decoded) = STANDARD.decode(credentials) else {
                return Err(unauthorized(
                    "malformed Basic credentials: not base64 of `username:password`",
                ));
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return Err(unauthorized(
                    "malformed Basic credentials: no `:` between username and password",
                ));
            };
            let (username, password) = (&decoded[..colon], &decoded[colon + 1..]);
            // Both halves are always compared, so timing does not tell which one was wrong.
            let user_ok = ct_eq(username, expected.username.as_bytes());
            let password_ok = ct_eq(password, expected.password.expose_secret().as_bytes());
            if user_ok & password_ok {
                Ok(())
            } else {
                Err(unauthorized("wrong username or password"))
            }
        } else {
            // The "scheme" may be a bare token (`Authorization: <token>`): never quote it.
            Err(unauthorized(match (&self.bearer, &self.basic) {
                (Some(_), Some(_)) => "unsupported Authorization scheme: expected Bearer or Basic",
                (Some(_), None) => "unsupported Authorization scheme: expected `Bearer <token>`",
                _ => "unsupported Authorization scheme: expected Basic",
            }))
        }
    }
}

fn unauthorized(reason: &str) -> Rejection {
    Rejection::Unauthorized(reason.to_owned())
}

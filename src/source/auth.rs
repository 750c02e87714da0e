//! Bearer and basic authentication, accepted for any source kind, compared in constant time.

use secrecy::SecretString;

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

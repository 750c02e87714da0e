//! 免登: the page, opened inside DingTalk, gets a one-time `auth_code` from `requestAuthCode`;
//! the server turns it into the DingTalk user with `POST /topapi/v2/user/getuserinfo`, over the
//! app's cached access token (the robots' cache: one token per app).
//!
//! Invariants: a code is DingTalk's to judge and is used once (a second use is refused by
//! DingTalk as `40078`, [`LoginError::BadCode`]); a user can only come from the app's own
//! organisation, since the app's token resolves no one else's code; no error holds the token or
//! the code.

use std::time::Duration;

use serde::Deserialize;

use crate::delivery::app_send::AppClient;

/// The DingTalk user a code stood for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    pub user_id: String,
    /// The display name (`result.name`).
    pub name: String,
}

/// Why no one is signed in; its text is what the sign-in page says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoginError {
    /// Unknown, used, expired, or another organisation's: open the console from DingTalk again.
    #[error(
        "DingTalk did not accept the sign-in code (used, expired, or from another organisation): open the page from DingTalk again"
    )]
    BadCode,
    /// DingTalk refused otherwise (a permission missing, say).
    #[error("DingTalk refused the sign-in (errcode {errcode}: {errmsg})")]
    Refused { errcode: i64, errmsg: String },
    /// DingTalk could not be asked.
    #[error("DingTalk could not be reached to sign you in: {0}")]
    Unavailable(String),
}

#[derive(Deserialize)]
struct Answer {
    errcode: Option<i64>,
    #[serde(default)]
    errmsg: String,
    result: Option<UserInfo>,
}

#[derive(Deserialize)]
struct UserInfo {
    userid: String,
    #[serde(default)]
    name: String,
}

/// The user of the auth `code`, asked of DingTalk with `app`'s token, each call bounded by
/// `timeout`.
///
/// # Errors
///
/// See [`LoginError`].
pub async fn sign_in(
    app: &AppClient,
    code: &str,
    timeout: Duration,
) -> Result<SignedIn, LoginError> {
    if code.is_empty() || code.len() > 256 {
        return Err(LoginError::BadCode);
    }
    let answer = app
        .call_oapi(
            "/topapi/v2/user/getuserinfo",
            &serde_json::json!({ "code": code }),
            timeout,
        )
        .await
        .map_err(LoginError::Unavailable)?;
    let parsed: Answer = serde_json::from_slice(&answer.body).map_err(|_| {
        LoginError::Unavailable(format!(
            "HTTP {} with a body that is not DingTalk's JSON",
            answer.status
        ))
    })?;
    match (parsed.errcode, parsed.result) {
        (Some(0), Some(user)) if !user.userid.is_empty() => Ok(SignedIn {
            user_id: user.userid,
            name: user.name,
        }),
        (Some(40078), _) => Err(LoginError::BadCode),
        (Some(errcode), _) if errcode != 0 && answer.status < 500 => Err(LoginError::Refused {
            errcode,
            errmsg: crate::text::shorten(&parsed.errmsg, 200),
        }),
        _ => Err(LoginError::Unavailable(format!(
            "HTTP {} without a user",
            answer.status
        ))),
    }
}

//! The console (issue 15, in progress): a small web page served by the daemon, opened inside
//! DingTalk, to preview messages and to silence or acknowledge an alert as oneself.
//!
//! What stands so far are its DingTalk-facing pieces, each testable on its own:
//! - [`jsapi`]: the app's jsapi_ticket (cached like its token) and the `dd.config` parameters
//!   for a page URL, signed as DingTalk checks them;
//! - [`login`]: 免登, an auth code from the page turned into the DingTalk user, over the app's
//!   cached access token;
//! - [`link`]: signed, expiring links and sessions, so that a forwarded message cannot act as
//!   someone else;
//! - [`silence`]: the silence created in Alertmanager (API v2) as the signed-in user;
//! - [`web`]: the routes so far: sign-in into a session cookie, who is signed in, `dd.config`.

pub mod jsapi;
/// Signed links and sessions live in a leaf ([`crate::links`]), so routing can sign the links it
/// puts in messages.
pub use crate::links as link;
pub mod login;
pub mod silence;
pub mod web;

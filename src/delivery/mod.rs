//! Delivery: one worker per robot takes due messages from the outbox, keeps within DingTalk's
//! rate, signs, sends, classifies the answer, and retries or dead-letters. A robot of an app
//! sends through the app's client ([`app_send`]): its access token ([`app_token`]), its pace, and
//! the app APIs' answers ([`app_classify`]).

pub mod app_classify;
pub mod app_send;
pub mod app_token;
pub mod backoff;
pub mod classify;
pub mod digest;
pub mod dry_run;
pub mod limiter;
pub mod outcome;
pub mod transport;
pub mod worker;

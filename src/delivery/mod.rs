//! Delivery: one worker per robot takes due messages from the outbox, keeps within DingTalk's
//! rate, signs, sends, classifies the answer, and retries or dead-letters.

pub mod app_classify;
pub mod app_token;
pub mod backoff;
pub mod classify;
pub mod digest;
pub mod dry_run;
pub mod limiter;
pub mod outcome;
pub mod transport;
pub mod worker;

//! Shared test support: the corpus of real payloads, and the DingTalk stand-in as a transport.

pub mod corpus;
pub mod mock_dingtalk;

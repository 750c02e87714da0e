//! Shared test support: the corpus of real payloads, the DingTalk stand-in as a transport, and a
//! buffer to read back what was printed or logged.

pub mod corpus;
pub mod mock_dingtalk;
pub mod output;

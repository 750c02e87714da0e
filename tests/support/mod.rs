//! Shared test support. A test file includes it with `mod support;`.

pub mod corpus;
pub mod mock_dingtalk;

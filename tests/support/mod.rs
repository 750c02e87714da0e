//! Shared test support. A test file includes it with `mod support;`.

pub mod mock_dingtalk;

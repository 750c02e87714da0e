//! 加签: `timestamp` (ms) and `sign` = base64(HMAC-SHA256(secret, timestamp + "\n" + secret)),
//! added to the webhook URL's query and URL-encoded exactly once.

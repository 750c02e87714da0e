//! Placeholder: replaced by the fallback builder on merge.

use crate::dingtalk::{Message, Robot};
use crate::source::Event;

/// A message built without the rule's templates, for a rule that failed on this event.
pub fn fallback(event: &Event, robot: &Robot, rule: &str, reason: &str) -> Message {
    let keywords = robot.keywords.join(", ");
    Message::text(format!(
        "{} {}: rule `{rule}` failed: {reason}\nKeywords: {keywords}",
        event.source, event.name
    ))
}

//! The template context of an event ([`Event::template_context`]), built straight into
//! minijinja values.
//!
//! Every JSON value of the payload is converted once. minijinja values are reference-counted,
//! so the top-level fields, `payload`, and the alert lists (`alerts`, `firing`, `resolved`,
//! `payload.alerts`) share the converted values instead of each holding a copy: building the
//! context of a 12-alert notification allocates about what the payload holds, not five times
//! that. [`Event::context`] is the same context as JSON (for `check` and tests), serialized
//! from this one, so the two cannot differ.
//!
//! Conversion gives the values minijinja's own serde conversion gives (a property test checks
//! it): JSON objects become insertion-ordered maps with string keys, arrays become sequences,
//! non-negative integers `u64`, negative ones `i64`, other numbers `f64`, and `null` none.

use indexmap::IndexMap;
use minijinja::Value;
use serde_json::Value as Json;

use super::alerts::{self, Status};
use super::event::Event;
use super::kind::SourceKind;

type Fields = IndexMap<Value, Value>;

/// One JSON value as a template value.
pub(super) fn convert(json: &Json) -> Value {
    match json {
        Json::Null => Value::from(()),
        Json::Bool(b) => Value::from(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::from(n.as_f64().unwrap_or(f64::NAN))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(items) => Value::from(items.iter().map(convert).collect::<Vec<_>>()),
        Json::Object(map) => Value::from(fields(map)),
    }
}

fn fields(map: &serde_json::Map<String, Json>) -> Fields {
    map.iter()
        .map(|(k, v)| (Value::from(k.as_str()), convert(v)))
        .collect()
}

fn key(name: &str) -> Value {
    Value::from(name)
}

/// Whether a field is missing or null (and so gets a default).
fn unset(map: &Fields, name: &str) -> bool {
    map.get(&key(name)).is_none_or(Value::is_none)
}

/// One alert: its fields as sent (`raw`, for `payload.alerts`) and as templates see it in
/// `alerts`/`firing`/`resolved` (`status` set, `labels`/`annotations` present), sharing values.
struct Alert {
    raw: Value,
    normalized: Value,
    status: Status,
}

fn alert(json: &Json) -> Alert {
    let status = alerts::alert_status(json);
    let raw_fields = match json {
        Json::Object(map) => fields(map),
        _ => Fields::new(),
    };
    let mut normalized = raw_fields.clone();
    normalized.insert(key("status"), Value::from(status.as_str()));
    for name in ["labels", "annotations"] {
        if unset(&normalized, name) {
            normalized.insert(key(name), Value::from(Fields::new()));
        }
    }
    let raw = match json {
        Json::Object(_) => Value::from(raw_fields),
        other => convert(other),
    };
    Alert {
        raw,
        normalized: Value::from(normalized),
        status,
    }
}

fn string_map(map: &std::collections::BTreeMap<String, String>) -> Value {
    Value::from(
        map.iter()
            .map(|(k, v)| (key(k), Value::from(v.as_str())))
            .collect::<Fields>(),
    )
}

impl Event {
    /// What templates see, as minijinja values; the second value is how many alerts were left
    /// out. `now`, when given, is added as the `now` variable (an RFC 3339 string).
    ///
    /// The context holds every top-level field of the payload, then these reserved names,
    /// which win over payload fields of the same name (those stay reachable under `payload`):
    /// `event` (the event name), `source` (the source name), `headers`, `query` and `payload`
    /// (the body, unmodified).
    ///
    /// For alert kinds, missing or null group fields get defaults (`status` is the event name,
    /// `groupLabels`/`commonLabels`/`commonAnnotations` `{}`, `receiver`/`groupKey`/
    /// `externalURL` `""`, `truncatedAlerts` `0`), each alert gets a `status` (`firing` or
    /// `resolved`, derived from `endsAt` when missing) and `labels`/`annotations` (`{}` when
    /// missing), and four more reserved names are added: `alerts`, `firing`, `resolved` and
    /// `omitted_alerts`. `alerts`, `firing` and `resolved` keep at most `alert_limit` alerts
    /// (all when `None`): firing alerts are kept before resolved ones, each list keeps its
    /// original order, and `alerts` is exactly the alerts shown in `firing` or `resolved`, so
    /// that `firing | length + resolved | length == alerts | length <= limit`.
    pub fn template_context(
        &self,
        alert_limit: Option<usize>,
        now: Option<jiff::Timestamp>,
    ) -> (Value, usize) {
        let payload_map = match &self.payload {
            Json::Object(map) => Some(map),
            _ => None,
        };
        let alert_list = self
            .kind
            .has_alerts()
            .then(|| alerts::list(&self.payload))
            .flatten();
        // Each alert converted once, shared by `payload.alerts` and the lists shown.
        let converted: Vec<Alert> = alert_list.unwrap_or_default().iter().map(alert).collect();

        let mut payload = Fields::new();
        for (name, value) in payload_map.into_iter().flatten() {
            let value = match (name.as_str(), alert_list) {
                ("alerts", Some(_)) => {
                    Value::from(converted.iter().map(|a| a.raw.clone()).collect::<Vec<_>>())
                }
                _ => convert(value),
            };
            payload.insert(key(name), value);
        }
        let payload_value = match payload_map {
            Some(_) => Value::from(payload.clone()),
            None => convert(&self.payload),
        };

        let mut context = payload;
        let mut omitted = 0;
        if self.kind.has_alerts() {
            let status = if self.name.is_empty() {
                let statuses = converted.iter().map(|a| a.status);
                alerts::derived_status_of(statuses).as_str()
            } else {
                self.name.as_str()
            };
            let empty = || Value::from(Fields::new());
            let mut defaults: Vec<(&str, Value)> = vec![
                ("status", Value::from(status)),
                ("receiver", Value::from("")),
                ("groupKey", Value::from("")),
                ("externalURL", Value::from("")),
                ("groupLabels", empty()),
                ("commonLabels", empty()),
                ("commonAnnotations", empty()),
                ("truncatedAlerts", Value::from(0u64)),
            ];
            if self.kind == SourceKind::Grafana {
                defaults.push(("title", Value::from("")));
                defaults.push(("message", Value::from("")));
            }
            for (name, value) in defaults {
                if unset(&context, name) {
                    context.insert(key(name), value);
                }
            }
            let statuses: Vec<Status> = converted.iter().map(|a| a.status).collect();
            let chosen = alerts::choose(&statuses, alert_limit);
            let (mut shown, mut firing, mut resolved) = (Vec::new(), Vec::new(), Vec::new());
            for (alert, chosen) in converted.iter().zip(chosen) {
                if !chosen {
                    omitted += 1;
                    continue;
                }
                shown.push(alert.normalized.clone());
                match alert.status {
                    Status::Firing => firing.push(alert.normalized.clone()),
                    Status::Resolved => resolved.push(alert.normalized.clone()),
                }
            }
            context.insert(key("alerts"), Value::from(shown));
            context.insert(key("firing"), Value::from(firing));
            context.insert(key("resolved"), Value::from(resolved));
            context.insert(key("omitted_alerts"), Value::from(omitted as u64));
        }
        context.insert(key("event"), Value::from(self.name.as_str()));
        context.insert(key("source"), Value::from(self.source.as_str()));
        context.insert(key("headers"), string_map(&self.headers));
        context.insert(key("query"), string_map(&self.query));
        context.insert(key("payload"), payload_value);
        if let Some(now) = now {
            context.insert(key("now"), Value::from(now.to_string()));
        }
        (Value::from(context), omitted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn json() -> impl Strategy<Value = Json> {
        let leaf = prop_oneof![
            Just(Json::Null),
            any::<bool>().prop_map(Json::from),
            any::<i64>().prop_map(Json::from),
            any::<u64>().prop_map(Json::from),
            (-1e9f64..1e9).prop_map(Json::from),
            ".{0,8}".prop_map(Json::from),
        ];
        leaf.prop_recursive(4, 32, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..6).prop_map(Json::Array),
                prop::collection::vec((".{0,6}", inner), 0..6)
                    .prop_map(|pairs| Json::Object(pairs.into_iter().collect())),
            ]
        })
    }

    /// Identical values, and identical kinds all the way down (u64 and i64 print alike).
    fn same(a: &Value, b: &Value) -> bool {
        if a.kind() != b.kind() || format!("{a:?}") != format!("{b:?}") || a != b {
            return false;
        }
        match a.try_iter() {
            Ok(keys) if a.kind() != minijinja::value::ValueKind::String => {
                keys.enumerate().all(|(i, k)| {
                    let (x, y) = match a.kind() {
                        minijinja::value::ValueKind::Map => (a.get_item(&k), b.get_item(&k)),
                        _ => (a.get_item(&Value::from(i)), b.get_item(&Value::from(i))),
                    };
                    matches!((x, y), (Ok(x), Ok(y)) if same(&x, &y))
                })
            }
            _ => true,
        }
    }

    proptest! {
        /// `convert` gives what minijinja's own serde conversion gives.
        #[test]
        fn convert_matches_minijinja_serde(value in json()) {
            let ours = convert(&value);
            let theirs = Value::from(minijinja::value::Serde(&value));
            prop_assert!(same(&ours, &theirs), "{:?} vs {:?}", ours, theirs);
            prop_assert_eq!(serde_json::to_value(&ours).unwrap(), value);
        }
    }
}

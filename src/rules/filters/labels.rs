//! Template filters over an alert's labels (Alertmanager, Grafana), registered by
//! [`super::register`]:
//!
//! | filter | example | result |
//! |---|---|---|
//! | `label_pairs(sep=", ", kv="=", exclude=[])` | `{{ alert.labels \| label_pairs }}` | `alertname=Disk, severity=critical` |
//! | `distinct_labels(common, keys=IDENTITY_KEYS)` | `{{ alert.labels \| distinct_labels(commonLabels) \| join(" · ") }}` | `DiskFull · instance=db2 · critical` |
//! | `silence_url(base, keys=IDENTITY_KEYS)` | `{{ alert.labels \| silence_url(externalURL) }}` | `http://am:9093/#/silences/new?filter=%7Balertname%3D%22DiskFull%22...` |
//!
//! `distinct_labels` gives what tells one alert apart from the rest of its group, as a list of
//! strings, in this order:
//! - the `alertname`, unless the group shares it (`common.alertname`);
//! - `key=value` for each identity key (`keys`, in their order) the alert has with a non-empty
//!   value that the group does not share;
//! - when that found nothing but the name: `key=value` for up to 4 other labels, in the alert's
//!   order, that the group does not share, leaving out `alertname`, `severity`, identity keys and
//!   keys starting with `__`;
//! - the `severity`, bare, unless the group shares it.
//!
//! `silence_url` gives a link to Alertmanager's "new silence" page with matchers filled in: one
//! `key="value"` per label among `alertname` and the identity keys that the alert has with a
//! non-empty value, or every label when that finds fewer than 2 (backslashes and quotes
//! escaped). It is empty when `base` is not an `http`, `https` or `dingtalk` URL (as `md_url`
//! reads it) or the alert has no labels. A trailing `/` of `base` is dropped. What it returns is
//! safe as a markdown link target, as `md_url` makes it: the matchers are URL-encoded, and
//! `base`'s spaces, parentheses, angle brackets and the like are percent-encoded, so
//! `[silence]({{ alert.labels | silence_url(externalURL) }})` is one link whatever the payload says.
//!
//! These are filters rather than template macros because the built-in `alertmanager` template
//! calls them for every alert, and minijinja macros were most of its rendering time
//! (docs/benchmarks.md). They read values the way templates do: a label is "present" when its value
//! is true in a template's `if`, and compared with `==`.

use minijinja::value::{Kwargs, Value, ValueKind};
use std::fmt::Write as _;

use minijinja::{Environment, Error};

use super::args::{arg, invalid};

/// The labels that usually say *where* an alert is (instance, pod, job, ...): the default `keys`.
pub const IDENTITY_KEYS: &[&str] = &[
    "instance",
    "host",
    "pod",
    "pod_name",
    "container",
    "container_name",
    "namespace",
    "service",
    "job",
    "device",
    "mountpoint",
    "node",
    "cluster",
];

/// At most this many other labels are shown when no identity key tells an alert apart.
const MAX_OTHER_LABELS: usize = 4;

/// Registers `distinct_labels` and `silence_url` on `env`.
pub fn register(env: &mut Environment<'_>) {
    env.add_filter(
        "distinct_labels",
        |labels: Value, common: Option<Value>, keys: Option<Value>, kwargs: Kwargs| {
            let (common, keys) = arguments("distinct_labels", "common", common, keys, &kwargs)?;
            Ok::<_, Error>(Value::from(distinct_labels(&labels, &common, &keys)))
        },
    );
    env.add_filter(
        "silence_url",
        |labels: Value, base: Option<Value>, keys: Option<Value>, kwargs: Kwargs| {
            let (base, keys) = arguments("silence_url", "base", base, keys, &kwargs)?;
            let base = if base.is_true() {
                base.to_string()
            } else {
                String::new()
            };
            silence_url(&labels, &base, &keys)
        },
    );
}

/// Both filters' arguments, by position or keyword: the first (undefined when absent) and
/// `keys`.
fn arguments(
    filter: &str,
    first_name: &str,
    first: Option<Value>,
    keys: Option<Value>,
    kwargs: &Kwargs,
) -> Result<(Value, Vec<Value>), Error> {
    let first = arg(first_name, first, kwargs)?;
    let keys = arg("keys", keys, kwargs)?;
    kwargs.assert_all_used()?;
    Ok((
        first.unwrap_or(Value::UNDEFINED),
        identity_keys(filter, keys.as_ref())?,
    ))
}

/// The `keys` argument, or [`IDENTITY_KEYS`]; the key values are kept as they are (a few
/// reference counts), since the built-in template passes the list for every alert.
fn identity_keys(filter: &str, keys: Option<&Value>) -> Result<Vec<Value>, Error> {
    let Some(keys) = keys else {
        return Ok(IDENTITY_KEYS.iter().map(|k| Value::from(*k)).collect());
    };
    if keys.kind() != ValueKind::Seq {
        return Err(invalid(format!(
            "{filter}: `keys` must be a list of label names, got {keys:?}"
        )));
    }
    Ok(keys.try_iter()?.collect())
}

/// A key as text: a string key as it is, anything else as it prints.
fn key_text(key: &Value) -> std::borrow::Cow<'_, str> {
    match key.as_str() {
        Some(text) => std::borrow::Cow::Borrowed(text),
        None => std::borrow::Cow::Owned(key.to_string()),
    }
}

/// A label's value, undefined when `labels` is not a map or has no such key.
fn label(labels: &Value, key: &str) -> Value {
    if labels.kind() != ValueKind::Map {
        return Value::UNDEFINED;
    }
    labels.get_attr(key).unwrap_or(Value::UNDEFINED)
}

/// See the [module documentation](self).
fn distinct_labels(labels: &Value, common: &Value, keys: &[Value]) -> Vec<String> {
    let mut parts: Vec<String> = Vec::new();
    let name = label(labels, "alertname");
    let common_name = label(common, "alertname");
    let shares_name = common_name.is_true() && name == common_name;
    if !shares_name && name.is_true() {
        parts.push(name.to_string());
    }
    let mut identified = false;
    for key in keys {
        let key = key_text(key);
        let value = label(labels, &key);
        if value.is_true() && value != label(common, &key) {
            parts.push(format!("{key}={value}"));
            identified = true;
        }
    }
    if !identified && labels.kind() == ValueKind::Map {
        let others = labels
            .try_iter()
            .into_iter()
            .flatten()
            .map(|key| key.to_string())
            .filter(|key| {
                !keys.iter().any(|k| key_text(k) == key.as_str())
                    && key != "alertname"
                    && key != "severity"
                    && !key.starts_with("__")
            })
            .filter_map(|key| {
                let value = label(labels, &key);
                (value != label(common, &key)).then(|| format!("{key}={value}"))
            })
            .take(MAX_OTHER_LABELS);
        parts.extend(others);
    }
    let severity = label(labels, "severity");
    if severity.is_true() && severity != label(common, "severity") {
        parts.push(severity.to_string());
    }
    parts
}

/// See the [module documentation](self).
fn silence_url(labels: &Value, base: &str, keys: &[Value]) -> Result<String, Error> {
    let base = base
        .trim_matches(|c: char| c.is_whitespace() || c.is_control())
        .trim_end_matches('/');
    if !crate::text::has_link_scheme(base) || labels.kind() != ValueKind::Map {
        return Ok(String::new());
    }
    let mut matched: Vec<String> = std::iter::once(std::borrow::Cow::Borrowed("alertname"))
        .chain(keys.iter().map(key_text))
        .filter(|key| label(labels, key).is_true())
        .map(std::borrow::Cow::into_owned)
        .collect();
    if matched.len() < 2 {
        matched = labels.try_iter()?.map(|k| k.to_string()).collect();
    }
    if matched.is_empty() {
        return Ok(String::new());
    }
    let matchers: Vec<String> = matched
        .iter()
        .map(|key| {
            let value = label(labels, key);
            let value = if value.is_undefined() {
                String::new()
            } else {
                value.to_string()
            };
            let value = value.replace('\\', "\\\\").replace('"', "\\\"");
            format!("{key}=\"{value}\"")
        })
        .collect();
    let filter = format!("{{{}}}", matchers.join(","));
    let url = format!(
        "{base}/#/silences/new?filter={}",
        minijinja::filters::urlencode(&Value::from(filter))?
    );
    let mut out = String::with_capacity(url.len());
    crate::text::push_link_target(&url, &mut out);
    Ok(out)
}

/// `label_pairs`: `key=value` pairs of a map, in the map's order, minus the `exclude`d keys.
pub(super) fn label_pairs(
    value: &Value,
    sep: &str,
    kv: &str,
    exclude: Option<&Value>,
) -> Result<String, Error> {
    if value.kind() != ValueKind::Map {
        return Err(invalid(format!(
            "label_pairs: expected a map (such as an alert's labels), got {} {value:?}",
            value.kind()
        )));
    }
    let excluded: Vec<String> = match exclude {
        None => Vec::new(),
        Some(list) if list.kind() == ValueKind::String => vec![list.to_string()],
        Some(list) => list
            .try_iter()
            .map_err(|_| {
                invalid(format!(
                    "label_pairs: `exclude` must be a list of keys, got {list:?}"
                ))
            })?
            .map(|key| key.to_string())
            .collect(),
    };
    let mut out = String::new();
    for key in value.try_iter()? {
        let name = key.to_string();
        if excluded.contains(&name) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(sep);
        }
        let _ = write!(out, "{name}{kv}{}", value.get_item(&key)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;
    use proptest::prelude::*;

    /// The template macros these filters replaced, verbatim: the filters must render the same.
    const MACROS: &str = r#"
    {%- set ident_keys = ["instance", "host", "pod", "pod_name", "container", "container_name", "namespace", "service", "job", "device", "mountpoint", "node", "cluster"] -%}
    {%- macro labels_of(alert) -%}
      {%- set ns = namespace(parts=[]) -%}
      {%- if not commonLabels.alertname or alert.labels.alertname != commonLabels.alertname %}{% set ns.parts = ns.parts + [alert.labels.alertname] %}{% endif -%}
      {%- for k in ident_keys if alert.labels[k] and alert.labels[k] != commonLabels[k] %}{% set ns.parts = ns.parts + [k ~ "=" ~ alert.labels[k]] %}{% endfor -%}
      {%- if ns.parts | length == 0 or ns.parts == [alert.labels.alertname] -%}
      {%- for k, v in alert.labels | items if k not in ident_keys and k not in ["alertname", "severity"] and not k is startingwith("__") and v != commonLabels[k] %}{% if loop.index <= 4 %}{% set ns.parts = ns.parts + [k ~ "=" ~ v] %}{% endif %}{% endfor -%}
      {%- endif -%}
      {%- if alert.labels.severity and alert.labels.severity != commonLabels.severity %}{% set ns.parts = ns.parts + [alert.labels.severity] %}{% endif -%}
      {{ ns.parts | select | join(" · ") }}
    {%- endmacro -%}
    {%- macro silence(alert) -%}
      {%- set ns = namespace(m=[], q=[]) -%}
      {%- for k in ["alertname"] + ident_keys if alert.labels[k] %}{% set ns.m = ns.m + [k] %}{% endfor -%}
      {%- if ns.m | length < 2 %}{% set ns.m = alert.labels | list %}{% endif -%}
      {%- for k in ns.m %}{% set ns.q = ns.q + [k ~ '="' ~ (alert.labels[k] ~ "") | replace("\\", "\\\\") | replace('"', '\\"') ~ '"'] %}{% endfor -%}
      {%- if am and ns.q %}{{ am }}/#/silences/new?filter={{ ("{" ~ ns.q | join(",") ~ "}") | urlencode }}{% endif -%}
    {%- endmacro -%}
    "#;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        register(&mut env);
        env
    }

    /// (macro result, filter result) for `expression` with `alert`, `commonLabels` and `am`.
    fn both(macro_call: &str, filter_call: &str, ctx: Value) -> (String, String) {
        let env = env();
        let old = env
            .render_str(&format!("{MACROS}{{{{ {macro_call} }}}}"), ctx.clone())
            .unwrap();
        let new = env
            .render_str(&format!("{MACROS}{{{{ {filter_call} }}}}"), ctx)
            .unwrap();
        (old, new)
    }

    fn ctx(labels: &serde_json::Value, common: &serde_json::Value, am: &str) -> Value {
        context! {
            alert => context! { labels => minijinja::value::Serde(labels) },
            commonLabels => minijinja::value::Serde(common),
            am => am,
        }
    }

    const DISTINCT: &str =
        r#"alert.labels | distinct_labels(commonLabels, ident_keys) | join(" · ")"#;
    const SILENCE: &str = "alert.labels | silence_url(am, ident_keys)";

    #[test]
    fn distinct_labels_examples() {
        let env = env();
        let render = |labels: serde_json::Value, common: serde_json::Value| {
            env.render_str(
                "{{ alert.labels | distinct_labels(commonLabels) | join(' · ') }}",
                ctx(&labels, &common, ""),
            )
            .unwrap()
        };
        let labels = serde_json::json!({"alertname": "DiskFull", "instance": "db2", "severity": "critical", "team": "db"});
        assert_eq!(
            render(labels.clone(), serde_json::json!({})),
            "DiskFull · instance=db2 · critical"
        );
        assert_eq!(
            render(
                labels.clone(),
                serde_json::json!({"alertname": "DiskFull", "severity": "critical"})
            ),
            "instance=db2"
        );
        // Nothing but the name tells it apart: up to 4 other labels, never `__` ones.
        let labels = serde_json::json!({"alertname": "X", "__meta": "m", "a": "1", "b": "2", "c": "3", "d": "4", "e": "5"});
        assert_eq!(
            render(labels, serde_json::json!({"alertname": "X", "a": "1"})),
            "b=2 · c=3 · d=4 · e=5"
        );
        // Not a map: nothing.
        assert_eq!(
            render(serde_json::json!("labels"), serde_json::json!({})),
            ""
        );
    }

    #[test]
    fn silence_url_examples() {
        let env = env();
        let render = |labels: serde_json::Value, am: &str| {
            env.render_str(
                "{{ alert.labels | silence_url(am) }}",
                ctx(&labels, &serde_json::json!({}), am),
            )
            .unwrap()
        };
        assert_eq!(
            render(
                serde_json::json!({"alertname": "Disk \"Full\"", "instance": "db2", "x": "y"}),
                "http://am:9093/"
            ),
            "http://am:9093/#/silences/new?filter=%7Balertname%3D%22Disk%20%5C%22Full%5C%22%22%2Cinstance%3D%22db2%22%7D"
        );
        // Fewer than two identity labels: every label.
        assert_eq!(
            render(serde_json::json!({"alertname": "A", "x": "y"}), "http://am"),
            "http://am/#/silences/new?filter=%7Balertname%3D%22A%22%2Cx%3D%22y%22%7D"
        );
        assert_eq!(render(serde_json::json!({"alertname": "A"}), ""), "");
        assert_eq!(render(serde_json::json!({}), "http://am"), "");
        // A base that is not a web link gives no link; one that would end the link early is
        // percent-encoded, as `md_url` does.
        let labels = serde_json::json!({"alertname": "A", "instance": "i"});
        assert_eq!(render(labels.clone(), "javascript:alert(1)//"), "");
        assert_eq!(render(labels.clone(), "am:9093"), "");
        assert_eq!(
            render(labels, "http://am) [x](http://evil/"),
            "http://am%29%20[x]%28http://evil/#/silences/new?filter=%7Balertname%3D%22A%22%2Cinstance%3D%22i%22%7D"
        );
    }

    #[test]
    fn keys_can_be_given_and_must_be_a_list() {
        let env = env();
        let labels = serde_json::json!({"alertname": "A", "region": "eu", "instance": "i"});
        let out = env
            .render_str(
                "{{ alert.labels | distinct_labels(commonLabels, keys=['region']) | join(',') }}",
                ctx(&labels, &serde_json::json!({"alertname": "A"}), ""),
            )
            .unwrap();
        assert_eq!(out, "region=eu");
        let err = env
            .render_str(
                "{{ alert.labels | distinct_labels(commonLabels, keys='region') }}",
                ctx(&labels, &serde_json::json!({}), ""),
            )
            .unwrap_err();
        assert!(format!("{err:#}").contains("must be a list"), "{err:#}");
    }

    fn label_map() -> impl Strategy<Value = serde_json::Value> {
        let keys = prop::sample::select(vec![
            "alertname",
            "severity",
            "instance",
            "job",
            "pod",
            "namespace",
            "__name__",
            "team",
            "env",
            "region",
            "a",
            "b",
            "c",
            "d",
            "e",
        ]);
        let values = prop_oneof![
            prop::sample::select(vec![
                "", "x", "y", "DiskFull", "critical", "a\"b\\c", "空间"
            ])
            .prop_map(serde_json::Value::from),
            Just(serde_json::Value::Null),
            (0i64..3).prop_map(serde_json::Value::from),
        ];
        prop::collection::vec((keys, values), 0..10).prop_map(|pairs| {
            serde_json::Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]

        /// The filters render exactly what the template macros they replaced rendered.
        #[test]
        fn filters_match_the_macros_they_replaced(
            labels in label_map(),
            common in label_map(),
            am in prop::sample::select(vec!["", "http://am:9093"]),
        ) {
            let (old, new) = both("labels_of(alert)", DISTINCT, ctx(&labels, &common, am));
            prop_assert_eq!(old, new);
            let (old, new) = both("silence(alert)", SILENCE, ctx(&labels, &common, am));
            prop_assert_eq!(old, new);
        }
    }
}

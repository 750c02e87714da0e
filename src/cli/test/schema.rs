//! The test file as written: the serde structs `dingrelay test` reads a file into (unknown keys
//! are refused), and the scalars written either as text or as a number.

use std::fmt;

use indexmap::IndexMap;
use serde::Deserialize;
use serde::de::{self, Deserializer, SeqAccess, Visitor};

use crate::yaml::Diagnostic;

/// A test file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    /// The config file, relative to the test file (default `rules.yaml`).
    #[serde(default)]
    pub(super) config: Option<String>,
    #[serde(default)]
    pub(super) now: Option<String>,
    /// The variables the config's `${...}` see, instead of the environment.
    #[serde(default)]
    pub(super) env: IndexMap<String, Scalar>,
    pub(super) tests: Vec<RawTest>,
}

/// One test as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawTest {
    pub(super) name: Scalar,
    #[serde(default)]
    pub(super) source: Option<String>,
    /// The event header of GitHub and GitLab, the `event` query parameter of json sources.
    #[serde(default)]
    pub(super) event: Option<Scalar>,
    #[serde(default)]
    pub(super) headers: IndexMap<String, Scalar>,
    #[serde(default)]
    pub(super) query: IndexMap<String, Scalar>,
    #[serde(default)]
    pub(super) now: Option<String>,
    /// The body inline: a string is the body byte for byte, anything else is sent as JSON.
    #[serde(default)]
    pub(super) payload: Option<serde_json::Value>,
    /// The body from a file, relative to the test file.
    #[serde(default)]
    pub(super) payload_file: Option<String>,
    #[serde(default)]
    pub(super) expect: Option<Vec<RawExpect>>,
    #[serde(default)]
    pub(super) refused: Option<u16>,
    #[serde(default)]
    pub(super) error_contains: Option<Texts>,
}

/// One expected message as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawExpect {
    pub(super) rule: String,
    #[serde(default)]
    pub(super) robot: Option<String>,
    #[serde(default)]
    pub(super) msgtype: Option<String>,
    #[serde(default)]
    pub(super) title: Option<Scalar>,
    #[serde(default)]
    pub(super) title_contains: Option<Texts>,
    #[serde(default)]
    pub(super) text: Option<Scalar>,
    #[serde(default)]
    pub(super) text_contains: Option<Texts>,
    #[serde(default)]
    pub(super) text_not_contains: Option<Texts>,
    #[serde(default)]
    pub(super) mentions: Option<Vec<Scalar>>,
    /// Whom a robot that addresses people sends the message to (user ids).
    #[serde(default)]
    pub(super) to: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(super) at_all: Option<bool>,
    #[serde(default)]
    pub(super) buttons: Option<Vec<Scalar>>,
    #[serde(default)]
    pub(super) links: Option<usize>,
    #[serde(default)]
    pub(super) url: Option<Scalar>,
}

/// A string, or a number or boolean taken as the text it is written as (a phone number
/// `13800001111`, a header value `1`).
#[derive(Debug, Clone)]
pub(super) struct Scalar(pub(super) String);

impl<'de> Deserialize<'de> for Scalar {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ScalarVisitor;
        impl Visitor<'_> for ScalarVisitor {
            type Value = Scalar;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a number")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Scalar, E> {
                Ok(Scalar(v.to_owned()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Scalar, E> {
                Ok(Scalar(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Scalar, E> {
                Ok(Scalar(v.to_string()))
            }
        }
        deserializer.deserialize_any(ScalarVisitor)
    }
}

/// One text or a list of them: `text_contains: "x"` or `text_contains: ["x", "y"]`.
#[derive(Debug, Clone, Default)]
pub(super) struct Texts(pub(super) Vec<String>);

impl<'de> Deserialize<'de> for Texts {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextsVisitor;
        impl<'de> Visitor<'de> for TextsVisitor {
            type Value = Texts;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string or a list of strings")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_owned()]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Texts, E> {
                Ok(Texts(vec![v.to_string()]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Texts, A::Error> {
                let mut texts = Vec::new();
                while let Some(Scalar(text)) = seq.next_element()? {
                    texts.push(text);
                }
                Ok(Texts(texts))
            }
        }
        deserializer.deserialize_any(TextsVisitor)
    }
}

/// A serde error as a diagnostic, with this format's struct names spelled out for people.
pub(super) fn serde_diagnostic(error: &serde_yaml::Error) -> Diagnostic {
    let mut diagnostic = crate::yaml::serde_diagnostic(error);
    for (internal, shown) in [
        ("struct RawFile", "a test file (a mapping with `tests`)"),
        (
            "struct RawTest",
            "a test (a mapping with `name`, a payload and `expect`)",
        ),
        (
            "struct RawExpect",
            "an expected message (a mapping with `rule`)",
        ),
    ] {
        diagnostic.message = diagnostic.message.replace(internal, shown);
    }
    diagnostic
}

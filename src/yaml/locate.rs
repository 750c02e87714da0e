//! Where each node of `rules.yaml` is, so errors can point at the right line and column.
//!
//! serde only reports a position for structural errors (a wrong type, a missing field). Semantic
//! errors found later (an unknown robot, an unset variable, a template syntax error) are about a
//! node known by its [`Path`], such as `rules[2].to[0]`; [`Locations`] maps those paths back to
//! positions in the source.
//!
//! [`Locations::index`] runs yaml-rust2's event parser over the source once and records, for every
//! node reachable through string keys and sequence indices:
//! - its start ([`Locations::value`]): the first character of a scalar (the opening quote of a
//!   quoted one; the first content character of a `|`/`>` block scalar; the value itself, not the
//!   `&anchor` or `!tag` before it), the `-` of a block sequence's first item, the first key of a
//!   block mapping, or the `{`/`[` of a flow collection; for an alias, the `*`;
//! - for mapping entries, where the key is ([`Locations::key`]).
//!
//! yaml-rust2's markers have 1-based lines and 0-based columns counted in chars; [`Location`]
//! has both 1-based, columns in chars. A leading byte order mark is not counted.

use std::collections::{HashMap, HashSet};
use std::fmt;

use yaml_rust2::parser::{Event, Parser};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Nodes nested deeper than this are not indexed (they still count for [`Locations::nearest`]
/// through their indexed ancestors). Keeps indexing linear on hostile input.
const MAX_INDEXED_DEPTH: usize = 64;

/// A position in the source: 1-based line, and 1-based column counted in chars (not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Location {
    /// The line, from 1.
    pub line: usize,
    /// The column in chars, from 1.
    pub column: usize,
}

impl Location {
    /// The start of the file: line 1, column 1.
    pub const START: Location = Location { line: 1, column: 1 };
}

/// `line:column`, as in `rules.yaml:12:9`.
impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.column)
    }
}

/// One step of a [`Path`]: a mapping key or a sequence index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Segment {
    /// The value under this key of a mapping. Keys are compared by their text, so `1`, `"1"`
    /// and `'1'` are the same key.
    Key(String),
    /// The item at this index (from 0) of a sequence.
    Index(usize),
}

/// The path from the document root to a node, such as `rules[2].to[0]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Path(Vec<Segment>);

impl Path {
    /// The document root.
    pub fn root() -> Path {
        Path(Vec::new())
    }

    /// This path followed by the mapping key `key`.
    #[must_use]
    pub fn key(&self, key: impl Into<String>) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Key(key.into()));
        Path(segments)
    }

    /// This path followed by the sequence index `index`.
    #[must_use]
    pub fn index(&self, index: usize) -> Path {
        let mut segments = self.0.clone();
        segments.push(Segment::Index(index));
        Path(segments)
    }

    /// The segments, from the root.
    pub fn segments(&self) -> &[Segment] {
        &self.0
    }

    /// The path without its last segment; `None` for the root.
    pub fn parent(&self) -> Option<Path> {
        let (_, init) = self.0.split_last()?;
        Some(Path(init.to_vec()))
    }

    /// Whether this is the root path.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<Vec<Segment>> for Path {
    fn from(segments: Vec<Segment>) -> Path {
        Path(segments)
    }
}

/// Like `rules[2].to[0]`; the root is the empty string. Keys that are not made of ASCII letters,
/// digits, `_` and `-` are quoted: `labels["app.kubernetes.io/name"]`.
impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, segment) in self.0.iter().enumerate() {
            match segment {
                Segment::Index(index) => write!(f, "[{index}]")?,
                Segment::Key(key)
                    if !key.is_empty()
                        && key
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') =>
                {
                    if i > 0 {
                        f.write_str(".")?;
                    }
                    f.write_str(key)?;
                }
                Segment::Key(key) => write!(f, "[{key:?}]")?,
            }
        }
        Ok(())
    }
}

/// Where an indexed node and, for a mapping entry, its key are.
#[derive(Debug, Clone, Copy, Default)]
struct Node {
    value: Option<Location>,
    key: Option<Location>,
}

/// The positions of the nodes of a YAML document, by [`Path`].
#[derive(Debug, Clone, Default)]
pub struct Locations {
    nodes: HashMap<Path, Node>,
    duplicates: Vec<(Path, Location)>,
}

impl Locations {
    /// Indexes the first document of `source`.
    ///
    /// Never fails: on a syntax error, what was read before the error stays indexed (serde
    /// reports the error itself). Not indexed: nodes inside a complex (non-scalar) key, the
    /// second and later occurrences of a duplicate key and what they hold (a path means the first
    /// occurrence), and nodes more than 64 levels deep.
    pub fn index(source: &str) -> Locations {
        let source = source.strip_prefix('\u{feff}').unwrap_or(source);
        let mut indexer = Indexer {
            chars: source.chars().collect(),
            frames: Vec::new(),
            root_seen: false,
            locations: Locations::default(),
        };
        // Pull events one at a time rather than through `Parser::load`, which recurses once per
        // nesting level and overflows the stack on deeply nested block collections.
        let mut parser = Parser::new_from_str(source);
        while let Ok((event, marker)) = parser.next_token() {
            match event {
                // A scan error (above) or the end of the first document ends the indexing.
                Event::DocumentEnd | Event::StreamEnd => break,
                event => indexer.on_event(event, marker),
            }
        }
        indexer.locations
    }

    /// Where the node at `path` starts (see the [module documentation](self)).
    ///
    /// For an empty value (`key:` with nothing after it) this is where its key is; for an empty
    /// sequence item (`-` alone) it is `None`.
    pub fn value(&self, path: &Path) -> Option<Location> {
        self.nodes.get(path).and_then(|node| node.value)
    }

    /// Where the key of the mapping entry at `path` is; `None` for sequence items and the root.
    pub fn key(&self, path: &Path) -> Option<Location> {
        self.nodes.get(path).and_then(|node| node.key)
    }

    /// The path of the mapping entry whose key is at `location`, if an indexed key is there
    /// (serde reports an unknown field at its key).
    pub fn key_at(&self, location: Location) -> Option<Path> {
        self.nodes
            .iter()
            .find(|(_, node)| node.key == Some(location))
            .map(|(path, _)| path.clone())
    }

    /// The path of the deepest indexed node that starts at `location` (serde reports a wrong
    /// value, or a mapping that lacks a field, where the node starts).
    pub fn path_at(&self, location: Location) -> Option<Path> {
        self.nodes
            .iter()
            .filter(|(_, node)| node.value == Some(location))
            .map(|(path, _)| path)
            .max_by_key(|path| path.segments().len())
            .cloned()
    }

    /// The location of `path`, or of its closest ancestor that has one; line 1 column 1 when
    /// none has.
    ///
    /// Meant for errors about nodes that may not exist, such as a missing field: the error then
    /// points at the mapping that lacks it.
    pub fn nearest(&self, path: &Path) -> Location {
        let mut segments = path.segments();
        loop {
            if let Some(node) = self.nodes.get(&Path(segments.to_vec()))
                && let Some(location) = node.value.or(node.key)
            {
                return location;
            }
            match segments.split_last() {
                Some((_, init)) => segments = init,
                None => return Location::START,
            }
        }
    }

    /// Keys repeated within one mapping: the path and key location of each repetition after the
    /// first, in document order.
    pub fn duplicate_keys(&self) -> Vec<(Path, Location)> {
        self.duplicates.clone()
    }
}

/// The collection being read.
struct Frame {
    /// `None` for collections that are not indexed (complex keys, repeated keys).
    path: Option<Path>,
    kind: FrameKind,
    /// A block mapping: its start is its first key, which is not known yet.
    start_from_first_child: bool,
}

enum FrameKind {
    Sequence {
        next: usize,
    },
    Mapping {
        /// `None` while expecting a key; then the key, or `Some(None)` for a value not indexed.
        pending: Option<Option<String>>,
        keys: HashSet<String>,
    },
}

/// What a node is to its parent.
enum Role {
    Key,
    Value,
    /// An item of a sequence.
    Item,
}

struct Indexer {
    chars: Vec<char>,
    frames: Vec<Frame>,
    root_seen: bool,
    locations: Locations,
}

impl Indexer {
    fn location(marker: Marker) -> Location {
        Location {
            line: marker.line().max(1),
            column: marker.col().saturating_add(1),
        }
    }

    /// A block sequence's marker is sometimes its first item's content rather than its `-`
    /// (`key:\n- item`): move back to the `-` over blanks on the same line.
    fn sequence_location(&self, marker: Marker) -> Location {
        let mut location = Self::location(marker);
        let index = marker.index();
        if matches!(self.chars.get(index), Some('-' | '[')) {
            return location;
        }
        let mut i = index;
        while i > 0 {
            i -= 1;
            match self.chars.get(i) {
                Some(' ' | '\t') => {}
                Some('-') => {
                    location.column = location.column.saturating_sub(index - i).max(1);
                    break;
                }
                _ => break,
            }
        }
        location
    }

    fn node_mut(&mut self, path: &Path) -> &mut Node {
        self.locations.nodes.entry(path.clone()).or_default()
    }

    /// Handles the start of a node: a scalar, an alias, or a collection.
    fn on_node(&mut self, event: &Event, marker: Marker) {
        let location = match event {
            Event::SequenceStart(..) => self.sequence_location(marker),
            _ => Self::location(marker),
        };

        // A block mapping starts where its first key does.
        if let Some(frame) = self.frames.last_mut()
            && frame.start_from_first_child
        {
            frame.start_from_first_child = false;
            if let Some(path) = frame.path.clone() {
                self.node_mut(&path).value = Some(location);
            }
        }

        let too_deep = self.frames.len() > MAX_INDEXED_DEPTH;
        let (path, role) = match self.frames.last_mut() {
            None if self.root_seen => return,
            None => {
                self.root_seen = true;
                (Some(Path::root()), Role::Value)
            }
            Some(Frame {
                path,
                kind: FrameKind::Sequence { next },
                ..
            }) => {
                let item = path.as_ref().filter(|_| !too_deep).map(|p| p.index(*next));
                *next += 1;
                (item, Role::Item)
            }
            Some(Frame {
                path,
                kind: FrameKind::Mapping { pending, keys },
                ..
            }) => match pending.take() {
                Some(key) => {
                    let value = path
                        .as_ref()
                        .filter(|_| !too_deep)
                        .zip(key)
                        .map(|(p, key)| p.key(key));
                    (value, Role::Value)
                }
                None => {
                    let key_path = match (path.as_ref().filter(|_| !too_deep), event) {
                        (Some(p), Event::Scalar(key, ..)) => {
                            let key_path = p.key(key.as_str());
                            if keys.insert(key.clone()) {
                                *pending = Some(Some(key.clone()));
                                Some(key_path)
                            } else {
                                self.locations.duplicates.push((key_path, location));
                                *pending = Some(None);
                                None
                            }
                        }
                        _ => {
                            *pending = Some(None);
                            None
                        }
                    };
                    if let Some(key_path) = &key_path {
                        self.node_mut(key_path).key = Some(location);
                    }
                    // A key's own subtree (a complex key) is never indexed.
                    (None, Role::Key)
                }
            },
        };

        let is_block_mapping = matches!(event, Event::MappingStart(..))
            && self.chars.get(marker.index()) != Some(&'{');
        if let Some(path) = &path {
            let implicit_null =
                matches!(event, Event::Scalar(text, TScalarStyle::Plain, ..) if text.is_empty());
            let recorded = if implicit_null {
                // Its marker is wherever the next token is: use the key instead, if any.
                match role {
                    Role::Value => self.locations.value(path).or(self.locations.key(path)),
                    Role::Key | Role::Item => None,
                }
            } else if is_block_mapping {
                None
            } else {
                Some(location)
            };
            if recorded.is_some() {
                self.node_mut(path).value = recorded;
            }
        }

        let kind = match event {
            Event::SequenceStart(..) => FrameKind::Sequence { next: 0 },
            Event::MappingStart(..) => FrameKind::Mapping {
                pending: None,
                keys: HashSet::new(),
            },
            _ => return,
        };
        self.frames.push(Frame {
            path,
            kind,
            start_from_first_child: is_block_mapping,
        });
    }
}

impl Indexer {
    fn on_event(&mut self, event: Event, marker: Marker) {
        match event {
            Event::Scalar(..)
            | Event::Alias(..)
            | Event::SequenceStart(..)
            | Event::MappingStart(..) => self.on_node(&event, marker),
            Event::SequenceEnd | Event::MappingEnd => {
                self.frames.pop();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(line: usize, column: usize) -> Option<Location> {
        Some(Location { line, column })
    }

    fn rules() -> Path {
        Path::root().key("rules")
    }

    #[test]
    fn path_display() {
        assert_eq!(Path::root().to_string(), "");
        assert_eq!(
            rules().index(2).key("to").index(0).to_string(),
            "rules[2].to[0]"
        );
        assert_eq!(Path::root().index(1).key("a").to_string(), "[1].a");
        assert_eq!(
            Path::root()
                .key("labels")
                .key("app.kubernetes.io/name")
                .to_string(),
            r#"labels["app.kubernetes.io/name"]"#
        );
        assert_eq!(
            rules().index(0).parent().and_then(|p| p.parent()),
            Some(Path::root())
        );
        assert_eq!(Path::root().parent(), None);
    }

    #[test]
    fn block_style() {
        let source = "\
robots:
  ops:
    url: https://example.com
rules:
  - name: disk
    to:
      - ops
      - dev
  -   name: cpu
      # a comment
      to: [dev]
key:
indentless:
- a
-   b
";
        let loc = Locations::index(source);
        let root = Path::root();
        assert_eq!(loc.value(&root), at(1, 1));
        assert_eq!(loc.key(&root.key("robots")), at(1, 1));
        assert_eq!(loc.value(&root.key("robots")), at(2, 3));
        assert_eq!(loc.value(&root.key("robots").key("ops")), at(3, 5));
        assert_eq!(
            loc.value(&root.key("robots").key("ops").key("url")),
            at(3, 10)
        );
        assert_eq!(loc.key(&rules()), at(4, 1));
        assert_eq!(loc.value(&rules()), at(5, 3));
        assert_eq!(loc.value(&rules().index(0)), at(5, 5));
        assert_eq!(loc.key(&rules().index(0).key("name")), at(5, 5));
        assert_eq!(loc.value(&rules().index(0).key("name")), at(5, 11));
        assert_eq!(loc.key(&rules().index(0).key("to")), at(6, 5));
        assert_eq!(loc.value(&rules().index(0).key("to")), at(7, 7));
        assert_eq!(loc.value(&rules().index(0).key("to").index(1)), at(8, 9));
        assert_eq!(loc.value(&rules().index(1)), at(9, 7));
        assert_eq!(loc.value(&rules().index(1).key("to")), at(11, 11));
        assert_eq!(loc.value(&rules().index(1).key("to").index(0)), at(11, 12));
        // An empty value is located at its key.
        assert_eq!(loc.value(&root.key("key")), at(12, 1));
        // An indentless sequence starts at its first `-`.
        assert_eq!(loc.value(&root.key("indentless")), at(14, 1));
        assert_eq!(loc.value(&root.key("indentless").index(1)), at(15, 5));
        assert_eq!(loc.key(&rules().index(0)), None);
        assert_eq!(loc.value(&rules().index(2)), None);
        assert_eq!(
            loc.key_at(Location { line: 6, column: 5 }),
            Some(rules().index(0).key("to"))
        );
        assert_eq!(
            loc.key_at(Location { line: 1, column: 1 }),
            Some(root.key("robots"))
        );
        // A value, not a key.
        assert_eq!(
            loc.key_at(Location {
                line: 3,
                column: 10
            }),
            None
        );
        assert!(loc.duplicate_keys().is_empty());
    }

    #[test]
    fn flow_style() {
        let source = "rules: [ {name: a, to: [x, y]}, {name: 'b', to: []} ]\nm: {k: v}\n";
        let loc = Locations::index(source);
        assert_eq!(loc.value(&rules()), at(1, 8));
        assert_eq!(loc.value(&rules().index(0)), at(1, 10));
        assert_eq!(loc.key(&rules().index(0).key("name")), at(1, 11));
        assert_eq!(loc.value(&rules().index(0).key("name")), at(1, 17));
        assert_eq!(loc.key(&rules().index(0).key("to")), at(1, 20));
        assert_eq!(loc.value(&rules().index(0).key("to")), at(1, 24));
        assert_eq!(loc.value(&rules().index(0).key("to").index(0)), at(1, 25));
        assert_eq!(loc.value(&rules().index(0).key("to").index(1)), at(1, 28));
        assert_eq!(loc.value(&rules().index(1)), at(1, 33));
        assert_eq!(loc.value(&rules().index(1).key("name")), at(1, 40));
        assert_eq!(loc.value(&rules().index(1).key("to")), at(1, 49));
        assert_eq!(loc.value(&Path::root().key("m")), at(2, 4));
        assert_eq!(loc.value(&Path::root().key("m").key("k")), at(2, 8));
    }

    #[test]
    fn columns_count_chars_not_bytes() {
        let source = "\u{feff}名称: \"钉钉\"\n描述: 告警 {x}\nlist: [钉钉, \"群\", 机器人]\n";
        let loc = Locations::index(source);
        assert_eq!(loc.key(&Path::root().key("名称")), at(1, 1));
        assert_eq!(loc.value(&Path::root().key("名称")), at(1, 5));
        assert_eq!(loc.value(&Path::root().key("描述")), at(2, 5));
        assert_eq!(loc.value(&Path::root().key("list").index(1)), at(3, 12));
        assert_eq!(loc.value(&Path::root().key("list").index(2)), at(3, 17));
    }

    #[test]
    fn block_scalars_and_anchors() {
        let source = "\
base: &base
  a: 1
t: |
  line one
copy: *base
tagged: !!str 5
";
        let loc = Locations::index(source);
        assert_eq!(loc.value(&Path::root().key("base")), at(2, 3));
        assert_eq!(loc.value(&Path::root().key("t")), at(4, 3));
        assert_eq!(loc.value(&Path::root().key("copy")), at(5, 7));
        assert_eq!(loc.value(&Path::root().key("copy").key("a")), None);
        assert_eq!(loc.value(&Path::root().key("tagged")), at(6, 15));
    }

    #[test]
    fn nearest_falls_back_to_ancestors() {
        let source = "rules:\n  - name: a\n    to: [x]\n";
        let loc = Locations::index(source);
        assert_eq!(
            loc.nearest(&rules().index(0).key("to").index(0)),
            Location {
                line: 3,
                column: 10
            }
        );
        assert_eq!(
            loc.nearest(&rules().index(0).key("match").key("source")),
            Location { line: 2, column: 5 }
        );
        assert_eq!(
            loc.nearest(&rules().index(7)),
            Location { line: 2, column: 3 }
        );
        assert_eq!(
            loc.nearest(&Path::root().key("robots")),
            Location { line: 1, column: 1 }
        );
        assert_eq!(
            Locations::index("").nearest(&rules()),
            Location { line: 1, column: 1 }
        );
    }

    #[test]
    fn duplicate_keys_report_the_repetition() {
        let source = "\
rules:
  - name: a
    name: b
    to: [x]
rules: []
m: {k: 1, k: 2}
";
        let loc = Locations::index(source);
        assert_eq!(
            loc.duplicate_keys(),
            vec![
                (
                    rules().index(0).key("name"),
                    Location { line: 3, column: 5 }
                ),
                (rules(), Location { line: 5, column: 1 }),
                (
                    Path::root().key("m").key("k"),
                    Location {
                        line: 6,
                        column: 11
                    }
                ),
            ]
        );
        // Paths mean the first occurrence.
        assert_eq!(loc.value(&rules().index(0).key("name")), at(2, 11));
        assert_eq!(loc.value(&rules()), at(2, 3));
    }

    #[test]
    fn keeps_what_was_read_before_an_error() {
        let source = "a: 1\nb: [x,\nc: {\n";
        let loc = Locations::index(source);
        assert_eq!(loc.value(&Path::root().key("a")), at(1, 4));
        assert_eq!(loc.value(&Path::root().key("b")), at(2, 4));
        for bad in [
            "",
            "\u{feff}",
            ":",
            "- - - [",
            "{{{{",
            "a: *x",
            "? [a]\n: b",
            "---\n---\n",
        ] {
            let _ = Locations::index(bad);
        }
    }

    #[test]
    fn deep_nesting_neither_overflows_nor_goes_quadratic() {
        let depth = 3_000;
        let source: String = (0..depth)
            .map(|i| format!("{}k:\n", " ".repeat(i)))
            .collect();
        let loc = Locations::index(&source);
        let mut path = Path::root();
        for _ in 0..MAX_INDEXED_DEPTH {
            path = path.key("k");
        }
        assert_eq!(loc.key(&path), at(MAX_INDEXED_DEPTH, MAX_INDEXED_DEPTH));
        let deeper = path.key("k").key("k");
        assert_eq!(loc.key(&deeper), None);
        assert_eq!(
            loc.nearest(&deeper),
            at(MAX_INDEXED_DEPTH + 1, MAX_INDEXED_DEPTH + 1).unwrap()
        );
        // yaml-rust2 refuses very deep flow collections; whatever it read before is kept.
        let _ = Locations::index(&("[".repeat(depth) + &"]".repeat(depth)));
        let flow = "[".repeat(100) + &"]".repeat(100);
        assert_eq!(
            Locations::index(&flow).value(&Path::root().index(0)),
            at(1, 2)
        );
    }

    #[test]
    fn first_document_only() {
        let loc = Locations::index("a: 1\n---\nb: 2\n");
        assert_eq!(loc.value(&Path::root().key("a")), at(1, 4));
        assert_eq!(loc.value(&Path::root().key("b")), None);
    }
}

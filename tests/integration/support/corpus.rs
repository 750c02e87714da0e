//! The corpus of real payloads in tests/fixtures/corpus (origins and licences in its
//! SOURCES.txt), and the headers each was sent with.

use std::path::{Path, PathBuf};

use http::{HeaderMap, HeaderName, HeaderValue};

/// tests/fixtures/corpus.
pub fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/corpus")
}

/// The `.json` payloads of one directory (`github`, `alertmanager/legacy`), as paths relative
/// to the corpus, sorted.
pub fn files(sub: &str) -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(dir().join(sub))
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".json"))
        .map(|name| format!("{sub}/{name}"))
        .collect();
    files.sort();
    files
}

/// The payload's bytes.
pub fn read(file: &str) -> Vec<u8> {
    std::fs::read(dir().join(file)).unwrap()
}

/// The headers to replay `file` with: JSON, plus the event header SOURCES.txt gives (column 6,
/// e.g. `X-GitHub-Event: push ; action=...`).
pub fn headers(file: &str) -> HeaderMap {
    let sources = std::fs::read_to_string(dir().join("SOURCES.txt")).unwrap();
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    let line = sources
        .lines()
        .find(|l| l.split('\t').next() == Some(file))
        .unwrap_or_else(|| panic!("{file} is listed in SOURCES.txt"));
    for part in line.split('\t').nth(5).unwrap_or("").split(';') {
        if let Some((name, value)) = part.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("x-github-event")
                || name.eq_ignore_ascii_case("x-gitlab-event")
            {
                headers.insert(
                    HeaderName::from_bytes(name.as_bytes()).unwrap(),
                    HeaderValue::from_str(value.trim()).unwrap(),
                );
            }
        }
    }
    headers
}

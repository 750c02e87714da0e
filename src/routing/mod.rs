//! Routing: what happens to an event once it is parsed, beyond what a rule's templates render
//! (placeholder; the real module documentation is written with the rest of routing).

pub mod fallback;

//! The durable outbox: enqueue and group commit, dedup, scheduling, state transitions, durability
//! across a restart, pruning, and the operator's `Admin` access while the daemon holds it open.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use dingrelay::dingtalk::Message;
use dingrelay::outbox::{
    Admin, AdminError, Appended, Enqueued, FILE_NAME, NewEvent, NewMessage, Outbox, OutboxError,
    Outcome, Purgeable, RoutedEvent, State,
};

const T0: i64 = 1_795_000_000_000;
const MINUTE: i64 = 60_000;

/// A state directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        TempDir(crate::support::scratch_dir().join(format!(
            "dingrelay-outbox-{}-{name}-{}",
            std::process::id(),
            rand::random::<u64>()
        )))
    }

    fn path(&self) -> &Path {
        &self.0
    }

    /// A second, raw connection to the file, as another process would open it.
    fn raw(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.0.join(FILE_NAME)).unwrap()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn msg(robot: &str, content: &str) -> NewMessage {
    NewMessage {
        robot: robot.to_owned(),
        rule: "rule".to_owned(),
        source: "source".to_owned(),
        dedup_key: None,
        message: Message::text(content),
        recipients: Vec::new(),
    }
}

fn accepted_ids(results: &[Enqueued]) -> Vec<i64> {
    results
        .iter()
        .map(|r| match r {
            Enqueued::Accepted { id } => *id,
        })
        .collect()
}

fn contents(messages: &[dingrelay::outbox::StoredMessage]) -> Vec<String> {
    messages.iter().map(|m| m.message.summary()).collect()
}

fn rows(dir: &TempDir) -> i64 {
    dir.raw()
        .query_row("SELECT COUNT(*) FROM messages", [], |r| r.get(0))
        .unwrap()
}

#[tokio::test]
async fn enqueued_messages_come_back_due_in_order_with_unique_msg_uuids() {
    let dir = TempDir::new("order");
    let state_dir = dir.path().join("nested/state");
    let outbox = Outbox::open(&state_dir).unwrap();
    assert!(outbox.path().ends_with(format!("nested/state/{FILE_NAME}")));
    let first = outbox
        .enqueue(vec![msg("ops", "one"), msg("ops", "two")], T0)
        .await
        .unwrap();
    let second = outbox
        .enqueue(vec![msg("dev", "elsewhere"), msg("ops", "three")], T0 + 1)
        .await
        .unwrap();
    let mut ids = accepted_ids(&first);
    ids.extend(accepted_ids(&second));
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");

    let due = outbox.due("ops", T0 + 1, 10).await.unwrap();
    assert_eq!(contents(&due), ["one", "two", "three"]);
    assert_eq!(
        due.iter().map(|m| m.id).collect::<Vec<_>>(),
        [ids[0], ids[1], ids[3]]
    );
    let uuids: HashSet<&str> = due
        .iter()
        .map(|m| m.message.msg_uuid.as_deref().expect("msgUuid is set"))
        .collect();
    assert_eq!(uuids.len(), 3, "unique");
    assert!(
        uuids
            .iter()
            .all(|u| u.len() == 32 && u.bytes().all(|b| b.is_ascii_hexdigit()))
    );
    let one = &due[0];
    assert_eq!(
        (one.robot.as_str(), one.rule.as_str(), one.source.as_str()),
        ("ops", "rule", "source")
    );
    assert_eq!(
        (
            one.attempts,
            one.accepted_at,
            one.age_from,
            one.next_attempt_at
        ),
        (0, T0, T0, T0)
    );
    assert_eq!(one.last_error, None);
    let mut without_uuid = one.message.clone();
    without_uuid.msg_uuid = None;
    assert_eq!(
        without_uuid,
        Message::text("one"),
        "the message round-trips"
    );
    // The stored body has no msgUuid: it lives in its own column.
    let body: String = rusqlite::Connection::open(state_dir.join(FILE_NAME))
        .unwrap()
        .query_row("SELECT body FROM messages WHERE id = ?1", [one.id], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!body.contains("msgUuid"), "{body}");

    assert_eq!(
        contents(&outbox.due("ops", T0 + 1, 2).await.unwrap()),
        ["one", "two"]
    );
    assert_eq!(
        contents(&outbox.due("dev", T0 + 1, 10).await.unwrap()),
        ["elsewhere"]
    );
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 3);
    assert_eq!(outbox.pending_count("nobody").await.unwrap(), 0);
    assert_eq!(outbox.enqueue(Vec::new(), T0).await.unwrap(), []);
    outbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_that_fails_to_insert_stores_nothing_while_a_concurrent_batch_succeeds() {
    let dir = TempDir::new("all-or-none");
    let outbox = Outbox::open(dir.path()).unwrap();
    for round in 0..20 {
        // The empty robot name breaks the schema's CHECK after two messages were inserted.
        let bad = vec![msg("ops", "bad 1"), msg("ops", "bad 2"), msg("", "bad 3")];
        let good = vec![msg("ops", "good 1"), msg("ops", "good 2")];
        let (a, b) = (outbox.clone(), outbox.clone());
        let bad = tokio::spawn(async move { a.enqueue(bad, T0 + round).await });
        let good = tokio::spawn(async move { b.enqueue(good, T0 + round).await });
        let OutboxError::Unavailable(reason) = bad.await.unwrap().unwrap_err();
        assert!(reason.contains("message 3 of 3"), "{reason}");
        assert_eq!(accepted_ids(&good.await.unwrap().unwrap()).len(), 2);
    }
    let due = outbox.due("ops", T0 + 100, 1000).await.unwrap();
    assert_eq!(due.len(), 40);
    assert!(contents(&due).iter().all(|c| c.starts_with("good")));
    outbox.close().await;
    assert_eq!(rows(&dir), 40);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_enqueues_share_commits() {
    let dir = TempDir::new("group");
    let outbox = Outbox::open(dir.path()).unwrap();
    // Another process holds the write lock, so enqueues pile up behind the first one.
    let blocker = dir.raw();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let before = outbox.commits();
    let mut calls = tokio::task::JoinSet::new();
    let first = outbox.clone();
    calls.spawn(async move { first.enqueue(vec![msg("ops", "0")], T0).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 1..100 {
        let outbox = outbox.clone();
        calls.spawn(async move { outbox.enqueue(vec![msg("ops", &i.to_string())], T0).await });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    blocker.execute_batch("ROLLBACK").unwrap();
    let mut ids = HashSet::new();
    while let Some(result) = calls.join_next().await {
        ids.extend(accepted_ids(&result.unwrap().unwrap()));
    }
    assert_eq!(ids.len(), 100);
    let commits = outbox.commits() - before;
    assert!(
        (1..=5).contains(&commits),
        "100 enqueues took {commits} commits"
    );
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 100);
    outbox.close().await;
}

fn event(source: &str, key: Option<&str>, at: i64) -> NewEvent {
    NewEvent {
        source: source.to_owned(),
        name: "firing".to_owned(),
        dedup_key: key.map(str::to_owned),
        headers: [("x-kind".to_owned(), "test".to_owned())].into(),
        query: "a=1".to_owned(),
        body: br#"{"n":1}"#.to_vec(),
        received_at: at,
    }
}

#[tokio::test]
async fn duplicate_events_within_the_window_are_reported_with_the_first_id() {
    let dir = TempDir::new("dedup");
    let outbox = Outbox::open(dir.path()).unwrap();
    let Appended::Stored { id } = outbox
        .append(event("am", Some("k"), T0), MINUTE)
        .await
        .unwrap()
    else {
        panic!("stored")
    };
    // Within the window: a duplicate of it, whether routed or not; keys are per source, and an
    // event without a key is never a duplicate.
    assert_eq!(
        outbox
            .append(event("am", Some("k"), T0 + MINUTE - 1), MINUTE)
            .await
            .unwrap(),
        Appended::Duplicate { id }
    );
    assert!(matches!(
        outbox
            .append(event("gh", Some("k"), T0 + 1), MINUTE)
            .await
            .unwrap(),
        Appended::Stored { .. }
    ));
    assert!(matches!(
        outbox
            .append(event("am", None, T0 + 1), MINUTE)
            .await
            .unwrap(),
        Appended::Stored { .. }
    ));
    // Outside the window: stored again, and later duplicates are of the newer event.
    let Appended::Stored { id: later } = outbox
        .append(event("am", Some("k"), T0 + MINUTE), MINUTE)
        .await
        .unwrap()
    else {
        panic!("stored again")
    };
    assert!(later > id);
    assert_eq!(
        outbox
            .append(event("am", Some("k"), T0 + MINUTE + 1), MINUTE)
            .await
            .unwrap(),
        Appended::Duplicate { id: later }
    );
    // A window of 0 disables dedup.
    assert!(matches!(
        outbox
            .append(event("am", Some("k"), T0 + MINUTE + 2), 0)
            .await
            .unwrap(),
        Appended::Stored { .. }
    ));
    outbox.close().await;

    // After a restart the window is rebuilt from the log.
    let outbox = Outbox::open(dir.path()).unwrap();
    assert_eq!(
        outbox
            .append(event("am", Some("k"), T0 + MINUTE + 3), MINUTE)
            .await
            .unwrap(),
        Appended::Duplicate { id: later + 1 },
        "the newest stored event with the key"
    );
    outbox.close().await;
}

#[tokio::test]
async fn routing_an_event_stores_its_messages_and_marks_it_in_one_step() {
    let dir = TempDir::new("route");
    let outbox = Outbox::open(dir.path()).unwrap();
    for i in 0..3 {
        outbox
            .append(event("am", None, T0 + i), MINUTE)
            .await
            .unwrap();
    }
    let waiting = outbox.waiting_events(2, usize::MAX).await.unwrap();
    assert_eq!(waiting.iter().map(|e| e.id).collect::<Vec<_>>(), [1, 2]);
    assert_eq!(waiting[0].headers["x-kind"], "test");
    assert_eq!(waiting[0].query, "a=1");
    assert_eq!(waiting[0].body, br#"{"n":1}"#);
    // No more once the bodies weigh the limit, but always the first.
    assert_eq!(outbox.waiting_events(10, 1).await.unwrap().len(), 1);
    assert_eq!(outbox.waiting_events(10, 14).await.unwrap().len(), 2);

    let routed = |event_id: i64, robots: &[&str]| RoutedEvent {
        event_id,
        messages: robots.iter().map(|r| msg(r, "m")).collect(),
        outcome: Outcome {
            rules: vec!["rule".to_owned()],
            ..Outcome::default()
        },
        routed_at: T0 + 10,
    };
    let ids = outbox
        .commit_routing(vec![routed(1, &["ops", "dev"]), routed(2, &[])])
        .await
        .unwrap();
    assert_eq!(ids, [vec![1, 2], vec![]]);
    assert_eq!(
        outbox
            .waiting_events(10, usize::MAX)
            .await
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect::<Vec<_>>(),
        [3]
    );
    // Routing an event that is no longer waiting stores nothing: exactly once.
    let again = outbox
        .commit_routing(vec![routed(1, &["ops"])])
        .await
        .unwrap();
    assert_eq!(again, [Vec::<i64>::new()]);
    assert_eq!(rows(&dir), 2);
    let (event_id, outcome): (i64, String) = dir
        .raw()
        .query_row(
            "SELECT m.event_id, e.outcome FROM messages m JOIN events e ON e.id = m.event_id WHERE m.id = 2",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(event_id, 1);
    let outcome: Outcome = serde_json::from_str(&outcome).unwrap();
    assert_eq!(outcome.messages, [1, 2]);

    // Purging keeps what waits, and what was routed recently.
    assert_eq!(outbox.purge_events(T0 + 10).await.unwrap(), 0);
    assert_eq!(outbox.purge_events(T0 + 11).await.unwrap(), 2);
    assert_eq!(
        outbox.waiting_events(10, usize::MAX).await.unwrap().len(),
        1
    );
    outbox.close().await;
}

#[tokio::test]
async fn due_respects_next_attempt_at_and_transitions_follow_the_marks() {
    let dir = TempDir::new("transitions");
    let outbox = Outbox::open(dir.path()).unwrap();
    let ids = accepted_ids(
        &outbox
            .enqueue(vec![msg("ops", "a"), msg("ops", "b"), msg("ops", "c")], T0)
            .await
            .unwrap(),
    );
    let (a, b, c) = (ids[0], ids[1], ids[2]);
    assert!(
        outbox.due("ops", T0 - 1, 10).await.unwrap().is_empty(),
        "not due before acceptance"
    );
    assert_eq!(outbox.next_due_at("ops").await.unwrap(), Some(T0));
    assert_eq!(outbox.next_due_at("dev").await.unwrap(), None);

    outbox
        .mark_retry(&[a, b], T0 + 5_000, "HTTP 502")
        .await
        .unwrap();
    let due = outbox.due("ops", T0 + 4_999, 10).await.unwrap();
    assert_eq!(contents(&due), ["c"]);
    assert_eq!(outbox.next_due_at("ops").await.unwrap(), Some(T0));
    outbox.mark_delivered(&[c], T0 + 10).await.unwrap();
    assert_eq!(outbox.next_due_at("ops").await.unwrap(), Some(T0 + 5_000));
    let due = outbox.due("ops", T0 + 5_000, 10).await.unwrap();
    assert_eq!(contents(&due), ["a", "b"]);
    assert_eq!(due[0].attempts, 1);
    assert_eq!(due[0].next_attempt_at, T0 + 5_000);
    assert_eq!(due[0].last_error.as_deref(), Some("HTTP 502"));
    assert_eq!(due[0].age_from, T0);
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 2);

    outbox
        .mark_dead(&[a], T0 + 6_000, "errcode 300001: token is not exist")
        .await
        .unwrap();
    assert_eq!(
        contents(&outbox.due("ops", T0 + 9_000, 10).await.unwrap()),
        ["b"]
    );
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 1);
    // A dead or delivered row does not come back through mark_retry.
    outbox.mark_retry(&[a, c], T0, "late").await.unwrap();
    assert_eq!(
        contents(&outbox.due("ops", T0 + 9_000, 10).await.unwrap()),
        ["b"]
    );
    outbox.mark_delivered(&[b], T0 + 7_000).await.unwrap();
    assert!(outbox.due("ops", i64::MAX, 10).await.unwrap().is_empty());
    assert_eq!(outbox.next_due_at("ops").await.unwrap(), None);
    // Empty id lists are fine.
    outbox.mark_delivered(&[], T0).await.unwrap();
    outbox.mark_retry(&[], T0, "").await.unwrap();
    outbox.mark_dead(&[], T0, "").await.unwrap();
    outbox.close().await;

    let admin = Admin::open(dir.path()).unwrap();
    let dead = admin.show(a).unwrap().unwrap();
    assert_eq!(dead.state, State::Dead);
    assert_eq!(dead.attempts, 2, "the retry and the final attempt");
    assert_eq!(dead.dead_at, Some(T0 + 6_000));
    assert_eq!(
        dead.last_error.as_deref(),
        Some("errcode 300001: token is not exist")
    );
    let delivered = admin.show(c).unwrap().unwrap();
    assert_eq!(
        (delivered.state, delivered.delivered_at, delivered.attempts),
        (State::Delivered, Some(T0 + 10), 0)
    );
}

#[tokio::test]
async fn pending_rows_survive_dropping_the_outbox_without_close() {
    let dir = TempDir::new("restart");
    let ids = {
        let outbox = Outbox::open(dir.path()).unwrap();
        let ids = accepted_ids(
            &outbox
                .enqueue(vec![msg("ops", "survives"), msg("ops", "delivered")], T0)
                .await
                .unwrap(),
        );
        outbox.mark_delivered(&ids[1..], T0 + 1).await.unwrap();
        let uuid = outbox.due("ops", T0, 1).await.unwrap()[0]
            .message
            .msg_uuid
            .clone();
        // Dropped without close, as a crash would leave it.
        drop(outbox);
        (ids, uuid)
    };
    let outbox = Outbox::open(dir.path()).unwrap();
    let due = outbox.due("ops", T0, 10).await.unwrap();
    assert_eq!(contents(&due), ["survives"]);
    assert_eq!(due[0].id, ids.0[0]);
    assert_eq!(
        due[0].message.msg_uuid, ids.1,
        "a resend carries the same msgUuid"
    );
    let more = accepted_ids(
        &outbox
            .enqueue(vec![msg("ops", "new")], T0 + 2)
            .await
            .unwrap(),
    );
    assert!(more[0] > ids.0[1]);
    outbox.close().await;
}

#[tokio::test]
async fn attempts_are_counted_per_robot_since_a_time() {
    let dir = TempDir::new("attempts");
    let outbox = Outbox::open(dir.path()).unwrap();
    for at in [T0, T0 + 10_000, T0 + 59_999, T0 + 60_000] {
        outbox.record_attempt("ops", at).await.unwrap();
    }
    outbox.record_attempt("dev", T0 + 30_000).await.unwrap();
    assert_eq!(outbox.attempts_since("ops", T0).await.unwrap(), 4);
    assert_eq!(outbox.attempts_since("ops", T0 + 10_000).await.unwrap(), 3);
    assert_eq!(outbox.attempts_since("ops", T0 + 60_001).await.unwrap(), 0);
    assert_eq!(outbox.attempts_since("dev", T0).await.unwrap(), 1);
    assert_eq!(outbox.attempts_since("nobody", 0).await.unwrap(), 0);
    outbox.close().await;
}

#[tokio::test]
async fn prune_removes_old_delivered_rows_and_attempts_only() {
    let dir = TempDir::new("prune");
    let outbox = Outbox::open(dir.path()).unwrap();
    let ids = accepted_ids(
        &outbox
            .enqueue(
                vec![
                    msg("ops", "pending"),
                    msg("ops", "dead"),
                    msg("ops", "old"),
                    msg("ops", "recent"),
                ],
                T0,
            )
            .await
            .unwrap(),
    );
    outbox
        .mark_dead(&[ids[1]], T0 + 1, "refused")
        .await
        .unwrap();
    outbox.mark_delivered(&[ids[2]], T0 + 1_000).await.unwrap();
    outbox.mark_delivered(&[ids[3]], T0 + 5_000).await.unwrap();
    outbox.record_attempt("ops", T0).await.unwrap();
    outbox.record_attempt("ops", T0 + 5_000).await.unwrap();

    // Deletes the delivered row delivered before T0+2000 and the attempt before T0+1.
    assert_eq!(outbox.prune(T0 + 2_000, T0 + 1).await.unwrap(), 2);
    assert_eq!(outbox.attempts_since("ops", 0).await.unwrap(), 1);
    // Everything delivered, far in the future: pending and dead rows stay.
    assert_eq!(outbox.prune(i64::MAX, i64::MAX).await.unwrap(), 2);
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 1);
    outbox.close().await;
    let admin = Admin::open(dir.path()).unwrap();
    let left: Vec<(i64, State)> = admin
        .list(None, None)
        .unwrap()
        .iter()
        .map(|l| (l.id, l.state))
        .collect();
    assert_eq!(left, [(ids[0], State::Pending), (ids[1], State::Dead)]);
    drop(admin);
    // A row id freed by pruning the highest rows may be taken again (no AUTOINCREMENT), but
    // never its msgUuid: that is new for every message.
    let outbox = Outbox::open(dir.path()).unwrap();
    let before: Vec<String> = outbox
        .due("ops", i64::MAX, 10)
        .await
        .unwrap()
        .iter()
        .map(|m| m.message.msg_uuid.clone().unwrap())
        .collect();
    outbox
        .enqueue(vec![msg("ops", "next")], T0 + 1)
        .await
        .unwrap();
    let after = outbox.due("ops", i64::MAX, 10).await.unwrap();
    let next = after.last().unwrap();
    assert_eq!(next.message.summary(), "next");
    assert!(
        !before.contains(next.message.msg_uuid.as_ref().unwrap()),
        "{before:?}"
    );
    outbox.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_works_on_the_file_while_the_daemon_holds_it_open() {
    let dir = TempDir::new("admin");
    let outbox = Outbox::open(dir.path()).unwrap();
    let ids = accepted_ids(
        &outbox
            .enqueue(
                vec![
                    msg("ops", "pending"),
                    msg("ops", "dead 1"),
                    msg("dev", "dead 2"),
                    msg("ops", "delivered"),
                ],
                T0,
            )
            .await
            .unwrap(),
    );
    outbox
        .mark_dead(&ids[1..3], T0 + 1_000, "errcode 310000: keywords")
        .await
        .unwrap();
    outbox.mark_delivered(&ids[3..], T0 + 2_000).await.unwrap();

    let admin = Admin::open(dir.path()).unwrap();
    let counts = admin.counts().unwrap();
    let counts: Vec<(&str, usize, usize, usize)> = counts
        .iter()
        .map(|c| (c.robot.as_str(), c.pending, c.dead, c.delivered))
        .collect();
    assert_eq!(counts, [("dev", 0, 1, 0), ("ops", 1, 1, 1)]);
    let dead: Vec<i64> = admin
        .list(Some(State::Dead), None)
        .unwrap()
        .iter()
        .map(|l| l.id)
        .collect();
    assert_eq!(dead, [ids[1], ids[2]]);
    let ops_dead = admin.list(Some(State::Dead), Some("ops")).unwrap();
    assert_eq!(ops_dead.len(), 1);
    assert_eq!(ops_dead[0].summary, "dead 1");
    assert_eq!(
        ops_dead[0].last_error.as_deref(),
        Some("errcode 310000: keywords")
    );
    assert_eq!(admin.list(None, None).unwrap().len(), 4);

    let detail = admin.show(ids[0]).unwrap().unwrap();
    let due = outbox.due("ops", T0, 10).await.unwrap();
    assert_eq!(
        Some(detail.uuid.as_str()),
        due[0].message.msg_uuid.as_deref()
    );
    assert_eq!(
        serde_json::from_str::<Message>(&detail.body).unwrap(),
        Message::text("pending")
    );
    assert_eq!(
        (
            detail.rule.as_str(),
            detail.source.as_str(),
            detail.dedup_key
        ),
        ("rule", "source", None)
    );
    assert_eq!(admin.show(9_999).unwrap(), None);

    // Retrying one dead message: the daemon sees it due at once, attempts reset, age from now.
    let now = T0 + MINUTE;
    assert!(admin.retry(ids[1], now).unwrap());
    let due = outbox.due("ops", now, 10).await.unwrap();
    assert_eq!(contents(&due), ["pending", "dead 1"]);
    assert_eq!(
        (due[1].attempts, due[1].age_from, due[1].next_attempt_at),
        (0, now, now)
    );
    assert_eq!(due[1].accepted_at, T0);
    assert!(
        !admin.retry(ids[3], now).unwrap(),
        "a delivered message is not retried"
    );
    assert!(!admin.retry(9_999, now).unwrap());
    // Retrying a pending message makes it due now.
    outbox
        .mark_retry(&ids[..1], now + 3_600_000, "HTTP 503")
        .await
        .unwrap();
    assert!(admin.retry(ids[0], now).unwrap());
    assert_eq!(outbox.next_due_at("ops").await.unwrap(), Some(now));

    assert_eq!(admin.retry_dead(Some("ops"), now).unwrap(), 0);
    assert_eq!(admin.retry_dead(None, now).unwrap(), 1);
    assert_eq!(
        contents(&outbox.due("dev", now, 10).await.unwrap()),
        ["dead 2"]
    );

    // Purge never touches pending rows, whatever the filters.
    outbox.mark_dead(&ids[2..3], now, "again").await.unwrap();
    assert_eq!(
        admin
            .purge(Purgeable::Dead, None, Some(MINUTE), now + 1)
            .unwrap(),
        0,
        "too recent"
    );
    assert_eq!(
        admin
            .purge(Purgeable::Dead, Some("ops"), None, now)
            .unwrap(),
        0
    );
    assert_eq!(admin.purge(Purgeable::Dead, None, None, now).unwrap(), 1);
    assert_eq!(
        admin
            .purge(Purgeable::Delivered, None, Some(MINUTE), now)
            .unwrap(),
        0,
        "delivered 58 s before"
    );
    assert_eq!(
        admin
            .purge(Purgeable::Delivered, None, Some(MINUTE), now + 2_001)
            .unwrap(),
        1
    );
    assert_eq!(
        admin
            .purge(Purgeable::Delivered, None, None, i64::MAX)
            .unwrap(),
        0
    );
    assert_eq!(outbox.pending_count("ops").await.unwrap(), 2);
    assert_eq!(admin.list(Some(State::Pending), None).unwrap().len(), 2);
    // The daemon keeps writing while the admin connection is open.
    accepted_ids(&outbox.enqueue(vec![msg("ops", "more")], now).await.unwrap());
    assert_eq!(
        admin.list(Some(State::Pending), Some("ops")).unwrap().len(),
        3
    );
    outbox.close().await;
}

#[test]
fn admin_refuses_a_missing_outbox_without_creating_it() {
    let dir = TempDir::new("missing");
    let error = Admin::open(dir.path()).unwrap_err();
    assert!(matches!(error, AdminError::Missing(_)));
    assert_eq!(
        error.to_string(),
        format!(
            "no outbox at {}: has the daemon run with this state_dir?",
            dir.path().join(FILE_NAME).display()
        )
    );
    assert!(!dir.path().exists());

    std::fs::create_dir_all(dir.path()).unwrap();
    std::fs::write(
        dir.path().join(FILE_NAME),
        b"this is not sqlite, just text long enough",
    )
    .unwrap();
    let error = Admin::open(dir.path()).unwrap_err().to_string();
    assert!(error.contains("not a database"), "{error}");
}

#[tokio::test]
async fn after_close_other_handles_get_unavailable() {
    let dir = TempDir::new("closed");
    let outbox = Outbox::open(dir.path()).unwrap();
    let other = outbox.clone();
    outbox.close().await;
    let OutboxError::Unavailable(reason) = other.pending_count("ops").await.unwrap_err();
    assert!(reason.contains("stopped"), "{reason}");
    assert!(other.enqueue(vec![msg("ops", "late")], T0).await.is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lock_held_beyond_the_busy_timeout_is_unavailable_then_the_outbox_recovers() {
    let dir = TempDir::new("locked");
    let outbox = Outbox::open(dir.path()).unwrap();
    let blocker = dir.raw();
    blocker.execute_batch("BEGIN IMMEDIATE").unwrap();
    let started = std::time::Instant::now();
    let OutboxError::Unavailable(reason) = outbox
        .enqueue(vec![msg("ops", "blocked")], T0)
        .await
        .unwrap_err();
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "waited for the busy timeout"
    );
    assert!(reason.contains("locked"), "{reason}");
    blocker.execute_batch("ROLLBACK").unwrap();
    accepted_ids(&outbox.enqueue(vec![msg("ops", "after")], T0).await.unwrap());
    assert_eq!(
        contents(&outbox.due("ops", T0, 10).await.unwrap()),
        ["after"]
    );
    outbox.close().await;
}

#[test]
fn open_fails_cleanly_when_the_state_dir_cannot_be_created() {
    let dir = TempDir::new("not-a-dir");
    std::fs::create_dir_all(dir.path()).unwrap();
    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let OutboxError::Unavailable(reason) = Outbox::open(&file.join("state")).unwrap_err();
    assert!(
        reason.contains("cannot create the state directory"),
        "{reason}"
    );
}

//! Unit tests of `resuming`.

use super::*;

fn conn(index: u32) -> ConnId {
    ConnId {
        index,
        generation: 0,
    }
}

#[test]
fn resumes_that_wait_too_long_are_found_and_only_those() {
    let mut r = Resuming::default();
    r.start(conn(1), None, 0);
    r.start_channel(conn(2), Arc::from("room:1"), None, 0);
    r.start_channel(conn(2), Arc::from("room:2"), None, 5_000);
    r.start(conn(3), None, 5_000);
    assert_eq!(r.len(), 4);
    assert!(r.overdue(RESUME_WAIT_MS).is_empty());
    let mut late = r.overdue(RESUME_WAIT_MS + 1);
    late.sort_by_key(|(c, _)| c.index);
    assert_eq!(
        late,
        vec![(conn(1), None), (conn(2), Some(Arc::from("room:1")))]
    );
    // Answered (or gone): no longer waiting.
    assert!(r.take_channel(conn(2), "room:1").is_some());
    r.forget(conn(1));
    assert!(r.overdue(RESUME_WAIT_MS + 1).is_empty());
    assert_eq!(r.len(), 2);
    r.forget(conn(2));
    r.forget(conn(3));
    assert!(r.is_empty());
}

#[test]
fn held_channel_frames_are_bounded() {
    let mut r = Resuming::default();
    r.start_channel(conn(1), Arc::from("c"), None, 0);
    let w = r.channel_mut(conn(1), "c").unwrap();
    assert!(w.hold(1, Bytes::from_static(b"12345"), 8));
    assert!(!w.hold(2, Bytes::from_static(b"12345"), 8));
    assert!(r.channel_mut(conn(1), "other").is_none());
    assert!(r.channel_mut(conn(9), "c").is_none());
}

fn numbered(seq: u64, epoch: &str) -> Bytes {
    let frame = crate::protocol::encode::backend_message(Some("c"), "1");
    crate::history::sequenced(&frame, seq, epoch)
}

#[test]
fn late_live_copies_of_a_replay_are_dropped_until_the_floor_lapses() {
    let mut r = Resuming::default();
    let e = "00000000000000aa";
    r.set_floor(conn(1), None, 10, e, 0);
    r.set_floor(conn(1), Some(Arc::from("c")), 5, e, 100);
    assert_eq!(r.floors(), 2);
    // The user's stream: copies up to 10 are dropped.
    assert!(r.below_floor(conn(1), None, 9, &numbered(9, e)));
    assert!(r.below_floor(conn(1), None, 10, &numbered(10, e)));
    // Another epoch, an unnumbered message or another connection: not a copy.
    assert!(!r.below_floor(conn(1), None, 3, &numbered(3, "00000000000000bb")));
    assert!(!r.below_floor(conn(1), None, 0, &numbered(0, e)));
    assert!(!r.below_floor(conn(2), None, 3, &numbered(3, e)));
    // A stream's messages come in order: the first past the floor lifts it.
    assert!(r.below_floor(conn(1), Some("c"), 5, &numbered(5, e)));
    assert!(!r.below_floor(conn(1), Some("c"), 6, &numbered(6, e)));
    assert!(!r.below_floor(conn(1), Some("c"), 4, &numbered(4, e)));
    assert_eq!(r.floors(), 1);
    // Lapsed after FLOOR_MS.
    r.lapse_floors(FLOOR_MS - 1);
    assert_eq!(r.floors(), 1);
    r.lapse_floors(FLOOR_MS);
    assert_eq!(r.floors(), 0);
    assert!(r.floors.is_empty() && r.floor_deadlines.len() == 1);
    r.lapse_floors(FLOOR_MS + 100);
    assert!(r.floor_deadlines.is_empty());
}

#[test]
fn a_floor_set_again_keeps_its_new_deadline_and_goes_with_its_connection() {
    let mut r = Resuming::default();
    let e = "00000000000000aa";
    r.set_floor(conn(1), None, 10, e, 0);
    r.set_floor(conn(1), None, 20, e, 5_000);
    r.lapse_floors(FLOOR_MS);
    assert!(r.below_floor(conn(1), None, 20, &numbered(20, e)));
    r.lapse_floors(FLOOR_MS + 5_000);
    assert_eq!(r.floors(), 0);
    r.set_floor(conn(2), Some(Arc::from("c")), 1, e, 0);
    r.forget_channel(conn(2), "c");
    r.set_floor(conn(3), None, 1, e, 0);
    r.forget(conn(3));
    assert_eq!(r.floors(), 0);
}

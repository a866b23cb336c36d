//! An authorization decision allocates nothing: every rule value and operation, counted by a global
//! allocator that tallies this thread's allocations (so the harness's other threads do not count).

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use shards::access::{
    Access, SendRule,
    grants::Grants,
    rules::{ChannelOp, ChannelRules, Perms, Rule},
};

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator, which upholds GlobalAlloc's
// contract; the counter is a const-initialised thread-local Cell, which never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's layout is passed through as received.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` was allocated by `System` with `layout` (see `alloc`).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as for `dealloc`; `new_size` comes from the caller unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

#[test]
fn decisions_allocate_nothing() {
    let rule = |r| Perms {
        subscribe: r,
        publish: r,
        presence: r,
        history: r,
    };
    let access = Access {
        channels: ChannelRules::new(
            vec![
                ("public:*".into(), rule(Rule::Any)),
                ("dm:*".into(), rule(Rule::User)),
                ("room:*".into(), rule(Rule::Grant)),
                ("system:*".into(), rule(Rule::None)),
            ],
            Perms::JWT,
        )
        .unwrap(),
        client_send: SendRule::Grant,
    };
    let grants = Grants::from_claims(
        Some(vec!["room:*".into()]),
        Some(vec!["room:1".into()]),
        Some(vec!["team-*".into()]),
    )
    .unwrap();
    let ops = [
        ChannelOp::Subscribe,
        ChannelOp::Publish,
        ChannelOp::Presence,
        ChannelOp::History,
    ];
    let channels = [
        "public:a",
        "dm:#alice,bob",
        "room:1",
        "room:2",
        "system:x",
        "other",
    ];
    let before = allocations();
    let mut allowed = 0u32;
    for _ in 0..100 {
        for op in ops {
            for channel in channels {
                for g in [None, Some(&grants)] {
                    allowed += u32::from(access.channel(op, channel, "alice", g).is_ok());
                }
            }
        }
        for to in ["team-a", "bob"] {
            allowed += u32::from(access.send(to, Some(&grants)).is_ok());
        }
    }
    assert_eq!(allocations() - before, 0, "a decision allocated");
    // Allowed per round: public 8, dm 8, room:1 with grants 4, room:2 with grants 3 (no publish), send 1.
    assert_eq!(allowed, 100 * 24);
}

//! A one-shot, single-thread signal: fire once, every waiter wakes. Used inside a shard for "stop
//! accepting" and "shard done"; never crosses threads.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    pin::Pin,
    task::{Context, Poll, Waker},
};

/// Fire-once event for tasks of one executor.
#[derive(Default)]
pub struct LocalSignal {
    /// Set by [`LocalSignal::fire`]; never cleared.
    fired: Cell<bool>,
    /// Tasks waiting; drained when fired.
    waiters: RefCell<Vec<Waker>>,
}

impl LocalSignal {
    /// Fires the signal and wakes every waiter.
    pub fn fire(&self) {
        self.fired.set(true);
        for w in self.waiters.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// True once fired.
    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once the signal is fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait { signal: self }
    }
}

/// Future returned by [`LocalSignal::wait`].
pub struct Wait<'a> {
    signal: &'a LocalSignal,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.signal.fired.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.signal.waiters.borrow_mut();
        if !waiters.iter().any(|w| w.will_wake(cx.waker())) {
            waiters.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

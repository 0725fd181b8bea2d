//! A single-threaded wake-up flag for tasks on one runtime (the writer of a connection,
//! the timer of a shard). `notify` before `notified` is not lost.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A flag plus the waker of the one task waiting on it.
#[derive(Debug, Default)]
pub struct LocalNotify {
    set: Cell<bool>,
    waker: RefCell<Option<Waker>>,
}

impl LocalNotify {
    /// Sets the flag and wakes the waiting task.
    pub fn notify(&self) {
        self.set.set(true);
        if let Some(w) = self.waker.borrow_mut().take() {
            w.wake();
        }
    }

    /// Waits until the flag is set, then clears it.
    pub fn notified(&self) -> Notified<'_> {
        Notified(self)
    }
}

/// Future of [`LocalNotify::notified`].
#[derive(Debug)]
pub struct Notified<'a>(&'a LocalNotify);

impl Future for Notified<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0.set.replace(false) {
            Poll::Ready(())
        } else {
            *self.0.waker.borrow_mut() = Some(cx.waker().clone());
            Poll::Pending
        }
    }
}

/// Lets the other tasks of this runtime run once (monoio does not preempt: a task that
/// always finds work ready must step aside itself, or writers starve).
pub async fn yield_now() {
    struct Yield(bool);
    impl Future for Yield {
        type Output = ();
        fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                Poll::Ready(())
            } else {
                self.0 = true;
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        }
    }
    Yield(false).await
}

/// A wake-up for any number of waiting tasks on one runtime: `wait` returns after the next
/// `notify_all`.
#[derive(Debug, Default)]
pub struct LocalEvent {
    generation: Cell<u64>,
    wakers: RefCell<Vec<Waker>>,
}

impl LocalEvent {
    /// Wakes every waiting task.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get().wrapping_add(1));
        for w in self.wakers.borrow_mut().drain(..) {
            w.wake();
        }
    }

    /// Waits for the next `notify_all`.
    pub fn wait(&self) -> EventWait<'_> {
        EventWait {
            ev: self,
            start: self.generation.get(),
        }
    }
}

/// Future of [`LocalEvent::wait`].
#[derive(Debug)]
pub struct EventWait<'a> {
    ev: &'a LocalEvent,
    start: u64,
}

impl Future for EventWait<'_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.ev.generation.get() != self.start {
            Poll::Ready(())
        } else {
            self.ev.wakers.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        }
    }
}

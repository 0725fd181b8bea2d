//! Waiting on another shard without depending on monoio's cross-thread wake-ups.
//!
//! monoio runs a wake-up that comes from another thread only when the woken thread parks,
//! and a busy shard (a publisher flood: some task is always ready) does not park. A task
//! waiting for a peer (room in its data channel, a relay chunk, room in a relay channel)
//! would then wait as long as the flood lasts. [`woken_here`] polls a future with a waker
//! that, woken from another thread, posts the task's own waker to the shard's inbox:
//! `Shard::pump` drains the inbox all the time on a busy shard, and an idle shard is
//! unparked by the inbox message as before. The task is then woken on its own thread,
//! where monoio runs it at once.

use super::shard::Inbox;
use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::ThreadId;

/// A waker that goes through the inbox of the shard it belongs to when woken elsewhere.
struct ViaInbox {
    waker: Waker,
    inbox: async_channel::Sender<Inbox>,
    home: ThreadId,
}

impl Wake for ViaInbox {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if std::thread::current().id() == self.home {
            self.waker.wake_by_ref();
        } else if self
            .inbox
            .try_send(Inbox::Wake(self.waker.clone()))
            .is_err()
        {
            // The shard is stopping: the plain wake-up is all there is.
            self.waker.wake_by_ref();
        }
    }
}

/// Runs `fut`, which waits on another thread, so that its wake-up does not wait for this
/// shard to park. `inbox` is this shard's own inbox. The first poll uses the task's own
/// waker (no allocation when the future is ready at once); when that poll is pending, the
/// future is polled again at once with the wrapping waker, which replaces the one it
/// registered.
pub async fn woken_here<F: Future>(inbox: &async_channel::Sender<Inbox>, fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let mut first = true;
    let mut wrapped: Option<(Waker, Waker)> = None;
    std::future::poll_fn(|cx| {
        if first {
            first = false;
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                return Poll::Ready(v);
            }
        }
        let fresh = !wrapped
            .as_ref()
            .is_some_and(|(task, _)| task.will_wake(cx.waker()));
        if fresh {
            let via = Waker::from(Arc::new(ViaInbox {
                waker: cx.waker().clone(),
                inbox: inbox.clone(),
                home: std::thread::current().id(),
            }));
            wrapped = Some((cx.waker().clone(), via));
        }
        match &wrapped {
            Some((_, via)) => fut.as_mut().poll(&mut Context::from_waker(via)),
            None => fut.as_mut().poll(cx),
        }
    })
    .await
}

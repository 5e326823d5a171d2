//! Keeping Ferry's threads out of a host that is exiting, beyond the callbacks themselves.
//!
//! Two more paths enter foreign code from a Ferry thread: the last drop of a foreign object (it
//! asks the host to free its handle) and the wake of an async call the host awaits (it calls the
//! host's continuation). Both aborted Python at exit: a timed-out `wait()` followed by `close()`,
//! or a listener left registered, let a Ferry thread call into the interpreter while it
//! finalized. Both now pass the gate of [`super::callbacks`]: once the host has said it is exiting,
//! the drop leaks the object (the process is ending) and the wake is dropped (nobody awaits any
//! more).

use super::callbacks::enter_foreign;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

/// A foreign object held by Ferry: released through the gate, leaked once the host is exiting.
pub(crate) struct Foreign<T: ?Sized>(Option<Arc<T>>);

impl<T: ?Sized> Foreign<T> {
    pub(crate) fn new(object: Arc<T>) -> Self {
        Foreign(Some(object))
    }

    pub(crate) fn get(&self) -> &T {
        self.0.as_deref().expect("a foreign object is held until dropped")
    }
}

impl<T: ?Sized> Drop for Foreign<T> {
    fn drop(&mut self) {
        let object = self.0.take();
        match enter_foreign() {
            Some(_call) => drop(object),
            None => std::mem::forget(object),
        }
    }
}

/// Runs `future` with every wake of the host's waker passing the gate.
pub(crate) async fn gated<F: Future>(future: F) -> F::Output {
    Gated(Box::pin(future)).await
}

struct Gated<F>(Pin<Box<F>>);

impl<F: Future> Future for Gated<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let waker = Waker::from(Arc::new(GatedWake(cx.waker().clone())));
        self.0.as_mut().poll(&mut Context::from_waker(&waker))
    }
}

struct GatedWake(Waker);

impl Wake for GatedWake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Some(_call) = enter_foreign() {
            self.0.wake_by_ref();
        }
    }
}

//! A queued action without a heap allocation for small closures.
//!
//! A closure of up to three words (with at most a word's alignment), the common case of a
//! closure that captures a few handles, is stored in the `Action` itself, so `put` copies it
//! into the queue's slot and allocates nothing (the queue's FIFO allocates one block per 15 slots).
//! A larger closure is boxed and the box's pointer stored instead. Each `Action` carries one
//! function, monomorphised for its closure type, that either runs or drops the closure; it
//! is called exactly once, by `run` or by `Drop`.

use std::mem::{self, ManuallyDrop, MaybeUninit};

/// The in-place storage: three words, word-aligned.
type Storage = MaybeUninit<[usize; 3]>;

/// A type-erased `FnOnce() + Send + 'static`, stored in place when it fits.
pub(crate) struct Action {
    /// Runs (`true`) or drops (`false`) the closure in `data`, consuming it.
    ///
    /// # Safety
    ///
    /// Called at most once per `Action`, with a pointer to its own `data`.
    call: unsafe fn(*mut Storage, bool),
    data: Storage,
}

// SAFETY: an `Action` only ever holds a closure that is `Send` (`Action::new` requires it),
// inline or boxed; the function pointer is plain data.
unsafe impl Send for Action {}

impl Action {
    /// Wraps `f`, in place if it fits, else in a box.
    #[inline]
    pub(crate) fn new<F>(f: F) -> Action
    where
        F: FnOnce() + Send + 'static,
    {
        let mut data = Storage::uninit();
        if mem::size_of::<F>() <= mem::size_of::<Storage>()
            && mem::align_of::<F>() <= mem::align_of::<Storage>()
        {
            // SAFETY: `data` is large and aligned enough for an `F` (checked just above) and
            // uninitialised; `call_inline::<F>` is the only reader.
            unsafe { data.as_mut_ptr().cast::<F>().write(f) };
            Action {
                call: call_inline::<F>,
                data,
            }
        } else {
            let boxed = Box::into_raw(Box::new(f));
            // SAFETY: a pointer is one word, so it fits in `data`, which is word-aligned.
            unsafe { data.as_mut_ptr().cast::<*mut F>().write(boxed) };
            Action {
                call: call_boxed::<F>,
                data,
            }
        }
    }

    /// Runs the closure. If it panics, the panic propagates (the caller catches it) and
    /// whatever the closure owned is dropped during the unwinding, as for any `FnOnce`.
    #[inline]
    pub(crate) fn run(self) {
        // `call` consumes the closure, so `Drop` must not run afterwards.
        let mut this = ManuallyDrop::new(self);
        // SAFETY: the first and only call for this action (`Drop` is disabled above).
        unsafe { (this.call)(&mut this.data, true) }
    }
}

impl Drop for Action {
    /// Drops a closure that never ran (the queue was dropped with it still queued).
    fn drop(&mut self) {
        // SAFETY: `run` wraps the action in `ManuallyDrop`, so reaching `drop` means `call`
        // was never called.
        unsafe { (self.call)(&mut self.data, false) }
    }
}

/// # Safety
///
/// `data` holds an `F` written by `Action::new` and not yet read.
unsafe fn call_inline<F: FnOnce()>(data: *mut Storage, run: bool) {
    // SAFETY: the caller guarantees an unread `F` is stored at `data` (suitably aligned, as
    // `Action::new` checked); reading moves it out, and it is never read again.
    let f = unsafe { data.cast::<F>().read() };
    if run {
        f();
    } else {
        drop(f);
    }
}

/// # Safety
///
/// `data` holds a `*mut F` from `Box::into_raw`, written by `Action::new` and not yet read.
unsafe fn call_boxed<F: FnOnce()>(data: *mut Storage, run: bool) {
    // SAFETY: the caller guarantees the stored pointer came from `Box::into_raw` and that
    // this is its only reader, so rebuilding the box takes ownership exactly once.
    let f = unsafe { Box::from_raw(data.cast::<*mut F>().read()) };
    if run {
        f();
    } else {
        drop(f);
    }
}

#[cfg(test)]
mod tests {
    use super::Action;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    struct Count(Arc<AtomicUsize>);
    impl Drop for Count {
        fn drop(&mut self) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn small_and_large_closures_run_once_and_drop_once() {
        let drops = Arc::new(AtomicUsize::new(0));
        let runs = Arc::new(AtomicUsize::new(0));
        // One word: stored in place.
        let (c, r) = (Count(drops.clone()), runs.clone());
        Action::new(move || {
            let _keep = &c;
            r.fetch_add(1, Ordering::SeqCst);
        })
        .run();
        // Far more than three words: boxed.
        let (c, r, big) = (Count(drops.clone()), runs.clone(), [7u64; 16]);
        Action::new(move || {
            let _keep = &c;
            r.fetch_add(big[15] as usize, Ordering::SeqCst);
        })
        .run();
        assert_eq!(runs.load(Ordering::SeqCst), 8);
        assert_eq!(drops.load(Ordering::SeqCst), 2);
        // Never run: dropped, in place and boxed.
        let c = Count(drops.clone());
        drop(Action::new(move || drop(c)));
        let (c, big) = (Count(drops.clone()), [1u64; 16]);
        drop(Action::new(move || drop((c, big))));
        assert_eq!(drops.load(Ordering::SeqCst), 4);
        assert_eq!(
            runs.load(Ordering::SeqCst),
            8,
            "dropped actions did not run"
        );
    }

    #[test]
    fn a_panicking_action_drops_what_it_owned() {
        let drops = Arc::new(AtomicUsize::new(0));
        let c = Count(drops.clone());
        let action = Action::new(move || {
            let _owned = c;
            panic!("inside");
        });
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| action.run()));
        assert!(caught.is_err());
        assert_eq!(drops.load(Ordering::SeqCst), 1);
    }
}

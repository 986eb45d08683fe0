//! Issue 13, item 1: a promise made by `Promise::new()` on one thread and set on another is
//! the mistake behind `Deadlock` errors that come and go with timing (the creating thread's
//! wait fails only when it comes before the set). Debug builds report it once per process
//! with `log::warn!`; release builds stay silent. Its own test binary: it installs a logger.

use orderslip::Promise;
use std::sync::Mutex;
use std::thread;

static WARNINGS: Mutex<Vec<String>> = Mutex::new(Vec::new());

struct Capture;

impl log::Log for Capture {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::Level::Warn
    }
    fn log(&self, record: &log::Record<'_>) {
        if record.level() == log::Level::Warn {
            WARNINGS.lock().unwrap().push(record.args().to_string());
        }
    }
    fn flush(&self) {}
}

#[test]
fn setting_a_new_promise_on_another_thread_is_reported_once_in_debug_builds() {
    log::set_logger(&Capture).unwrap();
    log::set_max_level(log::LevelFilter::Warn);
    for _ in 0..3 {
        let p: Promise<u32, ()> = Promise::new();
        let setter = p.clone();
        thread::spawn(move || setter.set_result(1).unwrap())
            .join()
            .unwrap();
        assert_eq!(p.wait(), Ok(&1));
    }
    // Set on its own thread, or with no designated setter: never reported.
    Promise::<u32, ()>::new().set_result(2).unwrap();
    let free: Promise<u32, ()> = Promise::with_setter(None);
    let setter = free.clone();
    thread::spawn(move || setter.set_result(3).unwrap())
        .join()
        .unwrap();

    let warnings = WARNINGS.lock().unwrap();
    let about_setter: Vec<_> = warnings
        .iter()
        .filter(|w| w.contains("designated setter"))
        .collect();
    if cfg!(debug_assertions) {
        assert_eq!(about_setter.len(), 1, "once per process: {warnings:?}");
        assert!(about_setter[0].contains("Promise::with_setter(None)"));
    } else {
        assert!(about_setter.is_empty(), "debug builds only: {warnings:?}");
    }
}

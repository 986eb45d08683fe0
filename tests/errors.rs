//! A promise's failure leaves a function with `?` (issue 13, item 2): into `anyhow::Result`
//! and into `Box<dyn Error + Send + Sync>`, for a non-`Clone` error type (`std::io::Error`)
//! with one adapter, and the inner message is printed once by `{:#}` (before, `Failed`
//! printed its inner error in `Display` *and* returned it from `source()`, so anyhow printed
//! it twice; and `PromiseError<String>` was not an `Error` at all).

use orderslip::{ActionQueue, Promise, PromiseError};
use std::error::Error;
use std::io;
use std::time::Duration;

fn failed_with_io_error() -> Promise<u32, io::Error> {
    let p = Promise::with_setter(None);
    p.set_exception(io::Error::other("server said: bad"))
        .unwrap();
    p
}

#[test]
fn a_non_clone_error_propagates_into_anyhow_with_one_adapter_and_prints_once() {
    fn call(reply: Promise<u32, io::Error>) -> anyhow::Result<u32> {
        let value = reply
            .result(Duration::from_secs(1))
            .map_err(PromiseError::to_message)?;
        Ok(*value)
    }
    let error = call(failed_with_io_error()).unwrap_err();
    let chain = format!("{error:#}");
    assert_eq!(
        chain,
        "the promise was fulfilled with an error: server said: bad"
    );
    assert_eq!(chain.matches("server said: bad").count(), 1);
}

#[test]
fn a_non_clone_error_propagates_into_a_boxed_error() {
    fn call(reply: Promise<u32, io::Error>) -> Result<u32, Box<dyn Error + Send + Sync>> {
        Ok(*reply
            .result(Duration::from_secs(1))
            .map_err(PromiseError::to_message)?)
    }
    let error = call(failed_with_io_error()).unwrap_err();
    assert!(error.to_string().ends_with("server said: bad"));
    assert!(error.source().is_none());
}

#[test]
fn a_clone_error_propagates_typed() {
    fn call(reply: Promise<u32, String>) -> anyhow::Result<u32> {
        Ok(*reply
            .result(Duration::from_secs(1))
            .map_err(PromiseError::cloned)?)
    }
    let p = Promise::with_setter(None);
    p.set_exception("refused".to_string()).unwrap();
    let error = call(p).unwrap_err();
    let typed = error.downcast_ref::<PromiseError<String>>().unwrap();
    assert_eq!(*typed, PromiseError::Failed("refused".to_string()));
    assert_eq!(format!("{error:#}").matches("refused").count(), 1);
}

#[test]
fn borrowed_and_string_errors_are_errors() {
    fn is_error<E: Error>(_: &E) {}
    let owned: PromiseError<String> = PromiseError::Failed("x".into());
    is_error(&owned);
    let io = io::Error::other("y");
    let borrowed: PromiseError<&io::Error> = PromiseError::Failed(&io);
    is_error(&borrowed);
    assert!(borrowed.source().is_none());
    assert!(borrowed.to_string().ends_with(": y"));
}

#[test]
fn an_action_panic_prints_its_message_once() {
    let queue = ActionQueue::new();
    let p = queue.submit(|| -> u32 { panic!("intentional: bad input") });
    fn call(p: Promise<u32, orderslip::ActionPanicked>) -> anyhow::Result<u32> {
        Ok(*p.wait().map_err(PromiseError::cloned)?)
    }
    let chain = format!("{:#}", call(p).unwrap_err());
    assert_eq!(chain.matches("bad input").count(), 1, "{chain}");
}

#[test]
fn the_deadlock_error_names_the_fix() {
    let p: Promise<u32, String> = Promise::new();
    let error = p.result(Duration::from_secs(60)).unwrap_err();
    assert_eq!(error, PromiseError::Deadlock);
    let message = error.to_string();
    assert!(message.contains("Promise::new()"), "{message}");
    assert!(message.contains("with_setter(None)"), "{message}");
}

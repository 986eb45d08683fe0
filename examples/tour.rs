//! A short tour (placeholder until the full request/response demo lands): a "server" thread
//! answers requests through promises; one request times out; waiting on the setter thread is
//! caught as a deadlock.
use orderslip::{Promise, PromiseError};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

fn main() {
    let (requests, inbox) = mpsc::channel::<(u64, Promise<u64, String>)>();
    let server = thread::spawn(move || {
        for (n, reply) in inbox {
            if n == 13 {
                continue; // never answered: the client times out
            }
            reply.set_result(n * n).unwrap();
        }
    });
    let mut failures = 0;
    for n in [3, 13, 7] {
        let reply: Promise<u64, String> = Promise::with_setter(Some(server.thread().id()));
        requests.send((n, reply.clone())).unwrap();
        match reply.result(Duration::from_millis(200)) {
            Ok(v) => println!("{n}^2 = {v}"),
            Err(PromiseError::Timeout) => println!("{n}: timed out"),
            Err(e) => {
                println!("{n}: {e}");
                failures += 1;
            }
        }
    }
    let mine: Promise<u64, String> = Promise::new();
    assert_eq!(
        mine.result(Duration::from_secs(60)),
        Err(PromiseError::Deadlock)
    );
    println!("waiting on my own promise: deadlock caught at once");
    drop(requests);
    server.join().unwrap();
    std::process::exit(failures);
}

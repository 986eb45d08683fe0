//! A minimal logger shared by the examples (each includes this file with `#[path]`).

/// Prints the library's `log` reports (a panicking callback or `put` action, a failed spawn)
/// as `[LEVEL] message` on stderr. Without a logger they would go nowhere; a real program would
/// use a logging crate such as `env_logger` instead.
pub struct StderrLogger;

impl log::Log for StderrLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record) {
        if self.enabled(record.metadata()) {
            eprintln!("[{}] {}", record.level(), record.args());
        }
    }

    fn flush(&self) {}
}

/// Installs [`StderrLogger`] as the `log` logger (once; later calls do nothing).
pub fn install_logger() {
    static LOGGER: StderrLogger = StderrLogger;
    if log::set_logger(&LOGGER).is_ok() {
        log::set_max_level(log::LevelFilter::Info);
    }
}

//! What servers log, captured for the tests that assert on it (shadow, guardrails).
//!
//! Why not one buffer: a `tracing` subscriber is process-wide, and every test file's servers
//! now run in this one process, so a capture that took every line would see other files'
//! servers (a request path that holds an e-mail address, say). Instead a server started with
//! a capture tags its runtime's threads with it (a server without one tags them with none),
//! a span takes the tag of its parent or else of the thread that opened it, and a line goes
//! to the tag of its innermost tagged span, else of its thread: so a line that SQLite's
//! worker thread writes inside a request's span goes where the request's lines go. A line
//! with no tag at all (an engine's worker, a test thread and its HTTP client) goes to every
//! capture, as it did when each capture had its process to itself.

use std::cell::RefCell;
use std::sync::{Arc, Mutex, MutexGuard, Once};
use tracing::level_filters::LevelFilter;
use tracing::span::{Attributes, Id};
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;

/// The lines at `level` or more severe that reached this capture.
#[derive(Clone)]
pub struct Logs {
    buf: Arc<Mutex<Vec<u8>>>,
    level: Level,
}

/// Where a tagged thread's or span's lines go: a capture, or nowhere.
#[derive(Clone)]
struct Tag(Option<Logs>);

thread_local! {
    /// This thread's tag (`tag_thread`).
    static THREAD: RefCell<Option<Tag>> = const { RefCell::new(None) };
    /// The tag of the line being written on this thread (set by `Tagger` just before).
    static LINE: RefCell<Option<Tag>> = const { RefCell::new(None) };
}

/// Every capture made in this process.
static CAPTURES: Mutex<Vec<Logs>> = Mutex::new(Vec::new());

fn locked<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn thread_tag() -> Option<Tag> {
    THREAD.try_with(|t| t.borrow().clone()).ok().flatten()
}

impl Logs {
    /// A new capture of lines at `level` or more severe; the first one installs the process's
    /// subscriber (at DEBUG, the most verbose level a capture takes).
    pub fn new(level: Level) -> Logs {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            let fmt = tracing_subscriber::fmt::layer().with_ansi(false).with_writer(Router);
            let _ = tracing_subscriber::registry()
                .with(LevelFilter::DEBUG)
                .with(Tagger)
                .with(fmt)
                .try_init();
        });
        let logs = Logs {
            buf: Arc::default(),
            level,
        };
        locked(&CAPTURES).push(logs.clone());
        logs
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&locked(&self.buf)).into_owned()
    }
}

/// From now on the calling thread's lines go to `capture` only (nowhere when `None`).
pub fn tag_thread(capture: Option<Logs>) {
    THREAD.with(|t| *t.borrow_mut() = Some(Tag(capture)));
}

/// Tags spans when they open, and each line before it is written (see the module docs).
struct Tagger;

impl<S: Subscriber + for<'a> LookupSpan<'a>> Layer<S> for Tagger {
    fn on_new_span(&self, _: &Attributes<'_>, id: &Id, ctx: Context<'_, S>) {
        let Some(span) = ctx.span(id) else { return };
        let tag = span
            .parent()
            .and_then(|p| p.extensions().get::<Tag>().cloned())
            .or_else(thread_tag);
        if let Some(tag) = tag {
            span.extensions_mut().insert(tag);
        }
    }

    fn on_event(&self, event: &Event<'_>, ctx: Context<'_, S>) {
        let from_span = ctx
            .event_scope(event)
            .and_then(|mut scope| scope.find_map(|s| s.extensions().get::<Tag>().cloned()));
        let tag = from_span.or_else(thread_tag);
        let _ = LINE.try_with(|l| *l.borrow_mut() = tag);
    }
}

/// Picks the captures a line goes to, by its tag and its level.
struct Router;

/// One line's captures.
pub struct Sinks(Vec<Logs>);

impl std::io::Write for Sinks {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        for logs in &self.0 {
            locked(&logs.buf).extend_from_slice(b);
        }
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> MakeWriter<'a> for Router {
    type Writer = Sinks;

    fn make_writer(&'a self) -> Sinks {
        Sinks(Vec::new())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Sinks {
        let to = match LINE.try_with(|l| l.borrow().clone()).ok().flatten() {
            Some(Tag(capture)) => capture.into_iter().collect(),
            None => locked(&CAPTURES).clone(),
        };
        Sinks(to.into_iter().filter(|l| *meta.level() <= l.level).collect())
    }
}

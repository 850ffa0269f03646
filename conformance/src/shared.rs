//! A daemon shared by the tests of one file: started by the first test
//! that asks for it, used by all (in parallel: each test its own names),
//! and dropped at process exit, so its Drop cleans up what it made.
//!
//! Test binaries run their tests on threads and return from main once all
//! are done; statics are never dropped, so the fixture registers itself
//! with atexit(3) and gives up its last reference there.

use std::sync::{Arc, Mutex};

/// The slot of one fixture: None until started, then the daemon or why it
/// could not start (every test then fails with that reason).
pub struct Shared<T> {
    slot: Mutex<Option<Result<Arc<T>, String>>>,
}

/// What atexit stops.
trait Stop: Sync {
    fn stop(&self);
}

impl<T: Send + Sync> Stop for Shared<T> {
    fn stop(&self) {
        let taken = self.slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        drop(taken);
    }
}

static AT_EXIT: Mutex<Vec<&'static dyn Stop>> = Mutex::new(Vec::new());

extern "C" fn stop_all() {
    let all = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|p| p.into_inner()));
    for f in all {
        f.stop();
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Shared<T> {
        Shared {
            slot: Mutex::new(None),
        }
    }

    /// The fixture, started with `start` on first use; panics with the
    /// setup error (`what` names the fixture) when it could not start.
    pub fn get(&'static self, what: &str, start: impl FnOnce() -> anyhow::Result<T>) -> Arc<T> {
        let mut slot = self.slot.lock().unwrap_or_else(|p| p.into_inner());
        let started = slot.get_or_insert_with(|| {
            let mut at_exit = AT_EXIT.lock().unwrap_or_else(|p| p.into_inner());
            if at_exit.is_empty() {
                // SAFETY: registers a plain extern "C" function to run at exit.
                unsafe { libc::atexit(stop_all) };
            }
            at_exit.push(self);
            drop(at_exit);
            start().map(Arc::new).map_err(|e| format!("{e:#}"))
        });
        match started {
            Ok(f) => Arc::clone(f),
            Err(e) => panic!("{what} setup: {e}"),
        }
    }
}

impl<T: Send + Sync + 'static> Default for Shared<T> {
    fn default() -> Shared<T> {
        Shared::new()
    }
}

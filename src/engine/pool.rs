//! A pool of model sessions: `Session::run` needs `&mut`, so each worker
//! checks one out for as long as it needs it.
//!
//! Sessions may arrive after the pool is made (they load in the background,
//! so start-up does not wait for them); `take` waits for the first free one
//! and reports a failed load instead of waiting forever.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::model::ModelError;

pub struct Pool<T> {
    state: Mutex<State<T>>,
    changed: Condvar,
}

struct State<T> {
    idle: Vec<T>,
    /// Why a background load failed; every later `take` reports it.
    failure: Option<String>,
}

impl<T> Pool<T> {
    pub fn empty() -> Self {
        Self {
            state: Mutex::new(State {
                idle: Vec::new(),
                failure: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// Adds an item, or records why it could not be made.
    pub fn supply(&self, item: Result<T, ModelError>) {
        let mut state = self.lock();
        match item {
            Ok(item) => state.idle.push(item),
            Err(e) => state.failure = Some(e.to_string()),
        }
        self.changed.notify_all();
    }

    /// Takes an idle item, waiting for one if all are in use or still loading.
    pub fn take(&self, model: &'static str) -> Result<Lease<'_, T>, ModelError> {
        let mut state = self.lock();
        loop {
            if let Some(message) = &state.failure {
                return Err(ModelError::Run {
                    model,
                    message: message.clone(),
                });
            }
            if let Some(item) = state.idle.pop() {
                return Ok(Lease {
                    pool: self,
                    item: Some(item),
                });
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panicking holder cannot leave the state half-updated.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// An item out of its pool; it goes back on drop.
pub struct Lease<'p, T> {
    pool: &'p Pool<T>,
    item: Option<T>,
}

impl<T> Deref for Lease<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.item.as_ref().expect("present until drop")
    }
}

impl<T> DerefMut for Lease<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        self.item.as_mut().expect("present until drop")
    }
}

impl<T> Drop for Lease<'_, T> {
    fn drop(&mut self) {
        if let Some(item) = self.item.take() {
            self.pool.lock().idle.push(item);
            self.pool.changed.notify_one();
        }
    }
}

//! A pool of model sessions: `Session::run` needs `&mut`, so each worker
//! checks one out for as long as it needs it.

use std::ops::{Deref, DerefMut};
use std::sync::{Condvar, Mutex, MutexGuard};

pub struct Pool<T> {
    idle: Mutex<Vec<T>>,
    returned: Condvar,
}

impl<T> Pool<T> {
    pub fn new(items: Vec<T>) -> Self {
        Self {
            idle: Mutex::new(items),
            returned: Condvar::new(),
        }
    }

    /// Takes an idle item, waiting for one if all are in use.
    pub fn take(&self) -> Lease<'_, T> {
        let mut idle = self.lock();
        loop {
            if let Some(item) = idle.pop() {
                return Lease {
                    pool: self,
                    item: Some(item),
                };
            }
            idle = self.returned.wait(idle).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<T>> {
        // A panicking holder cannot leave the Vec half-updated.
        self.idle.lock().unwrap_or_else(|e| e.into_inner())
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
            self.pool.lock().push(item);
            self.pool.returned.notify_one();
        }
    }
}

//! One table of open handles, used for both open directories and open files: a handle
//! number maps to a shared value until it is released.
//!
//! Invariants: numbers start at 1 and are never reused within a table (0 is never
//! handed out); a released or unknown number is `BadHandle` (EBADF), never another
//! handle's value; a value in use by a request stays alive after a concurrent release.

use super::VfsError;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

pub struct Handles<T> {
    open: RwLock<HashMap<u64, Arc<T>>>,
    next: AtomicU64,
}

impl<T> Handles<T> {
    pub fn new() -> Handles<T> {
        Handles {
            open: RwLock::new(HashMap::new()),
            next: AtomicU64::new(1),
        }
    }

    /// Keeps `value` under a new handle number and returns the number.
    pub fn insert(&self, value: T) -> u64 {
        let fh = self.next.fetch_add(1, Ordering::Relaxed);
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(fh, Arc::new(value));
        fh
    }

    pub fn get(&self, fh: u64) -> Result<Arc<T>, VfsError> {
        self.open
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .get(&fh)
            .cloned()
            .ok_or(VfsError::BadHandle)
    }

    /// Forgets handle `fh` (a request still using its value keeps it until done).
    pub fn remove(&self, fh: u64) {
        self.open
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&fh);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.open.read().unwrap_or_else(|e| e.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_distinct_nonzero_and_map_to_their_values() {
        let t: Handles<String> = Handles::new();
        let a = t.insert("a".into());
        let b = t.insert("b".into());
        assert_ne!(a, 0);
        assert_ne!(a, b);
        assert_eq!(*t.get(a).unwrap(), "a");
        assert_eq!(*t.get(b).unwrap(), "b");
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn a_released_or_unknown_handle_is_bad_and_numbers_are_not_reused() {
        let t: Handles<Vec<u8>> = Handles::new();
        let a = t.insert(vec![1]);
        let held = t.get(a).unwrap();
        t.remove(a);
        assert!(matches!(t.get(a), Err(VfsError::BadHandle)));
        assert!(matches!(t.get(12345), Err(VfsError::BadHandle)));
        assert_eq!(*held, vec![1], "a value in use outlives its release");
        let b = t.insert(vec![2]);
        assert_ne!(a, b, "a released number is not handed out again");
        assert!(matches!(t.get(a), Err(VfsError::BadHandle)));
        t.remove(a); // releasing twice is harmless
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn concurrent_inserts_get_distinct_handles() {
        let t: Arc<Handles<u64>> = Arc::new(Handles::new());
        let all: Vec<u64> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..4)
                .map(|i| {
                    let t = t.clone();
                    s.spawn(move || (0..100).map(|j| t.insert(i * 100 + j)).collect::<Vec<_>>())
                })
                .collect();
            hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
        });
        let distinct: std::collections::HashSet<_> = all.iter().collect();
        assert_eq!(distinct.len(), 400);
        for fh in all {
            let v = *t.get(fh).unwrap();
            assert!(v < 400);
        }
    }
}

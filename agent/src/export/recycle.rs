//! Render buffers given back by pages that no scrape holds any more, so
//! that each render writes into memory that is already mapped.
//!
//! A page is megabytes at scale (4.2 MB of text at 100 JVMs). Allocated
//! anew every snapshot, it came from fresh pages each time (the allocator
//! returns a freed block of that size to the kernel), and the kernel's
//! zeroing of them was the largest single cost of the agent at 100 targets
//! (see docs/design.md, "Footprint at 100 targets").

use std::sync::Arc;

use axum::body::Bytes;

/// Pages a slow scraper may hold at once before their buffers are let go
/// (then freed when it is done, not reused).
const MAX_HELD: usize = 4;

/// A page's buffer, shared by the [`Bytes`] that scrapes clone and the
/// [`Pool`] that takes it back once it alone holds it.
struct Shared(Arc<Vec<u8>>);

impl AsRef<[u8]> for Shared {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// The buffers of one format's recent pages.
#[derive(Default)]
pub struct Pool {
    held: Vec<Arc<Vec<u8>>>,
}

impl Pool {
    /// An empty buffer for the next page: one of a page no scrape holds any
    /// more (capacity kept), else a new one.
    pub fn buffer(&mut self) -> Vec<u8> {
        let mut found = None;
        self.held.retain_mut(|held| {
            if found.is_none()
                && let Some(buffer) = Arc::get_mut(held)
            {
                found = Some(std::mem::take(buffer));
                return false;
            }
            true
        });
        let mut buffer = found.unwrap_or_default();
        buffer.clear();
        buffer
    }

    /// `page` as the bytes scrapes share (no copy), its buffer kept for a
    /// later [`Pool::buffer`].
    pub fn share(&mut self, page: Vec<u8>) -> Bytes {
        let page = Arc::new(page);
        if self.held.len() >= MAX_HELD {
            self.held.remove(0);
        }
        self.held.push(Arc::clone(&page));
        Bytes::from_owner(Shared(page))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_buffer_comes_back_once_no_scrape_holds_its_page() {
        let mut pool = Pool::default();
        let mut first = pool.buffer();
        first.extend_from_slice(&[7; 1000]);
        let at = first.as_ptr();
        let page = pool.share(first);
        // Still served (the watch channel or a scrape holds it): not reused.
        assert_eq!(pool.buffer().capacity(), 0);
        let scrape = page.clone();
        drop(page);
        assert_eq!(&scrape[..3], &[7, 7, 7]);
        assert_eq!(pool.buffer().capacity(), 0);
        drop(scrape);
        let again = pool.buffer();
        assert!(again.is_empty());
        assert!(again.capacity() >= 1000);
        assert_eq!(again.as_ptr(), at, "the same memory, not a copy");
    }

    #[test]
    fn pages_held_by_slow_scrapers_are_let_go_beyond_a_few() {
        let mut pool = Pool::default();
        let held: Vec<Bytes> = (0..10).map(|_| pool.share(vec![1; 10])).collect();
        assert_eq!(pool.held.len(), MAX_HELD);
        drop(held);
        assert_eq!(pool.buffer().capacity(), 10);
    }
}

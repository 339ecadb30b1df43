//! Page-aligned, growable byte buffers for pack files.
//!
//! A pack assembled in an [`AlignedBuf`] can be written by the local
//! backend with `O_DIRECT`: the device reads it straight from this memory,
//! without first copying every byte into freshly allocated page-cache pages
//! (that copy was ~20 % of first-backup CPU, see `docs/benchmarks.md`), and
//! without evicting the server's own cache to hold repository data.

use std::alloc::{self, Layout};
use std::ptr::NonNull;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use bytes::Bytes;

/// Alignment of the buffer start: the page size, which satisfies the
/// memory-alignment rule of `O_DIRECT` on every Linux block device.
pub const ALIGN: usize = 4096;

/// A `Vec<u8>`-like buffer whose start is always [`ALIGN`]-aligned.
pub struct AlignedBuf {
    ptr: NonNull<u8>,
    len: usize,
    cap: usize,
}

// SAFETY: AlignedBuf owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBuf {}
// SAFETY: shared access only reads.
unsafe impl Sync for AlignedBuf {}

fn layout(cap: usize) -> Layout {
    // Only fails for sizes near isize::MAX, which no pack reaches.
    Layout::from_size_align(cap, ALIGN).expect("buffer size within isize::MAX")
}

impl AlignedBuf {
    /// An empty buffer with room for at least `cap` bytes (at least one page).
    pub fn with_capacity(cap: usize) -> AlignedBuf {
        let cap = cap.max(1).next_multiple_of(ALIGN);
        let l = layout(cap);
        // SAFETY: the layout has a non-zero size.
        let p = unsafe { alloc::alloc(l) };
        let ptr = NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(l));
        AlignedBuf { ptr, len: 0, cap }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Ensures room for `more` bytes beyond the current length.
    pub fn reserve(&mut self, more: usize) {
        let need = self.len.checked_add(more).expect("buffer size overflow");
        if need <= self.cap {
            return;
        }
        let new_cap = need.max(self.cap * 2).next_multiple_of(ALIGN);
        // SAFETY: ptr was allocated with layout(self.cap); realloc keeps the
        // alignment of that layout and new_cap is non-zero.
        let p = unsafe { alloc::realloc(self.ptr.as_ptr(), layout(self.cap), new_cap) };
        self.ptr = NonNull::new(p).unwrap_or_else(|| alloc::handle_alloc_error(layout(new_cap)));
        self.cap = new_cap;
    }

    pub fn extend_from_slice(&mut self, s: &[u8]) {
        self.reserve(s.len());
        // SAFETY: reserve made room for s.len() bytes after len; s cannot
        // overlap our allocation because we hold &mut self.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), self.ptr.as_ptr().add(self.len), s.len());
        }
        self.len += s.len();
    }

    /// Empties the buffer, keeping its memory.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: the first len bytes are initialised and owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as above, and &mut self gives exclusive access.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: allocated with layout(self.cap) and not freed before.
        unsafe { alloc::dealloc(self.ptr.as_ptr(), layout(self.cap)) }
    }
}

impl std::ops::Deref for AlignedBuf {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl std::ops::DerefMut for AlignedBuf {
    fn deref_mut(&mut self) -> &mut [u8] {
        self.as_mut_slice()
    }
}

impl AsRef<[u8]> for AlignedBuf {
    fn as_ref(&self) -> &[u8] {
        self.as_slice()
    }
}

impl From<AlignedBuf> for Bytes {
    /// Without copying: the `Bytes` keeps the aligned allocation alive.
    fn from(b: AlignedBuf) -> Bytes {
        Bytes::from_owner(b)
    }
}

impl std::fmt::Debug for AlignedBuf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBuf({} bytes)", self.len)
    }
}

/// A bounded set of reusable pack buffers. At most `max` are handed out at
/// once, so the packs a backup holds in memory are bounded by construction,
/// and a reused buffer's pages are already resident (a fresh 16 MiB buffer
/// costs 4096 page faults).
pub struct BufPool {
    state: Mutex<PoolState>,
    returned: Condvar,
    max: usize,
    capacity: usize,
}

struct PoolState {
    free: Vec<AlignedBuf>,
    out: usize,
}

/// How long [`BufPool::take`] waits for a returned buffer before allocating
/// one beyond the bound: a holder that never returns its buffer then costs
/// memory instead of stopping the backup.
const POOL_WAIT: Duration = Duration::from_secs(30);

impl BufPool {
    pub fn new(max: usize, capacity: usize) -> Arc<BufPool> {
        Arc::new(BufPool {
            state: Mutex::new(PoolState {
                free: Vec::new(),
                out: 0,
            }),
            returned: Condvar::new(),
            max: max.max(1),
            capacity,
        })
    }

    /// An empty buffer; blocks while `max` buffers are out.
    pub fn take(&self) -> AlignedBuf {
        let mut st = self.state.lock();
        if st.out >= self.max && st.free.is_empty() {
            let _ = self.returned.wait_for(&mut st, POOL_WAIT);
        }
        st.out += 1;
        match st.free.pop() {
            Some(b) => b,
            None => {
                drop(st);
                AlignedBuf::with_capacity(self.capacity)
            }
        }
    }

    /// Gives a buffer back (it is emptied); beyond the bound it is freed.
    pub fn give(&self, mut b: AlignedBuf) {
        let mut st = self.state.lock();
        st.out = st.out.saturating_sub(1);
        if st.free.len() + st.out < self.max {
            b.clear();
            st.free.push(b);
        }
        drop(st);
        self.returned.notify_one();
    }
}

/// A pooled buffer on its way to storage: turned into `Bytes` without a
/// copy, and given back to its pool when the last reference is dropped.
pub struct Pooled {
    buf: Option<AlignedBuf>,
    pool: Arc<BufPool>,
}

impl Pooled {
    pub fn new(buf: AlignedBuf, pool: Arc<BufPool>) -> Pooled {
        Pooled { buf: Some(buf), pool }
    }
}

impl AsRef<[u8]> for Pooled {
    fn as_ref(&self) -> &[u8] {
        self.buf.as_deref().unwrap_or(&[])
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let Some(b) = self.buf.take() {
            self.pool.give(b);
        }
    }
}

impl From<Pooled> for Bytes {
    fn from(p: Pooled) -> Bytes {
        Bytes::from_owner(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_aligned_while_growing() {
        let mut b = AlignedBuf::with_capacity(10);
        let mut want = Vec::new();
        for i in 0..5000u32 {
            let piece = i.to_le_bytes().repeat((i % 37) as usize);
            b.extend_from_slice(&piece);
            want.extend_from_slice(&piece);
            assert_eq!(b.as_ptr() as usize % ALIGN, 0);
        }
        assert_eq!(&b[..], &want[..]);
        assert!(b.capacity() >= b.len());
        let bytes = Bytes::from(b);
        assert_eq!(bytes.as_ptr() as usize % ALIGN, 0);
        assert_eq!(&bytes[..], &want[..]);
    }

    #[test]
    fn pool_reuses_and_bounds_buffers() {
        let pool = BufPool::new(2, 8192);
        let mut a = pool.take();
        a.extend_from_slice(b"first");
        let a_ptr = a.as_ptr();
        let b = pool.take();
        let bytes = Bytes::from(Pooled::new(a, pool.clone()));
        assert_eq!(&bytes[..], b"first");
        let slice = bytes.slice(1..3);
        drop(bytes);
        // Still referenced through the slice: a third take would have to wait.
        assert_eq!(pool.state.lock().out, 2);
        drop(slice);
        let c = pool.take();
        assert_eq!(c.as_ptr(), a_ptr, "the returned buffer is reused");
        assert!(c.is_empty());
        // A waiter is released as soon as a buffer comes back.
        let p2 = pool.clone();
        let t = std::thread::spawn(move || p2.take().capacity());
        std::thread::sleep(Duration::from_millis(50));
        pool.give(b);
        assert_eq!(t.join().unwrap(), 8192);
        pool.give(c);
    }
}

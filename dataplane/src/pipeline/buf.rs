//! [`PacketBuf`]: what the pipeline needs of a packet buffer. The DPDK mbuf
//! implements it (`crate::dpdk::Mbuf`), and so does [`TestBuf`], a `Vec` with
//! head- and tailroom, so every stage is tested without DPDK.

/// Not enough head- or tailroom (or data) for the requested change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NoRoom;

pub trait PacketBuf {
    /// The packet's bytes (first segment).
    fn data(&self) -> &[u8];
    fn data_mut(&mut self) -> &mut [u8];
    /// Grows the packet by `n` bytes at the front; the new bytes are unspecified.
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Removes `n` bytes from the front.
    fn adj(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Removes `n` bytes from the end.
    fn trim(&mut self, n: usize) -> Result<(), NoRoom>;
    /// Grows the packet by `n` bytes at the end; the new bytes are unspecified.
    fn append(&mut self, n: usize) -> Result<(), NoRoom>;

    fn len(&self) -> usize {
        self.data().len()
    }

    fn is_empty(&self) -> bool {
        self.data().is_empty()
    }
}

/// A buffer lent out: what the pipeline does to it, it does to the buffer
/// (a burst of reused test buffers, `&mut TestBuf`).
impl<P: PacketBuf + ?Sized> PacketBuf for &mut P {
    #[inline]
    fn data(&self) -> &[u8] {
        (**self).data()
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        (**self).data_mut()
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        (**self).prepend(n)
    }
    #[inline]
    fn adj(&mut self, n: usize) -> Result<(), NoRoom> {
        (**self).adj(n)
    }
    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        (**self).trim(n)
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        (**self).append(n)
    }
}

/// A heap buffer with the same 128-byte headroom as a DPDK mbuf. Its
/// accessors are inlined, as the mbuf's are, so that a benchmark over it
/// measures the pipeline rather than calls into the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TestBuf {
    storage: Vec<u8>,
    start: usize,
    end: usize,
}

pub const TEST_HEADROOM: usize = 128;
pub const TEST_CAPACITY: usize = 2048;

impl TestBuf {
    pub fn new(bytes: &[u8]) -> Self {
        let mut storage = vec![0u8; TEST_CAPACITY.max(TEST_HEADROOM + bytes.len())];
        storage[TEST_HEADROOM..TEST_HEADROOM + bytes.len()].copy_from_slice(bytes);
        TestBuf { storage, start: TEST_HEADROOM, end: TEST_HEADROOM + bytes.len() }
    }

    /// Makes the buffer hold `bytes` again, with full headroom, reusing its
    /// storage (no allocation when it fits).
    pub fn reset(&mut self, bytes: &[u8]) {
        let need = TEST_HEADROOM + bytes.len();
        if self.storage.len() < need {
            self.storage.resize(need, 0);
        }
        self.storage[TEST_HEADROOM..need].copy_from_slice(bytes);
        self.start = TEST_HEADROOM;
        self.end = need;
    }

    pub fn to_vec(&self) -> Vec<u8> {
        self.data().to_vec()
    }
}

impl PacketBuf for TestBuf {
    #[inline]
    fn data(&self) -> &[u8] {
        &self.storage[self.start..self.end]
    }
    #[inline]
    fn data_mut(&mut self) -> &mut [u8] {
        &mut self.storage[self.start..self.end]
    }
    #[inline]
    fn prepend(&mut self, n: usize) -> Result<(), NoRoom> {
        self.start = self.start.checked_sub(n).ok_or(NoRoom)?;
        Ok(())
    }
    #[inline]
    fn adj(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.end - self.start {
            return Err(NoRoom);
        }
        self.start += n;
        Ok(())
    }
    #[inline]
    fn trim(&mut self, n: usize) -> Result<(), NoRoom> {
        if n > self.end - self.start {
            return Err(NoRoom);
        }
        self.end -= n;
        Ok(())
    }
    #[inline]
    fn append(&mut self, n: usize) -> Result<(), NoRoom> {
        if self.end + n > self.storage.len() {
            return Err(NoRoom);
        }
        self.end += n;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn room_is_checked() {
        let mut b = TestBuf::new(&[1, 2, 3]);
        assert!(b.prepend(TEST_HEADROOM + 1).is_err());
        b.prepend(2).unwrap();
        assert_eq!(b.len(), 5);
        b.adj(2).unwrap();
        assert_eq!(b.data(), &[1, 2, 3]);
        assert!(b.trim(4).is_err());
        b.trim(1).unwrap();
        assert_eq!(b.data(), &[1, 2]);
        b.append(1).unwrap();
        assert_eq!(b.len(), 3);
        assert!(b.append(TEST_CAPACITY).is_err());
    }
}

//! [`Aligned`]: a buffer of small integers that starts on a cache line. The products' operands are read in
//! 64-byte pieces (a `zmm` load of packed weights, a row of an AMX tile); from a plain `Vec`, which the
//! allocator aligns to 16 bytes, every such piece can straddle two cache lines and costs two loads. Measured on
//! the int8 products with AMX (`examples` probe, 320 rows): 0.8-1.0 TOP/s with the allocator's alignment
//! against 1.5-3.7 when the buffers happened to start on a line.

use std::marker::PhantomData;

/// One cache line of zeros, the unit of storage.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; LINE]);

/// Bytes per cache line.
const LINE: usize = 64;

/// The element types an [`Aligned`] holds: plain integers, for which every bit pattern (zero included) is a
/// value and which have no padding, so a run of bytes can be read as them.
pub(super) trait Plain: Copy + Default + 'static {}
impl Plain for u8 {}
impl Plain for i8 {}
impl Plain for i16 {}

/// `len` values of `T`, zero when created or grown, starting on a 64-byte boundary.
#[derive(Clone)]
pub(super) struct Aligned<T: Plain> {
    lines: Vec<Line>,
    len: usize,
    _values: PhantomData<T>,
}

impl<T: Plain> Aligned<T> {
    /// `len` zeros.
    pub(super) fn zeroed(len: usize) -> Aligned<T> {
        let mut buffer = Aligned { lines: Vec::new(), len: 0, _values: PhantomData };
        buffer.resize(len);
        buffer
    }

    /// Gives the buffer `len` values, keeping the ones it held (new ones are zero), like `Vec::resize`.
    pub(super) fn resize(&mut self, len: usize) {
        self.lines.resize((len * size_of::<T>()).div_ceil(LINE), Line([0; LINE]));
        self.len = len;
    }

    /// Bytes allocated.
    pub(super) fn bytes(&self) -> usize {
        self.lines.capacity() * LINE
    }
}

impl<T: Plain> Default for Aligned<T> {
    fn default() -> Self {
        Aligned::zeroed(0)
    }
}

impl<T: Plain> std::ops::Deref for Aligned<T> {
    type Target = [T];
    fn deref(&self) -> &[T] {
        // SAFETY: `lines` holds at least `len * size_of::<T>()` initialised bytes (`resize`), aligned to 64 and
        // so to `T`'s alignment; `T` is a plain integer (`Plain`), for which any bytes are a value.
        unsafe { std::slice::from_raw_parts(self.lines.as_ptr() as *const T, self.len) }
    }
}

impl<T: Plain> std::ops::DerefMut for Aligned<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as for `deref`, borrowed mutably through `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.lines.as_mut_ptr() as *mut T, self.len) }
    }
}

impl<T: Plain + std::fmt::Debug> std::fmt::Debug for Aligned<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Aligned").field("len", &self.len).finish()
    }
}

impl<T: Plain + PartialEq> PartialEq for Aligned<T> {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_start_on_a_line_and_survive_growth() {
        let mut b = Aligned::<i16>::zeroed(5);
        assert_eq!(b.as_ptr() as usize % LINE, 0);
        assert_eq!(&*b, &[0; 5]);
        b.copy_from_slice(&[1, -2, 3, -4, 5]);
        b.resize(100);
        assert_eq!(b.as_ptr() as usize % LINE, 0);
        assert_eq!(&b[..6], &[1, -2, 3, -4, 5, 0]);
        assert_eq!(b.len(), 100);
        b.resize(2);
        assert_eq!(&*b, &[1, -2]);
        assert_eq!(Aligned::<u8>::default().len(), 0);
    }
}

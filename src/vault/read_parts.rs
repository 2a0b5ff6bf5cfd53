//! The result of a read as pieces of decrypted blocks, in file order.
//!
//! A 1 MiB read spans 16 cached blocks; handing the kernel those blocks as an
//! iovec spares copying a megabyte into one buffer first.

use std::io::IoSlice;
use std::ops::Range;
use std::sync::Arc;

/// Holes and the unwritten tail of a short block read as zeros.
static ZEROS: [u8; 64 * 1024] = [0; 64 * 1024];

enum Piece {
    Block(Arc<Vec<u8>>, Range<usize>),
    Zeros(usize),
}

#[derive(Default)]
pub struct ReadParts {
    pieces: Vec<Piece>,
    len: usize,
}

impl ReadParts {
    pub(super) fn push_block(&mut self, block: Arc<Vec<u8>>, range: Range<usize>) {
        if !range.is_empty() {
            self.len += range.len();
            self.pieces.push(Piece::Block(block, range));
        }
    }

    pub(super) fn push_zeros(&mut self, n: usize) {
        if n > 0 {
            self.len += n;
            self.pieces.push(Piece::Zeros(n));
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces as an iovec for a vectored reply.
    pub fn io_slices(&self) -> Vec<IoSlice<'_>> {
        let mut out = Vec::with_capacity(self.pieces.len());
        for piece in &self.pieces {
            match piece {
                Piece::Block(b, r) => out.push(IoSlice::new(&b[r.clone()])),
                Piece::Zeros(n) => {
                    let mut left = *n;
                    while left > 0 {
                        let k = left.min(ZEROS.len());
                        out.push(IoSlice::new(&ZEROS[..k]));
                        left -= k;
                    }
                }
            }
        }
        out
    }

    /// The bytes in one buffer.
    pub fn to_vec(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len);
        for s in self.io_slices() {
            out.extend_from_slice(&s);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pieces_concatenate_in_order_with_zeros_of_any_length() {
        let mut p = ReadParts::default();
        p.push_block(Arc::new(vec![1, 2, 3, 4]), 1..3);
        p.push_zeros(ZEROS.len() + 5);
        p.push_block(Arc::new(vec![9]), 0..1);
        p.push_zeros(0);
        let v = p.to_vec();
        assert_eq!(p.len(), v.len());
        assert_eq!(&v[..2], &[2, 3]);
        assert!(v[2..2 + ZEROS.len() + 5].iter().all(|&b| b == 0));
        assert_eq!(v.last(), Some(&9));
        assert_eq!(v.len(), 2 + ZEROS.len() + 5 + 1);
    }
}

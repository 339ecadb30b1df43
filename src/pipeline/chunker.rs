//! Chunkers: content-defined (FastCDC 2020 with a secret gear seed) for file
//! data, and fixed-size for volumes and disk images (where blocks do not
//! shift, so fixed boundaries deduplicate best and cost nothing to find).
//!
//! Both read from a `Read` in large buffers and hand out chunks as `Bytes`
//! slices of that buffer, so no chunk is copied on its way to the workers.

use std::borrow::Cow;
use std::io::{self, Read};

use bytes::{Bytes, BytesMut};
use fastcdc::v2020::{self, Normalization};

use crate::repo::config::ChunkerParams;

const READ_SIZE: usize = 1024 * 1024;

/// Precomputed FastCDC state: masks and (seeded) gear tables.
#[derive(Clone)]
pub struct Cdc {
    min: usize,
    avg: usize,
    max: usize,
    mask_s: u64,
    mask_l: u64,
    gear: Cow<'static, [u64]>,
    gear_ls: Cow<'static, [u64]>,
}

impl Cdc {
    pub fn new(p: &ChunkerParams, seed: u64) -> Cdc {
        let level = match p.normalization {
            0 => Normalization::Level0,
            1 => Normalization::Level1,
            2 => Normalization::Level2,
            _ => Normalization::Level3,
        };
        let (mask_s, mask_l) = v2020::select_masks(p.avg_size as usize, level);
        let (gear, gear_ls) = v2020::get_gear_with_seed(if p.seeded { seed } else { 0 });
        Cdc {
            min: p.min_size as usize,
            avg: p.avg_size as usize,
            max: p.max_size as usize,
            mask_s,
            mask_l,
            gear,
            gear_ls,
        }
    }

    pub fn max_size(&self) -> usize {
        self.max
    }

    /// Length of the next chunk at the start of `data` (all of it if shorter than `min`).
    pub fn cut(&self, data: &[u8]) -> usize {
        let (_, n) = v2020::cut_gear(
            data,
            self.min,
            self.avg,
            self.max,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
            &self.gear,
            &self.gear_ls,
        );
        n.max(1).min(data.len())
    }
}

/// How a stream is cut.
#[derive(Clone)]
pub enum Cutter {
    Cdc(Cdc),
    Fixed(usize),
}

impl Cutter {
    fn max(&self) -> usize {
        match self {
            Cutter::Cdc(c) => c.max,
            Cutter::Fixed(n) => *n,
        }
    }

    fn cut(&self, data: &[u8]) -> usize {
        match self {
            Cutter::Cdc(c) => c.cut(data),
            Cutter::Fixed(n) => (*n).min(data.len()),
        }
    }
}

/// Splits a reader into chunks. `limit` bounds how many bytes are read (a data
/// region of a sparse file); fewer bytes mean the file shrank while read.
pub struct ChunkStream<R: Read> {
    reader: R,
    cutter: Cutter,
    buf: BytesMut,
    eof: bool,
    remaining: u64,
}

impl<R: Read> ChunkStream<R> {
    pub fn new(reader: R, cutter: Cutter, limit: u64) -> Self {
        ChunkStream {
            reader,
            cutter,
            buf: BytesMut::new(),
            eof: false,
            remaining: limit,
        }
    }

    fn fill(&mut self) -> io::Result<()> {
        while !self.eof && self.buf.len() < self.cutter.max() {
            if self.remaining == 0 {
                self.eof = true;
                break;
            }
            let want = READ_SIZE
                .min(self.remaining as usize)
                .max(self.cutter.max() - self.buf.len());
            let want = want.min(self.remaining as usize);
            let start = self.buf.len();
            self.buf.resize(start + want, 0);
            let mut got = 0;
            while got < want {
                match self.reader.read(&mut self.buf[start + got..start + want]) {
                    Ok(0) => {
                        self.eof = true;
                        break;
                    }
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(e) => {
                        self.buf.truncate(start + got);
                        return Err(e);
                    }
                }
            }
            self.buf.truncate(start + got);
            self.remaining -= got as u64;
        }
        Ok(())
    }

    /// The next chunk, or `None` at the end.
    pub fn next_chunk(&mut self) -> io::Result<Option<Bytes>> {
        if self.buf.len() < self.cutter.max() {
            self.fill()?;
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let n = self.cutter.cut(&self.buf);
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn params() -> ChunkerParams {
        ChunkerParams {
            min_size: 2048,
            avg_size: 8192,
            max_size: 32768,
            ..ChunkerParams::default()
        }
    }

    fn chunks(data: &[u8], cutter: Cutter) -> Vec<Bytes> {
        let mut s = ChunkStream::new(data, cutter, u64::MAX);
        let mut v = Vec::new();
        while let Some(c) = s.next_chunk().unwrap() {
            v.push(c);
        }
        v
    }

    #[test]
    fn boundaries_survive_insertion() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let data: Vec<u8> = (0..400_000).map(|_| rng.gen()).collect();
        let cdc = Cutter::Cdc(Cdc::new(&params(), 42));
        let a = chunks(&data, cdc.clone());
        let mut d2 = data.clone();
        d2.splice(200_000..200_000, b"inserted bytes".iter().copied());
        let b = chunks(&d2, cdc);
        let sa: std::collections::HashSet<_> = a.iter().collect();
        let shared = b.iter().filter(|c| sa.contains(c)).count();
        assert!(shared + 3 >= a.len(), "shared {shared} of {}", a.len());
    }

    #[test]
    fn seed_changes_boundaries() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let data: Vec<u8> = (0..300_000).map(|_| rng.gen()).collect();
        let a: Vec<usize> = chunks(&data, Cutter::Cdc(Cdc::new(&params(), 1)))
            .iter()
            .map(|c| c.len())
            .collect();
        let b: Vec<usize> = chunks(&data, Cutter::Cdc(Cdc::new(&params(), 2)))
            .iter()
            .map(|c| c.len())
            .collect();
        assert_ne!(a, b);
    }

    proptest::proptest! {
        #[test]
        fn chunks_concatenate_to_input(len in 0usize..200_000, seed in 0u64..1000, fixed in proptest::prelude::any::<bool>()) {
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let data: Vec<u8> = (0..len).map(|_| rng.gen_range(0..4u8)).collect();
            let cutter = if fixed { Cutter::Fixed(4096) } else { Cutter::Cdc(Cdc::new(&params(), seed)) };
            let cs = chunks(&data, cutter.clone());
            let joined: Vec<u8> = cs.iter().flat_map(|c| c.iter().copied()).collect();
            proptest::prop_assert_eq!(joined, data);
            for c in &cs { proptest::prop_assert!(c.len() <= cutter.max()); }
        }
    }

    #[test]
    fn limit_is_respected() {
        let data = vec![1u8; 100_000];
        let mut s = ChunkStream::new(&data[..], Cutter::Fixed(4096), 10_000);
        let mut total = 0;
        while let Some(c) = s.next_chunk().unwrap() {
            total += c.len();
        }
        assert_eq!(total, 10_000);
    }
}

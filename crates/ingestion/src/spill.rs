//! Counting repeated values in bounded memory: 64-bit hashes are sorted in runs of a fixed
//! size, spilled to temporary files in the data directory, and merged at the end.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Hashes held in memory before a run is spilled (8 MiB).
const RUN: usize = 1 << 20;

pub(crate) struct DuplicateCounter {
    dir: PathBuf,
    buffer: Vec<u64>,
    runs: Vec<File>,
}

impl DuplicateCounter {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            buffer: Vec::new(),
            runs: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, hash: u64) -> std::io::Result<()> {
        self.buffer.push(hash);
        if self.buffer.len() == RUN {
            self.spill()?;
        }
        Ok(())
    }

    fn spill(&mut self) -> std::io::Result<()> {
        self.buffer.sort_unstable();
        // Unnamed: the file disappears when dropped, even if the import fails.
        let mut file = tempfile::tempfile_in(&self.dir)?;
        {
            let mut writer = BufWriter::new(&mut file);
            for hash in &self.buffer {
                writer.write_all(&hash.to_le_bytes())?;
            }
            writer.flush()?;
        }
        file.rewind()?;
        self.runs.push(file);
        self.buffer.clear();
        Ok(())
    }

    /// How many values equal an earlier one.
    pub(crate) fn duplicates(mut self) -> std::io::Result<u64> {
        if self.runs.is_empty() {
            self.buffer.sort_unstable();
            return Ok(self.buffer.windows(2).filter(|w| w[0] == w[1]).count() as u64);
        }
        if !self.buffer.is_empty() {
            self.spill()?;
        }
        let mut readers: Vec<BufReader<File>> = self.runs.into_iter().map(BufReader::new).collect();
        let mut heap = BinaryHeap::new();
        for (run, reader) in readers.iter_mut().enumerate() {
            if let Some(hash) = next(reader)? {
                heap.push(Reverse((hash, run)));
            }
        }
        let (mut previous, mut duplicates) = (None, 0u64);
        while let Some(Reverse((hash, run))) = heap.pop() {
            if previous == Some(hash) {
                duplicates += 1;
            }
            previous = Some(hash);
            if let Some(hash) = next(&mut readers[run])? {
                heap.push(Reverse((hash, run)));
            }
        }
        Ok(duplicates)
    }
}

fn next(reader: &mut BufReader<File>) -> std::io::Result<Option<u64>> {
    let mut bytes = [0u8; 8];
    match reader.read_exact(&mut bytes) {
        Ok(()) => Ok(Some(u64::from_le_bytes(bytes))),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_the_same_in_memory_and_across_spilled_runs() {
        let dir = tempfile::tempdir().unwrap();
        // 3 runs and a tail; every value from 0 to 999,999 appears once, multiples of 7 twice.
        let mut counter = DuplicateCounter::new(dir.path());
        let mut expected = 0;
        for i in 0..(3 * RUN as u64 + 10) {
            let value = i % 1_000_000;
            counter
                .push(value.wrapping_mul(0x9E37_79B9_7F4A_7C15))
                .unwrap();
            if i >= 1_000_000 {
                expected += 1;
            }
        }
        assert_eq!(counter.duplicates().unwrap(), expected);
        let mut small = DuplicateCounter::new(dir.path());
        for value in [5, 1, 5, 5, 2] {
            small.push(value).unwrap();
        }
        assert_eq!(small.duplicates().unwrap(), 2);
    }
}

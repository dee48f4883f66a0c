//! Counting repeated values in bounded memory: 64-bit hashes are sorted in runs of a fixed
//! size, spilled to temporary files in the data directory, and merged at the end. Hashes come
//! a chunk at a time, each chunk's sorted by the worker that made it: the stable sort (which
//! merges sorted stretches it finds) then costs a few passes, where sorting a run from scratch
//! was most of what an import did alone at its end.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

/// Hashes held in memory before a run is spilled (8 MiB).
const RUN: usize = 1 << 20;

pub(crate) struct DuplicateCounter {
    dir: PathBuf,
    buffer: Vec<u64>,
    runs: Vec<Run>,
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
        self.buffer.sort();
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
        self.runs.push(Run {
            values: Vec::new(),
            at: 0,
            file: Some((file, self.buffer.len())),
        });
        self.buffer.clear();
        Ok(())
    }

    /// How many values equal an earlier one: the sorted runs merged, the values still in
    /// memory as one more run. This is the end of an import, on one thread: the runs are read
    /// a block at a time and merged by comparing their heads, not through a heap.
    pub(crate) fn duplicates(mut self) -> std::io::Result<u64> {
        self.buffer.sort();
        if self.runs.is_empty() {
            return Ok(self.buffer.windows(2).filter(|w| w[0] == w[1]).count() as u64);
        }
        let mut runs = self.runs;
        runs.push(Run {
            values: self.buffer,
            at: 0,
            file: None,
        });
        for run in &mut runs {
            run.refill()?;
        }
        let (mut previous, mut duplicates) = (None, 0u64);
        loop {
            let smallest = runs
                .iter()
                .enumerate()
                .filter_map(|(index, run)| run.head().map(|value| (value, index)))
                .min();
            let Some((value, index)) = smallest else {
                return Ok(duplicates);
            };
            if previous == Some(value) {
                duplicates += 1;
            }
            previous = Some(value);
            runs[index].advance()?;
        }
    }
}

/// Values read back one block after another for merging: the block in memory, and the file
/// with the count of values it has left.
struct Run {
    values: Vec<u64>,
    at: usize,
    file: Option<(File, usize)>,
}

/// Values read from a run's file at once (64 KiB).
const READ_VALUES: usize = 8192;

impl Run {
    fn head(&self) -> Option<u64> {
        self.values.get(self.at).copied()
    }

    fn advance(&mut self) -> std::io::Result<()> {
        self.at += 1;
        if self.at == self.values.len() {
            self.refill()?;
        }
        Ok(())
    }

    /// The next block of the file, once the one in memory is used up.
    fn refill(&mut self) -> std::io::Result<()> {
        let Some((file, left)) = &mut self.file else {
            return Ok(());
        };
        if self.at < self.values.len() || *left == 0 {
            return Ok(());
        }
        let count = (*left).min(READ_VALUES);
        let mut bytes = vec![0u8; count * 8];
        file.read_exact(&mut bytes)?;
        *left -= count;
        self.values.clear();
        self.values.extend(
            bytes
                .chunks_exact(8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes"))),
        );
        self.at = 0;
        Ok(())
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

//! Counting repeated values in bounded memory: 64-bit hashes are sorted in runs of a fixed
//! size, spilled to temporary files in the data directory, and merged at the end. Hashes come
//! a chunk at a time, each chunk's sorted by the worker that made it: the stable sort (which
//! merges sorted stretches it finds) then costs a few passes, where sorting a run from scratch
//! was most of what an import did alone at its end.

use std::borrow::Cow;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Hashes held in memory before a run is spilled (8 MiB).
const RUN: usize = 1 << 20;

pub(crate) struct DuplicateCounter {
    dir: PathBuf,
    buffer: Vec<u64>,
    runs: Vec<Spilled>,
    /// The hash range is cut into this many parts, merged in parallel at the end (equal
    /// values are always in the same part).
    parts: usize,
}

/// A sorted run in a file, and where each part of the hash range starts in it.
struct Spilled {
    file: File,
    starts: Vec<usize>,
}

impl DuplicateCounter {
    pub(crate) fn new(dir: &Path) -> Self {
        Self {
            dir: dir.to_path_buf(),
            buffer: Vec::new(),
            runs: Vec::new(),
            parts: crate::import::workers(),
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
        self.runs.push(Spilled {
            file,
            starts: part_starts(&self.buffer, self.parts),
        });
        self.buffer.clear();
        Ok(())
    }

    /// How many values equal an earlier one: the sorted runs merged, the values still in
    /// memory as one more run. This is the end of an import, when the other threads are done:
    /// each part of the hash range is merged on its own thread, the runs read a block at a
    /// time and merged by comparing their heads.
    pub(crate) fn duplicates(mut self) -> std::io::Result<u64> {
        self.buffer.sort();
        if self.runs.is_empty() {
            return Ok(self.buffer.windows(2).filter(|w| w[0] == w[1]).count() as u64);
        }
        let memory_starts = part_starts(&self.buffer, self.parts);
        let (runs, memory) = (&self.runs, &self.buffer);
        std::thread::scope(|scope| {
            let merges: Vec<_> = (0..self.parts)
                .map(|part| {
                    let memory = &memory[memory_starts[part]..memory_starts[part + 1]];
                    scope.spawn(move || merge_part(runs, part, memory))
                })
                .collect();
            merges
                .into_iter()
                .map(|merge| {
                    merge
                        .join()
                        .unwrap_or_else(|_| Err(std::io::Error::other("a merge panicked")))
                })
                .sum()
        })
    }
}

/// Where each of `parts` equal parts of the hash range starts in sorted values, and their end.
fn part_starts(sorted: &[u64], parts: usize) -> Vec<usize> {
    let mut starts: Vec<usize> = (0..parts)
        .map(|part| {
            let bound = ((part as u128) << 64) / parts as u128;
            sorted.partition_point(|&value| u128::from(value) < bound)
        })
        .collect();
    starts.push(sorted.len());
    starts
}

/// The duplicates among one part's values of every run.
fn merge_part(runs: &[Spilled], part: usize, memory: &[u64]) -> std::io::Result<u64> {
    let mut segments: Vec<Segment> = runs
        .iter()
        .map(|run| Segment {
            values: Cow::Borrowed(&[]),
            at: 0,
            file: Some(&run.file),
            next: run.starts[part],
            end: run.starts[part + 1],
        })
        .collect();
    segments.push(Segment {
        values: Cow::Borrowed(memory),
        at: 0,
        file: None,
        next: 0,
        end: 0,
    });
    for segment in &mut segments {
        segment.refill()?;
    }
    let (mut previous, mut duplicates) = (None, 0u64);
    loop {
        let smallest = segments
            .iter()
            .enumerate()
            .filter_map(|(index, segment)| segment.head().map(|value| (value, index)))
            .min();
        let Some((value, index)) = smallest else {
            return Ok(duplicates);
        };
        if previous == Some(value) {
            duplicates += 1;
        }
        previous = Some(value);
        segments[index].advance()?;
    }
}

/// One part of a run, read back a block at a time: the block in memory, and the values
/// `next..end` of the file still to read.
struct Segment<'a> {
    values: Cow<'a, [u64]>,
    at: usize,
    file: Option<&'a File>,
    next: usize,
    end: usize,
}

/// Values read from a run's file at once (64 KiB).
const READ_VALUES: usize = 8192;

impl Segment<'_> {
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
        let Some(file) = self.file else {
            return Ok(());
        };
        if self.at < self.values.len() || self.next == self.end {
            return Ok(());
        }
        let count = (self.end - self.next).min(READ_VALUES);
        let mut bytes = vec![0u8; count * 8];
        // Read at an offset: the parts share the file.
        file.read_exact_at(&mut bytes, (self.next * 8) as u64)?;
        self.next += count;
        self.values = bytes
            .chunks_exact(8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
            .collect();
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
        // Merged as one part or as several: 3 runs and a tail, where every value from 0 to
        // 999,999 appears once and those met again after the first million are duplicates;
        // then the ends of the range and the parts' bounds, twice each (0 is among the first).
        let edges = [1, u64::MAX, 1 << 63, u64::MAX / 3 + 1, u64::MAX / 3 * 2 + 1];
        for parts in [1, 2, 3] {
            let mut counter = DuplicateCounter::new(dir.path());
            counter.parts = parts;
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
            for edge in edges.into_iter().chain(edges) {
                counter.push(edge).unwrap();
            }
            assert_eq!(
                counter.duplicates().unwrap(),
                expected + edges.len() as u64,
                "{parts} parts"
            );
        }
        let mut small = DuplicateCounter::new(dir.path());
        for value in [5, 1, 5, 5, 2] {
            small.push(value).unwrap();
        }
        assert_eq!(small.duplicates().unwrap(), 2);
    }
}

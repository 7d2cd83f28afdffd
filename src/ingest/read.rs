//! Reading and chunking: a stream (stdin, a command's stdout) or a file's data ranges
//! (holes stay holes, read with pread up to the size that was stat'ed) cut by FastCDC
//! into chunks that go to the sink. A read blocked on a pipe stops on an interrupt.

use super::Progress;
use super::error::{IngestError, stop_if_interrupted};
use super::signal::INTERRUPTED;
use super::sink::Sink;
use crate::chunker::Chunker;
use crate::format::BlobId;
use crate::format::pack::BlobKind;
use crate::format::tree::Extent;
use crate::sys::fsops;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::sync::atomic::Ordering;

/// Reads `[pos, end)` of a file with pread, so a growing file is read only up to the
/// size we stat'ed.
struct RangeReader<'f> {
    file: &'f std::fs::File,
    pos: u64,
    end: u64,
}

impl Read for RangeReader<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64) as usize;
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.pos)?;
        self.pos += n as u64;
        Ok(n)
    }
}

/// Counts bytes as they are read, for stats and the progress bar.
pub struct Counting<'p, R> {
    inner: R,
    pub n: u64,
    progress: &'p Progress,
}

impl<'p, R> Counting<'p, R> {
    pub fn new(inner: R, progress: &'p Progress) -> Self {
        Counting {
            inner,
            n: 0,
            progress,
        }
    }
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // A read blocked on a pipe (stdin, a quiet --cmd) is woken by the interrupt
        // (see `pipeline::wake_on_interrupt`) and stops here instead of retrying.
        let n = loop {
            if INTERRUPTED.load(Ordering::Relaxed) {
                return Err(io::Error::other(StreamStop(IngestError::Interrupted(None))));
            }
            match self.inner.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                r => break r?,
            }
        };
        self.n += n as u64;
        self.progress
            .bytes_read
            .fetch_add(n as u64, Ordering::Relaxed);
        Ok(n)
    }
}

/// Carries an ingest error (interrupt, write failure) through an `io::Error`.
#[derive(Debug)]
pub struct StreamStop(pub IngestError);

impl std::fmt::Display for StreamStop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl std::error::Error for StreamStop {}

/// Turns an error from a stream read back into the ingest error it carries, if any.
pub fn unwrap_stop(e: io::Error, other: impl FnOnce(io::Error) -> IngestError) -> IngestError {
    if e.get_ref().is_some_and(|i| i.is::<StreamStop>()) {
        if let Ok(stop) = e.into_inner().expect("checked").downcast::<StreamStop>() {
            return stop.0;
        }
        return IngestError::Interrupted(None);
    }
    other(e)
}

/// A file read failed (recorded for its path) or the ingest must stop.
pub enum ReadError {
    Io(io::Error),
    Ingest(IngestError),
}

/// The chunker and the sink: bytes in, extents out.
pub struct Chunks<'a> {
    chunker: Chunker,
    pub sink: Sink<'a>,
    progress: &'a Progress,
}

impl<'a> Chunks<'a> {
    pub fn new(chunker: Chunker, sink: Sink<'a>, progress: &'a Progress) -> Chunks<'a> {
        Chunks {
            chunker,
            sink,
            progress,
        }
    }

    pub fn store(&mut self, kind: BlobKind, data: Vec<u8>) -> Result<BlobId, IngestError> {
        self.sink.store(kind, data)
    }

    /// Chunks a whole stream; returns its extents and length.
    pub fn chunk_stream<R: Read + ?Sized>(
        &mut self,
        r: &mut R,
    ) -> Result<(Vec<Extent>, u64), IngestError> {
        self.chunker.reset();
        let mut extents = Vec::new();
        let mut total = 0u64;
        loop {
            let chunk = self.chunker.next_chunk(r);
            stop_if_interrupted()?;
            let chunk = chunk.map_err(IngestError::Stdin)?;
            let Some(chunk) = chunk else { break };
            let len = chunk.len() as u64;
            total += len;
            let id = self.sink.store(BlobKind::Chunk, chunk)?;
            extents.push(Extent::Data { id, len });
        }
        Ok((extents, total))
    }

    /// Reads a file's data ranges (holes stay holes) into chunks; returns the extents
    /// and the length they cover. Adds the bytes read to `bytes_read`.
    pub fn read_file(
        &mut self,
        file: &std::fs::File,
        size: u64,
        bytes_read: &mut u64,
    ) -> Result<(Vec<Extent>, u64), ReadError> {
        let ranges = if size > 0 {
            fsops::data_ranges(file, size).map_err(ReadError::Io)?
        } else {
            Vec::new()
        };
        let mut extents = Vec::new();
        let mut pos = 0u64;
        for (start, end) in ranges {
            if start > pos {
                extents.push(Extent::Hole { len: start - pos });
            }
            let n = self.read_range(file, start, end, &mut extents, bytes_read)?;
            pos = start + n;
            if n < end - start {
                // Shrunk while reading: stop here; the caller sees the size change.
                break;
            }
        }
        if pos < size && extents.iter().map(Extent::len).sum::<u64>() == pos {
            // Trailing hole (or a file that shrank: the caller compares sizes).
            let after = fsops::fstat(file.as_raw_fd()).map_err(ReadError::Io)?;
            if after.st_size as u64 >= size {
                extents.push(Extent::Hole { len: size - pos });
                pos = size;
            }
        }
        Ok((extents, pos))
    }

    /// Chunks `[start, end)` of a file into `extents`; returns the bytes read.
    fn read_range(
        &mut self,
        file: &std::fs::File,
        start: u64,
        end: u64,
        extents: &mut Vec<Extent>,
        bytes_read: &mut u64,
    ) -> Result<u64, ReadError> {
        let range = RangeReader {
            file,
            pos: start,
            end,
        };
        let mut r = Counting::new(range, self.progress);
        self.chunker.reset();
        loop {
            let chunk = self.chunker.next_chunk(&mut r);
            stop_if_interrupted().map_err(ReadError::Ingest)?;
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => {
                    *bytes_read += r.n;
                    return Err(ReadError::Io(e));
                }
            };
            let Some(chunk) = chunk else { break };
            let len = chunk.len() as u64;
            let id = self
                .sink
                .store(BlobKind::Chunk, chunk)
                .map_err(ReadError::Ingest)?;
            extents.push(Extent::Data { id, len });
        }
        *bytes_read += r.n;
        Ok(r.n)
    }
}

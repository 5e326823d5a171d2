//! Where a connection's bytes go: the part file, a memory buffer, or the caller's chunk callback.
//!
//! All three take positional writes. Memory and stream outputs are fetched by a single connection,
//! so their writes arrive in order; the stream sink checks that they do.

use crate::engine::model::error::{Error, ErrorCode, Result};
use crate::engine::model::task::ChunkSink;
use crate::engine::storage::part_file::PartFile;
use bytes::Bytes;
use parking_lot::Mutex;
use std::sync::Arc;

/// A destination for downloaded bytes.
pub trait Sink: Send + Sync {
    /// Writes `bufs` contiguously at `offset`.
    fn write(&self, offset: u64, bufs: &[Bytes]) -> Result<()>;
    /// Forgets everything written (the download starts over from zero).
    fn restart(&self) -> Result<()>;
    /// Hints that `[offset, offset+len)` is final and may be written back to disk now.
    fn writeback(&self, _offset: u64, _len: u64) {}
    /// Hints that `[offset, offset+len)`, whose writeback started earlier, need not stay cached.
    fn evict(&self, _offset: u64, _len: u64) {}
    /// Makes what was written survive the process (an anonymous part file gets its name). Called
    /// before the journal first claims the bytes.
    fn make_resumable(&self) -> Result<()> {
        Ok(())
    }
    /// Whether bytes written at an offset can be written again there (a file, memory). A caller's
    /// stream cannot take back what it was handed: when bytes it got turn out unverified, the
    /// download starts over and the stream sees offset 0 again.
    fn positional(&self) -> bool {
        true
    }
}

/// The part file.
#[derive(Debug)]
pub struct FileSink {
    /// The file.
    pub file: Arc<PartFile>,
    /// Keeps written bytes cached: a checksum will read them back.
    pub keep_cached: bool,
}

impl Sink for FileSink {
    fn write(&self, offset: u64, bufs: &[Bytes]) -> Result<()> {
        self.file.write_vectored_at(offset, bufs)
    }

    fn restart(&self) -> Result<()> {
        self.file.truncate()
    }

    fn writeback(&self, offset: u64, len: u64) {
        self.file.start_writeback(offset, len)
    }

    fn evict(&self, offset: u64, len: u64) {
        if !self.keep_cached {
            self.file.drop_cached(offset, len)
        }
    }

    fn make_resumable(&self) -> Result<()> {
        self.file.ensure_named()
    }
}

/// A bounded memory buffer.
#[derive(Debug)]
pub struct MemorySink {
    buf: Mutex<Vec<u8>>,
    limit: u64,
}

impl MemorySink {
    /// A buffer refusing to grow beyond `limit` bytes.
    pub fn new(limit: u64) -> Self {
        MemorySink { buf: Mutex::new(Vec::new()), limit }
    }

    /// Takes the bytes out.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.buf.lock())
    }
}

impl Sink for MemorySink {
    fn write(&self, offset: u64, bufs: &[Bytes]) -> Result<()> {
        let len: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        if offset + len > self.limit {
            return Err(Error::new(
                ErrorCode::MemoryLimitExceeded,
                format!("body is larger than the memory limit of {} bytes", self.limit),
            ));
        }
        let mut buf = self.buf.lock();
        let end = (offset + len) as usize;
        if buf.len() < end {
            buf.resize(end, 0);
        }
        let mut at = offset as usize;
        for b in bufs {
            buf[at..at + b.len()].copy_from_slice(b);
            at += b.len();
        }
        Ok(())
    }

    fn restart(&self) -> Result<()> {
        self.buf.lock().clear();
        Ok(())
    }
}

/// The caller's chunk callback.
pub struct StreamSink {
    sink: Arc<dyn ChunkSink>,
    next: Mutex<u64>,
}

impl std::fmt::Debug for StreamSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamSink").field("next", &*self.next.lock()).finish()
    }
}

impl StreamSink {
    /// Wraps a callback.
    pub fn new(sink: Arc<dyn ChunkSink>) -> Self {
        StreamSink { sink, next: Mutex::new(0) }
    }
}

impl Sink for StreamSink {
    fn write(&self, offset: u64, bufs: &[Bytes]) -> Result<()> {
        let mut next = self.next.lock();
        if offset != *next {
            return Err(Error::internal(format!("stream write at {offset}, expected {}", *next)));
        }
        // The callback is the caller's code (a Swift, Kotlin or Python function behind the FFI):
        // it may block for as long as it likes, or wait for an interpreter lock. On a worker of a
        // multi-threaded runtime (the engine's), the worker hands its other tasks over first, so
        // a few slow callbacks cannot stall every other download, timer and wait.
        let deliver = || -> Result<u64> {
            let mut at = *next;
            for b in bufs {
                self.sink.on_chunk(at, b).map_err(|m| Error::new(ErrorCode::SinkRejected, format!("chunk callback refused data: {m}")))?;
                at += b.len() as u64;
            }
            Ok(at)
        };
        let on_worker =
            tokio::runtime::Handle::try_current().is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        *next = if on_worker { tokio::task::block_in_place(deliver) } else { deliver() }?;
        Ok(())
    }

    fn restart(&self) -> Result<()> {
        *self.next.lock() = 0;
        Ok(())
    }

    fn positional(&self) -> bool {
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pages of `file`'s first `len` bytes in the page cache.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn resident_pages(file: &std::fs::File, len: usize) -> usize {
        use std::os::unix::io::AsRawFd;
        // SAFETY: a read-only shared mapping of an open file, unmapped before returning; mincore
        // writes one byte per page into a vector of that many bytes.
        unsafe {
            let addr = libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ, libc::MAP_SHARED, file.as_raw_fd(), 0);
            assert_ne!(addr, libc::MAP_FAILED);
            let page = libc::sysconf(libc::_SC_PAGESIZE) as usize;
            let mut vec = vec![0u8; len.div_ceil(page)];
            assert_eq!(libc::mincore(addr, len, vec.as_mut_ptr()), 0);
            libc::munmap(addr, len);
            vec.iter().filter(|&&b| b & 1 == 1).count()
        }
    }

    #[test]
    #[cfg(any(target_os = "linux", target_os = "android"))]
    fn written_back_windows_leave_the_cache_unless_a_checksum_will_read_them() {
        // Under the build directory: /tmp may be a tmpfs, whose pages have nowhere else to live.
        let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target");
        let dir = tempfile::tempdir_in(if target.is_dir() { target } else { std::env::current_dir().unwrap() }).unwrap();
        let len = 4 << 20;
        for keep_cached in [false, true] {
            let path = dir.path().join(format!("f{keep_cached}.part"));
            let sink = FileSink { file: Arc::new(PartFile::create(&path).unwrap()), keep_cached };
            sink.write(0, &[Bytes::from(vec![7u8; len])]).unwrap();
            sink.file.sync().unwrap();
            let before = resident_pages(sink.file.file_descriptor(), len);
            assert!(before > 0, "a file just written is cached");
            sink.evict(0, len as u64);
            let after = resident_pages(sink.file.file_descriptor(), len);
            if keep_cached {
                assert_eq!(after, before, "kept for the checksum");
            } else {
                assert_eq!(after, 0, "synced pages leave the cache");
            }
        }
    }

    #[test]
    fn memory_sink_enforces_its_limit() {
        let m = MemorySink::new(5);
        m.write(0, &[Bytes::from_static(b"abc")]).unwrap();
        assert_eq!(m.write(3, &[Bytes::from_static(b"def")]).unwrap_err().code(), ErrorCode::MemoryLimitExceeded);
        m.write(3, &[Bytes::from_static(b"de")]).unwrap();
        assert_eq!(m.take(), b"abcde");
    }

    #[test]
    fn stream_sink_delivers_in_order_and_reports_refusal() {
        struct Collect(Mutex<Vec<(u64, Vec<u8>)>>);
        impl ChunkSink for Collect {
            fn on_chunk(&self, offset: u64, data: &[u8]) -> std::result::Result<(), String> {
                if data == b"stop" {
                    return Err("no more".into());
                }
                self.0.lock().push((offset, data.to_vec()));
                Ok(())
            }
        }
        let c = Arc::new(Collect(Mutex::new(Vec::new())));
        let s = StreamSink::new(c.clone());
        s.write(0, &[Bytes::from_static(b"ab"), Bytes::from_static(b"c")]).unwrap();
        assert!(s.write(5, &[Bytes::from_static(b"x")]).is_err());
        assert_eq!(s.write(3, &[Bytes::from_static(b"stop")]).unwrap_err().code(), ErrorCode::SinkRejected);
        s.restart().unwrap();
        s.write(0, &[Bytes::from_static(b"z")]).unwrap();
        assert_eq!(*c.0.lock(), vec![(0, b"ab".to_vec()), (2, b"c".to_vec()), (0, b"z".to_vec())]);
    }

    #[test]
    fn a_blocked_chunk_callback_does_not_hold_the_only_runtime_worker() {
        use std::sync::mpsc::{channel, Receiver, Sender};
        use std::time::Duration;
        struct Blocked {
            entered: Mutex<Sender<()>>,
            release: Mutex<Receiver<()>>,
        }
        impl ChunkSink for Blocked {
            fn on_chunk(&self, _: u64, _: &[u8]) -> std::result::Result<(), String> {
                self.entered.lock().send(()).unwrap();
                self.release.lock().recv_timeout(Duration::from_secs(10)).map_err(|_| "nobody released the callback".to_string())
            }
        }
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).build().unwrap();
        let (entered_tx, entered) = channel();
        let (release, release_rx) = channel();
        let sink = StreamSink::new(Arc::new(Blocked { entered: Mutex::new(entered_tx), release: Mutex::new(release_rx) }));
        let writer = rt.spawn(async move { sink.write(0, &[Bytes::from_static(b"a")]) });
        entered.recv_timeout(Duration::from_secs(10)).unwrap();
        // The runtime's only worker is inside the callback; another task must still get to run.
        rt.block_on(rt.spawn(async move { release.send(()).unwrap() })).unwrap();
        rt.block_on(writer).unwrap().unwrap();
    }
}

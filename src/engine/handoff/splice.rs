//! Copying a staged chunk into the part file at its offset, without reading it into memory:
//! `copy_file_range` on Linux and Android (the kernel copies, or shares the blocks where the file
//! system can), a bounded buffer elsewhere.

use std::fs::File;
use std::io;

/// Copies `len` bytes from the start of `from` into `to` at `offset`.
pub fn copy_at(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        match copy_in_kernel(from, to, offset, len) {
            Ok(()) => return Ok(()),
            Err(e) if matches!(e.raw_os_error(), Some(libc::EXDEV | libc::ENOSYS | libc::EINVAL | libc::EOPNOTSUPP)) => {}
            Err(e) => return Err(e),
        }
    }
    copy_buffered(from, to, offset, len)
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn copy_in_kernel(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    use std::os::unix::io::AsRawFd;
    let mut off_in: libc::loff_t = 0;
    let mut off_out = offset as libc::loff_t;
    let mut left = len;
    while left > 0 {
        let want = left.min(1 << 30) as usize;
        // SAFETY: both descriptors are open for the call's duration; the offsets are ours.
        let n = unsafe { libc::copy_file_range(from.as_raw_fd(), &mut off_in, to.as_raw_fd(), &mut off_out, want, 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            if left == len {
                return Err(e);
            }
            // Part done in the kernel: finish with the buffer from where it stopped.
            return copy_buffered_from(from, to, off_in as u64, off_out as u64, left);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the staged chunk is shorter than its lease"));
        }
        left -= n as u64;
    }
    Ok(())
}

fn copy_buffered(from: &File, to: &File, offset: u64, len: u64) -> io::Result<()> {
    copy_buffered_from(from, to, 0, offset, len)
}

fn copy_buffered_from(from: &File, to: &File, mut src: u64, mut dst: u64, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; (1usize << 20).min(len as usize).max(1)];
    let mut left = len;
    while left > 0 {
        let want = (buf.len() as u64).min(left) as usize;
        let n = from.read_at(&mut buf[..want], src)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the staged chunk is shorter than its lease"));
        }
        to.write_all_at(&buf[..n], dst)?;
        src += n as u64;
        dst += n as u64;
        left -= n as u64;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::FileExt;

    #[test]
    fn a_chunk_lands_at_its_offset_by_either_path() {
        let dir = tempfile::tempdir().unwrap();
        let chunk: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
        std::fs::write(dir.path().join("c"), &chunk).unwrap();
        for buffered in [false, true] {
            let from = File::open(dir.path().join("c")).unwrap();
            let to = File::options().read(true).write(true).create(true).truncate(true).open(dir.path().join("p")).unwrap();
            to.set_len(5_000_000).unwrap();
            if buffered {
                copy_buffered(&from, &to, 1_000_000, chunk.len() as u64).unwrap();
            } else {
                copy_at(&from, &to, 1_000_000, chunk.len() as u64).unwrap();
            }
            let mut back = vec![0u8; chunk.len()];
            to.read_exact_at(&mut back, 1_000_000).unwrap();
            assert!(back == chunk, "buffered: {buffered}");
            let mut before = vec![1u8; 16];
            to.read_exact_at(&mut before, 1_000_000 - 16).unwrap();
            assert_eq!(before, vec![0u8; 16], "nothing written before the offset");
        }
        let from = File::open(dir.path().join("c")).unwrap();
        let to = File::options().write(true).create(true).truncate(true).open(dir.path().join("q")).unwrap();
        assert!(copy_at(&from, &to, 0, chunk.len() as u64 + 1).is_err(), "a short chunk is an error");
    }
}

//! A tiny filesystem of the test's own (`mount -t tmpfs -o size=…`), to put a relay's SQLite
//! database on a disk that can be filled up and emptied again while the relay runs.
//!
//! Mounting needs root (CI and these machines run tests as root). Without it the test that
//! asks for one fails and says why: a storage-fault test that silently passed without its
//! fault would prove nothing.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a temporary directory; unmounted (lazily, in case something still
/// holds a file open) when dropped.
pub struct SmallFilesystem {
    dir: tempfile::TempDir,
}

impl SmallFilesystem {
    /// Mounts a tmpfs of `megabytes` MiB; panics with the reason when it cannot.
    pub fn mount(megabytes: u64) -> Self {
        let dir = tempfile::tempdir().expect("a mount point");
        let output = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={megabytes}m"), "tmpfs"])
            .arg(dir.path())
            .output()
            .unwrap_or_else(|error| panic!("cannot run mount(8): {error}"));
        assert!(
            output.status.success(),
            "the storage-fault test needs to mount a small tmpfs (run the tests as root, as CI \
             does); `mount -t tmpfs` said: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Self { dir }
    }

    /// The mount point.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem is full; its path (remove it to free the space).
    pub fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("the filler file is created");
        let block = vec![0xa5u8; 64 * 1024];
        loop {
            match file.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(error) if error.raw_os_error() == Some(libc::ENOSPC) => break,
                Err(error) => panic!("filling {}: {error}", path.display()),
            }
        }
        // Whatever the last partial block left: write byte by byte until nothing fits.
        while file.write(&[0]).is_ok_and(|written| written == 1) {}
        path
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        let path = std::ffi::CString::new(self.path().as_os_str().as_encoded_bytes())
            .expect("a path without NUL");
        // SAFETY: statvfs writes into the struct we hand it and reads the NUL-terminated path.
        unsafe {
            let mut stats: libc::statvfs = std::mem::zeroed();
            assert_eq!(libc::statvfs(path.as_ptr(), &mut stats), 0, "statvfs");
            stats.f_bavail as u64 * stats.f_frsize as u64
        }
    }
}

impl Drop for SmallFilesystem {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .output();
    }
}

//! The file an FQN names, opened under the policy (§11) and loaded for one attempt.
//!
//! The policy is checked on the path as written and on the path the kernel actually
//! opened, read back from `/proc/self/fd`: a symbolic link anywhere along the way,
//! even one swapped in while the path was being resolved, cannot lead outside. The
//! file is first opened `O_PATH`, which has no effect on a device or a FIFO, and
//! reopened for reading only once it is known to be a regular file.
//!
//! A load is first tried on the caller's thread without waiting for the disk
//! (`openat2` with `RESOLVE_CACHED`, `preadv2` with `RWF_NOWAIT`): an object in the
//! page cache costs a few system calls and no thread hop. When the kernel would have
//! to wait, the caller repeats the load on the blocking pool with [`Wait::Allowed`].
//! A file handed over to be streamed is read the same way, read by read
//! ([`FileReader`]). Linux system calls throughout, like the pod this runs in.

use std::ffi::{CString, OsString};
use std::fs::File;
use std::future::Future;
use std::io::{self, Read};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::task::JoinHandle;

use super::fqn::{FqnPolicy, FqnRefusal};
use super::{Loaded, Opened, SourceError};

/// Whether a load may wait for the disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Wait {
    /// Give up (`Ok(None)`) rather than wait: for async threads.
    Never,
    /// Block as long as it takes: for the blocking pool.
    Allowed,
}

/// Open the FQN's file and read it whole when `whole(size)` says so (unless it is
/// longer than `at_most`), else hand it over to be streamed. `Ok(None)` only with
/// [`Wait::Never`]: the kernel would have had to wait; nothing is lost by repeating
/// the load with [`Wait::Allowed`].
pub(super) fn load(
    policy: &FqnPolicy,
    path: &Path,
    whole: &dyn Fn(Option<u64>) -> bool,
    at_most: u64,
    wait: Wait,
) -> Result<Option<Loaded>, SourceError> {
    let refused = |reason| SourceError::FqnRefused {
        path: path.to_path_buf(),
        reason,
    };
    let object = policy.check(path).map_err(refused)?;
    let failed = |error: io::Error| match error.kind() {
        io::ErrorKind::PermissionDenied => SourceError::FqnDenied {
            path: path.to_path_buf(),
            uname: object.uname(),
            error,
        },
        _ => super::fqn_error(path, error),
    };
    let Some(handle) = open_path(path, wait).map_err(failed)? else {
        return Ok(None);
    };
    let magic = MagicLink::of(&handle).map_err(failed)?;
    let opened = magic.target().map_err(failed)?;
    // Where it leads first: what lies outside is nobody's business, its type included.
    if opened != path && policy.check(&opened).is_err() {
        return Err(refused(FqnRefusal::LinkOutside));
    }
    let metadata = handle.metadata().map_err(failed)?;
    if !metadata.is_file() {
        return Err(refused(FqnRefusal::NotAFile));
    }
    // A negative lookup, from the dentry cache but for the first object of a bucket.
    match open_path(&object.chunk_manifest(), wait) {
        Ok(Some(_)) => {
            return Err(SourceError::FqnChunked {
                path: path.to_path_buf(),
                uname: object.uname(),
            });
        }
        Ok(None) => return Ok(None),
        Err(error) if matches!(error.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {}
        Err(error) => return Err(failed(error)),
    }
    // The same inode, now for reading: the descriptor pins it, so nothing swapped in
    // since can be opened instead.
    let file = magic.reopen().map_err(failed)?;
    let size = metadata.len();
    if !whole(Some(size)) {
        return Ok(Some(Loaded::Stream(Opened {
            reader: Box::new(FileReader::new(file, size)),
            size: Some(size),
        })));
    }
    super::within(size, at_most)?;
    let mut data = Vec::with_capacity(size.min(64 << 20) as usize);
    let complete = match wait {
        Wait::Never => read_cached(&file, &mut data).map_err(failed)?,
        Wait::Allowed => {
            (&file).read_to_end(&mut data).map_err(failed)?;
            true
        }
    };
    Ok(complete.then(|| Loaded::Whole(Bytes::from(data), Default::default())))
}

/// An `O_PATH` descriptor of the file `path` leads to, following symbolic links.
/// With [`Wait::Never`], `None` when a lookup is not in the kernel's caches (or the
/// kernel predates `RESOLVE_CACHED`).
fn open_path(path: &Path, wait: Wait) -> io::Result<Option<File>> {
    let name = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "the path holds a NUL byte"))?;
    let flags = libc::O_PATH | libc::O_CLOEXEC;
    let fd = match wait {
        // SAFETY: a valid NUL-terminated path.
        Wait::Allowed => unsafe { libc::open(name.as_ptr(), flags) },
        Wait::Never => {
            // SAFETY: `open_how` is plain data; all-zero is its documented default.
            let mut how: libc::open_how = unsafe { std::mem::zeroed() };
            how.flags = flags as u64;
            how.resolve = libc::RESOLVE_CACHED;
            // SAFETY: a valid NUL-terminated path and `open_how` of the size passed.
            let fd = unsafe {
                libc::syscall(
                    libc::SYS_openat2,
                    libc::AT_FDCWD,
                    name.as_ptr(),
                    &how as *const libc::open_how,
                    std::mem::size_of::<libc::open_how>(),
                )
            };
            fd as libc::c_int
        }
    };
    if fd < 0 {
        let error = io::Error::last_os_error();
        return match (wait, error.raw_os_error()) {
            // Not cached; or no openat2 (ENOSYS), or no RESOLVE_CACHED (EINVAL).
            (Wait::Never, Some(libc::EAGAIN | libc::ENOSYS | libc::EINVAL)) => Ok(None),
            _ => Err(error),
        };
    }
    // SAFETY: `fd` was just opened and is owned by nobody else.
    Ok(Some(File::from(unsafe { OwnedFd::from_raw_fd(fd) })))
}

/// A descriptor's entry in `/proc/self/fd`: where it leads, and a way to open its
/// file again with other flags. Looked up from `/proc/self/fd` opened once, so each
/// lookup walks one component rather than three (`self` is revalidated every time).
struct MagicLink {
    dir: &'static File,
    name: CString,
}

impl MagicLink {
    fn of(handle: &File) -> io::Result<Self> {
        static DIR: OnceLock<File> = OnceLock::new();
        let dir = match DIR.get() {
            Some(dir) => dir,
            None => {
                let dir = File::open("/proc/self/fd").map_err(|error| {
                    io::Error::new(
                        error.kind(),
                        format!("cannot tell where the path leads (is /proc mounted?): {error}"),
                    )
                })?;
                DIR.get_or_init(|| dir)
            }
        };
        let name = CString::new(handle.as_raw_fd().to_string()).expect("digits");
        Ok(MagicLink { dir, name })
    }

    /// The path the descriptor's file is at.
    fn target(&self) -> io::Result<PathBuf> {
        let mut buf = [0u8; libc::PATH_MAX as usize];
        // SAFETY: `buf` is writable for its length; the name is NUL-terminated.
        let n = unsafe {
            libc::readlinkat(
                self.dir.as_raw_fd(),
                self.name.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
            )
        };
        match usize::try_from(n) {
            Err(_) => Err(io::Error::last_os_error()),
            // A full buffer may be a cut path: never check a cut one.
            Ok(n) if n == buf.len() => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the path the file resolves to is too long",
            )),
            Ok(n) => Ok(PathBuf::from(OsString::from_vec(buf[..n].to_vec()))),
        }
    }

    /// The same file, opened for reading.
    fn reopen(&self) -> io::Result<File> {
        let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_CLOEXEC;
        // SAFETY: a NUL-terminated name relative to an open directory.
        let fd = unsafe { libc::openat(self.dir.as_raw_fd(), self.name.as_ptr(), flags) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just opened and is owned by nobody else.
        Ok(File::from(unsafe { OwnedFd::from_raw_fd(fd) }))
    }
}

/// Read `file` to its end from the page cache only. `false`: some of it is not
/// cached (or the filesystem cannot tell without waiting).
fn read_cached(file: &File, data: &mut Vec<u8>) -> io::Result<bool> {
    // A full vector holds, as a rule, the file's size: its end is confirmed by a
    // small read here rather than by growing (and copying) the vector.
    let mut probe = [0u8; 64];
    loop {
        let offset = data.len() as u64;
        let read = if data.len() == data.capacity() {
            // SAFETY: `probe` is writable for its length.
            let n = unsafe { read_nowait(file, offset, probe.as_mut_ptr(), probe.len()) }?;
            n.inspect(|&n| data.extend_from_slice(&probe[..n]))
        } else {
            let spare = data.spare_capacity_mut();
            // SAFETY: the spare capacity is writable; only what the kernel wrote is
            // taken into the vector.
            let n = unsafe { read_nowait(file, offset, spare.as_mut_ptr().cast(), spare.len()) }?;
            n.inspect(|&n| unsafe { data.set_len(data.len() + n) })
        };
        match read {
            Some(0) => return Ok(true),
            Some(_) => {}
            None => return Ok(false),
        }
    }
}

/// `preadv2` with `RWF_NOWAIT` of up to `len` bytes at `offset` into `buf`: the
/// number read (0 at the end), or `None` when the kernel would have to wait for the
/// disk (or the filesystem cannot tell).
///
/// # Safety
/// `buf` must be valid for writes of `len` bytes.
unsafe fn read_nowait(
    file: &File,
    offset: u64,
    buf: *mut u8,
    len: usize,
) -> io::Result<Option<usize>> {
    let iov = libc::iovec {
        iov_base: buf.cast(),
        iov_len: len,
    };
    loop {
        // SAFETY: `iov` describes memory the caller vouches is writable.
        let n = unsafe {
            libc::preadv2(
                file.as_raw_fd(),
                &iov,
                1,
                offset as libc::off_t,
                libc::RWF_NOWAIT,
            )
        };
        if n >= 0 {
            return Ok(Some(n as usize));
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EAGAIN | libc::EOPNOTSUPP) => return Ok(None),
            Some(libc::EINTR) => continue,
            _ => return Err(error),
        }
    }
}

/// A file streamed to the guest. Each read is served from the page cache on the
/// caller's thread when it can be, and from the blocking pool only when the kernel
/// would wait for the disk, not by a round trip to another thread per chunk (as
/// `tokio::fs::File` makes).
struct FileReader {
    file: Arc<File>,
    offset: u64,
    /// Its size when opened: an end before it is an error, not the object's end.
    size: u64,
    /// A read the disk holds up, on the blocking pool.
    waiting: Option<JoinHandle<io::Result<Vec<u8>>>>,
}

impl FileReader {
    fn new(file: File, size: u64) -> Self {
        FileReader {
            file: Arc::new(file),
            offset: 0,
            size,
            waiting: None,
        }
    }

    /// The file's end: an error when it came before the size it had when opened
    /// (cut short in place while it was read), which would pass for a whole object.
    fn ended(&self) -> io::Result<()> {
        if self.offset < self.size {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file ended at {} of the {} bytes it had when opened: it was cut \
                     short while being read",
                    self.offset, self.size
                ),
            ));
        }
        Ok(())
    }
}

impl AsyncRead for FileReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if buf.remaining() == 0 {
            return Poll::Ready(Ok(()));
        }
        if this.waiting.is_none() {
            // SAFETY: only the kernel writes to the unfilled part, and it writes
            // bytes (never de-initialises any); only what it wrote is marked filled.
            let unfilled = unsafe { buf.unfilled_mut() };
            // SAFETY: `unfilled` is writable for its length.
            let read = unsafe {
                read_nowait(
                    &this.file,
                    this.offset,
                    unfilled.as_mut_ptr().cast(),
                    unfilled.len(),
                )
            }?;
            if let Some(n) = read {
                if n == 0 {
                    return Poll::Ready(this.ended());
                }
                // SAFETY: the kernel initialised these `n` bytes.
                unsafe { buf.assume_init(n) };
                buf.advance(n);
                this.offset += n as u64;
                return Poll::Ready(Ok(()));
            }
            let (file, offset, len) = (this.file.clone(), this.offset, buf.remaining());
            this.waiting = Some(tokio::task::spawn_blocking(move || {
                let mut data = vec![0; len];
                let n = file.read_at(&mut data, offset)?;
                data.truncate(n);
                Ok(data)
            }));
        }
        let waiting = this.waiting.as_mut().expect("a read is waiting");
        let data = ready!(Pin::new(waiting).poll(cx)).map_err(io::Error::other)?;
        this.waiting = None;
        let data = data?;
        if data.is_empty() {
            return Poll::Ready(this.ended());
        }
        // A smaller buffer this time: the rest is read again at the new offset.
        let n = data.len().min(buf.remaining());
        buf.put_slice(&data[..n]);
        this.offset += n as u64;
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn object(dir: &Path, data: &[u8]) -> std::path::PathBuf {
        let path = dir.join("mp/@ais/bucket/%ob/object");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, data).unwrap();
        path
    }

    fn whole(loaded: Option<Loaded>) -> Option<Bytes> {
        match loaded? {
            Loaded::Whole(data, _) => Some(data),
            Loaded::Stream(_) => panic!("streamed"),
        }
    }

    /// Whether `attempt` succeeds on any CPU this thread may run on, run on each in
    /// turn until one does; the thread may run on all of them again afterwards.
    fn on_some_cpu(mut attempt: impl FnMut() -> bool) -> bool {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: plain data; all-zero is the empty set.
        let mut allowed: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        // SAFETY: a set of the size passed, for the calling thread.
        assert_eq!(unsafe { libc::sched_getaffinity(0, size, &mut allowed) }, 0);
        // SAFETY: every index is below CPU_SETSIZE.
        let mut cpus =
            (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &allowed) });
        let succeeded = cpus.any(|cpu| {
            // SAFETY: as above: the set of that one CPU, then the thread moves there.
            let mut one: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            unsafe { libc::CPU_SET(cpu, &mut one) };
            assert_eq!(unsafe { libc::sched_setaffinity(0, size, &one) }, 0);
            attempt()
        });
        // SAFETY: the set read above.
        assert_eq!(unsafe { libc::sched_setaffinity(0, size, &allowed) }, 0);
        succeeded
    }

    #[test]
    fn cached_files_load_without_waiting_and_evicted_ones_on_the_pool() {
        // In the repository rather than /tmp, which may be a tmpfs that cannot evict.
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = object(dir.path(), &data);
        let policy = FqnPolicy::any_mountpath();
        let all = |_: Option<u64>| true;
        // The first load in a bucket may have to look on disk for where its chunk
        // manifests would be (they are not); the kernel then remembers their absence.
        load(&policy, &path, &all, u64::MAX, Wait::Allowed).unwrap();
        // Just written: in the page cache.
        let cached = load(&policy, &path, &all, u64::MAX, Wait::Never).unwrap();
        assert!(whole(cached).unwrap() == data);

        // Evicted: the kernel would have to read the disk. A read that may not wait
        // still starts the readahead, and a VM's disk may finish it before the read
        // looks at the page again: with the pages evicted (`mincore`), 2 runs of 40
        // here saw that on 20 attempts in a row from one CPU, none of 60 trying each
        // CPU. So the file is evicted and loaded again, on each CPU in turn,
        // until a load gives up; a load that does not must be whole.
        let file = File::open(&path).unwrap();
        file.sync_all().unwrap();
        let gave_up = (0..10).any(|_| {
            on_some_cpu(|| {
                // SAFETY: an open descriptor; the advice reads no memory of ours.
                let advice = unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                };
                assert_eq!(advice, 0);
                match load(&policy, &path, &all, u64::MAX, Wait::Never).unwrap() {
                    None => true,
                    Some(loaded) => {
                        assert!(whole(Some(loaded)).unwrap() == data);
                        false
                    }
                }
            })
        });
        assert!(gave_up, "every evicted file was read without waiting");
        let loaded = load(&policy, &path, &all, u64::MAX, Wait::Allowed).unwrap();
        assert!(whole(loaded).unwrap() == data);
    }

    #[test]
    fn a_file_of_the_expected_size_is_read_without_growing_the_buffer() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let file = File::open(object(dir.path(), &data)).unwrap();
        let mut exact = Vec::with_capacity(data.len());
        assert!(read_cached(&file, &mut exact).unwrap());
        assert!(exact == data);
        assert_eq!(exact.capacity(), data.len());
        // Larger than it was when its size was taken: read to its end all the same.
        let mut short = Vec::with_capacity(1000);
        assert!(read_cached(&file, &mut short).unwrap());
        assert!(short == data);
    }

    #[tokio::test]
    async fn streamed_files_read_from_the_page_cache_or_the_pool() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
        let path = object(dir.path(), &data);
        for evicted in [false, true] {
            let file = File::open(&path).unwrap();
            if evicted {
                file.sync_all().unwrap();
                let advice = unsafe {
                    libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED)
                };
                assert_eq!(advice, 0);
            }
            let mut reader = FileReader::new(file, data.len() as u64);
            // Reads of changing sizes, as a guest's chunks and a final short one.
            let mut read = Vec::new();
            for size in [1000, 65_536, 7, 100_000].into_iter().cycle() {
                let mut chunk = vec![0; size];
                let n = reader.read(&mut chunk).await.unwrap();
                if n == 0 {
                    break;
                }
                read.extend_from_slice(&chunk[..n]);
            }
            assert!(read == data, "evicted: {evicted}");
        }
    }

    #[tokio::test]
    async fn a_streamed_file_cut_short_while_read_is_an_error_not_an_end() {
        use tokio::io::AsyncReadExt;
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = object(dir.path(), &[7; 100_000]);
        let mut reader = FileReader::new(File::open(&path).unwrap(), 100_000);
        let mut start = vec![0; 1000];
        reader.read_exact(&mut start).await.unwrap();
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(50_000)
            .unwrap();
        let error = reader.read_to_end(&mut Vec::new()).await.unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::UnexpectedEof);
        assert!(
            error
                .to_string()
                .contains("ended at 50000 of the 100000 bytes"),
            "{error}"
        );
    }

    #[test]
    fn large_files_are_handed_over_open() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let path = object(dir.path(), b"0123456789");
        let policy = FqnPolicy::any_mountpath();
        let small = |size: Option<u64>| size.is_some_and(|size| size < 10);
        // The first on the pool, which looks for the bucket's chunk manifests on disk.
        for wait in [Wait::Allowed, Wait::Never] {
            match load(&policy, &path, &small, u64::MAX, wait).unwrap() {
                Some(Loaded::Stream(opened)) => assert_eq!(opened.size, Some(10)),
                _ => panic!("not handed over open"),
            }
        }
    }
}

//! Misbehaving transform for the host's sandbox and limit tests; see ../README.md.
use std::io::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use aistore_etl::{Buffered, Config, Error, Input, Object, Output, Streaming, Transform};

#[derive(Default)]
struct Hostile;

impl Transform for Hostile {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        match config.get("fail-init") {
            Some(_) => Err(Error::failed("init refused")),
            None => Ok(()),
        }
    }
}

/// Scalar locals only, so the frames land on the engine's wasm stack (not Rust's
/// shadow stack in linear memory) and exhaust it.
#[allow(unconditional_recursion)]
fn recurse(depth: u64) -> u64 {
    recurse(std::hint::black_box(depth + 1)) + std::hint::black_box(1)
}

/// Buffered objects this instance transformed before the current one.
static EARLIER: AtomicUsize = AtomicUsize::new(0);
/// Memory that `residue` reads and then fills: zeros in the component's image (it is
/// all `.bss`), and more than the 8 MiB of a slot the host resets in place.
static AREA: Mutex<[u8; 10 << 20]> = Mutex::new([0; 10 << 20]);

impl Buffered for Hostile {
    fn transform(&mut self, data: Vec<u8>, object: &Object) -> Result<Vec<u8>, Error> {
        let earlier = EARLIER.fetch_add(1, Ordering::Relaxed);
        let (verb, arg) = object.args().split_once(':').unwrap_or((object.args(), ""));
        match verb {
            "" => Ok(data),
            "residue" => {
                let mut area = AREA.lock().unwrap();
                let written = area.iter().filter(|b| **b != 0).count();
                area.fill(0xa5);
                Ok(format!("{earlier} {written}").into_bytes())
            }
            "loop" => loop {
                std::hint::black_box(&data);
            },
            "alloc" => {
                let mut hoard = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                }
            }
            // 1 MiB added to linear memory, its non-zero bytes counted and then every
            // byte dirtied: an instance growing into the same slot after this one must
            // find it zero again.
            "grown" => {
                const PAGES: usize = 16;
                let old = core::arch::wasm32::memory_grow(0, PAGES);
                assert_ne!(old, usize::MAX, "memory.grow failed");
                let base = (old * 65536) as *mut u8;
                let mut dirty = 0;
                for i in 0..PAGES * 65536 {
                    // SAFETY: the pages were just added, and no allocation uses them.
                    unsafe {
                        dirty += usize::from(base.add(i).read_volatile() != 0);
                        base.add(i).write_volatile(0xa5);
                    }
                }
                Ok(dirty.to_string().into_bytes())
            }
            // A read a page past the end of linear memory, where an instance before
            // may have grown it: a trap, never what the page held.
            "oob" => {
                let end = core::arch::wasm32::memory_size(0) * 65536;
                // SAFETY: none: the read is meant to trap.
                let byte = unsafe { std::ptr::read_volatile((end + 65536) as *const u8) };
                Ok(vec![byte])
            }
            "panic" => panic!("boom"),
            "abort" => std::process::abort(),
            "stack" => Ok(recurse(0).to_le_bytes().to_vec()),
            "big" => Ok(vec![b'x'; arg.parse().unwrap()]),
            "flood" => {
                let line = [b'y'; 99];
                for _ in 0..arg.parse::<usize>().unwrap() {
                    std::io::stdout().write_all(&line).unwrap();
                    std::io::stdout().write_all(b"\n").unwrap();
                    std::io::stderr().write_all(&line).unwrap();
                    std::io::stderr().write_all(b"\n").unwrap();
                }
                Ok(data)
            }
            "newlines" => {
                let newlines = vec![b'\n'; arg.parse().unwrap()];
                std::io::stderr().write_all(&newlines).unwrap();
                Ok(data)
            }
            "chatter" => {
                let line = [b'z'; 99];
                loop {
                    let _ = std::io::stdout().write_all(&line);
                    let _ = std::io::stdout().write_all(b"\n");
                    let _ = std::io::stderr().write_all(&line);
                    let _ = std::io::stderr().write_all(b"\n");
                }
            }
            "sleep" => {
                std::thread::sleep(std::time::Duration::from_millis(arg.parse().unwrap()));
                Ok(data)
            }
            "env" => Ok(std::env::vars()
                .map(|(k, v)| format!("{k}={v}\n"))
                .collect::<String>()
                .into_bytes()),
            "fs" => Ok(std::fs::read(arg).unwrap_or_else(|e| e.to_string().into_bytes())),
            "ls" => Ok(match std::fs::read_dir(arg) {
                Ok(entries) => entries
                    .map(|e| match e {
                        Ok(entry) => format!("{}\n", entry.file_name().to_string_lossy()),
                        Err(error) => format!("error: {error}\n"),
                    })
                    .collect::<String>()
                    .into_bytes(),
                Err(e) => e.to_string().into_bytes(),
            }),
            "net" => Ok(match std::net::TcpStream::connect(arg) {
                Ok(_) => b"connected".to_vec(),
                Err(e) => e.to_string().into_bytes(),
            }),
            "path" => Ok(object.path().as_bytes().to_vec()),
            "bad-input" => Err(Error::bad_input("nope")),
            "failed" => Err(Error::failed("nope")),
            other => Err(Error::bad_input(format!("unknown behaviour {other:?}"))),
        }
    }
}

impl Streaming for Hostile {
    fn transform_stream(
        &mut self,
        input: &mut Input<'_>,
        output: &mut Output<'_>,
        object: &Object,
    ) -> Result<(), Error> {
        let (verb, arg) = object.args().split_once(':').unwrap_or((object.args(), ""));
        match verb {
            "never-read" => Ok(()),
            "big-write" => {
                output.write(&vec![b'w'; arg.parse().unwrap()]);
                Ok(())
            }
            "spew" => {
                // Writes whatever becomes of its output: only the host can stop it.
                let chunk = vec![b's'; 64 * 1024];
                loop {
                    output.write(&chunk);
                }
            }
            "fail-midway" => {
                output.write(&[b'p'; 64 * 1024]);
                Err(Error::failed("failed after writing 64 KiB"))
            }
            "loop" => {
                let first = input.next_chunk();
                loop {
                    std::hint::black_box(&first);
                }
            }
            // Writes a little, then computes for ever: only an epoch tick can stop it.
            "write-loop" => {
                output.write(b"first");
                loop {
                    std::hint::black_box(&output);
                }
            }
            _ => {
                while let Some(chunk) = input.next_chunk() {
                    output.write(&chunk);
                }
                Ok(())
            }
        }
    }
}

aistore_etl::export!(Hostile => buffered, streaming);

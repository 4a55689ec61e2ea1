//! The compile cache: Cranelift output for a component, kept on disk and keyed by the
//! component's sha256 and the engine's compatibility hash. Python and JavaScript
//! components take tens of seconds to compile and milliseconds to load from here.
//!
//! Architecture Invariant: precompiled code is only ever loaded from files this cache
//! wrote itself, in a directory only this user can write, and only as written (its
//! checksum beside it). Deserialising machine code is trusting it, so a `.cwasm`
//! handed in from outside is refused (see `Runtime::load`).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use wasmtime::Engine;
use wasmtime::component::Component;
use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use super::error::LoadError;

/// Where a component's machine code came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheStatus {
    /// Loaded from the cache, no compilation.
    Hit,
    /// Compiled and written to the cache for next time.
    Stored,
    /// Compiled; the cache is disabled or could not be written.
    Compiled,
}

pub(crate) struct CompileCache {
    dir: Option<PathBuf>,
}

impl CompileCache {
    /// A cache in `dir`, or none. The directory is created private to this user.
    pub(crate) fn new(dir: Option<PathBuf>) -> Self {
        let dir = dir.and_then(|dir| match create_private_dir(&dir) {
            Ok(()) => Some(dir),
            Err(error) => {
                tracing::warn!(
                    dir = %dir.display(),
                    "compile cache disabled, components will be compiled at every start: {error:#}"
                );
                None
            }
        });
        CompileCache { dir }
    }

    pub(crate) fn load_or_compile(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> Result<(Component, CacheStatus), LoadError> {
        let Some(dir) = &self.dir else {
            return Ok((compile(engine, wasm)?, CacheStatus::Compiled));
        };
        let mut hasher = DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let path = dir.join(format!("{sha256}-{:016x}.cwasm", hasher.finish()));

        if is_regular_file(&path) {
            // SAFETY: the code was written by `store` below, in a directory private to
            // this user, under a name that binds it to these exact component bytes
            // and this engine configuration, and is as written (its checksum);
            // wasmtime also checks its header.
            match check(&path)
                .and_then(|()| unsafe { Ok(Component::deserialize_file(engine, &path)?) })
            {
                Ok(component) => {
                    tracing::info!(path = %path.display(), "compile cache hit");
                    return Ok((component, CacheStatus::Hit));
                }
                Err(error) => tracing::warn!(
                    path = %path.display(),
                    "ignoring an unusable compile cache entry, compiling again: {error:#}"
                ),
            }
        }

        let component = compile(engine, wasm)?;
        match component
            .serialize()
            .map_err(anyhow::Error::from)
            .and_then(|code| {
                store(&path, &code)?;
                store(&checksum_path(&path), &xxh3_128(&code).to_le_bytes())
            }) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "compiled and cached");
                Ok((component, CacheStatus::Stored))
            }
            Err(error) => {
                tracing::warn!(path = %path.display(), "could not write the compile cache: {error:#}");
                Ok((component, CacheStatus::Compiled))
            }
        }
    }
}

fn compile(engine: &Engine, wasm: &[u8]) -> Result<Component, LoadError> {
    let started = std::time::Instant::now();
    let component = Component::new(engine, wasm).map_err(LoadError::Compile)?;
    tracing::info!(elapsed = ?started.elapsed(), bytes = wasm.len(), "compiled the component");
    Ok(component)
}

/// Where an entry's checksum is kept (XXH3, 128 bits): the entry is the code as
/// `store` wrote it only if the two agree. Machine code damaged on disk (a lost write,
/// a failing volume) would otherwise run, and crash the process at every start. It
/// guards against damage, not malice (the directory is private to this user), so a
/// fast hash: 6 ms for a Python component's 33 MB, where sha256 took 25. Beside the
/// entry rather than in it, which wasmtime maps from its file as it is.
fn checksum_path(entry: &Path) -> PathBuf {
    entry.with_extension("cwasm.xxh3")
}

/// Whether the entry at `path` is as written, read through a small buffer (the page
/// cache has it; reading it whole into fresh memory cost 100 ms at 33 MB).
fn check(path: &Path) -> anyhow::Result<()> {
    let damaged = || anyhow::anyhow!("its checksum does not match: it was damaged on disk");
    let expected = fs::read(checksum_path(path)).context(
        "it has no checksum (written by an earlier ais-wasm, or its writing was cut off)",
    )?;
    let mut hasher = Xxh3::new();
    let mut file = fs::File::open(path)?;
    let mut buffer = vec![0; 1 << 20];
    loop {
        match file.read(&mut buffer)? {
            0 => break,
            n => hasher.update(&buffer[..n]),
        }
    }
    anyhow::ensure!(
        hasher.digest128().to_le_bytes()[..] == expected[..],
        damaged()
    );
    Ok(())
}

fn is_regular_file(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file())
}

fn create_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("creating {}", dir.display()))?;
    let meta = fs::symlink_metadata(dir).with_context(|| format!("reading {}", dir.display()))?;
    anyhow::ensure!(meta.is_dir(), "{} is not a directory", dir.display());
    anyhow::ensure!(
        meta.permissions().mode() & 0o022 == 0,
        "{} is writable by other users; use a directory only this user can write",
        dir.display()
    );
    Ok(())
}

/// Write atomically: a reader sees the old entry, no entry, or the complete new one.
fn store(path: &Path, code: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("cache path has no directory")?;
    let mut temp = tempfile::NamedTempFile::new_in(dir)?;
    temp.write_all(code)?;
    temp.as_file().sync_all()?;
    temp.persist(path)
        .with_context(|| format!("renaming into {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check, checksum_path, store, xxh3_128};

    #[test]
    fn an_entry_is_usable_only_while_its_checksum_holds() {
        let dir = tempfile::tempdir().unwrap();
        let entry = dir.path().join("a.cwasm");
        let code = vec![7; 3 << 20];
        store(&entry, &code).unwrap();
        assert!(check(&entry).is_err(), "no checksum yet");
        store(&checksum_path(&entry), &xxh3_128(&code).to_le_bytes()).unwrap();
        check(&entry).unwrap();
        let mut damaged = code.clone();
        damaged[2 << 20] = 0;
        store(&entry, &damaged).unwrap();
        let error = check(&entry).unwrap_err().to_string();
        assert!(error.contains("damaged on disk"), "{error}");
    }
}

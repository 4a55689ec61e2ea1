//! The compile cache: Cranelift output for a component, kept on disk and keyed by the
//! component's sha256 and the engine's compatibility hash. Python and JavaScript
//! components take tens of seconds to compile and milliseconds to load from here.
//!
//! Architecture Invariant: precompiled code is only ever loaded from files this cache
//! wrote itself, in a directory only this user can write, and only as written (each
//! entry ends with its code's sha256). Deserialising machine code is trusting it, so
//! a `.cwasm` handed in from outside is refused (see `Runtime::load`).

use std::collections::hash_map::DefaultHasher;
use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

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
            let entry = fs::read(&path).map_err(anyhow::Error::from);
            // SAFETY: the code was written by `store` below, in a directory private to
            // this user, under a name that binds it to these exact component bytes
            // and this engine configuration, and is as written (its checksum);
            // wasmtime also checks its header.
            match entry
                .and_then(|entry| unsafe { Ok(Component::deserialize(engine, checked(&entry)?)?) })
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
            .and_then(|code| store(&path, &with_checksum(code)))
        {
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

/// Ends an entry, after the code's sha256: an entry is the code as `store` wrote it
/// only if both are there and agree. Machine code damaged on disk (a lost write, a
/// failing volume) would otherwise run, and crash the process at every start.
const TRAILER: &[u8; 8] = b"aiswsum1";

fn with_checksum(mut code: Vec<u8>) -> Vec<u8> {
    let digest = Sha256::digest(&code);
    code.extend_from_slice(&digest);
    code.extend_from_slice(TRAILER);
    code
}

/// The code of an entry whose checksum holds.
fn checked(entry: &[u8]) -> anyhow::Result<&[u8]> {
    let damaged = || anyhow::anyhow!("its checksum does not match: it was damaged on disk");
    let rest = entry.strip_suffix(TRAILER).ok_or_else(damaged)?;
    let at = rest.len().checked_sub(32).ok_or_else(damaged)?;
    let (code, digest) = rest.split_at(at);
    anyhow::ensure!(Sha256::digest(code)[..] == *digest, damaged());
    Ok(code)
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
    use super::{checked, with_checksum};

    #[test]
    fn an_entry_is_its_code_only_while_its_checksum_holds() {
        let entry = with_checksum(b"machine code".to_vec());
        assert_eq!(checked(&entry).unwrap(), b"machine code");
        let mut damaged = entry.clone();
        damaged[3] ^= 1;
        for bad in [&damaged[..], &entry[..10], b"", &entry[..entry.len() - 1]] {
            let error = checked(bad).unwrap_err().to_string();
            assert!(error.contains("damaged on disk"), "{error}");
        }
    }
}

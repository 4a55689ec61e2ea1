//! hash: a salted digest of each object, as lowercase hex. The algorithm comes from
//! the init config (`algorithm` = `sha256` (default), `sha512` or `md5`), the salt
//! from each request's `etl_args`. Exports both shapes: the host streams large
//! objects and buffers small ones.
//! Run: `ais-wasm run --component "$(examples/hash/build.sh | tail -n1)" --config algorithm=sha512 --args pepper FILE`
use aistore_etl::{Buffered, Config, Error, Input, Object, Output, Streaming, Transform};
use sha2::Digest;

#[derive(Default, Clone, Copy)]
enum Algorithm {
    #[default]
    Sha256,
    Sha512,
    Md5,
}

#[derive(Default)]
struct Hash {
    algorithm: Algorithm,
}

impl Transform for Hash {
    fn init(&mut self, config: &Config) -> Result<(), Error> {
        self.algorithm = match config.get("algorithm").unwrap_or("sha256") {
            "sha256" => Algorithm::Sha256,
            "sha512" => Algorithm::Sha512,
            "md5" => Algorithm::Md5,
            other => {
                return Err(Error::failed(format!(
                    "unknown algorithm {other:?}: use sha256, sha512 or md5"
                )));
            }
        };
        Ok(())
    }
}

impl Hash {
    fn digest(&self, salt: &str, chunks: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
        fn run<D: Digest>(salt: &str, chunks: impl Iterator<Item = Vec<u8>>) -> Vec<u8> {
            let mut hasher = D::new();
            hasher.update(salt.as_bytes());
            chunks.for_each(|chunk| hasher.update(&chunk));
            hex(&hasher.finalize())
        }
        match self.algorithm {
            Algorithm::Sha256 => run::<sha2::Sha256>(salt, chunks),
            Algorithm::Sha512 => run::<sha2::Sha512>(salt, chunks),
            Algorithm::Md5 => run::<md5::Md5>(salt, chunks),
        }
    }
}

impl Buffered for Hash {
    fn transform(&mut self, data: Vec<u8>, object: &Object) -> Result<Vec<u8>, Error> {
        Ok(self.digest(object.args(), std::iter::once(data)))
    }
}

impl Streaming for Hash {
    fn transform_stream(
        &mut self,
        input: &mut Input<'_>,
        output: &mut Output<'_>,
        object: &Object,
    ) -> Result<(), Error> {
        let digest = self.digest(object.args(), std::iter::from_fn(|| input.next_chunk()));
        output.write(&digest);
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    bytes.iter().flat_map(|b| format!("{b:02x}").into_bytes()).collect()
}

aistore_etl::export!(Hash => buffered, streaming);

//! md5: replaces each object with its MD5 digest as 32 lowercase hex characters, like
//! AIStore's md5 ETL. Exports both shapes: the host buffers small objects and streams
//! large ones, so an object of any size is hashed in constant memory.
//! Run: `ais-wasm run --component "$(examples/md5/build.sh | tail -n1)" FILE`
use aistore_etl::{Buffered, Error, Input, Object, Output, Streaming, Transform};
use md5::{Digest, Md5};

#[derive(Default)]
struct Md5Transform;

impl Transform for Md5Transform {}

impl Buffered for Md5Transform {
    fn transform(&mut self, data: Vec<u8>, _object: &Object) -> Result<Vec<u8>, Error> {
        Ok(hex(&Md5::digest(&data)))
    }
}

impl Streaming for Md5Transform {
    fn transform_stream(
        &mut self,
        input: &mut Input<'_>,
        output: &mut Output<'_>,
        _object: &Object,
    ) -> Result<(), Error> {
        let mut md5 = Md5::new();
        while let Some(chunk) = input.next_chunk() {
            md5.update(&chunk);
        }
        output.write(&hex(&md5.finalize()));
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect()
}

aistore_etl::export!(Md5Transform => buffered, streaming);

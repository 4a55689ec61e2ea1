//! md5: replaces each object with its MD5 digest as 32 lowercase hex characters
//! (buffered), like AIStore's md5 ETL.
//! Run: `ais-wasm run --component "$(examples/md5/build.sh | tail -n1)" FILE`
use aistore_etl::{Buffered, Error, Object, Transform};
use md5::{Digest, Md5};

#[derive(Default)]
struct Md5Transform;

impl Transform for Md5Transform {}

impl Buffered for Md5Transform {
    fn transform(&mut self, data: Vec<u8>, _object: &Object) -> Result<Vec<u8>, Error> {
        Ok(hex(&Md5::digest(&data)))
    }
}

fn hex(bytes: &[u8]) -> Vec<u8> {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [DIGITS[usize::from(b >> 4)], DIGITS[usize::from(b & 0xf)]])
        .collect()
}

aistore_etl::export!(Md5Transform => buffered);

//! hello: answers `Hello World!` for every object (buffered), like AIStore's own
//! hello-world ETL.
//! Run: `ais-wasm run --component "$(examples/hello/build.sh | tail -n1)" FILE`
use aistore_etl::{Buffered, Error, Object, Transform};

#[derive(Default)]
struct Hello;

impl Transform for Hello {}

impl Buffered for Hello {
    fn transform(&mut self, _data: Vec<u8>, _object: &Object) -> Result<Vec<u8>, Error> {
        Ok(b"Hello World!".to_vec())
    }
}

aistore_etl::export!(Hello => buffered);

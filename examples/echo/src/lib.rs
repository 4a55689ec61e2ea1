//! echo: returns every object unchanged (buffered).
//! Run: `ais-wasm run --component "$(examples/echo/build.sh | tail -n1)" FILE`
use aistore_etl::{Buffered, Error, Object, Transform};

#[derive(Default)]
struct Echo;

impl Transform for Echo {}

impl Buffered for Echo {
    fn transform(&mut self, data: Vec<u8>, _object: &Object) -> Result<Vec<u8>, Error> {
        Ok(data)
    }
}

aistore_etl::export!(Echo => buffered);

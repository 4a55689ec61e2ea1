//! echo: returns every object unchanged. Exports both shapes: the host buffers small
//! objects and streams large ones (or ones of unknown size) chunk by chunk.
//! Run: `ais-wasm run --component "$(examples/echo/build.sh | tail -n1)" FILE`
use aistore_etl::{Buffered, Error, Input, Object, Output, Streaming, Transform};

#[derive(Default)]
struct Echo;

impl Transform for Echo {}

impl Buffered for Echo {
    fn transform(&mut self, data: Vec<u8>, _object: &Object) -> Result<Vec<u8>, Error> {
        Ok(data)
    }
}

impl Streaming for Echo {
    fn transform_stream(
        &mut self,
        input: &mut Input<'_>,
        output: &mut Output<'_>,
        _object: &Object,
    ) -> Result<(), Error> {
        while let Some(chunk) = input.next_chunk() {
            output.write(&chunk);
        }
        Ok(())
    }
}

aistore_etl::export!(Echo => buffered, streaming);

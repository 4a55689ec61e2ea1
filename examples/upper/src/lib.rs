//! upper: ASCII upper-cases each object chunk by chunk (streaming, constant memory).
//! Run: `ais-wasm run --component "$(examples/upper/build.sh | tail -n1)" FILE`
use aistore_etl::{Error, Input, Object, Output, Streaming, Transform};

#[derive(Default)]
struct Upper;

impl Transform for Upper {}

impl Streaming for Upper {
    fn transform_stream(
        &mut self,
        input: &mut Input<'_>,
        output: &mut Output<'_>,
        _object: &Object,
    ) -> Result<(), Error> {
        while let Some(mut chunk) = input.next_chunk() {
            chunk.make_ascii_uppercase();
            output.write(&chunk);
        }
        Ok(())
    }
}

aistore_etl::export!(Upper => streaming);

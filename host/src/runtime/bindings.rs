//! Host bindings generated from `wit/` for the union world `full`. Imports are async
//! and trappable so a host-io failure aborts the guest instead of reaching it.

wasmtime::component::bindgen!({
    path: "../wit",
    world: "full",
    imports: { default: async | trappable },
    exports: { default: async },
    with: {
        "aistore:etl/host-io.reader": super::host_io::InputStream,
        "aistore:etl/host-io.writer": super::host_io::OutputStream,
    },
});

pub(crate) use aistore::etl::types::TransformError;
pub(crate) use exports::aistore::etl::{buffered, lifecycle, streaming};

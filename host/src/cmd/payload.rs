//! `ais-wasm payload FILE.wasm`: print the ETL_WASM_PAYLOAD value, or explain which
//! delivery to use when the component is too large for an environment variable.

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use sha2::{Digest, Sha256};

use crate::config::PayloadArgs;
use crate::delivery::{ENV_VALUE_MAX, PAYLOAD_VAR, encode_payload, read_component_file};
use crate::runtime::check_shape;

pub fn payload(args: PayloadArgs) -> anyhow::Result<ExitCode> {
    let wasm = read_component_file(&args.component)?;
    check_shape(&wasm).with_context(|| args.component.display().to_string())?;
    let payload = encode_payload(&wasm)?;
    let sha256 = hex::encode(Sha256::digest(&wasm));
    if payload.len() > ENV_VALUE_MAX {
        eprintln!(
            "{} is {} bytes; its payload (zstd + base64) is {} characters, over the {ENV_VALUE_MAX} \
             one environment variable can hold on Linux.\n\
             Deliver it as a file or a URL instead, pinned by its hash:\n  \
             ETL_WASM_PATH=/path/to/component.wasm (a volume in the pod)\n  \
             ETL_WASM_URL=http(s)://host/path/component.wasm (for example an AIStore object URL)\n  \
             ETL_WASM_SHA256={sha256}",
            args.component.display(),
            wasm.len(),
            payload.len(),
        );
        return Ok(ExitCode::from(2));
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{payload}").context("writing the payload")?;
    eprintln!(
        "{PAYLOAD_VAR}: {} characters from {} bytes (zstd + base64), fits one environment \
         variable ({ENV_VALUE_MAX} max); sha256 {sha256}",
        payload.len(),
        wasm.len()
    );
    Ok(ExitCode::SUCCESS)
}

//! How a component reaches ais-wasm: an inline payload (`ETL_WASM_PAYLOAD`, base64 of
//! the component, raw or zstd/gzip-compressed), a file (`ETL_WASM_PATH`) or a URL
//! (`ETL_WASM_URL`), optionally pinned by `ETL_WASM_SHA256`. Also builds payloads for
//! `ais-wasm payload`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use base64::Engine as _;
use sha2::{Digest, Sha256};

/// Largest component accepted from any source, after decompression: a guard
/// against decompression bombs and runaway downloads.
pub const MAX_COMPONENT_SIZE: u64 = 512 * 1024 * 1024;

/// A download of the component that takes longer is given up: at start-up `/health`
/// would answer 503 for ever, and a reload would hold off every later one.
pub const DOWNLOAD_TIMEOUT: Duration = Duration::from_secs(300);

/// The variable that carries an inline component.
pub const PAYLOAD_VAR: &str = "ETL_WASM_PAYLOAD";

/// The longest value one environment variable can hold on Linux: `MAX_ARG_STRLEN`
/// (32 pages, 131,072 bytes) counts `NAME=`, the value and the terminating NUL.
pub const ENV_VALUE_MAX: usize = 131_072 - PAYLOAD_VAR.len() - 2;

const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// Where to get the component; exactly one must be given.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ComponentArgs {
    /// The component file (.wasm).
    #[arg(long = "component", env = "ETL_WASM_PATH", value_name = "FILE")]
    pub path: Option<PathBuf>,
    /// The component inline: base64 of the .wasm, raw or zstd/gzip-compressed (see
    /// `ais-wasm payload`).
    #[arg(
        long,
        env = "ETL_WASM_PAYLOAD",
        hide_env_values = true,
        value_name = "BASE64"
    )]
    pub payload: Option<String>,
    /// Download the component from this http(s) URL at start-up.
    #[arg(long, env = "ETL_WASM_URL", value_name = "URL")]
    pub url: Option<String>,
    /// Refuse to start unless the component's sha256 is this (hex).
    #[arg(long, env = "ETL_WASM_SHA256", value_name = "HEX")]
    pub sha256: Option<String>,
}

impl ComponentArgs {
    /// A short name of the source for messages: of a URL, only its origin (its path
    /// may carry an AIStore ETL secret).
    pub fn describe(&self) -> String {
        match (&self.path, &self.payload, &self.url) {
            (Some(path), _, _) => path.display().to_string(),
            (_, Some(_), _) => PAYLOAD_VAR.to_string(),
            (_, _, Some(url)) => match url::Url::parse(url) {
                Ok(url) => format!("the component at {}", url.origin().ascii_serialization()),
                Err(_) => "ETL_WASM_URL".to_string(),
            },
            _ => "the component".to_string(),
        }
    }

    /// Get the component's bytes from whichever source was given and check the pin.
    pub async fn fetch(&self, client: &reqwest::Client) -> anyhow::Result<Vec<u8>> {
        let wasm = match (&self.path, &self.payload, &self.url) {
            (Some(path), None, None) => read_file(path)?,
            (None, Some(payload), None) => decode_payload(payload)?,
            (None, None, Some(url)) => download(client, url).await?,
            (None, None, None) => bail!(
                "no component given: pass --component FILE, or set ETL_WASM_PATH, \
                 ETL_WASM_PAYLOAD or ETL_WASM_URL"
            ),
            _ => bail!(
                "more than one component source is set (--component/ETL_WASM_PATH, \
                 --payload/ETL_WASM_PAYLOAD, --url/ETL_WASM_URL); set exactly one"
            ),
        };
        if let Some(pin) = &self.sha256 {
            check_pin(&wasm, pin)?;
        }
        Ok(wasm)
    }
}

fn read_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let wasm = read_component_file(path)?;
    decompress(wasm).with_context(|| format!("component file {}", path.display()))
}

/// A component file's bytes: a regular file (a FIFO would hang the start, a device
/// never end) of at most `MAX_COMPONENT_SIZE`, as from the other sources.
pub fn read_component_file(path: &Path) -> anyhow::Result<Vec<u8>> {
    let cannot = || format!("cannot read the component file {}", path.display());
    let metadata = std::fs::metadata(path).with_context(cannot)?;
    if !metadata.is_file() {
        bail!(
            "{}: not a regular file (a directory, device or FIFO); give the component's \
             .wasm file",
            cannot()
        );
    }
    let mut wasm = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_COMPONENT_SIZE + 1).read_to_end(&mut wasm))
        .with_context(cannot)?;
    if wasm.len() as u64 > MAX_COMPONENT_SIZE {
        bail!("{}: it is larger than {MAX_COMPONENT_SIZE} bytes", cannot());
    }
    Ok(wasm)
}

/// Decode an inline payload: base64 (standard or URL-safe alphabet, padding and line
/// breaks optional) of a component, raw or compressed.
pub fn decode_payload(payload: &str) -> anyhow::Result<Vec<u8>> {
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let compact = compact.trim_end_matches('=');
    let engine = if compact.contains(['-', '_']) {
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
    } else {
        &base64::engine::general_purpose::STANDARD_NO_PAD
    };
    let bytes = engine.decode(compact).map_err(|e| {
        anyhow::anyhow!(
            "{PAYLOAD_VAR} is not valid base64 ({e}); produce it with `ais-wasm payload FILE.wasm`"
        )
    })?;
    decompress(bytes).with_context(|| format!("{PAYLOAD_VAR} decoded from base64"))
}

/// Undo zstd or gzip compression, detected by magic bytes; anything else is returned
/// as is (the runtime then checks it is a component).
fn decompress(bytes: Vec<u8>) -> anyhow::Result<Vec<u8>> {
    let reader: Box<dyn Read> = if bytes.starts_with(&ZSTD_MAGIC) {
        Box::new(zstd::stream::read::Decoder::new(bytes.as_slice()).context("zstd")?)
    } else if bytes.starts_with(&GZIP_MAGIC) {
        Box::new(flate2::read::GzDecoder::new(bytes.as_slice()))
    } else if bytes.len() as u64 > MAX_COMPONENT_SIZE {
        bail!("the component is larger than {MAX_COMPONENT_SIZE} bytes");
    } else {
        return Ok(bytes);
    };
    let mut out = Vec::new();
    reader
        .take(MAX_COMPONENT_SIZE + 1)
        .read_to_end(&mut out)
        .context("the compressed component is corrupt")?;
    if out.len() as u64 > MAX_COMPONENT_SIZE {
        bail!("the component decompresses to more than {MAX_COMPONENT_SIZE} bytes");
    }
    Ok(out)
}

/// `ETL_WASM_URL`, checked: an http or https URL (`spec` checks its `--url` so too).
pub fn component_url(url: &str) -> anyhow::Result<url::Url> {
    // Not quoted: it may carry an AIStore ETL secret.
    let parsed = url::Url::parse(url).context("ETL_WASM_URL is not a URL")?;
    if !matches!(parsed.scheme(), "http" | "https") {
        bail!(
            "ETL_WASM_URL must be an http or https URL, not {:?}",
            parsed.scheme()
        );
    }
    Ok(parsed)
}

async fn download(client: &reqwest::Client, url: &str) -> anyhow::Result<Vec<u8>> {
    let parsed = component_url(url)?;
    // Only the origin is logged: the path may carry an AIStore ETL secret.
    let origin = parsed.origin().ascii_serialization();
    let failed = |e: reqwest::Error| {
        let cause = match e.is_timeout() {
            true => format!("it took longer than {DOWNLOAD_TIMEOUT:?}"),
            false => crate::source::without_url(e),
        };
        anyhow::anyhow!(
            "cannot download the component from {origin}: {cause}; check ETL_WASM_URL and that \
             the server is reachable"
        )
    };
    let mut response = client
        .get(parsed)
        .timeout(DOWNLOAD_TIMEOUT)
        .send()
        .await
        .map_err(failed)?;
    if !response.status().is_success() {
        bail!(
            "downloading the component from {origin} failed with HTTP {}; check ETL_WASM_URL",
            response.status()
        );
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(failed)? {
        body.extend_from_slice(&chunk);
        if body.len() as u64 > MAX_COMPONENT_SIZE {
            bail!("the component at {origin} is larger than {MAX_COMPONENT_SIZE} bytes");
        }
    }
    decompress(body).with_context(|| format!("component downloaded from {origin}"))
}

fn check_pin(wasm: &[u8], pin: &str) -> anyhow::Result<()> {
    let actual = hex::encode(Sha256::digest(wasm));
    let expected = pin.trim().to_ascii_lowercase();
    if expected.len() != 64 || !expected.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "ETL_WASM_SHA256 {pin:?} is not a sha256 (64 hex digits); `ais-wasm payload \
             FILE.wasm` prints the component's"
        );
    }
    if actual != expected {
        bail!(
            "ETL_WASM_SHA256 does not match: expected {expected}, the component has {actual}; \
             deploy the component the pin was made for, or update the pin"
        );
    }
    Ok(())
}

/// An inline payload for `wasm`: zstd-compressed (level 19), then base64.
pub fn encode_payload(wasm: &[u8]) -> anyhow::Result<String> {
    let compressed = zstd::encode_all(wasm, 19).context("compressing the component")?;
    Ok(base64::engine::general_purpose::STANDARD.encode(compressed))
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMPONENT_HEADER: &[u8] = b"\0asm\x0d\x00\x01\x00rest";

    #[test]
    fn payload_round_trips_through_every_encoding() {
        let zstd = encode_payload(COMPONENT_HEADER).unwrap();
        assert_eq!(decode_payload(&zstd).unwrap(), COMPONENT_HEADER);

        let raw = base64::engine::general_purpose::STANDARD.encode(COMPONENT_HEADER);
        let wrapped: String = raw.chars().flat_map(|c| [c, '\n']).collect();
        assert_eq!(decode_payload(&wrapped).unwrap(), COMPONENT_HEADER);

        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, COMPONENT_HEADER).unwrap();
        let gz = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(gz.finish().unwrap());
        assert_eq!(decode_payload(&gz).unwrap(), COMPONENT_HEADER);
    }

    #[test]
    fn bad_payloads_say_what_is_wrong() {
        let error = format!("{:#}", decode_payload("not base64 at all!").unwrap_err());
        assert!(error.contains("is not valid base64"), "{error}");
        let corrupt =
            base64::engine::general_purpose::STANDARD.encode([0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]);
        let error = format!("{:#}", decode_payload(&corrupt).unwrap_err());
        assert!(error.contains("corrupt"), "{error}");
    }

    #[test]
    fn pin_mismatch_names_both_hashes() {
        let error = check_pin(b"abc", &"0".repeat(64)).unwrap_err().to_string();
        assert!(
            error.contains("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "{error}"
        );
        check_pin(
            b"abc",
            "BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD",
        )
        .unwrap();
    }
}

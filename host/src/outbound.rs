//! The HTTP client for every call ais-wasm makes to AIStore: fetching a component from
//! a URL, GETs from the target, and direct puts. Configured once from the variables
//! AIStore's own ETL runtimes read (protocol document §2.2).

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock};

use anyhow::{Context, bail};

/// Outbound authentication and TLS, from the environment.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct OutboundArgs {
    /// Sent as `Authorization: Bearer <token>` on every call to AIStore.
    #[arg(long, env = "AIS_AUTHN_TOKEN", hide_env_values = true, hide = true)]
    pub authn_token: Option<String>,
    /// Skip TLS certificate verification (1, t, true, y, yes, on).
    #[arg(long, env = "AIS_SKIP_VERIFY_CRT", hide = true)]
    pub skip_verify_crt: Option<String>,
    /// CA bundle (PEM) for outbound TLS.
    #[arg(long, env = "AIS_CLIENT_CA", hide = true)]
    pub client_ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS; used together with AIS_CRT_KEY.
    #[arg(long, env = "AIS_CRT", hide = true)]
    pub crt: Option<PathBuf>,
    /// Client certificate key (PEM).
    #[arg(long, env = "AIS_CRT_KEY", hide = true)]
    pub crt_key: Option<PathBuf>,
}

/// AIStore's truthy spellings (`cos.IsParseBool`).
pub fn truthy(value: &str) -> bool {
    matches!(
        value.trim().to_ascii_lowercase().as_str(),
        "1" | "t" | "true" | "y" | "yes" | "on"
    )
}

impl OutboundArgs {
    fn skip_verify(&self) -> bool {
        // AIS_SKIP_VERIFY is the legacy name of AIS_SKIP_VERIFY_CRT.
        let legacy = std::env::var("AIS_SKIP_VERIFY").ok();
        self.skip_verify_crt
            .as_deref()
            .or(legacy.as_deref())
            .is_some_and(truthy)
    }

    /// The client that downloads a component (`ETL_WASM_URL`): redirects followed,
    /// as a release URL often is one.
    pub fn client(&self) -> anyhow::Result<reqwest::Client> {
        self.builder()?.build().context("building the HTTP client")
    }

    /// The client of the protocol's calls, target GETs and direct puts: no
    /// redirects. AIStore never answers them with one, and following it would turn
    /// a PUT into a GET (301-303) and report the object delivered unwritten.
    fn protocol_client(&self) -> anyhow::Result<reqwest::Client> {
        self.builder()?
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .context("building the HTTP client")
    }

    /// Keep-alive pooled, no transparent decompression (AIStore stores bytes as
    /// sent), auth header preset.
    fn builder(&self) -> anyhow::Result<reqwest::ClientBuilder> {
        let mut builder = client_builder()
            .pool_max_idle_per_host(256)
            .tcp_nodelay(true)
            .danger_accept_invalid_certs(self.skip_verify());
        if let Some(token) = &self.authn_token {
            let mut headers = reqwest::header::HeaderMap::new();
            let mut value = reqwest::header::HeaderValue::from_str(&format!("Bearer {token}"))
                .context("AIS_AUTHN_TOKEN is not a valid header value")?;
            value.set_sensitive(true);
            headers.insert(reqwest::header::AUTHORIZATION, value);
            builder = builder.default_headers(headers);
        }
        if let Some(ca) = &self.client_ca {
            let pem = std::fs::read(ca)
                .with_context(|| format!("reading AIS_CLIENT_CA {}", ca.display()))?;
            let certs = reqwest::Certificate::from_pem_bundle(&pem)
                .with_context(|| format!("AIS_CLIENT_CA {} is not a PEM bundle", ca.display()))?;
            if certs.is_empty() {
                bail!(
                    "AIS_CLIENT_CA {} holds no PEM certificate (-----BEGIN CERTIFICATE-----)",
                    ca.display()
                );
            }
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        match (&self.crt, &self.crt_key) {
            (None, None) => {}
            (Some(_), None) | (None, Some(_)) => bail!(
                "only one of AIS_CRT and AIS_CRT_KEY is set: a client certificate needs both \
                 (the certificate and its key), or neither"
            ),
            (Some(crt), Some(key)) => {
                let mut pem = std::fs::read(crt)
                    .with_context(|| format!("reading AIS_CRT {}", crt.display()))?;
                pem.extend(
                    std::fs::read(key)
                        .with_context(|| format!("reading AIS_CRT_KEY {}", key.display()))?,
                );
                builder =
                    builder
                        .identity(reqwest::Identity::from_pem(&pem).context(
                            "AIS_CRT and AIS_CRT_KEY are not a PEM certificate and key",
                        )?);
            }
        }
        Ok(builder)
    }
}

/// The system's CA roots (`SSL_CERT_FILE` and `SSL_CERT_DIR`, else the distribution's
/// store), read once. reqwest reads them for every client it builds (a bundle and 292
/// files here), and `serve` builds three at start-up and one more per serving thread:
/// starts from the compile cache took 19-21 ms, 14-15 with the roots read once, 9-11
/// with no roots at all (`ais-wasm bench start`).
static SYSTEM_ROOTS: LazyLock<Vec<reqwest::Certificate>> = LazyLock::new(|| {
    let found = rustls_native_certs::load_native_certs();
    for error in &found.errors {
        tracing::warn!("reading the system's CA certificates: {error}");
    }
    found
        .certs
        .iter()
        // Skipped, as reqwest skips those it reads: stores hold old roots rustls
        // cannot use, and one added to a client fails its build.
        .filter(|der| webpki::anchor_from_trusted_cert(der).is_ok())
        .filter_map(|der| reqwest::Certificate::from_der(der).ok())
        .collect()
});

/// A client builder trusting the system's CA roots.
pub fn client_builder() -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder().tls_built_in_native_certs(false);
    (SYSTEM_ROOTS.iter()).fold(builder, |builder, root| {
        builder.add_root_certificate(root.clone())
    })
}

/// The start of an error answer's body, at most `at_most` bytes of it: enough to say
/// what went wrong, and no more is read however long the body is. ETL secrets in it
/// are masked: AIStore's error bodies quote the request's path (`url_path`), which
/// for the per-ETL endpoint carries one, and the body goes on to logs and users.
pub async fn body_head(mut response: reqwest::Response, at_most: usize) -> bytes::Bytes {
    let mut head = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = at_most - head.len();
        head.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if head.len() == at_most {
            break;
        }
    }
    mask_etl_secrets(&head).into()
}

/// `.../_object/<etl>/<secret>...` with the secret as `***`.
fn mask_etl_secrets(text: &[u8]) -> Vec<u8> {
    const ENDPOINT: &[u8] = b"/_object/";
    let ends = |b: &u8| matches!(b, b'/' | b'"' | b'?' | b'&' | b'#') || b.is_ascii_whitespace();
    let mut masked = Vec::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.windows(ENDPOINT.len()).position(|w| w == ENDPOINT) {
        let after = at + ENDPOINT.len();
        let name = rest[after..]
            .iter()
            .position(ends)
            .unwrap_or(rest.len() - after);
        let secret_at = after + name + 1;
        if rest.get(after + name) != Some(&b'/') {
            masked.extend_from_slice(&rest[..after + name]);
            rest = &rest[after + name..];
            continue;
        }
        let secret = rest[secret_at..]
            .iter()
            .position(ends)
            .unwrap_or(rest.len() - secret_at);
        masked.extend_from_slice(&rest[..secret_at]);
        if secret > 0 {
            masked.extend_from_slice(b"***");
        }
        rest = &rest[secret_at + secret..];
    }
    masked.extend_from_slice(rest);
    masked
}

/// The outbound client, one per thread that calls out.
///
/// A pooled connection is driven by a task on the runtime that opened it. With one
/// pool shared by the serving threads (each its own runtime, `protocol::serve`), a
/// request on one thread often went out on a connection another thread drives, and
/// woke that thread twice per call: a quarter of the throughput of hpull from the
/// target and of direct puts.
#[derive(Clone)]
pub struct Clients {
    /// Tells this set's clients from another's in a thread's cache.
    id: usize,
    args: Arc<OutboundArgs>,
    /// Built up front, so that a bad configuration stops the start; also the
    /// fallback should a later build fail (a CA file removed since).
    first: reqwest::Client,
}

thread_local! {
    static HERE: RefCell<Vec<(usize, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

impl Clients {
    /// Also the calling thread's client: it is not built a second time.
    pub fn new(args: &OutboundArgs) -> anyhow::Result<Clients> {
        static IDS: AtomicUsize = AtomicUsize::new(0);
        let clients = Clients {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            first: args.protocol_client()?,
            args: Arc::new(args.clone()),
        };
        HERE.with_borrow_mut(|here| here.push((clients.id, clients.first.clone())));
        Ok(clients)
    }

    /// The calling thread's client, built on its first call.
    pub fn here(&self) -> reqwest::Client {
        HERE.with_borrow_mut(|clients| {
            if let Some((_, client)) = clients.iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            let client = self.args.protocol_client().unwrap_or_else(|error| {
                tracing::warn!("using the first outbound client on this thread: {error:#}");
                self.first.clone()
            });
            clients.push((self.id, client.clone()));
            client
        })
    }
}

#[cfg(test)]
mod tests {
    use super::mask_etl_secrets;

    #[test]
    fn etl_secrets_in_error_bodies_are_masked() {
        let body = br#"{"message":"ais://src/obj does not exist","url_path":"/v1/etl/_object/e/SECRETxyzq/ais/@#/src/obj","status":404}"#;
        assert_eq!(
            mask_etl_secrets(body),
            br#"{"message":"ais://src/obj does not exist","url_path":"/v1/etl/_object/e/***/ais/@#/src/obj","status":404}"#
        );
        for (text, masked) in [
            (
                &b"GET /v1/etl/_object/e/s3cr3t failed"[..],
                &b"GET /v1/etl/_object/e/*** failed"[..],
            ),
            (
                b"/_object/a/x /_object/b/y?z",
                b"/_object/a/*** /_object/b/***?z",
            ),
            (
                b"no endpoint /_object/ here /_object/e",
                b"no endpoint /_object/ here /_object/e",
            ),
            (b"/_object/e/", b"/_object/e/"),
            (b"", b""),
        ] {
            assert_eq!(
                mask_etl_secrets(text),
                masked,
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }
}

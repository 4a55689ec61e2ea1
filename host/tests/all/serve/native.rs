//! `serve --native`: the benchmarks' baseline answers exactly like the examples it
//! stands in for, behind the same server code.

use md5::Digest;

use super::harness::ServerBuilder;

/// A small object (buffered where the transform has that shape) and one of 2 MiB
/// (streamed: every native transform has that shape).
#[tokio::test]
async fn native_baselines_match_the_examples() {
    let client = reqwest::Client::new();
    let fox = b"The quick brown fox jumps over the lazy dog".to_vec();
    let big: Vec<u8> = (0..2_000_000u32).map(|i| (i % 251) as u8).collect();
    let md5 = |data: &[u8]| hex::encode(md5::Md5::digest(data)).into_bytes();
    for native in ["echo", "md5", "upper"] {
        let server = ServerBuilder::new("examples/echo")
            .arg("--native")
            .arg(native)
            .start()
            .await;
        for object in [&fox, &big] {
            let expected = match native {
                "echo" => object.clone(),
                "md5" => md5(object),
                _ => object.to_ascii_uppercase(),
            };
            let response = client
                .put(server.url("/b/object"))
                .body(object.clone())
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200, "{native}");
            let body = response.bytes().await.unwrap();
            assert!(body == expected, "{native}, {} bytes", object.len());
        }
    }
    assert_eq!(md5(&fox), b"9e107d9d372bb6826bd81d3542a419d6");
}

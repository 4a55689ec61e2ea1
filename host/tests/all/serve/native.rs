//! `serve --native`: the benchmarks' baseline answers exactly like the examples it
//! stands in for, behind the same server code.

use super::harness::ServerBuilder;

#[tokio::test]
async fn native_baselines_match_the_examples() {
    let client = reqwest::Client::new();
    let fox = b"The quick brown fox jumps over the lazy dog".to_vec();
    for (native, expected) in [
        ("echo", fox.clone()),
        ("md5", b"9e107d9d372bb6826bd81d3542a419d6".to_vec()),
        ("upper", fox.to_ascii_uppercase()),
    ] {
        let server = ServerBuilder::new("examples/echo")
            .arg("--native")
            .arg(native)
            .start()
            .await;
        let response = client
            .put(server.url("/b/fox"))
            .body(fox.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{native}");
        assert_eq!(response.bytes().await.unwrap(), expected, "{native}");
    }
}

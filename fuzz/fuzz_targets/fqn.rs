//! `etl_fqn` decoding and confinement (`fqn::decode`, `FqnPolicy::check`): never
//! panics; a decoded path is absolute and normalised; what a policy with roots
//! accepts lies under a root and is accepted without roots too; a legitimate
//! object FQN, however odd its name, is never refused; and what is accepted has its
//! chunk manifest (`ObjectPath::chunk_manifest`: the same path but for one `%ob`
//! made `%ut`) and uname (`ObjectPath::uname`), the uname ending in the name.
#![no_main]

use std::path::{Component, Path, PathBuf};

use ais_wasm_fuzz::fqn::{self, FqnPolicy};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let any = FqnPolicy::any_mountpath();
    let roots = [PathBuf::from("/data/mp1"), PathBuf::from("/ais")];
    let under = FqnPolicy::with_resolved_roots(roots.to_vec());

    // Whatever arrives on the wire.
    let value = String::from_utf8_lossy(data);
    let path = fqn::decode(&value);
    assert!(path.has_root(), "{path:?}");
    assert!(
        path.components()
            .skip(1)
            .all(|c| matches!(c, Component::Normal(_))),
        "{path:?}"
    );
    let accepted_any = any.check(&path);
    if let Ok(object) = &accepted_any {
        let manifest = object.chunk_manifest();
        let changed: Vec<_> = (path.components().zip(manifest.components()))
            .filter(|(a, b)| a != b)
            .collect();
        assert_eq!(manifest.components().count(), path.components().count());
        assert_eq!(changed.len(), 1, "{path:?} {manifest:?}");
        assert_eq!(changed[0].1.as_os_str(), "%ut", "{path:?} {manifest:?}");
        assert!(!object.uname().is_empty(), "{path:?}");
    }
    let accepted_any = accepted_any.is_ok();
    if under.check(&path).is_ok() {
        assert!(roots.iter().any(|root| path.starts_with(root)), "{path:?}");
        assert!(accepted_any, "{path:?}");
    }

    // The FQN of an object with these bytes as its name, as a target sends it.
    use std::os::unix::ffi::OsStrExt;
    let fqn = [b"/data/mp1/@ais/#ns/bucket/%ob/", data].concat();
    let lexical = Path::new(std::ffi::OsStr::from_bytes(&fqn));
    let wire = ais_wasm_fuzz::wire::path_escape_bytes(&fqn);
    let decoded = fqn::decode(&wire);
    // Root, data, mp1, @ais, #ns, bucket, %ob: then at least one component of name,
    // and no NUL byte, which no file name holds.
    let plain_name = lexical.components().count() > 7
        && !lexical
            .components()
            .any(|c| matches!(c, Component::ParentDir | Component::CurDir))
        && !data.starts_with(b"/")
        && !data.contains(&0);
    if plain_name {
        assert_eq!(decoded, lexical, "{wire:?}");
        let object = under.check(&decoded);
        assert!(object.is_ok(), "{decoded:?}: {object:?}");
        let uname = object.unwrap().uname();
        let name = decoded.as_os_str().as_bytes();
        let name = &name[b"/data/mp1/@ais/#ns/bucket/%ob/".len()..];
        assert_eq!(uname, [b"ais/@#ns/bucket/", name].concat(), "{decoded:?}");
    }
});

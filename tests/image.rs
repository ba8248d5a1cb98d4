//! The container image: the Dockerfile's build stage runs its steps on a scratch copy laid out as its
//! COPY lines lay it out (so a Dockerfile that would not build fails here), and the runtime image is
//! packed from it without a Docker engine (`tests/support/dockerfile.py`). The image's binary then
//! runs from the image's own files, as its user.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// Builds the image once per test binary; returns the archive's path.
fn image() -> &'static Path {
    static IMAGE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR")).join("restart-watcher-image.tar");
        let status = Command::new("tests/support/dockerfile.py")
            .arg("image")
            .arg(&out)
            .arg("registry.test/restart-watcher:0.1.0")
            .status()
            .expect("run tests/support/dockerfile.py");
        assert!(status.success(), "the Dockerfile does not build (its failing step is above)");
        out
    })
}

/// The image unpacked: its config and a folder with its one layer's files.
fn unpack() -> (Value, PathBuf) {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("image-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("rootfs")).unwrap();
    let run = |cmd: &mut Command| assert!(cmd.status().unwrap().success(), "{cmd:?}");
    run(Command::new("tar").arg("-xf").arg(image()).arg("-C").arg(&dir));
    let blob = |digest: &str| dir.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap())
            .unwrap();
    let config: Value =
        serde_json::from_slice(&std::fs::read(blob(manifest["config"]["digest"].as_str().unwrap())).unwrap()).unwrap();
    for layer in manifest["layers"].as_array().unwrap() {
        run(Command::new("tar")
            .arg("-xzf")
            .arg(blob(layer["digest"].as_str().unwrap()))
            .arg("-C")
            .arg(dir.join("rootfs")));
    }
    (config, dir)
}

#[test]
#[ignore = "needs the loopback cluster: tests/run.sh"]
fn the_dockerfile_builds_and_its_image_runs_as_its_user_with_its_entrypoint() {
    let (config, dir) = unpack();
    let c = &config["config"];
    assert_eq!(c["Entrypoint"], serde_json::json!(["/usr/local/bin/restart-watcher"]));
    assert_eq!(c["Cmd"], serde_json::json!(["run"]));
    assert_eq!(c["User"], "65532:65532");
    assert!(c["ExposedPorts"].get("9090/tcp").is_some(), "{c}");
    // The binary runs from the image's files alone (its glibc, libgcc), as user 65532.
    let rootfs = dir.join("rootfs");
    let out = Command::new("chroot")
        .arg("--userspec=65532:65532")
        .arg(&rootfs)
        .args(["/usr/local/bin/restart-watcher", "--version"])
        .output()
        .expect("chroot");
    assert!(out.status.success(), "the image's binary does not run: {}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("restart-watcher 0.1.0"));
    assert!(rootfs.join("etc/ssl/certs/ca-certificates.crt").is_file(), "CA certificates");
    let passwd = std::fs::read_to_string(rootfs.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532"), "{passwd}");
    let _ = std::fs::remove_dir_all(&dir);
}

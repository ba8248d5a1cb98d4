#!/usr/bin/env python3
"""Packs an OCI image archive (an image layout in a tar) from files, with no container engine.

    oci-image.py OUT.tar NAME [--entrypoint JSON] [--cmd JSON] [--user USER] [--env K=V]...
                 [--workdir DIR] [--expose PORT/tcp]... [--dir PATH:MODE]... FILE[=PATH_IN_IMAGE][:MODE]...

One layer, byte-for-byte reproducible (sorted entries, time 0, owner root, gzip without a name
or time). Parent directories are added as needed. `ctr images import OUT.tar` names the image
NAME (its `io.containerd.image.name` annotation). A FILE given as `@DIR` copies DIR's tree.
"""
import argparse, gzip, hashlib, io, json, os, stat, sys, tarfile


def layer(entries, empty_dirs):
    """entries: {path_in_image: (source_path, mode)}; empty_dirs: {path: mode}; returns the
    uncompressed tar's bytes."""
    buf = io.BytesIO()
    dirs = {d.strip("/") for d in empty_dirs}
    for path in entries:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            dirs.add("/".join(parts[:i]))
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, empty_dirs.get("/" + d, 0o755), 0
            tar.addfile(info)
        for path in sorted(entries):
            source, mode = entries[path]
            info = tarfile.TarInfo(path.strip("/"))
            info.mtime = 0
            if os.path.islink(source) and not mode:
                info.type, info.linkname, info.mode = tarfile.SYMTYPE, os.readlink(source), 0o777
                tar.addfile(info)
                continue
            with open(source, "rb") as f:
                data = f.read()
            info.size = len(data)
            info.mode = mode or stat.S_IMODE(os.stat(source).st_mode)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def blob(blobs, data):
    digest = hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return "sha256:" + digest


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("name")
    ap.add_argument("--entrypoint", type=json.loads, default=None)
    ap.add_argument("--cmd", type=json.loads, default=None)
    ap.add_argument("--user", default=None)
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir", default=None)
    ap.add_argument("--expose", action="append", default=[])
    ap.add_argument("--dir", action="append", default=[], help="PATH:MODE, an empty directory")
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()

    entries = {}
    for spec in a.files:
        mode = None
        if ":" in spec.rsplit("=", 1)[-1]:
            spec, m = spec.rsplit(":", 1)
            mode = int(m, 8)
        source, _, target = spec.partition("=")
        if source.startswith("@"):
            root = source[1:]
            for base, _, names in os.walk(root):
                for n in names:
                    full = os.path.join(base, n)
                    entries[os.path.join(target or "/", os.path.relpath(full, root))] = (full, mode)
            continue
        if not os.path.exists(source):
            sys.exit(f"oci-image.py: {source} does not exist")
        entries[target or source] = (source, mode)

    empty_dirs = {d.rsplit(":", 1)[0]: int(d.rsplit(":", 1)[1], 8) for d in a.dir}
    raw = layer(entries, empty_dirs)
    gz = io.BytesIO()
    with gzip.GzipFile(fileobj=gz, mode="wb", filename="", mtime=0) as z:
        z.write(raw)
    blobs = {}
    layer_digest = blob(blobs, gz.getvalue())
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {k: v for k, v in {
            "Entrypoint": a.entrypoint, "Cmd": a.cmd, "User": a.user,
            "Env": a.env or ["PATH=/usr/local/bin:/usr/bin:/bin"], "WorkingDir": a.workdir,
            "ExposedPorts": {p: {} for p in a.expose} or None,
        }.items() if v is not None},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(raw).hexdigest()]},
        "history": [{"created_by": "tests/support/oci-image.py"}],
    }
    config_bytes = json.dumps(config, sort_keys=True).encode()
    config_digest = blob(blobs, config_bytes)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_digest, "size": len(config_bytes)},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": layer_digest, "size": len(gz.getvalue())}],
    }
    manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
    manifest_digest = blob(blobs, manifest_bytes)
    tag = a.name.rsplit(":", 1)[1] if ":" in a.name.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": manifest_digest,
            "size": len(manifest_bytes), "platform": {"architecture": "amd64", "os": "linux"},
            "annotations": {"io.containerd.image.name": a.name, "org.opencontainers.image.ref.name": tag},
        }],
    }
    with tarfile.open(a.out, "w", format=tarfile.PAX_FORMAT) as tar:
        def add(name, data):
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(data), 0, 0o644
            tar.addfile(info, io.BytesIO(data))
        add("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        add("index.json", json.dumps(index, sort_keys=True).encode())
        for digest in sorted(blobs):
            add(f"blobs/sha256/{digest}", blobs[digest])
    print(manifest_digest)


if __name__ == "__main__":
    main()

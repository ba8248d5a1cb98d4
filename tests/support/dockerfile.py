#!/usr/bin/env python3
"""The repository's Dockerfile without a Docker engine.

    dockerfile.py build-stage            runs the build stage's steps; prints the binary's path
    dockerfile.py image OUT.tar NAME     the build stage, then the runtime image as an OCI archive

`build-stage` copies what the stage's COPY lines copy from the repository into a scratch folder (its
WORKDIR) and runs each RUN line there with /bin/sh -c, as `docker build` would: a Dockerfile whose
build stage would fail fails here. Cargo's target folder is kept under
~/.cache/restart-watcher/dockerfile-target/KEY (KEY: the Rust toolchain, Cargo.lock and the
Dockerfile), so a warm run rebuilds only the agent.

`image` packs the runtime stage without its base image (kept under ~/.cache/restart-watcher/images,
keyed by everything it is made of, so an unchanged tree is not built twice): on the Dockerfile's `FROM
gcr.io/distroless/cc-debian12:nonroot` it puts what that base holds and the binary needs (glibc,
libgcc, CA certificates, the users root, nobody and nonroot 65532, /tmp), taken from this Debian
machine; then the stage's COPY --from=build files and its USER, ENTRYPOINT, CMD and EXPOSE.
"""
import hashlib, json, os, shlex, shutil, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
DOCKERFILE = os.path.join(ROOT, "Dockerfile")
BASE = "gcr.io/distroless/cc-debian12:nonroot"


def instructions(path):
    """(instruction, argument text) per logical line, continuations joined, comments dropped."""
    out, pending = [], ""
    for line in open(path):
        line = line.rstrip("\n")
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        word, _, rest = text.partition(" ")
        out.append((word.upper(), rest.strip()))
    return out


def stages(path):
    """[(name, base, [(instruction, argument)])] in order."""
    result = []
    for word, rest in instructions(path):
        if word == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) > 2 and parts[1].upper() == "AS" else str(len(result))
            result.append((name, parts[0], []))
        elif result:
            result[-1][2].append((word, rest))
    return result


def target_dir():
    rustc = subprocess.run(["rustc", "-V"], capture_output=True, text=True, check=True).stdout
    key = hashlib.sha256()
    for part in (rustc.encode(), open(os.path.join(ROOT, "Cargo.lock"), "rb").read(), open(DOCKERFILE, "rb").read()):
        key.update(part)
    cache = os.environ.get("RW_CACHE_DIR", os.path.expanduser("~/.cache/restart-watcher"))
    return os.path.join(cache, "dockerfile-target", key.hexdigest()[:16])


def copy_in(args, workdir):
    """COPY SRC... DEST from the repository into the scratch WORKDIR."""
    words = shlex.split(args)
    if any(w.startswith("--from") for w in words):
        raise SystemExit(f"dockerfile.py: the build stage copies from another stage: {args}")
    *sources, dest = words
    dest_path = os.path.join(workdir, dest)
    for src in sources:
        full = os.path.join(ROOT, src)
        if not os.path.exists(full):
            raise SystemExit(f"dockerfile.py: COPY {src}: not in the repository")
        target = os.path.join(dest_path, os.path.basename(src.rstrip("/"))) if dest.endswith("/") or len(sources) > 1 else dest_path
        if os.path.isdir(full):
            shutil.copytree(full, dest_path if not dest.endswith("/") else target, dirs_exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            shutil.copy2(full, target)


def build_stage():
    """Runs the build stage in a scratch folder; returns (the stage's name, its cargo target dir)."""
    name, base, steps = stages(DOCKERFILE)[0]
    scratch = tempfile.mkdtemp(prefix="rw-dockerfile-")
    workdir = scratch
    env = dict(os.environ, CARGO_TARGET_DIR=target_dir())
    try:
        for word, args in steps:
            if word == "WORKDIR":
                workdir = os.path.join(scratch, args.lstrip("/"))
                os.makedirs(workdir, exist_ok=True)
            elif word == "COPY":
                copy_in(args, workdir)
            elif word == "RUN":
                print(f"dockerfile.py: RUN {args}", file=sys.stderr)
                done = subprocess.run(["/bin/sh", "-c", args], cwd=workdir, env=env)
                if done.returncode != 0:
                    raise SystemExit(f"dockerfile.py: the build stage's step failed (exit {done.returncode}): RUN {args}")
            elif word in ("ENV", "ARG"):
                raise SystemExit(f"dockerfile.py: {word} in the build stage is not handled here; add it")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return name, env["CARGO_TARGET_DIR"]


def base_files(binary):
    """What the distroless cc base gives this binary: its shared libraries, CA certificates, users."""
    files = []
    ldd = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True).stdout
    for line in ldd.splitlines():
        parts = line.split()
        lib = parts[2] if "=>" in parts and len(parts) > 2 and parts[2].startswith("/") else parts[0]
        if lib.startswith("/"):
            real = os.path.realpath(lib)
            files.append(f"{real}={lib}")
    files.append("/etc/ssl/certs/ca-certificates.crt=/etc/ssl/certs/ca-certificates.crt")
    return files


def image_key(name):
    """What the image is made of: the build stage's COPY sources, the Dockerfile, these scripts, the
    Rust toolchain, the machine's glibc and the image's name. The same key is the same image."""
    key = hashlib.sha256()
    key.update(name.encode())
    for cmd in (["rustc", "-V"], ["ldd", "--version"]):
        key.update(subprocess.run(cmd, capture_output=True, text=True).stdout.encode())
    paths = [DOCKERFILE, os.path.abspath(__file__), os.path.join(ROOT, "tests/support/oci-image.py")]
    for word, args in stages(DOCKERFILE)[0][2]:
        if word == "COPY":
            paths += [os.path.join(ROOT, src) for src in shlex.split(args)[:-1]]
    for path in paths:
        files = [path] if os.path.isfile(path) else sorted(os.path.join(b, f) for b, _, fs in os.walk(path) for f in fs)
        for f in files:
            key.update(os.path.relpath(f, ROOT).encode() + b"\0" + open(f, "rb").read())
    return key.hexdigest()[:16]


def image(out, name):
    """The image, from ~/.cache/restart-watcher/images when the same inputs built it before."""
    cache = os.path.join(os.environ.get("RW_CACHE_DIR", os.path.expanduser("~/.cache/restart-watcher")), "images")
    cached = os.path.join(cache, image_key(name) + ".tar")
    if not os.path.exists(cached):
        os.makedirs(cache, exist_ok=True)
        partial = f"{cached}.{os.getpid()}"
        build_image(partial, name)
        os.replace(partial, cached)
    shutil.copyfile(cached, out)


def build_image(out, name):
    stage, target = build_stage()
    runtime_name, base, steps = stages(DOCKERFILE)[-1]
    if base != BASE:
        raise SystemExit(f"dockerfile.py: the runtime stage is FROM {base}; this script knows only {BASE}")
    tmp = tempfile.mkdtemp(prefix="rw-image-")
    try:
        etc = os.path.join(tmp, "etc")
        os.makedirs(etc)
        with open(os.path.join(etc, "passwd"), "w") as f:
            f.write("root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n"
                    "nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n")
        with open(os.path.join(etc, "group"), "w") as f:
            f.write("root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n")
        files = [f"{etc}/passwd=/etc/passwd:644", f"{etc}/group=/etc/group:644"]
        config = {"entrypoint": None, "cmd": None, "user": None, "expose": []}
        binary = None
        for word, args in steps:
            if word == "COPY":
                words = shlex.split(args)
                if not words[0].startswith(f"--from={stage}"):
                    raise SystemExit(f"dockerfile.py: the runtime stage copies from elsewhere than {stage}: {args}")
                src, dest = words[1], words[2]
                if not src.startswith("/src/target/"):
                    raise SystemExit(f"dockerfile.py: COPY {src}: only the build's target folder is known here")
                binary = os.path.join(target, src[len("/src/target/"):])
                files.append(f"{binary}={dest}:755")
            elif word == "USER":
                config["user"] = args
            elif word == "ENTRYPOINT":
                config["entrypoint"] = json.loads(args)
            elif word == "CMD":
                config["cmd"] = json.loads(args)
            elif word == "EXPOSE":
                config["expose"] += [p if "/" in p else f"{p}/tcp" for p in args.split()]
        if binary is None:
            raise SystemExit("dockerfile.py: the runtime stage copies no binary")
        files += base_files(binary)
        cmd = [os.path.join(ROOT, "tests/support/oci-image.py"), out, name, "--dir", "/tmp:1777", "--dir", "/home/nonroot:755",
               "--entrypoint", json.dumps(config["entrypoint"]), "--cmd", json.dumps(config["cmd"]), "--user", config["user"]]
        for p in config["expose"]:
            cmd += ["--expose", p]
        subprocess.run(cmd + files, check=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    if len(sys.argv) >= 2 and sys.argv[1] == "build-stage":
        _, target = build_stage()
        print(os.path.join(target, "release", "restart-watcher"))
    elif len(sys.argv) == 4 and sys.argv[1] == "image":
        image(sys.argv[2], sys.argv[3])
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main()

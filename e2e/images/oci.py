"""Write an OCI image archive (an OCI image layout in one tar) from layer tars.

What `podman save --format oci-archive` writes, without a container engine:
uncompressed layer blobs, an image config, a manifest and an index whose
annotations name the image, so `ctr -n k8s.io images import` tags it.

    python3 oci.py --out img.tar --ref localhost/slipway/pause:abc \
        --layer pause.tar --entrypoint /pause --user 65535:65535
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def _blob(data: bytes) -> tuple[str, bytes]:
    return "sha256:" + hashlib.sha256(data).hexdigest(), data


def write_archive(
    out: Path,
    ref: str,
    layers: list[Path],
    entrypoint: list[str],
    cmd: list[str],
    env: list[str],
    user: str,
    workdir: str,
    ports: list[str],
) -> None:
    layer_digests = [(p, "sha256:" + _sha256_file(p)) for p in layers]
    config = {
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": entrypoint,
            "Cmd": cmd or None,
            "Env": env,
            "User": user,
            "WorkingDir": workdir,
            "ExposedPorts": {p: {} for p in ports} or None,
        },
        "rootfs": {"type": "layers", "diff_ids": [d for _, d in layer_digests]},
        "history": [{"created_by": f"e2e/images/build.sh ({p.name})"} for p in layers],
    }
    config["config"] = {k: v for k, v in config["config"].items() if v}  # type: ignore[attr-defined]
    config_digest, config_bytes = _blob(json.dumps(config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": len(config_bytes)},
        "layers": [
            {"mediaType": MEDIA_LAYER, "digest": d, "size": p.stat().st_size}
            for p, d in layer_digests
        ],
    }
    manifest_digest, manifest_bytes = _blob(json.dumps(manifest, sort_keys=True).encode())
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {
                "mediaType": MEDIA_MANIFEST,
                "digest": manifest_digest,
                "size": len(manifest_bytes),
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    fd, tmp_name = tempfile.mkstemp(dir=out.parent, prefix=out.name + ".")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with tarfile.open(tmp, "w") as tar:
            _add_bytes(tar, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
            _add_bytes(tar, "index.json", json.dumps(index, sort_keys=True).encode())
            for digest, data in ((config_digest, config_bytes), (manifest_digest, manifest_bytes)):
                _add_bytes(tar, "blobs/sha256/" + digest.split(":", 1)[1], data)
            for path, digest in layer_digests:
                tar.add(str(path), arcname="blobs/sha256/" + digest.split(":", 1)[1])
        shutil.move(str(tmp), str(out))
    finally:
        tmp.unlink(missing_ok=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--ref", required=True, help="full image name, e.g. localhost/x/y:tag")
    p.add_argument("--layer", type=Path, action="append", required=True, help="bottom first")
    p.add_argument("--entrypoint", action="append", default=[])
    p.add_argument("--cmd", action="append", default=[])
    p.add_argument("--env", action="append", default=[])
    p.add_argument("--user", default="")
    p.add_argument("--workdir", default="")
    p.add_argument("--port", action="append", default=[], help="e.g. 8080/tcp")
    a = p.parse_args()
    write_archive(a.out, a.ref, a.layer, a.entrypoint, a.cmd, a.env, a.user, a.workdir, a.port)


if __name__ == "__main__":
    main()

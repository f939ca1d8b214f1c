"""A real Kubernetes control plane for tests, run from locally built binaries the way envtest runs them.

etcd, kube-apiserver (RBAC on, client-certificate authentication, service-account tokens) and
kube-controller-manager (garbage collector, namespace and service-account controllers) start on free loopback
ports in a temporary directory. Nothing is mocked: owner-reference garbage collection, RBAC denials, schema
validation and resourceVersion conflicts come from the real components.

Two ways to act as someone other than the admin:
- ``api_client(impersonate=...)`` and ``write_kubeconfig(impersonate=...)`` send impersonation headers (the
  kubernetes Python client's kubeconfig loader and kopf's login both ignore ``as:`` in a kubeconfig, so the
  kubeconfig form serves kubectl and helm only);
- ``serviceaccount_kubeconfig(namespace, name)`` requests a real ServiceAccount token (TokenRequest API) and
  writes a kubeconfig with it: every client, kopf included, then authenticates as that ServiceAccount.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from testkit.pki import CertificateAuthority, KeyPair, b64, key_pem
from testkit.process import Component, ControlPlaneError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BIN_DIR = REPO_ROOT / ".cache" / "bin" / "current"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kubectl", "helm")
# The KubeRay CRDs lmops works with. RayJob and RayCronJob (2 MB more schema) are left out: lmops never uses
# them, and the API server spends seconds of the 2 shared cores compiling each large CRD.
KUBERAY_CRDS = ("ray.io_rayclusters.yaml", "ray.io_rayservices.yaml")
SERVICE_CIDR = "10.0.0.0/24"
# Enough for real garbage collection and namespace deletion; more would only burn the 2 shared cores.
CONTROLLERS = ("garbage-collector-controller", "namespace-controller", "serviceaccount-controller")


class BinariesMissing(ControlPlaneError):
    """The pinned binaries have not been built yet."""


def find_binaries(bin_dir: Path = DEFAULT_BIN_DIR) -> Path:
    """Return ``bin_dir`` when every binary is there; otherwise say how to build them."""
    missing = [name for name in BINARIES if not os.access(bin_dir / name, os.X_OK)]
    if missing:
        raise BinariesMissing(
            f"control-plane binaries missing in {bin_dir}: {', '.join(missing)}. "
            "Run `make binaries` (hack/build-binaries.sh) to build them."
        )
    return bin_dir


def free_port() -> int:
    """A loopback port that was free a moment ago (the kernel picks it, so parallel runs do not collide)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- certificates -------------------------------------------------------------------------------------------


# --- processes ----------------------------------------------------------------------------------------------


# --- the control plane --------------------------------------------------------------------------------------


class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on loopback, with an admin kubeconfig on disk.

    ``crd_paths`` are installed before the controller-manager starts, so the garbage collector watches those
    resources from its first sync instead of after its 30-second rediscovery.
    """

    def __init__(
        self,
        bin_dir: Path = DEFAULT_BIN_DIR,
        *,
        crd_paths: Iterable[Path] = (),
        workdir: Path | None = None,
        start_timeout_s: float = 90.0,
    ) -> None:
        self.bin_dir = find_binaries(bin_dir)
        self.crd_paths = list(crd_paths)
        self._own_workdir = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="lmops-cp-")) if workdir is None else workdir
        self.start_timeout_s = start_timeout_s
        self.components: list[Component] = []
        self.server = ""
        self.kubeconfig = self.workdir / "admin.kubeconfig"
        self.ca_path = self.workdir / "ca.crt"
        self.admin_cert_path = self.workdir / "admin.crt"
        self.admin_key_path = self.workdir / "admin.key"
        self.timings: dict[str, float] = {}

    # lifecycle

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        t0 = time.monotonic()
        try:
            self._start_etcd()
            self.timings["etcd_s"] = time.monotonic() - t0
            self._start_apiserver()
            self.timings["apiserver_s"] = time.monotonic() - t0
            if self.crd_paths:
                self.install_crds(self.crd_paths)
            self.timings["crds_s"] = time.monotonic() - t0
            self._start_controller_manager()
            self.timings["total_s"] = time.monotonic() - t0
        except BaseException:
            self.stop(keep_workdir=True)
            raise

    def stop(self, *, keep_workdir: bool = False) -> None:
        """Stop components newest first (terminate, then kill); remove the temp dir unless told to keep it."""
        for component in reversed(self.components):
            component.stop()
        self.components.clear()
        if self._own_workdir and not keep_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def pids(self) -> list[int]:
        return [c.process.pid for c in self.components if c.process is not None]

    # startup steps

    def _start_etcd(self) -> None:
        client_port, peer_port = free_port(), free_port()
        self.etcd_url = f"http://127.0.0.1:{client_port}"
        peer = f"http://127.0.0.1:{peer_port}"
        etcd = self._component(
            "etcd",
            [
                "--name=default",
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={self.etcd_url}",
                f"--advertise-client-urls={self.etcd_url}",
                f"--listen-peer-urls={peer}",
                f"--initial-advertise-peer-urls={peer}",
                f"--initial-cluster=default={peer}",
                "--unsafe-no-fsync=true",
                "--log-level=warn",
            ],
        )

        def healthy() -> bool:
            with urllib.request.urlopen(f"{self.etcd_url}/health", timeout=2) as resp:
                return b'"health":"true"' in resp.read()

        etcd.wait_until(healthy, self.start_timeout_s, "etcd /health")

    def _start_apiserver(self) -> None:
        ca = CertificateAuthority()
        self.ca_path.write_bytes(ca.cert_pem)
        service_ip = "10.0.0.1"
        serving = ca.issue(
            "kube-apiserver",
            server_names=[
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local",
            ],
            server_ips=["127.0.0.1", service_ip],
        )
        serving_cert, serving_key = serving.write(self.workdir, "apiserver")
        self._admin = ca.issue("lmops-test-admin", organizations=["system:masters"])
        self._admin.write(self.workdir, "admin")
        # The controller-manager runs with one admin identity instead of per-controller ServiceAccount tokens:
        # the tests exercise the operator's RBAC, not the controller-manager's.
        self._controller_manager = ca.issue(
            "system:kube-controller-manager", organizations=["system:masters"]
        )
        sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        sa_key_path = self.workdir / "sa.key"
        sa_key_path.write_bytes(key_pem(sa_key))
        sa_pub_path = self.workdir / "sa.pub"
        sa_pub_path.write_bytes(
            sa_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        port = free_port()
        self.server = f"https://127.0.0.1:{port}"
        apiserver = self._component(
            "kube-apiserver",
            [
                f"--etcd-servers={self.etcd_url}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--secure-port={port}",
                f"--cert-dir={self.workdir / 'apiserver-certs'}",
                f"--tls-cert-file={serving_cert}",
                f"--tls-private-key-file={serving_key}",
                f"--client-ca-file={self.ca_path}",
                "--authorization-mode=RBAC",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
                f"--service-account-key-file={sa_pub_path}",
                f"--service-account-signing-key-file={sa_key_path}",
                "--allow-privileged=true",
                # As envtest does: no pods run here, and pods must not wait for the default ServiceAccount.
                "--disable-admission-plugins=ServiceAccount",
                "--profiling=false",
                "--v=0",
            ],
        )
        self._write_admin_kubeconfig()
        context = self._ssl_context()

        def ready() -> bool:
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=5, context=context) as resp:
                return bool(resp.status == 200)

        apiserver.wait_until(ready, self.start_timeout_s, "/readyz")

    def _start_controller_manager(self) -> None:
        kubeconfig = self.workdir / "controller-manager.kubeconfig"
        self._write_kubeconfig_file(kubeconfig, self._user_from_pair(self._controller_manager))
        controller_manager = self._component(
            "kube-controller-manager",
            [
                f"--kubeconfig={kubeconfig}",
                f"--controllers={','.join(CONTROLLERS)}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={free_port()}",
                f"--cert-dir={self.workdir / 'controller-manager-certs'}",
                "--use-service-account-credentials=false",
                "--profiling=false",
                "--v=0",
            ],
        )

        # Functional readiness: the service-account controller has created `default` in `default`, so the
        # controller-manager is connected and its informers run.
        def default_serviceaccount() -> bool:
            found = self.kubectl("get", "serviceaccount", "default", "-n", "default", check=False)
            return found.returncode == 0

        controller_manager.wait_until(default_serviceaccount, self.start_timeout_s, "ServiceAccount default")

    def _component(self, name: str, args: Sequence[str]) -> Component:
        component = Component(name, [str(self.bin_dir / name), *args], self.workdir / f"{name}.log")
        self.components.append(component)
        component.start()
        return component

    # kubeconfigs

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.ca_path))
        context.load_cert_chain(str(self.admin_cert_path), str(self.admin_key_path))
        return context

    @staticmethod
    def _user_from_pair(pair: KeyPair) -> dict[str, Any]:
        return {"client-certificate-data": b64(pair.cert_pem), "client-key-data": b64(pair.key_pem)}

    def _write_kubeconfig_file(self, path: Path, user: Mapping[str, Any], namespace: str = "default") -> Path:
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "lmops-test",
                    "cluster": {
                        "server": self.server,
                        "certificate-authority-data": b64(self.ca_path.read_bytes()),
                    },
                }
            ],
            "users": [{"name": "user", "user": dict(user)}],
            "contexts": [
                {
                    "name": "lmops-test",
                    "context": {"cluster": "lmops-test", "user": "user", "namespace": namespace},
                }
            ],
            "current-context": "lmops-test",
        }
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        path.chmod(0o600)
        return path

    def _write_admin_kubeconfig(self) -> None:
        self._write_kubeconfig_file(self.kubeconfig, self._user_from_pair(self._admin))

    def write_kubeconfig(
        self, path: Path, *, impersonate: str | None = None, groups: Sequence[str] = ()
    ) -> Path:
        """An admin kubeconfig at ``path``, optionally impersonating a user (``as:``/``as-groups:``).

        kubectl and helm honour impersonation in a kubeconfig; the Python client and kopf do not: use
        ``serviceaccount_kubeconfig`` for them.
        """
        user = self._user_from_pair(self._admin)
        if impersonate:
            user["as"] = impersonate
            if groups:
                user["as-groups"] = list(groups)
        return self._write_kubeconfig_file(path, user)

    def serviceaccount_kubeconfig(
        self, namespace: str, name: str, path: Path | None = None, *, expiration_s: int = 86400
    ) -> Path:
        """A kubeconfig that authenticates as ServiceAccount ``namespace/name`` with a real bound token.

        The ServiceAccount must exist. Any client (kubectl, helm, the kubernetes package, kopf) acts as it.
        """
        token = self.kubectl(
            "create", "token", name, "-n", namespace, f"--duration={expiration_s}s"
        ).stdout.strip()
        target = path or self.workdir / f"sa-{namespace}-{name}.kubeconfig"
        return self._write_kubeconfig_file(target, {"token": token}, namespace=namespace)

    # clients

    def kubectl(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout_s: float = 120.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the real kubectl against this control plane (admin unless ``kubeconfig`` says otherwise)."""
        argv = [f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return self._run("kubectl", argv, input, check, timeout_s)

    def patch_model(self, namespace: str, name: str, patch: dict[str, Any]) -> None:
        """``kubectl patch lm NAME --type=merge``: an edit as a user makes it."""
        self.kubectl("patch", "lm", name, "-n", namespace, "--type=merge", "-p", json.dumps(patch))

    def helm(
        self,
        *args: str,
        input: str | None = None,
        check: bool = True,
        kubeconfig: Path | None = None,
        timeout_s: float = 300.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run the built helm against this control plane, with helm's caches inside the temp dir."""
        argv = [f"--kubeconfig={kubeconfig or self.kubeconfig}", *args]
        return self._run("helm", argv, input, check, timeout_s)

    def _run(
        self, binary: str, args: Sequence[str], input: str | None, check: bool, timeout_s: float
    ) -> subprocess.CompletedProcess[str]:
        helm_home = self.workdir / "helm-home"
        env = {
            **os.environ,
            "HELM_CACHE_HOME": str(helm_home / "cache"),
            "HELM_CONFIG_HOME": str(helm_home / "config"),
            "HELM_DATA_HOME": str(helm_home / "data"),
            "KUBECACHEDIR": str(self.workdir / "kube-cache"),
        }
        argv = [str(self.bin_dir / binary), *args]
        result = subprocess.run(
            argv, input=input, capture_output=True, text=True, env=env, timeout=timeout_s, check=False
        )
        if check and result.returncode != 0:
            raise ControlPlaneError(
                f"{binary} {' '.join(args[1:])} failed ({result.returncode}):\n"
                + (result.stderr or result.stdout)
            )
        return result

    def install_crds(self, paths: Iterable[Path], timeout_s: float = 180.0) -> list[str]:
        """Apply CRD manifests (files or directories of YAML); wait until the API server serves each one."""
        files: list[Path] = []
        for path in paths:
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else [path])
        crds = [
            doc
            for file in files
            for doc in yaml.safe_load_all(file.read_text())
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition"
        ]
        if not crds:
            return []
        # Server-side apply: KubeRay's CRDs exceed the 256 KiB last-applied annotation of client-side apply.
        apply_args = ["apply", "--server-side", "--force-conflicts"]
        for file in files:
            apply_args += ["-f", str(file)]
        self.kubectl(*apply_args)
        # A CRD shows up in discovery only once Established. Discovery documents are small; polling the CRDs
        # themselves (megabytes each for KubeRay's) starves the API server on two cores.
        pending = {
            (str(crd["spec"]["group"]), str(version["name"]), str(crd["spec"]["names"]["plural"]))
            for crd in crds
            for version in crd["spec"]["versions"]
            if version.get("served", True)
        }
        context = self._ssl_context()
        deadline = time.monotonic() + timeout_s
        while pending:
            for group, version, plural in sorted(pending):
                if self._discovered(context, group, version, plural):
                    pending.discard((group, version, plural))
            if pending and time.monotonic() > deadline:
                missing = sorted(f"{plural}.{group}/{version}" for group, version, plural in pending)
                raise ControlPlaneError(f"CRDs not served after {timeout_s:.0f}s: {missing}")
            if pending:
                time.sleep(0.5)
        return [str(crd["metadata"]["name"]) for crd in crds]

    def _discovered(self, context: ssl.SSLContext, group: str, version: str, plural: str) -> bool:
        url = f"{self.server}/apis/{group}/{version}"
        try:
            with urllib.request.urlopen(url, timeout=10, context=context) as resp:
                listing = json.loads(resp.read())
        except (urllib.error.URLError, OSError):
            return False
        return any(resource.get("name") == plural for resource in listing.get("resources", []))

    def client_configuration(self) -> Any:
        """A ``kubernetes.client.Configuration`` for the admin (impersonation is added by ``api_client``)."""
        from kubernetes import client

        config = client.Configuration()
        config.host = self.server
        config.ssl_ca_cert = str(self.ca_path)
        config.cert_file = str(self.admin_cert_path)
        config.key_file = str(self.admin_key_path)
        return config

    def api_client(self, impersonate: str | None = None, groups: Sequence[str] = ()) -> Any:
        """A ``kubernetes.client.ApiClient``; with ``impersonate`` every request acts as that user.

        A ServiceAccount user (``system:serviceaccount:<ns>:<name>``) gets its groups from the API server when
        ``groups`` is empty. Several groups need repeated ``Impersonate-Group`` headers, which the client's
        header dict cannot hold, so the pool manager is wrapped to send them.
        """
        from kubernetes import client

        api: Any = client.ApiClient(self.client_configuration())
        if impersonate:
            api.set_default_header("Impersonate-User", impersonate)
            if groups:
                api.rest_client.pool_manager = _ImpersonatingPoolManager(api.rest_client.pool_manager, groups)
        return api


class _ImpersonatingPoolManager:
    """Wraps urllib3's PoolManager to add one ``Impersonate-Group`` header per group to every request."""

    def __init__(self, inner: Any, groups: Sequence[str]) -> None:
        self._inner = inner
        self._groups = list(groups)

    def request(
        self, method: str, url: str, *args: Any, headers: Mapping[str, str] | None = None, **kw: Any
    ) -> Any:
        from urllib3 import HTTPHeaderDict

        merged = HTTPHeaderDict(dict(headers or {}))
        for group in self._groups:
            merged.add("Impersonate-Group", group)
        return self._inner.request(method, url, *args, headers=merged, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def serviceaccount_user(namespace: str, name: str) -> str:
    """The user name the API server gives ServiceAccount ``namespace/name``."""
    return f"system:serviceaccount:{namespace}:{name}"

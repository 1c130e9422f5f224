"""deploy/: the container images, Kubernetes manifests, SLURM setup and their README agree.

No cluster is reachable from the test machine: these tests check that every file parses and
that the names, versions, paths and sizes written in several places are the same in all of
them (ground truth: pyproject.toml, deploy/constraints.txt and the README's own commands).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from decimal import Decimal
from pathlib import Path

import pytest
import yaml
from packaging.specifiers import SpecifierSet
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "kubernetes"
README = DEPLOY / "README.md"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
VERSION = PYPROJECT["project"]["version"]
REGISTRY_IMAGE = "registry.example.org/cathodeflow"
CPU_IMAGE = f"{REGISTRY_IMAGE}:{VERSION}"
GPU_IMAGE = f"{REGISTRY_IMAGE}:{VERSION}-gpu"
DOCKERFILES = {"Dockerfile": CPU_IMAGE, "Dockerfile.gpu": GPU_IMAGE}
TLS_FLAGS = ("--tls-ca-file", "--tls-cert", "--tls-key")


def _text_files():
    return sorted(p for p in DEPLOY.rglob("*") if p.is_file() and "__pycache__" not in p.parts)


def _manifests() -> list[tuple[Path, dict]]:
    docs = []
    for path in sorted(K8S.glob("*.yaml")):
        docs += [(path, d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return docs


def _pod_specs():
    """(file, kind, pod spec) of every pod template in the manifests."""
    for path, doc in _manifests():
        spec = doc.get("spec", {})
        if doc["kind"] == "DaskCluster":
            yield path, "scheduler", spec["scheduler"]["spec"]
            yield path, "worker", spec["worker"]["spec"]
        elif doc["kind"] == "DaskWorkerGroup":
            yield path, "worker", spec["worker"]["spec"]
        elif doc["kind"] == "Job":
            yield path, "client", spec["template"]["spec"]


def _containers():
    for path, role, pod in _pod_specs():
        for c in pod["containers"]:
            yield path, role, pod, c


def _readme_commands() -> list[list[str]]:
    """The README's shell commands (continuation lines joined), split into words."""
    blocks = re.findall(r"```bash\n(.*?)```", README.read_text(), flags=re.S)
    joined = "\n".join(blocks).replace("\\\n", " ")
    return [shlex.split(line, comments=True) for line in joined.splitlines() if line.strip()]


def _readme_secrets() -> dict[str, set[str]]:
    """Secret name -> keys, from the README's `kubectl create secret generic` commands."""
    secrets = {}
    for words in _readme_commands():
        if words[:1] == ["kubectl"] and "secret" in words and "generic" in words:
            name = words[words.index("generic") + 1]
            keys = {w.split("=", 2)[1] for w in words if w.startswith(("--from-file=", "--from-literal="))}
            secrets[name] = keys
    return secrets


def _constraints() -> dict[str, str]:
    pins = {}
    for line in (DEPLOY / "constraints.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, version = line.split("==")
            pins[name.strip().lower()] = version.strip()
    return pins


_UNITS = {"": 1, "m": Decimal("0.001"), "k": 10**3, "M": 10**6, "G": 10**9, "T": 10**12,
          "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def _quantity(value) -> Decimal:
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", str(value)).groups()
    return Decimal(number) * _UNITS[unit]


def test_quantity_parser_reads_kubernetes_units():
    assert _quantity("500m") == Decimal("0.5")
    assert _quantity("2") == 2
    assert _quantity("16Gi") == 16 * 2**30
    assert _quantity("1G") == 10**9
    assert _quantity(1) == 1


# --- every file parses ------------------------------------------------------------------


def test_every_yaml_file_parses_into_mappings():
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert {p.relative_to(DEPLOY).as_posix() for p in files} >= {
        "kubernetes/daskcluster.yaml", "kubernetes/gpu-workers.yaml", "kubernetes/storage.yaml",
        "kubernetes/run-job.yaml", "slurm/jobqueue.yaml"}
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs and all(isinstance(d, dict) for d in docs), path


def test_every_kubernetes_document_names_its_kind_and_the_one_namespace():
    docs = _manifests()
    kinds = {d["kind"] for _, d in docs}
    assert kinds == {"DaskCluster", "DaskWorkerGroup", "Namespace", "PersistentVolumeClaim", "Job"}
    for path, d in docs:
        assert d["apiVersion"] and d["metadata"]["name"], path
        if d["kind"] in ("DaskCluster", "DaskWorkerGroup"):
            assert d["apiVersion"] == "kubernetes.dask.org/v1", path
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "cathodeflow", path


def test_every_python_file_compiles():
    files = sorted(DEPLOY.rglob("*.py"))
    assert files
    for path in files:
        compile(path.read_text(), str(path), "exec")


def test_entrypoint_is_an_executable_posix_shell_script():
    path = DEPLOY / "entrypoint.sh"
    assert os.access(path, os.X_OK)
    sh = shutil.which("sh")
    if sh is None:  # pragma: no cover - every POSIX test machine has one
        pytest.skip("no sh")
    assert subprocess.run([sh, "-n", str(path)], capture_output=True).returncode == 0


# --- one image, one version, one Python -------------------------------------------------


def test_image_references_are_the_release_images_in_every_file():
    files = [*_text_files(), ROOT / "README.md"]
    found = set()
    for path in files:
        found |= set(re.findall(rf"{re.escape(REGISTRY_IMAGE)}:[\w.\-]+", path.read_text()))
    assert found == {CPU_IMAGE, GPU_IMAGE}


def test_manifests_run_the_cpu_image_except_the_gpu_worker_group():
    for path, role, pod, c in _containers():
        gpus = c.get("resources", {}).get("limits", {}).get("nvidia.com/gpu")
        assert c["image"] == (GPU_IMAGE if gpus else CPU_IMAGE), (path, c["name"])
    assert any(c["image"] == GPU_IMAGE for _, _, _, c in _containers())


def test_dockerfiles_tag_and_label_the_package_version():
    import cathodeflow

    if "unknown" not in cathodeflow.__version__:
        assert cathodeflow.__version__ == VERSION
    for name, image in DOCKERFILES.items():
        text = (DEPLOY / name).read_text()
        assert re.findall(r'org\.opencontainers\.image\.version="([^"]+)"', text) == [VERSION], name
        assert f"-f deploy/{name} -t {image} ." in text, name
        assert ["docker", "build", "-f", f"deploy/{name}", "-t", image, "."] in _readme_commands(), name
    for text in (README.read_text(), (DEPLOY / "slurm" / "jobqueue.yaml").read_text()):
        # the venv folder and the Apptainer image carry the version too
        assert set(re.findall(r"cathodeflow[-_](\d+(?:\.\d+)+)", text)) == {VERSION}


def test_dockerfiles_use_the_minimum_python_of_requires_python():
    spec = SpecifierSet(PYPROJECT["project"]["requires-python"])
    minimum = min(Version(s.version) for s in spec if s.operator == ">=")
    for name in DOCKERFILES:
        text = (DEPLOY / name).read_text()
        (base,) = re.findall(r"^FROM python:(\d+\.\d+)-slim\s*$", text, flags=re.M)
        assert Version(base) == minimum and Version(base) in spec, name
    assert re.findall(r"python(\d+\.\d+) -m venv", README.read_text()) == [str(minimum)]
    assert f"| Python | {minimum} |" in README.read_text()


def test_dockerfiles_install_the_repository_with_the_constraints_as_non_root():
    for name in DOCKERFILES:
        text = (DEPLOY / name).read_text()
        assert "COPY deploy/constraints.txt deploy/entrypoint.sh /opt/cathodeflow/" in text
        # the s3 extra: the README offers stores at s3:// URLs in the cluster
        assert re.search(r"pip install --constraint /opt/cathodeflow/constraints.txt '\.\[s3\]' ", text), name
        users = re.findall(r"^USER (\S+)", text, flags=re.M)
        assert users and users[-1].split(":")[0] not in ("root", "0"), name
        assert 'ENTRYPOINT ["/opt/cathodeflow/entrypoint.sh"]' in text
    assert "ENV" in (gpu := (DEPLOY / "Dockerfile.gpu").read_text()) and "KERAS_BACKEND=torch" in gpu


def test_pinned_versions_agree_with_constraints_and_pyproject():
    pins = _constraints()
    assert pins["dask"] == pins["distributed"]  # Dask releases both together
    for dep in [*PYPROJECT["project"]["dependencies"], *PYPROJECT["project"]["optional-dependencies"]["s3"]]:
        req = Requirement(dep)
        if req.name.lower() in pins:
            assert Version(pins[req.name.lower()]) in req.specifier, dep
    for path in [*_text_files(), ROOT / "README.md"]:
        for name, version in re.findall(r"\b([A-Za-z][\w\-]*)==(\d[\w.]*)", path.read_text()):
            assert pins.get(name.lower()) == version, (path, name, version)
    # the versions written in words: the dask-kubernetes operator chart and dask-jobqueue
    helm = [w for words in _readme_commands() if words[:2] == ["helm", "install"] for w in words]
    chart = helm[helm.index("--version") + 1]
    assert f"dask-kubernetes {chart}" in (K8S / "daskcluster.yaml").read_text()
    assert f"`dask-kubernetes-operator`) | {chart} |" in README.read_text()
    assert f"dask-jobqueue {pins['dask-jobqueue']}" in (DEPLOY / "slurm" / "jobqueue.yaml").read_text()


# --- Kubernetes: secrets, resources, TLS, volumes ---------------------------------------


def test_secret_keys_used_by_manifests_are_the_ones_the_readme_creates():
    created = _readme_secrets()
    assert created == {
        "cathodeflow-tls": {"ca.crt", "tls.crt", "tls.key"},
        "cathodeflow-object-store": {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_ENDPOINT_URL"},
    }
    used: dict[str, set[str]] = {}
    for path, role, pod, c in _containers():
        for env in c.get("env", []):
            ref = env.get("valueFrom", {}).get("secretKeyRef")
            if ref:
                assert ref["key"] in created.get(ref["name"], set()), (path, ref)
                assert env["name"] == ref["key"], (path, env)  # AWS_* arrive under their own names
                used.setdefault(ref["name"], set()).add(ref["key"])
        secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod.get("volumes", []) if "secret" in v}
        for m in c.get("volumeMounts", []):
            if m["name"] in secret_volumes:
                assert secret_volumes[m["name"]] in created, (path, m)
                used.setdefault(secret_volumes[m["name"]], set())
    assert used.keys() == created.keys()
    assert used["cathodeflow-object-store"] == created["cathodeflow-object-store"]


def test_resource_requests_do_not_exceed_limits():
    n = 0
    for path, role, pod, c in _containers():
        requests, limits = c["resources"]["requests"], c["resources"]["limits"]
        assert requests.keys() == limits.keys() >= {"cpu", "memory"}, (path, c["name"])
        for key in requests:
            assert _quantity(requests[key]) <= _quantity(limits[key]), (path, c["name"], key)
        if "nvidia.com/gpu" in limits:  # Kubernetes: extended resources cannot be overcommitted
            assert requests["nvidia.com/gpu"] == limits["nvidia.com/gpu"] == 1
        n += 1
    assert n == 4  # scheduler, CPU workers, GPU workers, run Job


def _tls_paths(c) -> dict[str, str]:
    """The TLS file paths a container hands to Dask, by flag or environment variable."""
    args, paths = c.get("args", []), {}
    for flag in TLS_FLAGS:
        if flag in args:
            paths[flag] = args[args.index(flag) + 1]
    for env in c.get("env", []):
        if "__TLS__" in env["name"]:
            paths[env["name"]] = env["value"]
    return paths


def test_tls_files_given_to_dask_are_mounted_from_the_tls_secret():
    keys = _readme_secrets()["cathodeflow-tls"]
    for path, role, pod, c in _containers():
        secret_volumes = {v["name"]: v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v}
        mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
        paths = _tls_paths(c)
        # every role presents the CA, a certificate and its key
        assert len(paths) == 3 and {Path(p).name for p in paths.values()} == keys, (path, role, paths)
        for p in paths.values():
            mount = mounts.get(str(Path(p).parent))
            assert mount is not None and secret_volumes.get(mount) == "cathodeflow-tls", (path, role, p)
        env = {e["name"]: e.get("value") for e in c["env"]}
        assert env.get("DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION") == "True", (path, role)


def test_scheduler_listens_with_tls_where_workers_and_client_connect():
    (cluster,) = [d for _, d in _manifests() if d["kind"] == "DaskCluster"]
    name = cluster["metadata"]["name"]
    sched = cluster["spec"]["scheduler"]
    (container,) = sched["spec"]["containers"]
    args = container["args"]
    assert args[0] == "scheduler" and args[args.index("--protocol") + 1] == "tls"
    port = int(args[args.index("--port") + 1])
    # the operator finds the scheduler's port by the name tcp-comm
    ports = {p["name"]: p for p in sched["service"]["ports"]}
    assert ports["tcp-comm"]["port"] == port and ports["tcp-comm"]["targetPort"] == "tcp-comm"
    assert {p["name"]: p["containerPort"] for p in container["ports"]}["tcp-comm"] == port
    expected = f"tls://{name}-scheduler:{port}"
    groups = [d for _, d in _manifests() if d["kind"] == "DaskWorkerGroup"]
    assert all(g["spec"]["cluster"] == name for g in groups)
    addresses = []
    for path, role, pod, c in _containers():
        if role == "worker":
            assert c["args"][0] == "worker", path
            addresses.append(c["args"][1])
        elif role == "client":
            addresses.append(c["args"][c["args"].index("--scheduler") + 1])
    assert addresses and set(addresses) == {expected}
    assert expected in README.read_text()


def test_workers_and_client_mount_the_shared_volume_where_the_store_and_scratch_live():
    pvcs = {d["metadata"]["name"]: d for _, d in _manifests() if d["kind"] == "PersistentVolumeClaim"}
    (claim,) = pvcs
    assert pvcs[claim]["spec"]["accessModes"] == ["ReadWriteMany"]
    data_mounts, store = set(), None
    for path, role, pod, c in _containers():
        claims = {v["name"]: v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v}
        mounted = {m["mountPath"] for m in c["volumeMounts"] if claims.get(m["name"]) == claim}
        if role in ("worker", "client"):
            assert len(mounted) == 1, (path, role)
            data_mounts |= mounted
        if role == "client":
            store = c["args"][c["args"].index("--store") + 1]
            scratch = c["args"][c["args"].index("--scratch-dir") + 1]
    (data,) = data_mounts
    assert Path(data) in Path(store).parents
    assert Path(scratch) == Path(data) or Path(data) in Path(scratch).parents  # spread tiles share it
    assert f"--store {store}" in README.read_text()


def test_pods_run_as_the_images_non_root_user():
    uids = {re.findall(r"^USER (\d+)", (DEPLOY / n).read_text(), flags=re.M)[-1] for n in DOCKERFILES}
    (uid,) = uids
    for path, role, pod, c in _containers():
        sc = pod["securityContext"]
        assert sc["runAsNonRoot"] is True and str(sc["runAsUser"]) == uid, (path, role)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False, (path, role)


def test_gpu_worker_group_uses_the_torch_backend_and_a_dask_gpu_resource():
    (group,) = [d for _, d in _manifests() if d["kind"] == "DaskWorkerGroup"]
    (c,) = group["spec"]["worker"]["spec"]["containers"]
    assert {e["name"]: e.get("value") for e in c["env"]}["KERAS_BACKEND"] == "torch"
    assert c["args"][c["args"].index("--resources") + 1] == "GPU=1"


def test_root_readme_points_to_the_deploy_readme():
    assert "deploy/README.md" in (ROOT / "README.md").read_text()


# --- SLURM ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def slurm():
    spec = importlib.util.spec_from_file_location("slurm_cluster", DEPLOY / "slurm" / "slurm_cluster.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)  # imports cathodeflow and yaml only; dask_jobqueue lazily
    return module


def _config_with_tls_files(tmp_path) -> Path:
    """deploy/slurm/jobqueue.yaml with its TLS paths moved to files that exist."""
    config = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    for key in ("ca_file", "cert", "key"):
        (tmp_path / key).write_text("x")
        config["cathodeflow"]["tls"][key] = str(tmp_path / key)
    path = tmp_path / "jobqueue.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_slurm_config_gives_partition_sizes_jobs_and_tls_files(slurm, tmp_path):
    config, options = slurm.load_config(_config_with_tls_files(tmp_path))
    shipped = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())
    assert config["jobqueue"] == shipped["jobqueue"]
    assert options["jobs"] == shipped["cathodeflow"]["jobs"]
    assert options["tls"] == {k: (tmp_path / k).resolve() for k in ("ca_file", "cert", "key")}
    env = slurm.client_environment(options["tls"], base={})
    assert env == {
        "DASK_DISTRIBUTED__COMM__REQUIRE_ENCRYPTION": "True",
        "DASK_DISTRIBUTED__COMM__TLS__CA_FILE": str((tmp_path / "ca_file").resolve()),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT": str((tmp_path / "cert").resolve()),
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY": str((tmp_path / "key").resolve()),
    }
    # the client's TLS variables are the ones the Kubernetes run Job sets
    (job,) = [c for _, role, _, c in _containers() if role == "client"]
    assert {e["name"] for e in job["env"] if "__COMM__" in e["name"]} == set(env)


def test_slurm_security_is_tls_only_with_the_configured_files(slurm, tmp_path):
    _, options = slurm.load_config(_config_with_tls_files(tmp_path))
    sec = slurm.make_security(options["tls"])
    assert sec.require_encryption is True
    for role in ("scheduler", "worker", "client"):
        tls = sec.get_tls_config_for_role(role)
        assert tls["ca_file"] == str((tmp_path / "ca_file").resolve())
        assert (tls["cert"], tls["key"]) == (str((tmp_path / "cert").resolve()), str((tmp_path / "key").resolve()))
    assert slurm.make_security(None) is None


def test_slurm_command_runs_cathodeflow_against_the_scheduler(slurm):
    cmd = slurm.cathodeflow_command("/shared/s.zarr", "tls://10.0.0.5:8786", ["--phase-method", "unet"])
    assert Path(cmd[0]).name == "cathodeflow"
    assert cmd[1:] == ["run", "--store", "/shared/s.zarr", "--scheduler", "tls://10.0.0.5:8786",
                       "--phase-method", "unet"]
    args = slurm.parse_args(["--store", "/s.zarr", "--jobs", "3", "--", "--from", "labels"])
    assert (args.store, args.jobs, args.extra, args.dry_run) == ("/s.zarr", 3, ["--from", "labels"], False)


@pytest.mark.parametrize(
    "edit, named",
    [
        (lambda c: c["jobqueue"]["slurm"].pop("walltime"), "walltime"),
        (lambda c: c["jobqueue"]["slurm"].update(queue=None), "queue"),
        (lambda c: c["cathodeflow"].update(jobs=0), "cathodeflow.jobs"),
        (lambda c: c["cathodeflow"]["tls"].pop("key"), "cathodeflow.tls"),
        (lambda c: c["cathodeflow"]["tls"].update(cert="/nonexistent/tls.crt"), "/nonexistent/tls.crt"),
    ],
)
def test_slurm_config_errors_are_one_line_naming_file_and_key(slurm, tmp_path, edit, named):
    from cathodeflow.errors import InputError

    path = _config_with_tls_files(tmp_path)
    config = yaml.safe_load(path.read_text())
    edit(config)
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError) as err:
        slurm.load_config(path)
    message = str(err.value)
    assert "\n" not in message and str(path) in message and named in message


def test_slurm_script_exits_2_with_one_line_on_a_bad_config(tmp_path):
    bad = tmp_path / "jobqueue.yaml"
    bad.write_text("jobqueue: {}\n")
    out = subprocess.run([sys.executable, str(DEPLOY / "slurm" / "slurm_cluster.py"), "--config", str(bad),
                          "--dry-run"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 2
    assert out.stderr.strip().count("\n") == 0 and "jobqueue: slurm:" in out.stderr


def _real_tls_files(directory: Path) -> None:
    """A CA and a certificate signed by it (openssl), as ca_file, cert, key in ``directory``."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("no openssl to make test certificates")
    d = str(directory)
    for cmd in (
        f"req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=ca -keyout {d}/ca.key -out {d}/ca_file",
        f"req -newkey rsa:2048 -nodes -subj /CN=dask -keyout {d}/key -out {d}/tls.csr",
        f"x509 -req -in {d}/tls.csr -CA {d}/ca_file -CAkey {d}/ca.key -CAcreateserial -days 1 -out {d}/cert",
    ):
        subprocess.run([openssl, *cmd.split()], check=True, capture_output=True, timeout=60)


def test_slurm_dry_run_job_script_has_partition_sizes_and_tls(slurm, tmp_path, capsys):
    pytest.importorskip("dask_jobqueue")
    path = _config_with_tls_files(tmp_path)
    _real_tls_files(tmp_path)  # the scheduler started here loads them
    assert slurm.main(["--config", str(path), "--dry-run"]) == 0
    script = capsys.readouterr().out
    shipped = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert f"#SBATCH -p {shipped['queue']}" in script
    assert f"#SBATCH -t {shipped['walltime']}" in script
    assert f"--cpus-per-task={shipped['cores']}" in script
    assert f"--nworkers {shipped['processes']}" in script and "--nthreads 1" in script
    assert "tls://" in script and f"--tls-ca-file {(tmp_path / 'ca_file').resolve()}" in script


def test_slurm_config_uses_only_dask_jobqueue_keys():
    dask_jobqueue = pytest.importorskip("dask_jobqueue")
    defaults = yaml.safe_load((Path(dask_jobqueue.__file__).parent / "jobqueue.yaml").read_text())
    ours = yaml.safe_load((DEPLOY / "slurm" / "jobqueue.yaml").read_text())["jobqueue"]["slurm"]
    assert set(ours) <= set(defaults["jobqueue"]["slurm"])

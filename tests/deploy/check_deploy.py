"""Offline checks of the deployment files (no container engine or cluster exists here):

  check_deploy.py compose REPO     docker-compose.yml is valid for `docker-compose config`
                                   (or `docker compose config`) and consistent: three replicas
                                   behind the balancer, which names every one of them; stop
                                   grace >= --drain_delay + --shutdown_grace; limits; health.
  check_deploy.py k8s REPO         deploy/k8s (base, and the tls overlay rendered by `kubectl
                                   kustomize` when kubectl exists) against a schema of the
                                   fields used (a misspelt key fails) and consistency rules.
  check_deploy.py dockerfile REPO  deploy/Dockerfile's COPY sources exist and are not hidden by
                                   .dockerignore, which excludes build trees and .git; the
                                   stages compose builds exist.

Prints what it checked; exits 1 with every problem listed."""
import fnmatch
import os
import re
import shutil
import subprocess
import sys

import yaml

PROBLEMS = []


def problem(text):
    PROBLEMS.append(text)


def seconds(text):
    """'35s', '1m30s', '2.5s', '500ms', or a number of seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    total, rest = 0.0, str(text).strip()
    for value, unit in re.findall(r"([0-9.]+)(ms|h|m|s)", rest):
        total += float(value) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[unit]
    if not re.fullmatch(r"([0-9.]+(ms|h|m|s))+", rest):
        raise ValueError("not a duration: %r" % text)
    return total


def flag(args, name):
    for a in args:
        if a.startswith("--%s=" % name):
            return a.split("=", 1)[1]
    return None


def drain_seconds(args, where):
    """--drain_delay + --shutdown_grace of an emfitd command line."""
    drain, grace = flag(args, "drain_delay"), flag(args, "shutdown_grace")
    if drain is None or grace is None:
        problem("%s: emfitd needs explicit --drain_delay and --shutdown_grace, got %s"
                % (where, args))
        return 0.0
    return seconds(drain) + seconds(grace)


def memory_bytes(text):
    m = re.fullmatch(r"([0-9.]+)\s*([KMGT]i?|[kmgt]b?|)", str(text))
    if not m:
        raise ValueError("not a memory size: %r" % text)
    scale = {"": 1, "k": 1e3, "kb": 1e3, "m": 2**20, "mb": 2**20, "g": 2**30, "gb": 2**30,
             "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30,
             "Ti": 2**40, "t": 2**40, "tb": 2**40}[m.group(2)]
    return float(m.group(1)) * scale


def cpu_cores(text):
    text = str(text)
    return float(text[:-1]) / 1000 if text.endswith("m") else float(text)


# --- docker-compose.yml ----------------------------------------------------------------------

def compose_config(repo):
    """The normalized compose file from docker-compose (v1) or the docker compose plugin."""
    path = os.path.join(repo, "docker-compose.yml")
    commands = []
    if shutil.which("docker-compose"):
        commands.append(["docker-compose", "-f", path, "config"])
    if shutil.which("docker"):
        commands.append(["docker", "compose", "-f", path, "config"])
    for command in commands:
        r = subprocess.run(command, capture_output=True, text=True, cwd=repo)
        if r.returncode == 0:
            print("validated by:", " ".join(command))
            return yaml.safe_load(r.stdout)
        if "unknown command" not in r.stderr and "is not a docker command" not in r.stderr:
            problem("%s failed:\n%s" % (" ".join(command), r.stderr))
            return None
    problem("neither docker-compose nor `docker compose` can validate docker-compose.yml "
            "(scripts/deps installs docker-compose)")
    return None


def check_compose(repo):
    config = compose_config(repo)
    if config is None:
        return
    services = config["services"]
    stages = dockerfile_stages(repo)
    replicas = {n: s for n, s in services.items() if s.get("build", {}).get("target") == "runtime"}
    balancers = {n: s for n, s in services.items()
                 if s.get("build", {}).get("target") == "balancer"}
    if len(replicas) != 3:
        problem("compose: expected three emfitd replicas (build target runtime), got %s"
                % sorted(replicas))
    if len(balancers) != 1:
        problem("compose: expected one balancer (build target balancer), got %s"
                % sorted(balancers))
    for name, service in services.items():
        target = service.get("build", {}).get("target")
        if target not in stages:
            problem("compose: %s builds stage %r, not one of deploy/Dockerfile's %s"
                    % (name, target, sorted(stages)))
        limits = service.get("deploy", {}).get("resources", {}).get("limits", {})
        if "cpus" not in limits or "memory" not in limits:
            problem("compose: %s has no cpu and memory limits" % name)
        test = service.get("healthcheck", {}).get("test", [])
        if "health" not in test:
            problem("compose: %s's health check does not run `emfit health`: %s" % (name, test))
    for name, service in replicas.items():
        need = drain_seconds(service.get("command", []), "compose: " + name)
        grace = seconds(service.get("stop_grace_period", "10s"))
        if grace < need:
            problem("compose: %s: stop_grace_period %gs < --drain_delay + --shutdown_grace %gs"
                    % (name, grace, need))
        if service.get("stop_signal", "SIGTERM") != "SIGTERM":
            problem("compose: %s must stop with SIGTERM (emfitd's drain)" % name)
        if flag(service.get("command", []), "port") != "50051":
            problem("compose: %s must listen on 50051" % name)
    for name, balancer in balancers.items():
        upstreams = balancer.get("environment", {}).get("EMFIT_UPSTREAMS", "")
        named = re.findall(r"server\s+([\w.-]+):(\d+)\s*;", upstreams)
        if sorted(h for h, _ in named) != sorted(replicas) or {p for _, p in named} != {"50051"}:
            problem("compose: %s's EMFIT_UPSTREAMS %r must name every replica %s on 50051"
                    % (name, upstreams, sorted(replicas)))
        depends = balancer.get("depends_on", {})
        for replica in replicas:
            if depends.get(replica, {}).get("condition") != "service_healthy":
                problem("compose: %s must wait for %s to be healthy" % (name, replica))
        if not balancer.get("ports"):
            problem("compose: %s publishes no port" % name)
        if balancer.get("stop_signal") != "SIGQUIT":
            problem("compose: %s should stop with SIGQUIT (nginx's graceful shutdown)" % name)
    print("compose: %d replicas %s behind %s" % (len(replicas), sorted(replicas),
                                                 sorted(balancers)))


# --- deploy/Dockerfile and .dockerignore -----------------------------------------------------

def dockerfile_stages(repo):
    with open(os.path.join(repo, "deploy/Dockerfile")) as f:
        return set(re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", f.read(), re.M | re.I))


def dockerignore(repo):
    with open(os.path.join(repo, ".dockerignore")) as f:
        return [line.strip() for line in f if line.strip() and not line.startswith("#")]


def ignored(path, patterns):
    """Whether .dockerignore's patterns (no '!' exceptions used) exclude path or a parent."""
    parts = path.strip("/").split("/")
    for i in range(1, len(parts) + 1):
        prefix = "/".join(parts[:i])
        for p in patterns:
            p = p.rstrip("/")
            if fnmatch.fnmatch(prefix, p) or (p.startswith("**/") and
                                               fnmatch.fnmatch(parts[i - 1], p[3:])):
                return True
    return False


def check_dockerfile(repo):
    with open(os.path.join(repo, "deploy/Dockerfile")) as f:
        text = f.read().replace("\\\n", " ")
    patterns = dockerignore(repo)
    for must in ("build", "build-asan", "build/x", ".git", "client/python/build"):
        if not ignored(must, patterns):
            problem(".dockerignore does not exclude %s" % must)
    for keep in ("CMakeLists.txt", "core", "server", "client", "proto", "scripts/deps",
                 "deploy/nginx/emfit.conf", "deploy/nginx/render", "data"):
        if ignored(keep, patterns):
            problem(".dockerignore excludes %s, which the build needs" % keep)
    copies = 0
    for line in text.splitlines():
        m = re.match(r"\s*COPY\s+(.*)", line)
        if not m or "--from=" in m.group(1):
            continue
        sources = m.group(1).split()[:-1]
        for source in sources:
            copies += 1
            if source != "." and not os.path.exists(os.path.join(repo, source)):
                problem("deploy/Dockerfile copies %s, which does not exist" % source)
            if source != "." and ignored(source, patterns):
                problem("deploy/Dockerfile copies %s, which .dockerignore excludes" % source)
    stages = dockerfile_stages(repo)
    for stage in ("build", "runtime", "balancer"):
        if stage not in stages:
            problem("deploy/Dockerfile has no stage %s" % stage)
    if not re.search(r"^USER\s+(?!root|0\b)\S+", text, re.M):
        problem("deploy/Dockerfile: the runtime must run as a non-root USER")
    if not re.search(r"^HEALTHCHECK .*emfit\", \"health\"", text, re.M):
        problem("deploy/Dockerfile: no HEALTHCHECK with `emfit health`")
    print("dockerfile: %d COPY sources, stages %s, .dockerignore %s" % (copies, sorted(stages),
                                                                       patterns))


# --- deploy/k8s ---------------------------------------------------------------------------------

# The fields the manifests use, by kind: a dict maps allowed keys to their schema, a type means
# a leaf of that type, a list [schema] a list of them. Unknown keys fail (misspellings).
STR, INT, BOOL = str, int, bool
QUANTITY = (str, int, float)
LABELS = {"*": STR}
METADATA = {"name": STR, "namespace": STR, "labels": LABELS, "annotations": LABELS}
SELECTOR = {"matchLabels": LABELS}
PROBE = {"grpc": {"port": INT, "service": STR}, "exec": {"command": [STR]},
         "initialDelaySeconds": INT, "periodSeconds": INT, "timeoutSeconds": INT,
         "failureThreshold": INT, "successThreshold": INT}
RESOURCES = {"requests": {"cpu": QUANTITY, "memory": QUANTITY},
             "limits": {"cpu": QUANTITY, "memory": QUANTITY}}
CONTAINER = {
    "name": STR, "image": STR, "imagePullPolicy": STR, "args": [STR], "command": [STR],
    "ports": [{"name": STR, "containerPort": INT, "protocol": STR}],
    "readinessProbe": PROBE, "livenessProbe": PROBE, "startupProbe": PROBE,
    "resources": RESOURCES, "env": [{"name": STR, "value": STR}],
    "volumeMounts": [{"name": STR, "mountPath": STR, "readOnly": BOOL}],
    "securityContext": {"allowPrivilegeEscalation": BOOL, "readOnlyRootFilesystem": BOOL,
                        "capabilities": {"drop": [STR]}}}
SCHEMA = {
    ("apps/v1", "Deployment"): {
        "apiVersion": STR, "kind": STR, "metadata": METADATA,
        "spec": {
            "replicas": INT, "revisionHistoryLimit": INT, "selector": SELECTOR,
            "strategy": {"type": STR, "rollingUpdate": {"maxSurge": (INT, STR),
                                                        "maxUnavailable": (INT, STR)}},
            "template": {"metadata": METADATA, "spec": {
                "terminationGracePeriodSeconds": INT,
                "securityContext": {"runAsNonRoot": BOOL, "runAsUser": INT, "runAsGroup": INT,
                                    "fsGroup": INT, "seccompProfile": {"type": STR}},
                "containers": [CONTAINER],
                "volumes": [{"name": STR, "secret": {"secretName": STR, "defaultMode": INT,
                                                     "optional": BOOL}}]}}}},
    ("v1", "Service"): {
        "apiVersion": STR, "kind": STR, "metadata": METADATA,
        "spec": {"type": STR, "clusterIP": STR, "publishNotReadyAddresses": BOOL,
                 "selector": LABELS,
                 "ports": [{"name": STR, "port": INT, "targetPort": (INT, STR),
                            "protocol": STR, "appProtocol": STR}]}},
    ("autoscaling/v2", "HorizontalPodAutoscaler"): {
        "apiVersion": STR, "kind": STR, "metadata": METADATA,
        "spec": {"scaleTargetRef": {"apiVersion": STR, "kind": STR, "name": STR},
                 "minReplicas": INT, "maxReplicas": INT,
                 "metrics": [{"type": STR, "resource": {
                     "name": STR, "target": {"type": STR, "averageUtilization": INT}}}],
                 "behavior": {"scaleDown": {
                     "stabilizationWindowSeconds": INT,
                     "policies": [{"type": STR, "value": INT, "periodSeconds": INT}]}}}},
    ("policy/v1", "PodDisruptionBudget"): {
        "apiVersion": STR, "kind": STR, "metadata": METADATA,
        "spec": {"maxUnavailable": (INT, STR), "minAvailable": (INT, STR),
                 "selector": SELECTOR}},
}
REQUIRED = {"Deployment": ["spec.selector", "spec.template.spec.containers"],
            "Service": ["spec.selector", "spec.ports"],
            "HorizontalPodAutoscaler": ["spec.scaleTargetRef", "spec.maxReplicas"],
            "PodDisruptionBudget": ["spec.selector"]}


def validate(value, schema, where):
    if isinstance(schema, dict):
        if not isinstance(value, dict):
            return problem("%s: expected a mapping, got %r" % (where, value))
        for key, item in value.items():
            if key in schema:
                validate(item, schema[key], "%s.%s" % (where, key))
            elif "*" in schema:
                validate(item, schema["*"], "%s.%s" % (where, key))
            else:
                problem("%s: unknown field %r (known: %s)" % (where, key, sorted(schema)))
    elif isinstance(schema, list):
        if not isinstance(value, list):
            return problem("%s: expected a list, got %r" % (where, value))
        for i, item in enumerate(value):
            validate(item, schema[0], "%s[%d]" % (where, i))
    elif schema is INT and isinstance(value, bool) or not isinstance(value, schema):
        problem("%s: expected %s, got %r" % (where, schema, value))


def get(doc, dotted):
    for key in dotted.split("."):
        if not isinstance(doc, dict) or key not in doc:
            return None
        doc = doc[key]
    return doc


def check_objects(docs, where):
    by_kind = {}
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = "%s %s/%s" % (where, doc.get("kind"), get(doc, "metadata.name"))
        if key not in SCHEMA:
            problem("%s: unknown apiVersion/kind %s (known: %s)" % (name, key, sorted(SCHEMA)))
            continue
        validate(doc, SCHEMA[key], name)
        for path in REQUIRED[doc["kind"]] + ["metadata.name"]:
            if get(doc, path) is None:
                problem("%s: %s is required" % (name, path))
        by_kind.setdefault(doc["kind"], []).append(doc)
    deployments = by_kind.get("Deployment", [])
    if len(deployments) != 1:
        return problem("%s: expected one Deployment, got %d" % (where, len(deployments)))
    deployment = deployments[0]
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"].get("labels", {})

    def selects(selector):
        return selector and all(labels.get(k) == v for k, v in selector.items())
    if not selects(deployment["spec"]["selector"].get("matchLabels")):
        problem("%s: the Deployment's selector does not match its pod labels" % where)
    spec = pod["spec"]
    if not spec.get("securityContext", {}).get("runAsNonRoot"):
        problem("%s: pods must set runAsNonRoot" % where)
    container = spec["containers"][0]
    ports = {p.get("name"): p["containerPort"] for p in container.get("ports", [])}
    need = drain_seconds(container.get("args", []), where)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    if not need <= grace <= need + 15:
        problem("%s: terminationGracePeriodSeconds %s must cover --drain_delay + "
                "--shutdown_grace (%gs) and not much more" % (where, grace, need))
    for probe_name in ("readinessProbe", "livenessProbe"):
        probe = container.get(probe_name)
        if probe is None:
            problem("%s: the container has no %s" % (where, probe_name))
        elif "grpc" in probe:
            if probe["grpc"]["port"] not in ports.values():
                problem("%s: %s probes port %s, not a container port %s"
                        % (where, probe_name, probe["grpc"]["port"], ports))
        elif "health" not in probe.get("exec", {}).get("command", []):
            problem("%s: %s is neither a grpc probe nor `emfit health`" % (where, probe_name))
    readiness = container.get("readinessProbe", {})
    service = get(readiness, "grpc.service") or flag(get(readiness, "exec.command") or [],
                                                     "service")
    if service != "emfit.v1.EmFitService":
        problem("%s: readiness must check the service emfit.v1.EmFitService (NOT_SERVING while "
                "draining), got %r" % (where, service))
    resources = container.get("resources", {})
    for resource, parse in (("cpu", cpu_cores), ("memory", memory_bytes)):
        request = get(resources, "requests." + resource)
        limit = get(resources, "limits." + resource)
        if request is None or limit is None:
            problem("%s: %s request and limit are required" % (where, resource))
        elif parse(request) > parse(limit):
            problem("%s: %s request %s exceeds the limit %s" % (where, resource, request, limit))
    mounts = {m["name"] for m in container.get("volumeMounts", [])}
    volumes = {v["name"] for v in spec.get("volumes", [])}
    if mounts - volumes:
        problem("%s: volumeMounts %s have no volume" % (where, sorted(mounts - volumes)))
    if mounts and not (flag(container["args"], "tls_cert") and flag(container["args"], "tls_key")):
        problem("%s: a mounted TLS secret needs --tls_cert and --tls_key" % where)
    services = by_kind.get("Service", [])
    if not any(s["spec"].get("clusterIP") == "None" for s in services):
        problem("%s: no headless Service (clusterIP: None) for client-side round_robin" % where)
    for s in services:
        if not selects(s["spec"]["selector"]):
            problem("%s: Service %s does not select the pods" % (where, s["metadata"]["name"]))
        for p in s["spec"]["ports"]:
            target = p.get("targetPort", p["port"])
            if target not in ports and target not in ports.values():
                problem("%s: Service %s targets %r, not a container port %s"
                        % (where, s["metadata"]["name"], target, ports))
    for hpa in by_kind.get("HorizontalPodAutoscaler", []):
        ref = hpa["spec"]["scaleTargetRef"]
        if (ref.get("kind"), ref.get("name")) != ("Deployment", name):
            problem("%s: the HPA scales %s, not the Deployment %s" % (where, ref, name))
        if hpa["spec"].get("minReplicas", 1) > hpa["spec"]["maxReplicas"]:
            problem("%s: HPA minReplicas > maxReplicas" % where)
    pdbs = by_kind.get("PodDisruptionBudget", [])
    if not pdbs or not all(selects(p["spec"]["selector"].get("matchLabels")) for p in pdbs):
        problem("%s: a PodDisruptionBudget must select the pods" % where)
    print("k8s %s: %s" % (where, ", ".join("%d %s" % (len(v), k) for k, v in by_kind.items())))


def load_yaml_files(directory):
    docs = []
    for name in sorted(os.listdir(directory)):
        if name.endswith(".yaml") and name != "kustomization.yaml":
            with open(os.path.join(directory, name)) as f:
                docs.extend(d for d in yaml.safe_load_all(f) if d)
    return docs


def check_k8s(repo):
    base = os.path.join(repo, "deploy/k8s/base")
    with open(os.path.join(base, "kustomization.yaml")) as f:
        listed = yaml.safe_load(f)["resources"]
    on_disk = sorted(n for n in os.listdir(base) if n.endswith(".yaml") and
                     n != "kustomization.yaml")
    if sorted(listed) != on_disk:
        problem("deploy/k8s/base/kustomization.yaml lists %s, the folder has %s"
                % (sorted(listed), on_disk))
    check_objects(load_yaml_files(base), "base")
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        # kubectl is not a Debian package; the overlay is then checked as a patch only.
        print("k8s: kubectl absent: the tls overlay is checked as a patch, not rendered")
        with open(os.path.join(repo, "deploy/k8s/tls/tls-patch.yaml")) as f:
            patch = yaml.safe_load(f)
        validate(patch, SCHEMA[("apps/v1", "Deployment")], "tls patch")
        return
    for overlay in ("base", "tls"):
        r = subprocess.run([kubectl, "kustomize", os.path.join(repo, "deploy/k8s", overlay)],
                           capture_output=True, text=True)
        if r.returncode != 0:
            problem("kubectl kustomize deploy/k8s/%s failed:\n%s" % (overlay, r.stderr))
            continue
        check_objects([d for d in yaml.safe_load_all(r.stdout) if d], "kustomize " + overlay)


def main():
    what, repo = sys.argv[1], sys.argv[2]
    {"compose": check_compose, "k8s": check_k8s, "dockerfile": check_dockerfile}[what](repo)
    for p in PROBLEMS:
        print("PROBLEM:", p)
    print("%s: %d problems" % (what, len(PROBLEMS)))
    sys.exit(1 if PROBLEMS else 0)


if __name__ == "__main__":
    main()

"""config/kubernetes.yaml: the sidecar wiring holds together.

The manifest is parsed (python3-yaml), the proxy's configuration is taken
from its ConfigMap and parsed (a small libconfig reader below) and also
checked by the real daemon with `-t -c` in a copy of the pod's file layout:
each volume mount of the proxy container becomes a directory, the ConfigMap's
keys and the TLS Secret's keys (tls.crt, tls.key) become files in it, and the
paths the configuration names are mapped there. Then:

  - the proxy container's ports are exactly the configuration's listeners
    reachable from outside the pod (inbound, metrics); the Service targets an
    inbound listener;
  - the configuration comes from the ConfigMap volume, the certificates from
    the Secret volume at the paths the configuration names;
  - the init container's iptables REDIRECT rule sends port 25 to the
    outbound listener with destination = "original" and matches the MTA
    container's runAsUser (and not the proxy's, which would loop);
  - readiness and liveness probes GET /healthz on the metrics port, which is
    bound where the kubelet can reach it;
  - a non-root proxy on a port below 1024 has the sysctl that allows it, and
    the grace period outlasts shutdown_timeout.
"""

import os
import re
import shlex
import subprocess
import sys
import unittest

try:
    import yaml
except ImportError:
    # Debian's python3-yaml lives in the system interpreter; Bazel may have
    # picked another python3 from PATH.
    if os.path.exists("/usr/bin/python3") and os.path.realpath(sys.executable) != \
            os.path.realpath("/usr/bin/python3") and not os.environ.get("_K8S_TEST_REEXEC"):
        os.environ["_K8S_TEST_REEXEC"] = "1"
        os.execv("/usr/bin/python3", ["/usr/bin/python3"] + sys.argv)
    raise SystemExit("python3-yaml is needed (apt-get install python3-yaml; "
                     "bazel/deps.sh installs it)")

import harness

# ---------------------------------------------------------------------------
# A small libconfig reader: groups are dicts, lists "( )" and arrays "[ ]"
# are Python lists, scalars are str/int/float/bool. Enough for configuration
# files; the daemon's own parser is the authority (see test_daemon_accepts_it).

_TOKEN = re.compile(r"""
    (?P<ws>\s+|\#[^\n]*|//[^\n]*|/\*.*?\*/)
  | (?P<str>"(?:[^"\\]|\\.)*")
  | (?P<num>[-+]?(?:0[xX][0-9a-fA-F]+|[0-9]*\.[0-9]+(?:[eE][-+]?[0-9]+)?|[0-9]+(?:[eE][-+]?[0-9]+)?)L{0,2})
  | (?P<name>[A-Za-z*][-A-Za-z0-9_*]*)
  | (?P<punct>[{}()\[\];,=:])
""", re.S | re.X)


def _tokens(text):
    pos = 0
    line = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise ValueError("line %d: cannot parse %r" % (line, text[pos:pos + 20]))
        kind = m.lastgroup
        if kind != "ws":
            yield kind, m.group(kind), line
        line += m.group(0).count("\n")
        pos = m.end()
    yield "end", "", line


class _Parser:
    def __init__(self, text):
        self.toks = list(_tokens(text))
        self.i = 0

    def peek(self):
        return self.toks[self.i]

    def take(self, value=None):
        t = self.toks[self.i]
        if value is not None and t[1] != value:
            raise ValueError("line %d: expected %r, got %r" % (t[2], value, t[1]))
        self.i += 1
        return t

    def settings(self, closer):
        out = {}
        while self.peek()[1] != closer and self.peek()[0] != "end":
            kind, name, line = self.take()
            if kind != "name":
                raise ValueError("line %d: expected a setting name, got %r" % (line, name))
            if self.peek()[1] not in ("=", ":"):
                raise ValueError("line %d: expected = after %s" % (line, name))
            self.take()
            if name in out:
                raise ValueError("line %d: duplicate setting %s" % (line, name))
            out[name] = self.value()
            if self.peek()[1] in (";", ","):
                self.take()
        return out

    def value(self):
        kind, v, line = self.take()
        if v == "{":
            g = self.settings("}")
            self.take("}")
            return g
        if v in ("(", "["):
            closer = ")" if v == "(" else "]"
            items = []
            while self.peek()[1] != closer:
                items.append(self.value())
                if self.peek()[1] == ",":
                    self.take()
            self.take(closer)
            return items
        if kind == "str":
            s = re.sub(r'\\(.)', lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)),
                       v[1:-1])
            # Adjacent string literals are concatenated.
            while self.peek()[0] == "str":
                s += self.take()[1][1:-1]
            return s
        if kind == "num":
            v = v.rstrip("L")
            if v.lower().startswith(("0x", "+0x", "-0x")):
                return int(v, 16)
            return float(v) if re.search(r"[.eE]", v) else int(v)
        if kind == "name" and v.lower() in ("true", "false"):
            return v.lower() == "true"
        raise ValueError("line %d: unexpected %r" % (line, v))


def parse_libconfig(text):
    p = _Parser(text)
    out = p.settings("")
    if p.peek()[0] != "end":
        raise ValueError("line %d: unexpected %r" % (p.peek()[2], p.peek()[1]))
    return out


def host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host.strip("[]"), int(port)


LOOPBACK = ("127.0.0.1", "::1", "localhost")

# ---------------------------------------------------------------------------


def manifest_path():
    srcdir = os.environ.get("TEST_SRCDIR")
    if srcdir:
        p = os.path.join(srcdir, "smtp_tls_proxy/config/kubernetes.yaml")
        if os.path.exists(p):
            return p
    here = os.path.dirname(os.path.realpath(__file__))
    return os.path.join(os.path.dirname(os.path.dirname(here)), "config", "kubernetes.yaml")


class KubernetesManifestTest(unittest.TestCase):
    maxDiff = 4000

    @classmethod
    def setUpClass(cls):
        with open(manifest_path()) as f:
            docs = [d for d in yaml.safe_load_all(f) if d]
        cls.by_kind = {}
        for d in docs:
            cls.by_kind.setdefault(d["kind"], []).append(d)
        deps = cls.by_kind.get("Deployment", [])
        assert len(deps) == 1, "expected one Deployment, found %d" % len(deps)
        cls.deployment = deps[0]
        cls.pod = cls.deployment["spec"]["template"]["spec"]
        containers = cls.pod["containers"]
        proxies = [c for c in containers if "smtp-tls-proxy" in c.get("image", "") or
                   c["name"] == "smtp-tls-proxy"]
        assert len(proxies) == 1, "expected one smtp-tls-proxy container"
        cls.proxy = proxies[0]
        others = [c for c in containers if c is not cls.proxy]
        assert len(others) == 1, "expected one MTA container beside the proxy"
        cls.mta = others[0]
        cls.volumes = {v["name"]: v for v in cls.pod.get("volumes", [])}

        # The configuration file the proxy is started with.
        args = list(cls.proxy.get("command") or []) + list(cls.proxy.get("args") or [])
        cls.args = args
        cls.config_path = None
        for i, a in enumerate(args):
            if a in ("-c", "--config") and i + 1 < len(args):
                cls.config_path = args[i + 1]
            elif a.startswith("--config="):
                cls.config_path = a.split("=", 1)[1]
        if cls.config_path is None:
            # The image's default CMD (config/Dockerfile).
            cls.config_path = "/etc/smtp-tls-proxy/smtp-tls-proxy.conf"
        cls.config_text = cls.file_in_pod(cls.config_path)
        assert cls.config_text is not None, \
            "%s is not provided by any volume of the proxy container" % cls.config_path
        cls.config = parse_libconfig(cls.config_text)

    # -- the pod's file layout ----------------------------------------------

    @classmethod
    def mount_of(cls, path):
        """(volumeMount, path inside the mount) for a file the proxy opens."""
        best = None
        for m in cls.proxy.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/")
            if path == mp or path.startswith(mp + "/"):
                if best is None or len(mp) > len(best[0]["mountPath"].rstrip("/")):
                    best = (m, path[len(mp):].lstrip("/"))
        return best

    @classmethod
    def volume_files(cls, vol):
        """{file name: source} for a ConfigMap or Secret volume: ('configmap',
        name, key) or ('secret', name, key)."""
        if "configMap" in vol:
            src = vol["configMap"]
            kind, name = "configmap", src["name"]
            keys = None
            cms = [c for c in cls.by_kind.get("ConfigMap", []) if c["metadata"]["name"] == name]
            if cms:
                keys = list((cms[0].get("data") or {}).keys())
        elif "secret" in vol:
            src = vol["secret"]
            kind, name = "secret", src["secretName"]
            # A kubernetes.io/tls Secret (cert-manager, kubectl create secret tls).
            keys = ["tls.crt", "tls.key"]
            secrets = [s for s in cls.by_kind.get("Secret", []) if s["metadata"]["name"] == name]
            if secrets:
                keys = list((secrets[0].get("data") or {}).keys()) + \
                    list((secrets[0].get("stringData") or {}).keys())
        else:
            return None
        if src.get("items"):
            return {it["path"]: (kind, name, it["key"]) for it in src["items"]}
        return {k: (kind, name, k) for k in (keys or [])}

    @classmethod
    def source_of(cls, path):
        """Which ConfigMap/Secret key the proxy container sees at path."""
        mv = cls.mount_of(path)
        if mv is None:
            return None
        m, rel = mv
        vol = cls.volumes.get(m["name"])
        if vol is None:
            return None
        files = cls.volume_files(vol)
        if files is None:
            return None
        if m.get("subPath"):
            if rel:
                return None
            return files.get(m["subPath"])
        return files.get(rel)

    @classmethod
    def file_in_pod(cls, path):
        src = cls.source_of(path)
        if src is None or src[0] != "configmap":
            return None
        cm = [c for c in cls.by_kind["ConfigMap"] if c["metadata"]["name"] == src[1]][0]
        return cm["data"][src[2]]

    # -- helpers -------------------------------------------------------------

    def listeners(self):
        return list(self.config.get("inbound", [])) + list(self.config.get("outbound", []))

    def outbound_original(self):
        outs = [l for l in self.config.get("outbound", [])
                if l.get("destination", "original") == "original"]
        self.assertEqual(len(outs), 1, "expected one outbound listener with "
                         "destination = \"original\"")
        return outs[0]

    def metrics_port(self):
        self.assertIn("metrics_listen", self.config, "the configuration sets no metrics_listen")
        return host_port(self.config["metrics_listen"])

    def container_port(self, c, port):
        """A probe's or Service's port (number or name) as a number."""
        if isinstance(port, int):
            return port
        if str(port).isdigit():
            return int(port)
        for p in c.get("ports", []):
            if p.get("name") == port:
                return p["containerPort"]
        self.fail("port name %r is not declared by container %s" % (port, c["name"]))

    def run_as_user(self, c):
        sc = c.get("securityContext") or {}
        if "runAsUser" in sc:
            return sc["runAsUser"]
        return (self.pod.get("securityContext") or {}).get("runAsUser")

    # -- the checks ----------------------------------------------------------

    def test_container_ports_match_listeners(self):
        external = set()
        for l in self.listeners():
            host, port = host_port(l["listen"])
            if host not in LOOPBACK:
                external.add(port)
        host, mport = self.metrics_port()
        if host not in LOOPBACK:
            external.add(mport)
        declared = [p["containerPort"] for p in self.proxy.get("ports", [])]
        self.assertEqual(len(declared), len(set(declared)), "duplicate containerPort")
        self.assertEqual(set(declared), external,
                         "containerPorts %s vs listeners reachable from outside the pod %s"
                         % (sorted(declared), sorted(external)))
        for p in self.proxy.get("ports", []):
            self.assertIn(p.get("protocol", "TCP"), ("TCP",))
        # Each inbound listener's backend is the MTA inside the pod, and the
        # MTA is not also what the Service exposes.
        inbound_ports = {host_port(l["listen"])[1] for l in self.config.get("inbound", [])}
        for l in self.config.get("inbound", []):
            bhost, _ = host_port(l["backend"])
            self.assertIn(bhost, LOOPBACK, "backend %s is not the MTA in the pod" % l["backend"])
        services = self.by_kind.get("Service", [])
        self.assertTrue(services, "no Service")
        labels = self.deployment["spec"]["template"]["metadata"]["labels"]
        for svc in services:
            sel = svc["spec"].get("selector", {})
            self.assertTrue(sel and all(labels.get(k) == v for k, v in sel.items()),
                            "Service %s does not select the pod" % svc["metadata"]["name"])
            for sp in svc["spec"]["ports"]:
                target = self.container_port(self.proxy, sp.get("targetPort", sp["port"]))
                self.assertIn(target, inbound_ports,
                              "Service port %s targets %d, not an inbound listener" %
                              (sp.get("name"), target))

    def test_config_comes_from_configmap_volume(self):
        src = self.source_of(self.config_path)
        self.assertIsNotNone(src)
        self.assertEqual(src[0], "configmap")
        names = [c["metadata"]["name"] for c in self.by_kind.get("ConfigMap", [])]
        self.assertIn(src[1], names)
        m, _ = self.mount_of(self.config_path)
        self.assertTrue(m.get("readOnly", False) or "configMap" in self.volumes[m["name"]],
                        "the configuration mount is writable")

    def tls_files(self):
        """Every certificate and key file the configuration names."""
        files = []
        blocks = [("tls", self.config.get("tls", {}))]
        for l in self.listeners():
            if "tls" in l:
                blocks.append(("%s.tls" % l["name"], l["tls"]))
        for where, t in blocks:
            for k in ("certificate", "key"):
                v = t.get(k)
                if v is None:
                    continue
                for p in (v if isinstance(v, list) else [v]):
                    files.append(("%s.%s" % (where, k), p))
        return files

    def test_certificates_come_from_secret_volume(self):
        files = self.tls_files()
        self.assertTrue(any(w.endswith("certificate") for w, _ in files),
                        "the configuration names no certificate (the proxy would make a "
                        "self-signed one)")
        for where, p in files:
            self.assertTrue(os.path.isabs(p), "%s = %r is relative" % (where, p))
            src = self.source_of(p)
            self.assertIsNotNone(src, "%s = %s is not provided by any volume" % (where, p))
            self.assertEqual(src[0], "secret", "%s = %s comes from a %s" % (where, p, src[0]))
            m, _ = self.mount_of(p)
            self.assertTrue(m.get("readOnly"), "the Secret mount %s is not readOnly"
                            % m["mountPath"])

    def test_daemon_accepts_it(self):
        """The real binary's -t on the ConfigMap's text, in a copy of the
        pod's layout (mount paths mapped to a scratch directory; the TLS
        Secret's keys hold a generated certificate)."""
        root = harness.new_tmpdir("pod")
        pki = harness.pki()
        text = self.config_text
        for m in self.proxy.get("volumeMounts", []):
            mp = m["mountPath"].rstrip("/")
            local = os.path.join(root, mp.lstrip("/"))
            files = self.volume_files(self.volumes[m["name"]]) or {}
            if m.get("subPath"):
                # One key mounted as the file mp itself.
                os.makedirs(os.path.dirname(local), exist_ok=True)
                placed = {local: files[m["subPath"]]}
            else:
                os.makedirs(local, exist_ok=True)
                placed = {os.path.join(local, n): src for n, src in files.items()}
            for path, (kind, src_name, key) in placed.items():
                if kind == "secret":
                    src = {"tls.crt": pki.cert, "tls.key": pki.key}.get(key)
                    self.assertIsNotNone(src, "Secret key %s: not a kubernetes.io/tls key" % key)
                    with open(src) as f:
                        content = f.read()
                else:
                    content = [c for c in self.by_kind["ConfigMap"]
                               if c["metadata"]["name"] == src_name][0]["data"][key]
                with open(path, "w") as g:
                    g.write(content)
            # Paths in the configuration under this mount now point here.
            text = re.sub(r'"%s((?:/[^"]*)?)"' % re.escape(mp),
                          lambda mm, local=local: '"%s%s"' % (local, mm.group(1)), text)
        conf = os.path.join(root, "pod.conf")
        with open(conf, "w") as f:
            f.write(text)
        r = subprocess.run([harness.proxy_binary(), "-t", "-c", conf], stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        self.assertEqual(r.returncode, 0, "smtp-tls-proxy -t:\n%s%s\n--- config ---\n%s"
                         % (r.stdout.decode(), r.stderr.decode(), text))
        self.assertIn(b"configuration OK", r.stdout + r.stderr)

    def test_init_container_redirects_mta_to_outbound_listener(self):
        out = self.outbound_original()
        ohost, oport = host_port(out["listen"])
        inits = self.pod.get("initContainers", [])
        rules = []
        for c in inits:
            words = []
            for part in list(c.get("command") or []) + list(c.get("args") or []):
                try:
                    words += shlex.split(part)
                except ValueError:
                    words += part.split()
            text = " ".join(words)
            for seg in re.split(r"&&|;|\|\|", text):
                w = seg.split()
                if w and os.path.basename(w[0]) in ("iptables", "ip6tables") and "REDIRECT" in w:
                    rules.append((c, os.path.basename(w[0]), w))
        v4 = [r for r in rules if r[1] == "iptables"]
        self.assertEqual(len(v4), 1, "expected one iptables REDIRECT rule, found %s"
                         % [" ".join(r[2]) for r in rules])
        c, _, w = v4[0]

        def opt(name):
            self.assertIn(name, w, "the rule has no %s: %s" % (name, " ".join(w)))
            return w[w.index(name) + 1]
        self.assertEqual(opt("-t"), "nat")
        self.assertIn("OUTPUT", w, "the sidecar rule belongs in the nat OUTPUT chain")
        self.assertEqual(opt("-p"), "tcp")
        self.assertEqual(opt("--dport"), "25")
        self.assertEqual(int(opt("--to-ports")), oport,
                         "REDIRECT --to-ports %s but the outbound listener is %s"
                         % (opt("--to-ports"), out["listen"]))
        # REDIRECT in OUTPUT rewrites to 127.0.0.1: the listener must be there.
        self.assertIn(ohost, ("127.0.0.1", "0.0.0.0"))
        mta_uid = self.run_as_user(self.mta)
        self.assertIsNotNone(mta_uid, "the MTA container sets no runAsUser")
        self.assertEqual(opt("--uid-owner"), str(mta_uid),
                         "the rule matches UID %s, the MTA runs as %s"
                         % (opt("--uid-owner"), mta_uid))
        proxy_uid = self.run_as_user(self.proxy)
        self.assertIsNotNone(proxy_uid, "the proxy container sets no runAsUser")
        self.assertNotEqual(proxy_uid, mta_uid,
                            "the proxy runs as the MTA's UID: its own connections would loop")
        caps = ((c.get("securityContext") or {}).get("capabilities") or {}).get("add", [])
        self.assertIn("NET_ADMIN", caps)

    def test_probes_hit_healthz_on_metrics_port(self):
        host, mport = self.metrics_port()
        self.assertNotIn(host, LOOPBACK, "metrics_listen %s: the kubelet cannot reach it"
                         % self.config["metrics_listen"])
        for probe in ("readinessProbe", "livenessProbe"):
            p = self.proxy.get(probe)
            self.assertIsNotNone(p, "the proxy container has no %s" % probe)
            g = p.get("httpGet")
            self.assertIsNotNone(g, "%s is not an httpGet" % probe)
            self.assertEqual(g.get("path"), "/healthz", probe)
            self.assertEqual(self.container_port(self.proxy, g["port"]), mport, probe)
            self.assertIn(g.get("scheme", "HTTP"), ("HTTP",), probe)
        ann = self.deployment["spec"]["template"]["metadata"].get("annotations", {})
        if "prometheus.io/port" in ann:
            self.assertEqual(int(ann["prometheus.io/port"]), mport)

    def test_privileges(self):
        uid = self.run_as_user(self.proxy)
        self.assertTrue(uid, "the proxy container must not run as root")
        low = [host_port(l["listen"])[1] for l in self.listeners()
               if host_port(l["listen"])[1] < 1024]
        if low:
            sysctls = {s["name"]: s["value"] for s in
                       (self.pod.get("securityContext") or {}).get("sysctls", [])}
            start = int(sysctls.get("net.ipv4.ip_unprivileged_port_start", 1024))
            self.assertLessEqual(start, min(low),
                                 "UID %s cannot bind port %d: set the pod sysctl "
                                 "net.ipv4.ip_unprivileged_port_start" % (uid, min(low)))
        grace = self.pod.get("terminationGracePeriodSeconds", 30)
        self.assertGreater(grace, int(self.config.get("shutdown_timeout", 30)),
                           "the kubelet would kill the proxy before live sessions finish")


class LibconfigReaderTest(unittest.TestCase):
    """The reader above on the repository's commented example files."""

    def test_examples(self):
        srcdir = os.environ.get("TEST_SRCDIR", "")
        for name in ("minimal.conf", "smtp-tls-proxy.conf"):
            p = os.path.join(srcdir, "smtp_tls_proxy/config", name)
            if not os.path.exists(p):
                continue
            with open(p) as f:
                cfg = parse_libconfig(f.read())
            self.assertIn("inbound", cfg, name)
            for l in cfg["inbound"]:
                host_port(l["listen"])

    def test_syntax(self):
        cfg = parse_libconfig('a = 1; b: "x" "y"; /* c */ g = { h = [ 1, 2 ]; l = ( { n = true; } ); };'
                              ' // end\n f = 1.5;')
        self.assertEqual(cfg, {"a": 1, "b": "xy", "g": {"h": [1, 2], "l": [{"n": True}]},
                               "f": 1.5})


if __name__ == "__main__":
    unittest.main(verbosity=2)

"""The hardened data plane (issue 7, item 6): bearer token checked by a server interceptor (UNAUTHENTICATED, the
servicer never called), TLS and mutual TLS with certificates made at test time, explicit message limits (an
oversized request gets RESOURCE_EXHAUSTED and the same channel keeps working), and a ShardActor with all of it on
serving a PSClient with the same SecurityConfig."""

from __future__ import annotations

import datetime
import ipaddress
import secrets
import threading
from collections.abc import Iterator
from pathlib import Path

import grpc
import numpy as np
import pytest

from ps.security import SecurityConfig, SecurityError
from ps.server import ParameterServerServicer, start_server, stop_server
from ps.store import RowStore, TableConfig
from shark.wire.tensors import encode_tensor
from shark.wire.v1 import ps_pb2, ps_pb2_grpc
from worker.client import PSClient, PSClientError, RetryPolicy

T = 5.0
ONCE = RetryPolicy(attempts=1, deadline_s=T)  # a refused call must fail at once, not after retries
MAX_MSG = 1 << 20
RPCS = ("Pull", "Push", "PullMany", "PushMany", "Assign", "CreateTable", "DropTable", "TableStats", "Checkpoint",
        "Restore", "Health")


# --- certificates, made here -----------------------------------------------------------------------------------
def _make_certs(d: Path) -> dict[str, str]:
    """A CA; a server certificate for 127.0.0.1 and 127.0.0.2 (SAN IP) and "shark-ps" (SAN DNS); a client
    certificate; and a second CA with a client certificate it signed (a stranger). PEM files under d.
    With the `cryptography` package if it imports, else the openssl command."""
    try:
        import cryptography  # noqa: F401
    except ImportError:
        return _make_certs_openssl(d)
    return _make_certs_cryptography(d)


def _make_certs_openssl(d: Path) -> dict[str, str]:
    import shutil
    import subprocess

    if shutil.which("openssl") is None:
        pytest.skip("neither the cryptography package nor the openssl command is available")
    out: dict[str, str] = {}

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=d)

    def ca(stem: str, cn: str) -> None:
        run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
            "-subj", f"/CN={cn}", "-keyout", f"{stem}.key", "-out", f"{stem}.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign")
        out[f"{stem}_key"], out[f"{stem}_cert"] = str(d / f"{stem}.key"), str(d / f"{stem}.pem")

    def leaf(stem: str, cn: str, issuer: str, ext: str) -> None:
        (d / f"{stem}.ext").write_text(ext)
        run("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-subj", f"/CN={cn}",
            "-keyout", f"{stem}.key", "-out", f"{stem}.csr")
        run("x509", "-req", "-in", f"{stem}.csr", "-CA", f"{issuer}.pem", "-CAkey", f"{issuer}.key",
            "-CAcreateserial", "-days", "1", "-sha256", "-extfile", f"{stem}.ext", "-out", f"{stem}.pem")
        out[f"{stem}_key"], out[f"{stem}_cert"] = str(d / f"{stem}.key"), str(d / f"{stem}.pem")

    ca("ca", "shark test CA")
    leaf("server", "shark-ps", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n"
         "subjectAltName=IP:127.0.0.1,IP:127.0.0.2,DNS:shark-ps\n")
    leaf("client", "shark-worker", "ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    ca("other_ca", "some other CA")
    leaf("stranger", "stranger", "other_ca", "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n")
    return out


def _make_certs_cryptography(d: Path) -> dict[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)
    out: dict[str, str] = {}

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(stem: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        (d / f"{stem}.key").write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                          serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
        (d / f"{stem}.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        out[f"{stem}_key"], out[f"{stem}_cert"] = str(d / f"{stem}.key"), str(d / f"{stem}.pem")

    def ca(cn: str) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        cert = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(name(cn)).public_key(key.public_key())
                .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
                .not_valid_after(now + datetime.timedelta(days=1))
                .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                             content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, encipher_only=False,
                                             decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return key, cert

    def leaf(cn: str, issuer: tuple[ec.EllipticCurvePrivateKey, x509.Certificate], usage: x509.ObjectIdentifier,
             san: list[x509.GeneralName] | None = None) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
        key = ec.generate_private_key(ec.SECP256R1())
        b = (x509.CertificateBuilder().subject_name(name(cn)).issuer_name(issuer[1].subject)
             .public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=1))
             .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
             .add_extension(x509.ExtendedKeyUsage([usage]), critical=False))
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        return key, b.sign(issuer[0], hashes.SHA256())

    root = ca("shark test CA")
    write("ca", *root)
    write("server", *leaf("shark-ps", root, ExtendedKeyUsageOID.SERVER_AUTH,
                          [x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                           x509.IPAddress(ipaddress.ip_address("127.0.0.2")), x509.DNSName("shark-ps")]))
    write("client", *leaf("shark-worker", root, ExtendedKeyUsageOID.CLIENT_AUTH))
    other = ca("some other CA")
    write("other_ca", *other)
    write("stranger", *leaf("stranger", other, ExtendedKeyUsageOID.CLIENT_AUTH))
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    return _make_certs(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("token") / "ps.token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return str(path)


# --- a servicer that counts its handler calls --------------------------------------------------------------------
class CountingServicer(ParameterServerServicer):
    """Every RPC handler counts its invocations before doing its work."""

    def __init__(self, store: RowStore, **kw) -> None:
        super().__init__(store, **kw)
        self.calls = 0
        self._count_lock = threading.Lock()

    def _counted(self, rpc: str):
        inner = getattr(super(), rpc)

        def handler(request, context):
            with self._count_lock:
                self.calls += 1
            return inner(request, context)
        return handler


def counting_servicer(max_bytes: int = MAX_MSG) -> CountingServicer:
    s = CountingServicer(RowStore(), max_tensor_bytes=max_bytes)
    for rpc in RPCS:  # instance attributes: add_ParameterServerServicer_to_server binds these
        setattr(s, rpc, s._counted(rpc))
    return s


class Served:
    def __init__(self, security: SecurityConfig | None, host: str = "127.0.0.1") -> None:
        self.servicer = counting_servicer()
        self.server, port = start_server(RowStore(), host=host, max_message_bytes=MAX_MSG, servicer=self.servicer,
                                         security=security)
        self.address = f"{host}:{port}"

    def stop(self) -> None:
        stop_server(self.server)


@pytest.fixture()
def served(request: pytest.FixtureRequest) -> Iterator[Served]:
    s = Served(request.param)
    try:
        yield s
    finally:
        s.stop()


def health(client: PSClient) -> None:
    client.wait_ready(T)


def make_table(client: PSClient, name: str = "t") -> None:
    client.create_tables([TableConfig(name, 8, 1000, "adagrad", init_scale=0.05, seed=1)])


def _token_server(token_file: str) -> Served:
    return Served(SecurityConfig(token_file=token_file))


# --- token -------------------------------------------------------------------------------------------------------
def test_token_ok_missing_wrong(token_file: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s = _token_server(token_file)
    try:
        with PSClient([s.address], "ok", retry=ONCE, security=SecurityConfig(token_file=token_file)) as good:
            health(good)
            make_table(good)
            rows = good.pull({"t": np.arange(5, dtype=np.int64)})["t"]
            assert rows.shape == (5, 8)
        served_calls = s.servicer.calls
        assert served_calls >= 3

        # The same token through an environment variable works too.
        monkeypatch.setenv("SHARK_TEST_PS_TOKEN", Path(token_file).read_text())
        with PSClient([s.address], "env", retry=ONCE, security=SecurityConfig(token_env="SHARK_TEST_PS_TOKEN")) as c:
            health(c)
        served_calls = s.servicer.calls

        wrong_file = tmp_path / "wrong.token"
        wrong_file.write_text(secrets.token_urlsafe(32))
        wrong = SecurityConfig(token_file=str(wrong_file))
        for label, sec in (("missing", None), ("wrong", wrong)):
            with PSClient([s.address], label, retry=ONCE, security=sec) as bad:
                with pytest.raises(PSClientError) as info:
                    bad.pull({"t": np.arange(5, dtype=np.int64)})
                err = info.value
                assert err.code == "UNAUTHENTICATED" and err.attempts == 1  # never retried
                assert s.address in str(err) and "UNAUTHENTICATED" in str(err)
                if sec is not None:
                    assert wrong_file.read_text() not in str(err)
                assert Path(token_file).read_text().strip() not in str(err)
                with pytest.raises(PSClientError, match="UNAUTHENTICATED"):
                    bad.wait_ready(T)  # Health needs the token as well
                with pytest.raises(PSClientError, match="UNAUTHENTICATED"):
                    make_table(bad, "t2")
        # Raw stubs: every RPC, including a malformed body, is refused before the servicer.
        with grpc.insecure_channel(s.address) as ch:
            stub = ps_pb2_grpc.ParameterServerStub(ch)
            for md in (None, (("authorization", "Bearer nope-nope-nope-nope"),), (("authorization", "Basic x"),)):
                with pytest.raises(grpc.RpcError) as e:
                    stub.Health(ps_pb2.HealthRequest(), timeout=T, metadata=md)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert Path(token_file).read_text().strip() not in (e.value.details() or "")
            raw = ch.unary_unary("/shark.wire.v1.ParameterServer/PushMany")  # bytes in, bytes out
            with pytest.raises(grpc.RpcError) as e:
                raw(b"\xff\x00 not a protobuf", timeout=T)
            assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert s.servicer.calls == served_calls  # ZERO handler calls for every rejected call
    finally:
        s.stop()


def test_token_config_never_holds_or_leaks_the_secret(token_file: str, monkeypatch: pytest.MonkeyPatch) -> None:
    sec = SecurityConfig(token_file=token_file)
    token = Path(token_file).read_text().strip()
    assert token not in repr(sec) and token not in str(sec.describe())
    assert sec.read_token() == token
    with pytest.raises(SecurityError, match="NAME of an environment variable") as e:
        SecurityConfig(token_env="abc-def-ghi!")  # looks like a pasted token
    assert "abc-def-ghi" not in str(e.value)
    with pytest.raises(SecurityError, match="not set"):
        SecurityConfig(token_env="SHARK_SURELY_UNSET_VAR").read_token()
    monkeypatch.setenv("SHARK_SHORT", "short")
    with pytest.raises(SecurityError, match="shorter") as e:
        SecurityConfig(token_env="SHARK_SHORT").read_token()
    assert "short'" not in str(e.value) and "'short" not in str(e.value)
    with pytest.raises(SecurityError, match="not both"):
        SecurityConfig(token_file=token_file, token_env="X")
    with pytest.raises(SecurityError, match="cannot read"):
        SecurityConfig(token_file="/nonexistent/token").read_token()


# --- TLS and mutual TLS -----------------------------------------------------------------------------------------
def test_tls_only_works_and_plaintext_client_fails(certs: dict[str, str]) -> None:
    s = Served(SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"]))
    try:
        with PSClient([s.address], "tls", retry=ONCE, security=SecurityConfig(tls_ca=certs["ca_cert"])) as c:
            health(c)
            make_table(c)
            assert c.pull({"t": np.arange(3, dtype=np.int64)})["t"].shape == (3, 8)
        calls = s.servicer.calls
        with PSClient([s.address], "plain", retry=ONCE) as plain:
            with pytest.raises(PSClientError) as e:
                plain.pull({"t": np.arange(3, dtype=np.int64)})
            assert e.value.code == "UNAVAILABLE"
        # A client that trusts another CA refuses the shard's certificate.
        with PSClient([s.address], "other-ca", retry=ONCE,
                      security=SecurityConfig(tls_ca=certs["other_ca_cert"])) as wrong_ca, pytest.raises(PSClientError):
            wrong_ca.pull({"t": np.arange(3, dtype=np.int64)})
        assert s.servicer.calls == calls
    finally:
        s.stop()


def test_tls_server_name_override(certs: dict[str, str]) -> None:
    """A certificate for a DNS name (not the IP) works when clients are told the name to expect."""
    s = Served(SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"]))
    try:
        sec = SecurityConfig(tls_ca=certs["ca_cert"], tls_server_name="shark-ps")
        with PSClient([s.address], "named", retry=ONCE, security=sec) as c:
            health(c)
    finally:
        s.stop()


def test_mutual_tls(certs: dict[str, str], token_file: str) -> None:
    server_sec = SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"], tls_ca=certs["ca_cert"],
                                require_client_cert=True, token_file=token_file)
    s = Served(server_sec)
    try:
        client_sec = SecurityConfig(tls_ca=certs["ca_cert"], client_cert=certs["client_cert"],
                                    client_key=certs["client_key"], token_file=token_file)
        with PSClient([s.address], "mtls", retry=ONCE, security=client_sec) as c:
            health(c)
            make_table(c)
            assert c.pull({"t": np.arange(3, dtype=np.int64)})["t"].shape == (3, 8)
        calls = s.servicer.calls
        no_cert = SecurityConfig(tls_ca=certs["ca_cert"], token_file=token_file)
        stranger = SecurityConfig(tls_ca=certs["ca_cert"], client_cert=certs["stranger_cert"],
                                  client_key=certs["stranger_key"], token_file=token_file)
        for label, sec in (("no-cert", no_cert), ("stranger", stranger)):
            with PSClient([s.address], label, retry=ONCE, security=sec) as bad:
                with pytest.raises(PSClientError) as e:
                    bad.pull({"t": np.arange(3, dtype=np.int64)})
                assert e.value.code == "UNAVAILABLE", label  # the TLS handshake fails: no call reaches the server
        # A valid certificate but no token: still refused by the interceptor.
        cert_no_token = SecurityConfig(tls_ca=certs["ca_cert"], client_cert=certs["client_cert"],
                                       client_key=certs["client_key"])
        with PSClient([s.address], "cert-no-token", retry=ONCE, security=cert_no_token) as bad, \
                pytest.raises(PSClientError, match="UNAUTHENTICATED"):
            bad.pull({"t": np.arange(3, dtype=np.int64)})
        assert s.servicer.calls == calls  # handler never called
    finally:
        s.stop()


def test_security_config_validation(certs: dict[str, str]) -> None:
    with pytest.raises(SecurityError, match="go together"):
        SecurityConfig(tls_cert=certs["server_cert"])
    with pytest.raises(SecurityError, match="require_client_cert"):
        SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"], require_client_cert=True)
    with pytest.raises(SecurityError, match="tls_ca"):
        SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"]).check_cluster()
    with pytest.raises(SecurityError, match="client_cert"):
        SecurityConfig(tls_cert=certs["server_cert"], tls_key=certs["server_key"], tls_ca=certs["ca_cert"],
                       require_client_cert=True).check_cluster()
    with pytest.raises(SecurityError, match="not PEM"):
        SecurityConfig.read_pem(__file__, "CA bundle")
    SecurityConfig().check_cluster()  # all off is a valid cluster


# --- message limits -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("tls", [False, True])
def test_oversized_request_then_next_call_works(certs: dict[str, str], token_file: str, tls: bool) -> None:
    sec = SecurityConfig(token_file=token_file)
    csec = sec
    if tls:
        sec = SecurityConfig(token_file=token_file, tls_cert=certs["server_cert"], tls_key=certs["server_key"])
        csec = SecurityConfig(token_file=token_file, tls_ca=certs["ca_cert"])
    s = Served(sec)
    try:
        token = csec.read_token()
        md = (("authorization", f"Bearer {token}"),)
        creds = grpc.ssl_channel_credentials(Path(certs["ca_cert"]).read_bytes()) if tls else None
        ch = grpc.secure_channel(s.address, creds) if creds else grpc.insecure_channel(s.address)
        with ch:
            stub = ps_pb2_grpc.ParameterServerStub(ch)
            stub.CreateTable(ps_pb2.CreateTableRequest(name="big", dim=8, capacity=1000, optimizer="adagrad",
                                                       learning_rate=0.05, init_scale=0.05, seed=1),
                             timeout=T, metadata=md)
            calls = s.servicer.calls
            ids = np.arange(MAX_MSG // 8 + 1024, dtype=np.int64) % 1000  # > MAX_MSG bytes of ids
            req = ps_pb2.PullRequest(table="big", ids=encode_tensor(ids, compress_above=1 << 40))
            with pytest.raises(grpc.RpcError) as e:
                stub.Pull(req, timeout=T, metadata=md)
            assert e.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert s.servicer.calls == calls  # refused by gRPC before the handler
            # The same channel keeps working.
            assert stub.Health(ps_pb2.HealthRequest(), timeout=T, metadata=md).status == \
                ps_pb2.HealthResponse.SERVING
            small = ps_pb2.PullRequest(table="big", ids=encode_tensor(np.arange(4, dtype=np.int64)))
            assert stub.Pull(small, timeout=T, metadata=md).rows.shape == [4, 8]
    finally:
        s.stop()


def test_oversized_push_from_psclient_is_resource_exhausted_and_client_recovers(token_file: str) -> None:
    s = _token_server(token_file)
    try:
        with PSClient([s.address], "big", retry=ONCE, staleness=0,
                      security=SecurityConfig(token_file=token_file)) as c:
            make_table(c, "b")
            # ids are capped by the capacity: a wide table makes the push large (the client allows 64 MB).
            c.create_tables([TableConfig("wide", 512, 1000, "adagrad", init_scale=0.05, seed=1)])
            wide_ids = np.arange(1000, dtype=np.int64)
            counts = (np.ones(1000, np.uint32), np.zeros(1000, np.uint32))
            # 2 MB of random floats (lz4 cannot shrink them) > the 1 MB limit: refused by gRPC.
            grads = np.random.default_rng(0).standard_normal((1000, 512)).astype(np.float32)
            with pytest.raises(PSClientError, match="RESOURCE_EXHAUSTED"):  # staleness 0: push waits for it
                c.push({"wide": (wide_ids, grads, *counts)})
            # 2 MB of ones travel as a few KB of lz4: the decoded size is over the cap, refused before allocating.
            with pytest.raises(PSClientError, match="INVALID_ARGUMENT.*over the limit"):
                c.push({"wide": (wide_ids, np.ones((1000, 512), np.float32), *counts)})
            assert c.pull({"b": np.arange(3, dtype=np.int64)})["b"].shape == (3, 8)  # the client still works
    finally:
        s.stop()


# --- the Ray shard actor with everything on --------------------------------------------------------------------
def test_shard_actor_with_mtls_and_token(ray_session, certs: dict[str, str], token_file: str) -> None:
    import ray

    from ps.actor import RayShardActor

    sec = SecurityConfig(token_file=token_file, tls_cert=certs["server_cert"], tls_key=certs["server_key"],
                         tls_ca=certs["ca_cert"], require_client_cert=True, client_cert=certs["client_cert"],
                         client_key=certs["client_key"])
    sec.check_cluster()
    actor = RayShardActor.options(num_cpus=0).remote(0, 1, security=sec)
    try:
        info = ray.get(actor.info.remote(), timeout=60)
        assert info["security"] == {"token": "file", "tls": True, "mutual_tls": True}
        token = Path(token_file).read_text().strip()
        assert token not in str(info)
        address = info["address"]
        with PSClient([address], "actor-client", retry=ONCE, security=sec) as c:
            c.wait_ready(10)
            make_table(c, "a")
            c.push({"a": (np.arange(4, dtype=np.int64), np.ones((4, 8), np.float32), np.ones(4, np.uint32),
                          np.zeros(4, np.uint32))})
            c.flush()
            assert c.pull({"a": np.arange(4, dtype=np.int64)})["a"].shape == (4, 8)
        no_token = SecurityConfig(tls_ca=certs["ca_cert"], client_cert=certs["client_cert"],
                                  client_key=certs["client_key"])
        with PSClient([address], "no-token", retry=ONCE, security=no_token) as bad, \
                pytest.raises(PSClientError, match="UNAUTHENTICATED"):
            bad.pull({"a": np.arange(4, dtype=np.int64)})
        with PSClient([address], "plain", retry=ONCE) as plain, pytest.raises(PSClientError, match="UNAVAILABLE"):
            plain.pull({"a": np.arange(4, dtype=np.int64)})
    finally:
        try:
            ray.get(actor.stop.remote(), timeout=T)
        finally:
            ray.kill(actor)


def test_shard_actor_refuses_a_missing_token_file_without_leaking(ray_session, tmp_path: Path) -> None:
    import ray

    from ps.actor import RayShardActor

    actor = RayShardActor.options(num_cpus=0, max_restarts=0).remote(
        0, 1, security=SecurityConfig(token_file=str(tmp_path / "absent.token")))
    with pytest.raises(Exception, match="cannot read the token file"):
        ray.get(actor.address.remote(), timeout=60)
    ray.kill(actor)


# --- a frozen peer -------------------------------------------------------------------------------------------------
_FROZEN_SERVER = """
import sys
sys.path.insert(0, {repo!r})
from ps.server import start_server
from ps.store import RowStore
server, port = start_server(RowStore())
print(port, flush=True)
sys.stdin.read()
"""


def test_keepalive_detects_a_frozen_shard() -> None:
    """A shard process that stops (SIGSTOP: the socket stays open, nothing answers) fails the call in flight with
    UNAVAILABLE after the keepalive timeout, long before the call's 60 s deadline."""
    import os
    import signal
    import subprocess
    import sys
    import time

    repo = str(Path(__file__).resolve().parents[2])
    proc = subprocess.Popen([sys.executable, "-c", _FROZEN_SERVER.format(repo=repo)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        with PSClient([f"127.0.0.1:{port}"], "frozen", retry=RetryPolicy(attempts=1, deadline_s=60.0),
                      keepalive_ms=(500, 1000)) as c:
            c.wait_ready(T)
            make_table(c)
            os.kill(proc.pid, signal.SIGSTOP)
            start = time.monotonic()
            with pytest.raises(PSClientError, match="UNAVAILABLE"):
                c.pull({"t": np.arange(3, dtype=np.int64)})
            assert time.monotonic() - start < 15.0
            os.kill(proc.pid, signal.SIGCONT)
    finally:
        os.kill(proc.pid, signal.SIGCONT)
        proc.kill()
        proc.wait()

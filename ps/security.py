"""SecurityConfig: how the data plane (worker/coordinator -> shard gRPC) is authenticated and encrypted.

Pure (os only, no grpc): it crosses Ray actor boundaries and lives in ClusterConfig. It holds *where* secrets are
(file paths, an environment variable's name), never the secrets themselves: a token never appears in a config
object, a Ray actor argument, a log line, a summary or an error message. Files and the variable are read on the
node where the actor runs (the shard's node for the server side, the worker's node for the client side).

Default: everything off; shards then serve plaintext on the node's own address (loopback on one machine).

- token_file / token_env (at most one): a shared bearer token. Shards reject any call, Health included, whose
  ``authorization`` metadata is not ``Bearer <token>`` with UNAUTHENTICATED before the servicer runs; clients send
  it on every call.
- tls_cert + tls_key: the shards' certificate chain and key (PEM): the shards serve TLS only.
- tls_ca: CA bundle (PEM). Clients verify the shards' certificate against it; with require_client_cert, shards
  accept only clients presenting a certificate signed by it (mutual TLS).
- client_cert + client_key: what clients (workers, the coordinator) present under mutual TLS.
- tls_server_name: the name clients expect in the shard certificate when it is not the shard's IP (e.g. one
  certificate for "shark-ps" on every node); default: the address dialled (the certificate needs the IP as SAN).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, fields

__all__ = ["MIN_TOKEN_CHARS", "SecurityConfig", "SecurityError"]

MIN_TOKEN_CHARS = 16


class SecurityError(ValueError):
    """A security setting cannot be used (missing file, empty token, ...). Never carries a secret."""


@dataclass(frozen=True)
class SecurityConfig:
    token_file: str | None = None
    token_env: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_ca: str | None = None
    require_client_cert: bool = False
    client_cert: str | None = None
    client_key: str | None = None
    tls_server_name: str | None = None

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if f.name == "require_client_cert":
                if not isinstance(v, bool):
                    raise SecurityError(f"require_client_cert must be a bool, got {type(v).__name__}")
            elif v is not None and (not isinstance(v, str) or not v.strip()):
                raise SecurityError(f"{f.name} must be a non-empty string or None")
        if self.token_file and self.token_env:
            raise SecurityError("give the token as a file (token_file) or an environment variable (token_env), "
                                "not both")
        if self.token_env is not None and not _is_env_name(self.token_env):
            # Probably the token itself pasted where a variable NAME belongs: say so without echoing it.
            raise SecurityError("token_env must be the NAME of an environment variable ([A-Za-z_][A-Za-z0-9_]*), "
                                "not the token")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise SecurityError("tls_cert and tls_key go together (the shards' certificate and its private key)")
        if bool(self.client_cert) != bool(self.client_key):
            raise SecurityError("client_cert and client_key go together")
        if self.require_client_cert and not (self.tls_cert and self.tls_ca):
            raise SecurityError("require_client_cert (mutual TLS) needs tls_cert, tls_key and tls_ca (the CA that "
                                "signs client certificates)")
        if self.client_cert and not self.tls_ca:
            raise SecurityError("client_cert needs tls_ca (the CA that signed the shards' certificate)")

    # --- what is on ------------------------------------------------------------------------------------------
    @property
    def has_token(self) -> bool:
        return bool(self.token_file or self.token_env)

    @property
    def server_tls(self) -> bool:
        return self.tls_cert is not None

    @property
    def client_tls(self) -> bool:
        return self.tls_ca is not None

    @property
    def enabled(self) -> bool:
        return self.has_token or self.server_tls or self.client_tls

    def check_cluster(self) -> None:
        """One config for both sides of a cluster (shards and their clients): the two sides must agree."""
        if self.server_tls and not self.tls_ca:
            raise SecurityError("TLS on the shards (tls_cert) needs tls_ca so that clients can verify them")
        if self.tls_ca and not self.server_tls:
            raise SecurityError("tls_ca without tls_cert/tls_key: clients would speak TLS to plaintext shards")
        if self.require_client_cert and not self.client_cert:
            raise SecurityError("mutual TLS (require_client_cert) needs client_cert/client_key for the workers")
        if self.client_cert and not self.require_client_cert:
            raise SecurityError("client_cert without require_client_cert: the shards would not check it")

    def describe(self) -> dict[str, object]:
        """For summaries and logs: what is on, never a secret (paths and the variable's name are not secrets)."""
        return {"token": ("file" if self.token_file else "env" if self.token_env else None),
                "tls": self.server_tls or self.client_tls, "mutual_tls": self.require_client_cert}

    # --- reading, on the node where it is used ---------------------------------------------------------------
    def read_token(self) -> str | None:
        """The token (stripped), or None when off. SecurityError names the file or variable, never the value."""
        if self.token_file:
            try:
                with open(self.token_file, "rb") as fh:
                    raw = fh.read(4096 + 1)
            except OSError as exc:
                raise SecurityError(f"cannot read the token file {self.token_file!r}: {exc.strerror}") from None
            where = f"token file {self.token_file!r}"
            if len(raw) > 4096:
                raise SecurityError(f"{where} is larger than 4096 bytes: not a token")
            try:
                token = raw.decode("ascii").strip()
            except UnicodeDecodeError:
                raise SecurityError(f"{where} is not ASCII text") from None
        elif self.token_env:
            where = f"environment variable {self.token_env}"
            value = os.environ.get(self.token_env)
            if value is None:
                raise SecurityError(f"{where} is not set on this node")
            token = value.strip()
        else:
            return None
        if len(token) < MIN_TOKEN_CHARS:
            raise SecurityError(f"the token in {where} is shorter than {MIN_TOKEN_CHARS} characters "
                                f"(make one with: python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        if not all(33 <= ord(c) < 127 for c in token):
            raise SecurityError(f"the token in {where} must be printable ASCII without spaces")
        return token

    @staticmethod
    def read_pem(path: str, what: str) -> bytes:
        try:
            with open(path, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise SecurityError(f"cannot read the {what} {path!r}: {exc.strerror}") from None
        if b"-----BEGIN" not in data:
            raise SecurityError(f"the {what} {path!r} is not PEM")
        return data


def _is_env_name(name: str) -> bool:
    return (name[0].isalpha() or name[0] == "_") and all(c.isalnum() or c == "_" for c in name) and name.isascii()

"""A second redis-server (the Debian package) for the security tests: `requirepass` on a plain port, and the
same password on a TLS port when the build has TLS, with the certificate made in the test."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import redis

from herald.errors import StackError
from herald.stack import procs
from herald.stack.redis import redis_server_binary
from tests.support.tls import TlsFiles

REDIS_PASSWORD = "RedisPassw0rdNeverLogged"


def redis_has_tls() -> bool:
    """A build with TLS (Debian's is: BUILD_TLS=yes) names its TLS options in the binary; one without does not."""
    return b"tls-cert-file" in Path(redis_server_binary()).read_bytes()


@dataclass
class SecuredRedis:
    pid: int
    port: int
    tls_port: int | None
    tls: TlsFiles

    def url(self, password: str = REDIS_PASSWORD, db: int = 0) -> str:
        return f"redis://:{quote(password, safe='')}@127.0.0.1:{self.port}/{db}"

    def tls_url(self, password: str = REDIS_PASSWORD, db: int = 0) -> str:
        if self.tls_port is None:
            raise StackError("this redis-server has no TLS")
        return (
            f"rediss://:{quote(password, safe='')}@127.0.0.1:{self.tls_port}/{db}"
            f"?ssl_ca_certs={quote(str(self.tls.ca_cert))}&ssl_cert_reqs=required"
        )

    def stop(self) -> None:
        procs.terminate(self.pid, timeout_s=10.0)


def start_secured_redis(directory: Path, tls: TlsFiles, *, with_tls: bool) -> SecuredRedis:
    directory.mkdir(parents=True, exist_ok=True)
    port = procs.free_port()
    argv = [
        redis_server_binary(),
        "--port", str(port),
        "--bind", "127.0.0.1",
        "--daemonize", "no",
        "--dir", str(directory),
        "--save", "",
        "--appendonly", "yes",  # herald doctor checks AOF; an unrelated failure would hide what we test
        "--requirepass", REDIS_PASSWORD,
        "--logfile", str(directory / "redis.log"),
    ]  # fmt: skip
    tls_port = procs.free_port() if with_tls else None
    if tls_port is not None:
        argv += [
            "--tls-port", str(tls_port),
            "--tls-cert-file", str(tls.server_cert),
            "--tls-key-file", str(tls.server_key),
            "--tls-ca-cert-file", str(tls.ca_cert),
            "--tls-auth-clients", "no",
        ]  # fmt: skip
    pid = procs.spawn_detached(argv, log_path=directory / "redis.out", cwd=directory)
    server = SecuredRedis(pid, port, tls_port, tls)

    def answers() -> bool:
        client = redis.Redis.from_url(server.url(), socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    if not procs.wait_for(answers, timeout_s=30.0, interval_s=0.1):
        server.stop()
        raise StackError(f"secured redis-server did not answer:\n{procs.tail(directory / 'redis.log')}")
    return server

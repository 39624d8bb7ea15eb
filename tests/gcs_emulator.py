"""A Cloud Storage emulator for tests: the real clients, unchanged, against `gs://` offline.

`gcs_emulator()` starts gcp-storage-emulator (pinned in requirements.in) in a child process on a
free loopback port, creates a bucket and, for the duration of the `with`, sets the environment
that points every client at it (restored afterwards):

* google-cloud-storage (and so Beam's GcsIO / `FileSystems` / ReadFromText, WriteToParquet, ...):
  `STORAGE_EMULATOR_HOST`. The client then uses anonymous credentials by itself.
* Beam builds its own client from Application Default Credentials, and without any it retries
  `google.auth.default()` with back-off for ~20 s before connecting anonymously.
  `GOOGLE_APPLICATION_CREDENTIALS` names a throw-away `authorized_user` file whose access token
  is valid until 2999, so nothing is ever refreshed (no network) and a developer's own ADC is
  never sent anywhere. `GOOGLE_CLOUD_PROJECT` names a fake project.
* TensorFlow's built-in GCS filesystem (tf.io.gfile, tf.data, SavedModel, TFT's writes) has
  its endpoints compiled in (https://www.googleapis.com/storage/v1/ and
  https://storage.googleapis.com/). Its libcurl honours `https_proxy` and `CURL_CA_BUNDLE`, so
  the child also runs a small loopback proxy: it accepts CONNECT to those two hosts only,
  terminates TLS with a certificate made for the run (its CA is `CURL_CA_BUNDLE`), and relays
  the plain request to the emulator. `GOOGLE_AUTH_TOKEN_FOR_TESTING` and `NO_GCE_CHECK` keep TF
  from fetching a token. The proxy also covers what the emulator lacks or does differently
  from GCS (see `_Request.normalised` and `_storage_layout`); docs/gcs-emulator-findings.md
  lists it all.
* pyarrow's GcsFileSystem ignores both variables: use `GcsEmulator.arrow_filesystem()`.

Why a child process: the emulator is a Python HTTP server; in-process, any native client that
blocks while holding the GIL (pyarrow's `open_input_file`) deadlocks against it.

Run directly (`python tests/gcs_emulator.py BUCKET WORKDIR`) it is that child: it prints one JSON line
with its ports and serves until its stdin closes.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import logging
import os
import re
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

PROJECT = "emulator-project"
GOOGLE_HOSTS = ("www.googleapis.com", "storage.googleapis.com")
_START_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class GcsEmulator:
    """A running emulator: one bucket, reachable as `gs://{bucket}/...` by every client."""

    bucket: str
    endpoint: str  # http://127.0.0.1:PORT, the JSON API (what STORAGE_EMULATOR_HOST holds)

    def uri(self, *parts: str) -> str:
        """`gs://bucket/part/part...`"""
        return "/".join([f"gs://{self.bucket}", *(p.strip("/") for p in parts)])

    def client(self):  # noqa: ANN201 - google.cloud.storage.Client
        """A google-cloud-storage client on the emulator (anonymous, as STORAGE_EMULATOR_HOST)."""
        from google.cloud import storage

        return storage.Client(project=PROJECT)

    def arrow_filesystem(self):  # noqa: ANN201 - pyarrow.fs.GcsFileSystem
        """pyarrow's GCS filesystem on the emulator; paths are `bucket/key`, without `gs://`."""
        from pyarrow import fs

        return fs.GcsFileSystem(
            anonymous=True,
            endpoint_override=urlsplit(self.endpoint).netloc,
            scheme="http",
            retry_time_limit=datetime.timedelta(seconds=5),
        )


@contextlib.contextmanager
def gcs_emulator(bucket: str | None = None) -> Iterator[GcsEmulator]:
    """Start the emulator with `bucket` (default: a unique name), point the clients at it."""
    bucket = bucket or f"test-{uuid.uuid4().hex[:12]}"
    with tempfile.TemporaryDirectory(prefix="gcs-emulator-") as tmp:
        child = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), bucket, tmp],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            ready = _read_ready_line(child)
            endpoint = f"http://127.0.0.1:{ready['emulator_port']}"
            credentials = Path(tmp) / "adc.json"
            credentials.write_text(json.dumps(_FAKE_ADC))
            no_proxy = ",".join(filter(None, ["127.0.0.1,localhost", os.environ.get("no_proxy")]))
            env = {
                "STORAGE_EMULATOR_HOST": endpoint,
                "GOOGLE_APPLICATION_CREDENTIALS": str(credentials),
                "GOOGLE_CLOUD_PROJECT": PROJECT,
                "https_proxy": f"http://127.0.0.1:{ready['proxy_port']}",
                "no_proxy": no_proxy,
                "NO_PROXY": no_proxy,
                "CURL_CA_BUNDLE": ready["ca"],
                "GOOGLE_AUTH_TOKEN_FOR_TESTING": "emulator-token",
                "NO_GCE_CHECK": "true",
            }
            with _environ(env):
                yield GcsEmulator(bucket=bucket, endpoint=endpoint)
        finally:
            child.stdin.close()  # the child's signal to stop
            try:
                child.wait(timeout=10)
            except subprocess.TimeoutExpired:
                child.kill()
                child.wait()


# An `authorized_user` ADC file whose access token never expires: google.auth.default() loads
# it without any network and nothing refreshes it. It only ever reaches the emulator.
_FAKE_ADC = {
    "type": "authorized_user",
    "client_id": "emulator",
    "client_secret": "emulator",
    "refresh_token": "emulator",
    "token": "emulator-token",
    "expiry": "2999-01-01T00:00:00Z",
    "quota_project_id": PROJECT,
}


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _read_ready_line(child: subprocess.Popen) -> dict:
    """The child's one JSON line, or its failure within the start time-out."""
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(_START_TIMEOUT_S)
    if not lines or not lines[0].strip():
        child.kill()
        raise RuntimeError(f"the GCS emulator did not start (exit code {child.poll()})")
    return json.loads(lines[0])


# --- the child process -----------------------------------------------------------------------


def _serve(bucket: str, workdir: str) -> None:
    from gcp_storage_emulator.server import create_server

    # Errors only (its batch handler warns on every call), on stderr, which the test captures.
    logging.basicConfig(level=logging.ERROR, format="gcs-emulator %(levelname)s %(message)s")

    emulator = create_server("127.0.0.1", 0, in_memory=True, default_bucket=bucket)
    emulator.start()
    try:
        emulator_port = emulator._api._httpd.server_address[1]
        ca, context = _tls_context(Path(workdir))
        proxy = _Proxy(("127.0.0.1", emulator_port), context)
        threading.Thread(target=proxy.serve_forever, daemon=True).start()
        ready = {"emulator_port": emulator_port, "proxy_port": proxy.port, "ca": str(ca)}
        print(json.dumps(ready), flush=True)
        os.dup2(2, 1)  # nothing else on the pipe that the parent stopped reading
        sys.stdin.read()  # until the parent closes our stdin (or dies)
        proxy.shutdown()
        proxy.server_close()
    finally:
        emulator.stop()


def _tls_context(workdir: Path) -> tuple[Path, ssl.SSLContext]:
    """A CA made for this run, and a server context whose certificate it signed for
    GOOGLE_HOSTS."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gcs-emulator test CA")])

    def certificate(subject: x509.Name, public_key, is_ca: bool) -> x509.Certificate:  # noqa: ANN001
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_name)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=7))
            .add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
        )
        if is_ca:
            builder = builder.add_extension(
                x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False
            )
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName([x509.DNSName(host) for host in GOOGLE_HOSTS]),
                critical=False,
            ).add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False)
        return builder.sign(ca_key, hashes.SHA256())

    ca = certificate(ca_name, ca_key.public_key(), is_ca=True)
    leaf_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, GOOGLE_HOSTS[0])])
    leaf = certificate(leaf_name, key.public_key(), is_ca=False)
    pem = serialization.Encoding.PEM
    ca_path, chain_path, key_path = (workdir / n for n in ("ca.pem", "chain.pem", "key.pem"))
    ca_path.write_bytes(ca.public_bytes(pem))
    chain_path.write_bytes(leaf.public_bytes(pem) + ca.public_bytes(pem))
    key_path.write_bytes(
        key.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(chain_path, key_path)
    return ca_path, context


class _Proxy(socketserver.ThreadingTCPServer):
    """Loopback proxy in front of the emulator: CONNECT to GOOGLE_HOSTS (TLS terminated here)
    and plain requests alike go to the emulator, one request per connection (the emulator
    answers HTTP/1.0 and closes)."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, upstream: tuple[str, int], context: ssl.SSLContext) -> None:
        self.upstream, self.context = upstream, context
        super().__init__(("127.0.0.1", 0), _ProxyHandler)
        self.port = self.server_address[1]


class _ProxyHandler(socketserver.BaseRequestHandler):
    server: _Proxy

    def handle(self) -> None:
        client = self.request
        client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        head, rest = _read_head(client)
        if head is None:
            return
        method, target = head.split(b"\r\n", 1)[0].split(b" ")[:2]
        if method == b"CONNECT":
            if target.decode().rsplit(":", 1)[0] not in GOOGLE_HOSTS:
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            client = self.server.context.wrap_socket(client, server_side=True)
            head, rest = _read_head(client)
            if head is None:
                return
        request = _Request.parse(head)
        if request.header(b"expect").lower() == b"100-continue":
            client.sendall(b"HTTP/1.1 100 Continue\r\n\r\n")  # the emulator never does
        body = _read_body(client, request, rest)
        layout = _STORAGE_LAYOUT.match(urlsplit(request.target.decode()).path)
        if request.method == b"GET" and layout:
            # TF 2.21 asks this before renaming a "directory"; the emulator lacks the call.
            client.sendall(_json_response(_storage_layout(layout["bucket"])))
            return
        host, port = self.server.server_address
        with socket.create_connection(self.server.upstream) as upstream:
            upstream.sendall(request.normalised(body, f"{host}:{port}"))
            while chunk := upstream.recv(65536):
                client.sendall(chunk)
        with contextlib.suppress(OSError):
            client.close()


@dataclass
class _Request:
    method: bytes
    target: bytes
    version: bytes
    headers: list[tuple[bytes, bytes]]

    @classmethod
    def parse(cls, head: bytes) -> _Request:
        request_line, *lines = head.split(b"\r\n")
        method, target, version = request_line.split(b" ")
        headers = [tuple(part.strip() for part in line.split(b":", 1)) for line in lines]
        return cls(method, target, version, headers)

    def header(self, name: bytes) -> bytes:
        return next((v for n, v in self.headers if n.lower() == name), b"")

    @property
    def chunked(self) -> bool:
        return self.header(b"transfer-encoding").lower() == b"chunked"

    def normalised(self, body: bytes, proxy_host: str) -> bytes:
        """The request as the emulator should get it, for it to answer as GCS would:

        * Host becomes the proxy's own address, so the emulator's resumable-upload Location
          points back here (plain HTTP, direct: no_proxy covers 127.0.0.1).
        * TF sends `Transfer-Encoding: chunked` together with a `Content-Length`; the emulator
          would trust the length and store the chunk framing. Chunked wins (RFC 9112).
        * `Expect` is dropped (answered by the proxy).
        * An empty `uploadType=media` upload (TF's directory markers, `dir/`) crashes the
          emulator; the same empty object goes as a multipart upload instead.
        """
        drop = {b"host", b"expect"} | ({b"content-length"} if self.chunked else set())
        headers = [(n, v) for n, v in self.headers if n.lower() not in drop]
        headers.append((b"Host", proxy_host.encode()))
        target = self.target
        query = parse_qs(urlsplit(target.decode()).query)
        if self.method == b"POST" and query.get("uploadType") == ["media"] and not body:
            boundary = uuid.uuid4().hex
            content_type = (self.header(b"content-type") or b"application/octet-stream").decode()
            metadata = json.dumps({"name": query["name"][0], "contentType": content_type})
            body = (
                f"--{boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n"
                f"{metadata}\r\n--{boundary}\r\nContent-Type: {content_type}\r\n\r\n"
                f"\r\n--{boundary}--\r\n"
            ).encode()
            target = target.replace(b"uploadType=media", b"uploadType=multipart")
            headers = [
                (n, v)
                for n, v in headers
                if n.lower() not in (b"content-length", b"content-type", b"transfer-encoding")
            ]
            headers += [
                (b"Content-Type", f"multipart/related; boundary={boundary}".encode()),
                (b"Content-Length", str(len(body)).encode()),
            ]
        lines = [b" ".join((self.method, target, self.version))]
        lines += [name + b": " + value for name, value in headers]
        return b"\r\n".join(lines) + b"\r\n\r\n" + body


_STORAGE_LAYOUT = re.compile(r"^/storage/v1/b/(?P<bucket>[^/]+)/storageLayout$")


def _storage_layout(bucket: str) -> dict:
    """GCS's answer for a bucket of the flat (not hierarchical) namespace; given for any name."""
    return {
        "kind": "storage#storageLayout",
        "bucket": bucket,
        "location": "US-CENTRAL1",
        "locationType": "region",
        "hierarchicalNamespace": {"enabled": False},
    }


def _json_response(document: dict) -> bytes:
    body = json.dumps(document).encode()
    head = (
        "HTTP/1.1 200 OK\r\nContent-Type: application/json; charset=UTF-8\r\n"
        f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
    )
    return head.encode() + body


def _read_head(sock: socket.socket) -> tuple[bytes | None, bytes]:
    buffer = b""
    while b"\r\n\r\n" not in buffer:
        chunk = sock.recv(65536)
        if not chunk:
            return None, buffer
        buffer += chunk
    head, rest = buffer.split(b"\r\n\r\n", 1)
    return head, rest


def _read_body(sock: socket.socket, request: _Request, rest: bytes) -> bytes:
    """The whole body as sent (chunk framing kept), read before anything goes upstream."""
    buffer = bytearray(rest)

    def need(size: int) -> None:
        while len(buffer) < size:
            chunk = sock.recv(1 << 20)
            if not chunk:
                raise ConnectionError("the client closed the connection mid-request")
            buffer.extend(chunk)

    if not request.chunked:
        length = int(request.header(b"content-length") or 0)
        need(length)
        return bytes(buffer[:length])
    position = 0
    while True:  # chunk: SIZE[;ext] CRLF DATA CRLF ... 0 CRLF [trailers] CRLF
        while (line_end := buffer.find(b"\r\n", position)) < 0:
            need(len(buffer) + 1)
        size = int(bytes(buffer[position:line_end]).split(b";")[0], 16)
        if size == 0:  # the last chunk; what follows ends with an empty line
            while buffer.find(b"\r\n\r\n", line_end) < 0:
                need(len(buffer) + 1)
            return bytes(buffer)
        position = line_end + 2 + size + 2
        need(position)


if __name__ == "__main__":
    _serve(*sys.argv[1:3])

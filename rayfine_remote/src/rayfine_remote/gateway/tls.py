"""The gateway's TLS: a given certificate, or a self-signed one made once, and its fingerprint.

A self-signed certificate is kept in the state directory, so the gateway
keeps its fingerprint across restarts and clients keep their pin
(``https://HOST:PORT#sha256=FINGERPRINT``).  Delete ``tls/`` to rotate it.
The server accepts TLS 1.2 and newer only.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
import socket
import ssl
from pathlib import Path
from typing import Optional, Sequence

from rayfine_core.errors import ValidationError

VALID_DAYS = 3 * 365


def fingerprint(cert_file: Path) -> str:
    """Hex SHA-256 of the certificate (DER), as clients pin it."""
    try:
        pem = cert_file.read_text()
    except OSError as exc:
        raise ValidationError(f"Cannot read the certificate {cert_file}: {exc}") from None
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(pem)).hexdigest()


def self_signed(directory: Path, names: Sequence[str]) -> tuple[Path, Path]:
    """The certificate and key in ``directory``, made (EC P-256) if they are not there yet."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    if cert.exists() and key.exists():
        return cert, key
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        raise ValidationError(
            "Making a self-signed certificate needs the 'cryptography' package: pip install"
            " 'rayfine-core[remote]', or pass --tls-cert and --tls-key."
        ) from None
    private = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "rayfine-gateway")])
    now = datetime.datetime.now(datetime.timezone.utc)
    alt: list[x509.GeneralName] = []
    for name in dict.fromkeys([*names, socket.gethostname(), "localhost", "127.0.0.1"]):
        try:
            alt.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            alt.append(x509.DNSName(name))
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=VALID_DAYS))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(private, hashes.SHA256())
    )
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    _write(key, private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ), 0o600)  # fmt: skip
    _write(cert, certificate.public_bytes(serialization.Encoding.PEM), 0o644)
    return cert, key


def _write(path: Path, data: bytes, mode: int) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def server_context(cert: Path, key: Path, password: Optional[str] = None) -> ssl.SSLContext:
    """The server's TLS settings: TLS 1.2+, the default secure ciphers, no client certificates."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(str(cert), str(key), password)
    except (OSError, ssl.SSLError) as exc:
        raise ValidationError(f"Cannot use the certificate {cert} with key {key}: {exc}") from None
    return context
